package push

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/clowdr/realtime/plugins/sdk"
)

// maxPayloadBytes is the largest plaintext webpush-go fits in its single
// 4096-byte aes128gcm record: 4096 - 16 (tag) - 86 (header) - 1 (delimiter).
const maxPayloadBytes = int(webpush.MaxRecordSize) - 16 - 86 - 1

// sentKey and attemptsKey hold a message's retry bookkeeping: the endpoints
// already settled (sent, gone or refused for good) and the number of
// deliveries that met a transient failure.
func sentKey(id string) string     { return "push:sent:" + id }
func attemptsKey(id string) string { return "push:attempts:" + id }

// outcome of one send.
type outcome int

const (
	sent      outcome = iota // 2xx
	gone                     // 404/410 or unusable: the subscription was removed
	refused                  // other 4xx: not retried, subscription kept
	transient                // network error, 429, 5xx: retried
)

// OnDelivery handles one Message from the push.notifications queue: Web
// Push to each of the user's subscriptions, or the `notification` socket
// event when the user has none. A transient failure nacks the delivery so it
// is redelivered (only to the endpoints not yet settled), up to max_attempts.
func (p *Plugin) OnDelivery(ctx context.Context, d sdk.Delivery) error {
	if len(d.Body) > MaxMessageBytes {
		return fmt.Errorf("push: delivery of %d bytes: %w", len(d.Body), sdk.ErrDrop)
	}
	var m Message
	if err := json.Unmarshal(d.Body, &m); err != nil {
		return fmt.Errorf("push: bad delivery body: %v: %w", err, sdk.ErrDrop)
	}
	if err := m.Validate(); err != nil {
		return fmt.Errorf("%v: %w", err, sdk.ErrDrop)
	}
	id := m.ID
	if id == "" {
		sum := sha256.Sum256(d.Body)
		id = hex.EncodeToString(sum[:16])
	}
	store := p.host.Store()
	cmds := [][]any{
		{"HGETALL", SubscriptionsKey(m.UserID)},
		{"SMEMBERS", sentKey(id)},
	}
	if p.hasura() {
		cmds = append(cmds, []any{"EXISTS", LoadedKey(m.UserID)})
	}
	replies, err := store.Pipeline(ctx, cmds)
	if err != nil {
		return fmt.Errorf("push: read subscriptions of %s: %w", m.UserID, err)
	}
	if len(replies) != len(cmds) {
		return fmt.Errorf("push: read subscriptions of %s: %d replies", m.UserID, len(replies))
	}
	flat, err := sdk.Strings(replies[0].Value, replies[0].Err)
	if err != nil {
		return fmt.Errorf("push: read subscriptions of %s: %w", m.UserID, err)
	}
	settled, err := sdk.Strings(replies[1].Value, replies[1].Err)
	if err != nil {
		return fmt.Errorf("push: read retry state of %s: %w", id, err)
	}
	if p.hasura() {
		loaded, err := sdk.Int64(replies[2].Value, replies[2].Err)
		if err != nil {
			return fmt.Errorf("push: read %s: %w", LoadedKey(m.UserID), err)
		}
		if loaded == 0 {
			// Not loaded since the Store was emptied (deploy, flush, expiry):
			// what the webhook stored since, if anything, may be partial.
			if err := p.loadSubscriptions(ctx, m.UserID); err != nil {
				p.log.Error("push: could not load subscriptions from Hasura; using the stored ones (or the socket)",
					"user", m.UserID, "err", err)
			} else if flat, err = sdk.Strings(store.Do(ctx, "HGETALL", SubscriptionsKey(m.UserID))); err != nil {
				return fmt.Errorf("push: read subscriptions of %s: %w", m.UserID, err)
			}
		}
	}
	if len(flat) == 0 {
		if len(settled) > 0 {
			// Sent by Web Push on an earlier attempt; the subscriptions have
			// gone since. Sending to the socket now would notify twice.
			return p.clearRetryState(ctx, id)
		}
		return p.emit(ctx, m)
	}
	subs := p.decodeSubscriptions(ctx, m.UserID, flat, settled)
	if len(subs) == 0 {
		if len(settled) == 0 {
			// Every stored subscription was unusable and removed.
			return p.emit(ctx, m)
		}
		return p.clearRetryState(ctx, id)
	}
	payload, err := fitPayload(m.Notification)
	if err != nil {
		return fmt.Errorf("push: %v: %w", err, sdk.ErrDrop)
	}
	keys, err := p.keys(ctx)
	if err != nil {
		return fmt.Errorf("push: VAPID keys: %w", err)
	}

	results := p.sendAll(ctx, payload, subs, keys)
	var done, removed []string
	failures := 0
	for i, o := range results {
		switch o {
		case transient:
			failures++
			continue
		case gone:
			removed = append(removed, subs[i].Endpoint)
		}
		done = append(done, subs[i].Endpoint)
	}
	if len(removed) > 0 {
		args := append([]any{"HDEL", SubscriptionsKey(m.UserID)}, toAny(removed)...)
		if _, err := store.Do(ctx, args...); err != nil {
			p.log.Error("push: remove expired subscriptions", "user", m.UserID, "err", err)
		}
	}
	if failures > 0 {
		return p.retry(ctx, id, m.UserID, done, failures, len(subs))
	}
	if len(removed) == len(subs) && len(settled) == 0 {
		// All of the user's subscriptions have expired: the socket is the
		// only way left to reach them.
		return p.emit(ctx, m)
	}
	if len(settled) > 0 || d.Redelivered {
		return p.clearRetryState(ctx, id)
	}
	return nil
}

