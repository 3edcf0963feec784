package push

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/clowdr/realtime/plugins/sdk"
)

// Names shared with the producers of notifications (the chat plugin).
const (
	// Name is the plugin's registered name.
	Name = "push"
	// ExchangeName is the topic exchange notifications are published to, with
	// the recipient's user id as routing key.
	ExchangeName = "notifications"
	// QueueName is the durable queue, shared by every instance, that the push
	// plugin consumes (bound with "#"): each notification is handled once.
	QueueName = "push.notifications"
	// EventNotification is the Socket.IO event a notification is emitted as
	// to users without Web Push subscriptions (§4.3.7).
	EventNotification = "notification"
	// MaxMessageBytes bounds the JSON body of one published Message.
	MaxMessageBytes = 64 << 10
	// maxUserIDBytes keeps the routing key under AMQP's 255-byte limit.
	maxUserIDBytes = 255
)

// Exchange is the declaration of ExchangeName. A producer plugin may list it
// in its own Descriptor.Exchanges (declaring an exchange twice with the same
// definition is harmless), so publishing never depends on the push plugin
// having declared it first.
func Exchange() sdk.Exchange {
	return sdk.Exchange{Name: ExchangeName, Kind: "topic", Durable: true}
}

// Notification is the payload of a notification (types/chat.ts L38-44): the
// argument of the `notification` socket event and, as JSON, the body of a
// Web Push message.
type Notification struct {
	Title       string `json:"title"`
	Subtitle    string `json:"subtitle,omitempty"`
	Description string `json:"description"`
	ChatID      string `json:"chatId,omitempty"`
	LinkURL     string `json:"linkURL,omitempty"`
}

// Message is the body of one delivery on ExchangeName.
type Message struct {
	// ID identifies the message across redeliveries (random hex). Messages
	// without one are identified by a hash of their body.
	ID string `json:"id,omitempty"`
	// UserID is the recipient.
	UserID string `json:"userId"`
	// Notification is what the recipient gets.
	Notification Notification `json:"notification"`
}

// Validate checks what a Message must have to be delivered.
func (m Message) Validate() error {
	switch {
	case m.UserID == "":
		return errors.New("push: message without userId")
	case len(m.UserID) > maxUserIDBytes:
		return fmt.Errorf("push: userId longer than %d bytes", maxUserIDBytes)
	case m.Notification.Title == "":
		return errors.New("push: notification without title")
	case len(m.ID) > 128:
		return errors.New("push: message id longer than 128 bytes")
	}
	for _, s := range []string{m.UserID, m.ID, m.Notification.Title, m.Notification.Subtitle,
		m.Notification.Description, m.Notification.ChatID, m.Notification.LinkURL} {
		if !utf8.ValidString(s) {
			return errors.New("push: message with invalid UTF-8")
		}
	}
	return nil
}

// Encode builds the body of a Message for userID (with a fresh random id).
func Encode(userID string, n Notification) ([]byte, error) {
	var id [16]byte
	if _, err := rand.Read(id[:]); err != nil {
		return nil, fmt.Errorf("push: message id: %w", err)
	}
	m := Message{ID: hex.EncodeToString(id[:]), UserID: userID, Notification: n}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("push: encode message: %w", err)
	}
	if len(body) > MaxMessageBytes {
		return nil, fmt.Errorf("push: message is %d bytes, more than %d", len(body), MaxMessageBytes)
	}
	return body, nil
}

// Publish hands a notification for userID to the push plugin: it publishes a
// Message to ExchangeName with routing key userID and returns once the
// broker confirmed it. The push plugin then sends it by Web Push, or emits it
// as the `notification` socket event when the user has no subscription.
//
// Use it instead of emitting `notification` directly only when the push
// plugin is enabled: nothing else consumes the exchange.
func Publish(ctx context.Context, host sdk.Host, userID string, n Notification) error {
	body, err := Encode(userID, n)
	if err != nil {
		return err
	}
	if err := host.Publish(ctx, ExchangeName, userID, body); err != nil {
		return fmt.Errorf("push: publish notification for %s: %w", userID, err)
	}
	return nil
}
