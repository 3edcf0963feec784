package push

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/clowdr/realtime/plugins/internal/kit"
)

// Config is the plugin's configuration (plugins.push.config, as JSON).
// Unknown keys are an error.
type Config struct {
	// VAPIDPublicKey and VAPIDPrivateKey are the VAPID key pair, base64url
	// (the format of the web-push libraries: an uncompressed P-256 point and a
	// 32-byte scalar). Set both or neither: when neither is set the pair is
	// generated once and kept in the Store under VAPIDStoreKey.
	VAPIDPublicKey  string `json:"vapid_public_key"`
	VAPIDPrivateKey string `json:"vapid_private_key"`
	// VAPIDSubject is the contact put in the VAPID JWT's "sub" claim: an
	// https:// URL (the original used HOST_PUBLIC_URL) or a mailto: address.
	// Default DefaultVAPIDSubject, which push services may refuse: set it in
	// production.
	VAPIDSubject string `json:"vapid_subject"`
	// EventSecret guards both routes (header x-hasura-event-secret). The host
	// injects EVENT_SECRET here. Empty means every call is refused with 401.
	EventSecret string `json:"event_secret"`
	// TTL is how long, in seconds, a push service keeps an undelivered
	// message (default 3600; 0 means "deliver now or drop").
	TTL *int `json:"ttl"`
	// MaxAttempts bounds the deliveries of one message that meet a transient
	// failure (network error, 429, 5xx) before it is dropped (default 5).
	MaxAttempts int `json:"max_attempts"`
	// GraphQLURL and AdminSecret are injected by the host for every
	// Hasura-backed plugin. With GraphQLURL set, a user's subscriptions are
	// loaded from Hasura's PushNotificationSubscription table when the
	// Store does not know them (see LoadedKey); empty means the webhook is
	// the only source.
	GraphQLURL  string `json:"graphql_url"`
	AdminSecret string `json:"admin_secret"`
}

// Defaults and limits of the Config fields.
const (
	// DefaultTTL is the default of ttl, in seconds.
	DefaultTTL = 3600
	// MaxTTL is the largest ttl accepted (28 days, what push services keep).
	MaxTTL = 28 * 24 * 3600
	// DefaultMaxAttempts is the default of max_attempts.
	DefaultMaxAttempts = 5
)

// parseConfig decodes, defaults and validates raw (nil or empty means "{}").
func parseConfig(raw json.RawMessage) (Config, error) {
	var c Config
	if err := kit.DecodeConfig(raw, &c, "push config", ""); err != nil {
		return c, err
	}
	if (c.VAPIDPublicKey == "") != (c.VAPIDPrivateKey == "") {
		return c, errors.New("push config: set both vapid_public_key and vapid_private_key, or neither")
	}
	if c.VAPIDPublicKey != "" {
		k, err := parseVAPIDKeys(c.VAPIDPublicKey, c.VAPIDPrivateKey)
		if err != nil {
			return c, fmt.Errorf("push config: keys \"vapid_public_key\"/\"vapid_private_key\": %w", err)
		}
		c.VAPIDPublicKey, c.VAPIDPrivateKey = k.Public, k.Private
	}
	if c.VAPIDSubject == "" {
		c.VAPIDSubject = DefaultVAPIDSubject
	}
	if _, err := librarySubscriber(c.VAPIDSubject); err != nil {
		return c, fmt.Errorf("push config: key \"vapid_subject\": %w", err)
	}
	if c.TTL == nil {
		ttl := DefaultTTL
		c.TTL = &ttl
	}
	if *c.TTL < 0 || *c.TTL > MaxTTL {
		return c, fmt.Errorf("push config: key \"ttl\": %d must be in [0, %d] seconds", *c.TTL, MaxTTL)
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = DefaultMaxAttempts
	}
	if c.MaxAttempts < 1 || c.MaxAttempts > 100 {
		return c, fmt.Errorf("push config: key \"max_attempts\": %d must be in [1, 100]", c.MaxAttempts)
	}
	return c, nil
}

// librarySubscriber checks a VAPID subject and returns it in the form
// webpush-go wants: the library prefixes "mailto:" to anything that does
// not start with "https:", so a mailto: subject loses its prefix here.
func librarySubscriber(subject string) (string, error) {
	switch {
	case subject == "":
		return "", errors.New("required: an https:// URL or a mailto: address")
	case strings.HasPrefix(subject, "mailto:"):
		addr := strings.TrimPrefix(subject, "mailto:")
		if addr == "" || !strings.Contains(addr, "@") || strings.ContainsAny(addr, " \t\r\n") {
			return "", fmt.Errorf("%q is not a mailto: address", subject)
		}
		return addr, nil
	case strings.HasPrefix(subject, "https://"):
		u, err := url.Parse(subject)
		if err != nil || u.Host == "" {
			return "", fmt.Errorf("%q is not an https:// URL", subject)
		}
		return subject, nil
	}
	return "", fmt.Errorf("%q must be an https:// URL or a mailto: address (push services reject others)", subject)
}

// DefaultVAPIDSubject is the VAPID contact used when vapid_subject is unset,
// so the plugin runs on embedded defaults; production should set a real one.
const DefaultVAPIDSubject = "mailto:realtime@localhost"
