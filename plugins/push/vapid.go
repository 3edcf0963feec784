package push

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	webpush "github.com/SherClockHolmes/webpush-go"

	"github.com/clowdr/realtime/plugins/sdk"
)

// VAPIDStoreKey is the Store key holding the generated VAPID key pair as
// JSON {"publicKey","privateKey"} (base64url). It is written once with
// SET NX, so every instance ends up with the same pair.
const VAPIDStoreKey = "push:vapid"

// vapidKeys is a validated VAPID key pair, base64url without padding.
type vapidKeys struct {
	Public  string `json:"publicKey"`
	Private string `json:"privateKey"`
}

// decodeB64 accepts base64url or standard base64, padded or not.
func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	return b, nil
}

// parseVAPIDKeys checks that public is the uncompressed P-256 point of the
// private scalar and returns both normalised to unpadded base64url.
func parseVAPIDKeys(public, private string) (vapidKeys, error) {
	pub, err := decodeB64(public)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("public key: %w", err)
	}
	priv, err := decodeB64(private)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("private key: %w", err)
	}
	if len(pub) != 65 || pub[0] != 4 {
		return vapidKeys{}, fmt.Errorf("public key: want a 65-byte uncompressed P-256 point, got %d bytes", len(pub))
	}
	if len(priv) != 32 {
		return vapidKeys{}, fmt.Errorf("private key: want 32 bytes, got %d", len(priv))
	}
	k, err := ecdh.P256().NewPrivateKey(priv)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("private key: %w", err)
	}
	if !bytes.Equal(k.PublicKey().Bytes(), pub) {
		return vapidKeys{}, errors.New("the public key does not belong to the private key")
	}
	return vapidKeys{
		Public:  base64.RawURLEncoding.EncodeToString(pub),
		Private: base64.RawURLEncoding.EncodeToString(priv),
	}, nil
}

// loadOrCreateVAPID reads the shared key pair from the Store, generating and
// storing one (SET NX) when there is none.
func loadOrCreateVAPID(ctx context.Context, store sdk.Store) (vapidKeys, error) {
	raw, err := sdk.String(store.Do(ctx, "GET", VAPIDStoreKey))
	if errors.Is(err, sdk.ErrNil) {
		priv, pub, gerr := webpush.GenerateVAPIDKeys()
		if gerr != nil {
			return vapidKeys{}, fmt.Errorf("generate VAPID keys: %w", gerr)
		}
		k, gerr := parseVAPIDKeys(pub, priv)
		if gerr != nil {
			return vapidKeys{}, fmt.Errorf("generated VAPID keys: %w", gerr)
		}
		b, gerr := json.Marshal(k)
		if gerr != nil {
			return vapidKeys{}, fmt.Errorf("encode VAPID keys: %w", gerr)
		}
		// NX: another instance may have won the race; read back what is stored.
		if _, serr := store.Do(ctx, "SET", VAPIDStoreKey, string(b), "NX"); serr != nil && !errors.Is(serr, sdk.ErrNil) {
			return vapidKeys{}, fmt.Errorf("store VAPID keys: %w", serr)
		}
		raw, err = sdk.String(store.Do(ctx, "GET", VAPIDStoreKey))
	}
	if err != nil {
		return vapidKeys{}, fmt.Errorf("read %s: %w", VAPIDStoreKey, err)
	}
	var k vapidKeys
	if err := json.Unmarshal([]byte(raw), &k); err != nil {
		return vapidKeys{}, fmt.Errorf("stored %s is not JSON: %w", VAPIDStoreKey, err)
	}
	k, err = parseVAPIDKeys(k.Public, k.Private)
	if err != nil {
		return vapidKeys{}, fmt.Errorf("stored %s: %w", VAPIDStoreKey, err)
	}
	return k, nil
}

// keys returns the VAPID key pair: the configured one, or the shared one
// from the Store (loaded once, retried on the next call after a failure).
func (p *Plugin) keys(ctx context.Context) (vapidKeys, error) {
	p.keyMu.Lock()
	defer p.keyMu.Unlock()
	if p.vapid != nil {
		return *p.vapid, nil
	}
	k, err := loadOrCreateVAPID(ctx, p.host.Store())
	if err != nil {
		return vapidKeys{}, err
	}
	p.vapid = &k
	return k, nil
}
