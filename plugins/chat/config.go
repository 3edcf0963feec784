package chat

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/url"
	"strings"
	"time"

	"github.com/clowdr/realtime/plugins/internal/kit"
)

// Config is the plugin's configuration (plugins.chat.config, as JSON). Every
// key is optional; zero values take the defaults below.
type Config struct {
	// EventSecret guards the Hasura webhook routes (header
	// x-hasura-event-secret). The host injects EVENT_SECRET here. Empty means
	// every webhook call is refused with 401.
	EventSecret string `json:"event_secret"`
	// MaxMessageBytes bounds the JSON of one chat.messages.send or
	// chat.reactions.send action (default 16384).
	MaxMessageBytes int `json:"max_message_bytes"`
	// SendsPerSecond is the sustained rate of sends (messages and reactions
	// together) one socket may make (default 10).
	SendsPerSecond float64 `json:"sends_per_second"`
	// SendBurst is the burst of sends one socket may make (default 20).
	SendBurst int `json:"send_burst"`
	// NotifyDelay is how long after a confirmed publish unread counts and
	// notifications are computed, as a Go duration string (default "1500ms",
	// as the original; "0s" runs them at once).
	NotifyDelay Duration `json:"notify_delay"`
	// MessageRecordTTL is how long the sender of a message or reaction is
	// remembered for UPDATE/DELETE permission checks (default "720h").
	MessageRecordTTL Duration `json:"message_record_ttl"`
	// Moderators are the user ids that get "Message reported" notifications
	// from POST /chat/flag/inserted when the directory cannot name the
	// conference's moderators (the static directory, a Hasura error).
	Moderators []string `json:"moderators"`
	// Writeback declares and consumes the durable chat.messages.writeback and
	// chat.reactions.writeback queues and writes their messages to Hasura
	// (requires GraphQLURL).
	Writeback bool `json:"writeback"`
	// WritebackBatchMax is the most writeback messages written with one
	// GraphQL request (default 100, the original's queue size).
	WritebackBatchMax int `json:"writeback_batch_max"`
	// WritebackBatchWait is how long a writeback batch that is not full
	// waits for more messages, as a Go duration string (default "50ms").
	WritebackBatchWait Duration `json:"writeback_batch_wait"`
	// WebPush sends notifications through the push plugin (exchange
	// "notifications", see plugins/push) instead of emitting them to the
	// user's sockets; the push plugin then uses Web Push for users with
	// subscriptions and the socket event for the rest. The host sets it when
	// the push plugin is enabled.
	WebPush bool `json:"web_push"`
	// GraphQLURL is Hasura's GraphQL endpoint for the writeback.
	GraphQLURL string `json:"graphql_url"`
	// AdminSecret is sent as x-hasura-admin-secret by the writeback.
	AdminSecret string `json:"admin_secret"`
	// ReadUpToWritebackInterval is how often the modified read-up-to
	// indices are written back to Hasura (with graphql_url only), as a Go
	// duration string (default "3m", the original's).
	ReadUpToWritebackInterval Duration `json:"read_up_to_writeback_interval"`
}

// Defaults of the Config fields.
const (
	// DefaultMaxMessageBytes is the default of max_message_bytes.
	DefaultMaxMessageBytes = 16384
	// DefaultSendsPerSecond is the default of sends_per_second.
	DefaultSendsPerSecond = 10
	// DefaultSendBurst is the default of send_burst.
	DefaultSendBurst = 20
	// DefaultNotifyDelay is the default of notify_delay (the original's 1500 ms).
	DefaultNotifyDelay = 1500 * time.Millisecond
	// DefaultMessageRecordTTL is the default of message_record_ttl.
	DefaultMessageRecordTTL = 720 * time.Hour
	// DefaultWritebackBatchMax is the default of writeback_batch_max.
	DefaultWritebackBatchMax = 100
	// DefaultWritebackBatchWait is the default of writeback_batch_wait.
	DefaultWritebackBatchWait = 50 * time.Millisecond
	// DefaultReadUpToWritebackInterval is the default of
	// read_up_to_writeback_interval (the original's 3 minutes, §6.3).
	DefaultReadUpToWritebackInterval = 3 * time.Minute
)

