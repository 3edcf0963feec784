package push

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

// SubscriptionsKey is the Store HASH of a user's Web Push subscriptions:
// field endpoint, value JSON {"endpoint","keys":{"auth","p256dh"}}.
func SubscriptionsKey(userID string) string { return "push:subscriptions:" + userID }

// errInvalid marks a payload error (answered 500 "Unexpected payload").
var errInvalid = errors.New("invalid payload")

func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errInvalid, fmt.Sprintf(format, args...))
}

// subscriptionRow is a PushNotificationSubscription row.
type subscriptionRow struct {
	UserID   string `json:"userId"`
	Endpoint string `json:"endpoint"`
	Auth     string `json:"auth"`
	P256dh   string `json:"p256dh"`
}

// hasuraEvent is a Hasura event trigger payload (types/hasura.ts). Unlike
// the original, session_variables may be null or absent (Hasura sends null
// for changes made without a session).
type hasuraEvent struct {
	Event struct {
		Op   string `json:"op"`
		Data *struct {
			Old json.RawMessage `json:"old"`
			New json.RawMessage `json:"new"`
		} `json:"data"`
		SessionVariables map[string]string `json:"session_variables"`
	} `json:"event"`
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || bytes.Equal(t, []byte("null"))
}

// parseRow decodes and validates a row: the endpoint must be an https URL
// and the keys a 16-byte auth secret and an uncompressed P-256 point, or the
// subscription could never be sent to.
func parseRow(raw json.RawMessage) (subscriptionRow, error) {
	var r subscriptionRow
	if isNull(raw) {
		return r, invalidf("row is missing")
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, invalidf("row: %v", err)
	}
	if r.UserID == "" || len(r.UserID) > maxUserIDBytes {
		return r, invalidf("row needs a userId of 1 to %d bytes", maxUserIDBytes)
	}
	if err := validEndpoint(r.Endpoint); err != nil {
		return r, invalidf("row: %v", err)
	}
	if r.Auth == "" || r.P256dh == "" {
		return r, invalidf("row needs auth and p256dh")
	}
	return r, nil
}

// validEndpoint accepts https URLs with a host, of bounded length.
func validEndpoint(endpoint string) error {
	if endpoint == "" || len(endpoint) > maxEndpointBytes {
		return fmt.Errorf("endpoint must have 1 to %d bytes", maxEndpointBytes)
	}
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("endpoint %q is not an https URL", endpoint)
	}
	return nil
}

// validKeys checks a subscription's keys can be used for encryption.
func validKeys(auth, p256dh string) error {
	a, err := decodeB64(auth)
	if err != nil || len(a) != 16 {
		return errors.New("auth must be a 16-byte base64url secret")
	}
	k, err := decodeB64(p256dh)
	if err != nil {
		return errors.New("p256dh is not base64")
	}
	if _, err := ecdh.P256().NewPublicKey(k); err != nil {
		return fmt.Errorf("p256dh is not an uncompressed P-256 point: %w", err)
	}
	return nil
}

// subscriptionChanged serves POST /pushNotificationSubscription/changed.
func (p *Plugin) subscriptionChanged(ctx context.Context, body []byte) sdk.HTTPResponse {
	err := p.applySubscriptionEvent(ctx, body)
	if errors.Is(err, errInvalid) {
		p.log.Warn("push: unexpected subscription payload", "err", err)
		return kit.TextResponse(http.StatusInternalServerError, "Unexpected payload")
	}
	if err != nil {
		p.log.Error("push: subscription change failed", "err", err)
		return kit.TextResponse(http.StatusInternalServerError, "Internal error")
	}
	return kit.TextResponse(http.StatusOK, "OK")
}

func (p *Plugin) applySubscriptionEvent(ctx context.Context, body []byte) error {
	var ev hasuraEvent
	if err := json.Unmarshal(body, &ev); err != nil {
		return invalidf("%v", err)
	}
	if ev.Event.Data == nil {
		return invalidf("event.data must be an object")
	}
	store := p.host.Store()
	switch ev.Event.Op {
	case "INSERT", "UPDATE", "MANUAL":
		row, err := parseRow(ev.Event.Data.New)
		if err != nil {
			return err
		}
		if err := validKeys(row.Auth, row.P256dh); err != nil {
			return invalidf("row: %v", err)
		}
		if ev.Event.Op == "UPDATE" && !isNull(ev.Event.Data.Old) {
			var old subscriptionRow
			if json.Unmarshal(ev.Event.Data.Old, &old) == nil && old.UserID != "" &&
				(old.UserID != row.UserID || old.Endpoint != row.Endpoint) {
				if err := p.touch(ctx, old.UserID, old.Endpoint); err != nil {
					return err
				}
				if _, err := store.Do(ctx, "HDEL", SubscriptionsKey(old.UserID), old.Endpoint); err != nil {
					return fmt.Errorf("remove old subscription: %w", err)
				}
			}
		}
		sub, err := json.Marshal(webpush.Subscription{
			Endpoint: row.Endpoint,
			Keys:     webpush.Keys{Auth: row.Auth, P256dh: row.P256dh},
		})
		if err != nil {
			return fmt.Errorf("encode subscription: %w", err)
		}
		if err := p.touch(ctx, row.UserID, row.Endpoint); err != nil {
			return err
		}
		if _, err := store.Do(ctx, "HSET", SubscriptionsKey(row.UserID), row.Endpoint, string(sub)); err != nil {
			return fmt.Errorf("store subscription: %w", err)
		}
		return nil
	case "DELETE":
		var old subscriptionRow
		if isNull(ev.Event.Data.Old) || json.Unmarshal(ev.Event.Data.Old, &old) != nil ||
			old.UserID == "" || old.Endpoint == "" {
			return invalidf("DELETE needs data.old with userId and endpoint")
		}
		if err := p.touch(ctx, old.UserID, old.Endpoint); err != nil {
			return err
		}
		if _, err := store.Do(ctx, "HDEL", SubscriptionsKey(old.UserID), old.Endpoint); err != nil {
			return fmt.Errorf("remove subscription: %w", err)
		}
		return nil
	}
	return invalidf("event.op %q is not INSERT, UPDATE, DELETE or MANUAL", ev.Event.Op)
}