// emit sends the notification to the user's sockets.
func (p *Plugin) emit(ctx context.Context, m Message) error {
	if err := p.host.Emit(ctx, sdk.UserTarget(m.UserID), EventNotification, m.Notification); err != nil {
		return fmt.Errorf("push: emit notification to %s: %w", m.UserID, err)
	}
	return nil
}

// retry records the settled endpoints and counts the attempt; it returns the
// error that requeues the delivery, or drops it after max_attempts.
func (p *Plugin) retry(ctx context.Context, id, userID string, done []string, failures, total int) error {
	ttl := int(retryStateTTL / time.Second)
	cmds := [][]any{{"INCR", attemptsKey(id)}, {"EXPIRE", attemptsKey(id), ttl}}
	if len(done) > 0 {
		cmds = append(cmds, append([]any{"SADD", sentKey(id)}, toAny(done)...), []any{"EXPIRE", sentKey(id), ttl})
	}
	replies, err := p.host.Store().Pipeline(ctx, cmds)
	if err != nil || len(replies) == 0 {
		return fmt.Errorf("push: %d of %d sends to %s failed; retry state not saved: %v", failures, total, userID, err)
	}
	n, err := sdk.Int64(replies[0].Value, replies[0].Err)
	if err != nil {
		return fmt.Errorf("push: %d of %d sends to %s failed; retry count: %w", failures, total, userID, err)
	}
	if n >= int64(p.cfg.MaxAttempts) {
		p.log.Error("push: giving up on a notification", "user", userID, "id", id, "attempts", n, "failed", failures)
		_ = p.clearRetryState(ctx, id)
		return fmt.Errorf("push: %d of %d sends to %s failed after %d attempts: %w", failures, total, userID, n, sdk.ErrDrop)
	}
	return fmt.Errorf("push: %d of %d sends to %s failed (attempt %d of %d)", failures, total, userID, n, p.cfg.MaxAttempts)
}

func (p *Plugin) clearRetryState(ctx context.Context, id string) error {
	if _, err := p.host.Store().Do(ctx, "DEL", sentKey(id), attemptsKey(id)); err != nil {
		p.log.Warn("push: clear retry state", "id", id, "err", err)
	}
	return nil
}

// decodeSubscriptions turns HGETALL's field/value list into subscriptions,
// skipping settled endpoints and removing entries that cannot be used.
// At most maxSubscriptionsPerSend are returned, in endpoint order.
func (p *Plugin) decodeSubscriptions(ctx context.Context, userID string, flat, settled []string) []webpush.Subscription {
	var subs []webpush.Subscription
	var bad []string
	for i := 0; i+1 < len(flat); i += 2 {
		endpoint := flat[i]
		if slices.Contains(settled, endpoint) {
			continue
		}
		var s webpush.Subscription
		err := json.Unmarshal([]byte(flat[i+1]), &s)
		if err == nil {
			err = validEndpoint(s.Endpoint)
		}
		if err == nil {
			err = validKeys(s.Keys.Auth, s.Keys.P256dh)
		}
		if err != nil || s.Endpoint != endpoint {
			p.log.Warn("push: removing an unusable subscription", "user", userID, "endpoint", endpoint, "err", err)
			bad = append(bad, endpoint)
			continue
		}
		subs = append(subs, s)
	}
	if len(bad) > 0 {
		args := append([]any{"HDEL", SubscriptionsKey(userID)}, toAny(bad)...)
		if _, err := p.host.Store().Do(ctx, args...); err != nil {
			p.log.Error("push: remove unusable subscriptions", "user", userID, "err", err)
		}
	}
	slices.SortFunc(subs, func(a, b webpush.Subscription) int {
		switch {
		case a.Endpoint < b.Endpoint:
			return -1
		case a.Endpoint > b.Endpoint:
			return 1
		}
		return 0
	})
	if len(subs) > maxSubscriptionsPerSend {
		p.log.Warn("push: too many subscriptions; sending to the first ones", "user", userID, "count", len(subs), "max", maxSubscriptionsPerSend)
		subs = subs[:maxSubscriptionsPerSend]
	}
	return subs
}