// Duration is a time.Duration written as a Go duration string ("1500ms").
type Duration = kit.Duration

// parseConfig decodes, defaults and validates raw (nil or empty means "{}").
// Errors name the offending key.
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := kit.DecodeConfig(raw, &c, "chat config", "1500ms", "notify_delay", "message_record_ttl", "writeback_batch_wait", "read_up_to_writeback_interval"); err != nil {
		return c, err
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.MaxMessageBytes < 256 || c.MaxMessageBytes > 1<<20 {
		return c, fmt.Errorf("chat config: key \"max_message_bytes\": %d is outside [256, 1048576]", c.MaxMessageBytes)
	}
	if c.SendsPerSecond == 0 {
		c.SendsPerSecond = DefaultSendsPerSecond
	}
	if c.SendsPerSecond < 0 || math.IsNaN(c.SendsPerSecond) || c.SendsPerSecond > 1e6 {
		return c, fmt.Errorf("chat config: key \"sends_per_second\": %v must be in (0, 1e6]", c.SendsPerSecond)
	}
	if c.SendBurst == 0 {
		c.SendBurst = DefaultSendBurst
	}
	if c.SendBurst < 1 || c.SendBurst > 1e6 {
		return c, fmt.Errorf("chat config: key \"send_burst\": %d must be in [1, 1000000]", c.SendBurst)
	}
	if !c.NotifyDelay.Set {
		c.NotifyDelay = Duration{D: DefaultNotifyDelay, Set: true}
	}
	if c.NotifyDelay.D < 0 || c.NotifyDelay.D > time.Minute {
		return c, fmt.Errorf("chat config: key \"notify_delay\": %v must be in [0, 1m]", c.NotifyDelay.D)
	}
	if !c.MessageRecordTTL.Set {
		c.MessageRecordTTL = Duration{D: DefaultMessageRecordTTL, Set: true}
	}
	if c.MessageRecordTTL.D < time.Minute {
		return c, fmt.Errorf("chat config: key \"message_record_ttl\": %v must be at least 1m", c.MessageRecordTTL.D)
	}
	for i, m := range c.Moderators {
		if strings.TrimSpace(m) == "" {
			return c, fmt.Errorf("chat config: key \"moderators\": entry %d is empty", i)
		}
	}
	if c.WritebackBatchMax == 0 {
		c.WritebackBatchMax = DefaultWritebackBatchMax
	}
	if c.WritebackBatchMax < 1 || c.WritebackBatchMax > 1000 {
		return c, fmt.Errorf("chat config: key \"writeback_batch_max\": %d is outside [1, 1000]", c.WritebackBatchMax)
	}
	if !c.WritebackBatchWait.Set {
		c.WritebackBatchWait = Duration{D: DefaultWritebackBatchWait, Set: true}
	}
	if c.WritebackBatchWait.D < 0 || c.WritebackBatchWait.D > 10*time.Second {
		return c, fmt.Errorf("chat config: key \"writeback_batch_wait\": %v must be in [0, 10s]", c.WritebackBatchWait.D)
	}
	if !c.ReadUpToWritebackInterval.Set {
		c.ReadUpToWritebackInterval = Duration{D: DefaultReadUpToWritebackInterval, Set: true}
	}
	if c.ReadUpToWritebackInterval.D < 100*time.Millisecond || c.ReadUpToWritebackInterval.D > 24*time.Hour {
		return c, fmt.Errorf("chat config: key \"read_up_to_writeback_interval\": %v must be in [100ms, 24h]", c.ReadUpToWritebackInterval.D)
	}
	if c.Writeback {
		if c.GraphQLURL == "" {
			return c, errors.New("chat config: key \"graphql_url\": required when writeback is true")
		}
	}
	if c.GraphQLURL != "" {
		u, err := url.Parse(c.GraphQLURL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return c, fmt.Errorf("chat config: key \"graphql_url\": %q is not an http(s) URL", c.GraphQLURL)
		}
	}
	return c, nil
}