// sendAll sends payload to every subscription, sendParallelism at a time,
// and returns one outcome per subscription. It returns once all are done.
func (p *Plugin) sendAll(ctx context.Context, payload []byte, subs []webpush.Subscription, keys vapidKeys) []outcome {
	results := make([]outcome, len(subs))
	sem := make(chan struct{}, sendParallelism)
	var wg sync.WaitGroup
	for i := range subs {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			results[i] = p.send(ctx, payload, &subs[i], keys)
		}()
	}
	wg.Wait()
	return results
}

// send makes one Web Push request and classifies its result.
func (p *Plugin) send(ctx context.Context, payload []byte, sub *webpush.Subscription, keys vapidKeys) outcome {
	ctx, cancel := context.WithTimeout(ctx, sendTimeout)
	defer cancel()
	// webpush-go pads the message by appending to the slice it is given
	// (bytes.NewBuffer(message)), which writes into spare capacity: each
	// send gets its own copy.
	msg := make([]byte, len(payload))
	copy(msg, payload)
	resp, err := webpush.SendNotificationWithContext(ctx, msg, sub, &webpush.Options{
		HTTPClient:      p.client,
		Subscriber:      p.subscriber,
		TTL:             *p.cfg.TTL,
		VAPIDPublicKey:  keys.Public,
		VAPIDPrivateKey: keys.Private,
	})
	if err != nil {
		if errors.Is(err, webpush.ErrMaxPadExceeded) {
			p.log.Error("push: payload too large", "endpoint", sub.Endpoint, "err", err)
			return refused
		}
		p.log.Warn("push: send failed; will retry", "endpoint", sub.Endpoint, "err", err)
		return transient
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		return sent
	case code == http.StatusNotFound || code == http.StatusGone:
		p.log.Info("push: subscription expired; removing it", "endpoint", sub.Endpoint, "status", code)
		return gone
	case code == http.StatusTooManyRequests || code >= 500:
		p.log.Warn("push: push service failed; will retry", "endpoint", sub.Endpoint, "status", code, "body", string(body))
		return transient
	default:
		p.log.Error("push: push service refused the message", "endpoint", sub.Endpoint, "status", code, "body", string(body))
		return refused
	}
}

// fitPayload marshals n, shortening the description (then the subtitle,
// then the title) on a rune boundary with "…" until it fits one record.
func fitPayload(n Notification) ([]byte, error) {
	fields := []*string{&n.Description, &n.Subtitle, &n.Title}
	for _, f := range fields {
		for range 8 {
			b, err := json.Marshal(n)
			if err != nil {
				return nil, fmt.Errorf("encode notification: %w", err)
			}
			excess := len(b) - maxPayloadBytes
			if excess <= 0 {
				return b, nil
			}
			if *f == "" {
				break
			}
			*f = truncate(*f, len(*f)-excess-len("…"))
		}
	}
	b, err := json.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("encode notification: %w", err)
	}
	if len(b) > maxPayloadBytes {
		return nil, fmt.Errorf("notification is %d bytes even shortened, more than %d", len(b), maxPayloadBytes)
	}
	return b, nil
}

// truncate cuts s to at most max bytes on a rune boundary and appends "…"
// (or returns "" when nothing is left).
func truncate(s string, max int) string {
	if max <= 0 {
		return ""
	}
	if len(s) <= max {
		return s
	}
	for max > 0 && !utf8.RuneStart(s[max]) {
		max--
	}
	return s[:max] + "…"
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
