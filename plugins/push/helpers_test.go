package push

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	webpush "github.com/SherClockHolmes/webpush-go"
	"github.com/golang-jwt/jwt/v5"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// TestMain lets the test binary serve the plugin when sdktest.StartSubprocess
// re-executes it.
func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

const (
	testSecret  = "s3cret"
	testSubject = "mailto:ops@example.org"
)

// testVAPID generates a VAPID key pair with the library.
func testVAPID(t testing.TB) vapidKeys {
	t.Helper()
	priv, pub, err := webpush.GenerateVAPIDKeys()
	if err != nil {
		t.Fatal(err)
	}
	return vapidKeys{Public: pub, Private: priv}
}

// subscriber is a browser's side of a push subscription.
type subscriber struct {
	priv   *ecdh.PrivateKey
	auth   []byte
	P256dh string // base64url of the public key
	Auth   string // base64url of the auth secret
}

func newSubscriber(t testing.TB) subscriber {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	auth := make([]byte, 16)
	if _, err := rand.Read(auth); err != nil {
		t.Fatal(err)
	}
	return subscriber{
		priv: k, auth: auth,
		P256dh: base64.RawURLEncoding.EncodeToString(k.PublicKey().Bytes()),
		Auth:   base64.RawURLEncoding.EncodeToString(auth),
	}
}

// decrypt undoes RFC 8291 (aes128gcm, RFC 8188, one record) with the
// subscriber's keys. Test-only verification code.
func (s subscriber) decrypt(body []byte) ([]byte, error) {
	if len(body) < 21 {
		return nil, errors.New("body shorter than the aes128gcm header")
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	if len(body) < 21+idlen {
		return nil, errors.New("truncated key id")
	}
	asPublicBytes, ciphertext := body[21:21+idlen], body[21+idlen:]
	if uint32(len(ciphertext)) > rs {
		return nil, fmt.Errorf("more than one record (%d > rs %d)", len(ciphertext), rs)
	}
	asPublic, err := ecdh.P256().NewPublicKey(asPublicBytes)
	if err != nil {
		return nil, fmt.Errorf("key id is not a P-256 point: %w", err)
	}
	secret, err := s.priv.ECDH(asPublic)
	if err != nil {
		return nil, err
	}
	prkKey, err := hkdf.Extract(sha256.New, secret, s.auth)
	if err != nil {
		return nil, err
	}
	keyInfo := "WebPush: info\x00" + string(s.priv.PublicKey().Bytes()) + string(asPublicBytes)
	ikm, err := hkdf.Expand(sha256.New, prkKey, keyInfo, 32)
	if err != nil {
		return nil, err
	}
	prk, err := hkdf.Extract(sha256.New, ikm, salt)
	if err != nil {
		return nil, err
	}
	cek, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Expand(sha256.New, prk, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain, err := gcm.Open(nil, nonce, ciphertext, nil)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	plain = bytes.TrimRight(plain, "\x00")
	if len(plain) == 0 || plain[len(plain)-1] != 2 {
		return nil, errors.New("missing last-record delimiter 0x02")
	}
	return plain[:len(plain)-1], nil
}

// received is one request the fake push service got.
type received struct {
	Path   string
	Header http.Header
	Body   []byte
}

// pushService is a fake push service over TLS: it records requests and
// answers each path with a configurable status (default 201).
type pushService struct {
	srv *httptest.Server

	mu       sync.Mutex
	status   map[string]int
	received []received
}

func newPushService(t testing.TB) *pushService {
	t.Helper()
	ps := &pushService{status: map[string]int{}}
	ps.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		ps.mu.Lock()
		ps.received = append(ps.received, received{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
		code, ok := ps.status[r.URL.Path]
		ps.mu.Unlock()
		if !ok {
			code = http.StatusCreated
		}
		w.WriteHeader(code)
	}))
	// Handshakes cut short when the test closes the server are not news.
	ps.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	ps.srv.StartTLS()
	t.Cleanup(ps.srv.Close)
	return ps
}

func (ps *pushService) endpoint(name string) string { return ps.srv.URL + "/push/" + name }

func (ps *pushService) setStatus(name string, code int) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.status["/push/"+name] = code
}

// requests returns what was received for name.
func (ps *pushService) requests(name string) []received {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	var out []received
	for _, r := range ps.received {
		if r.Path == "/push/"+name {
			out = append(out, r)
		}
	}
	return out
}

// verifyVAPID checks the Authorization header: "vapid t=<jwt>, k=<key>",
// k is the VAPID public key and the JWT is ES256-signed by it, for the push
// service's origin and the configured subject.
func verifyVAPID(t testing.TB, h http.Header, keys vapidKeys, origin, subject string) {
	t.Helper()
	auth := h.Get("Authorization")
	rest, ok := strings.CutPrefix(auth, "vapid ")
	if !ok {
		t.Fatalf("Authorization = %q, want vapid scheme", auth)
	}
	var token, k string
	for _, part := range strings.Split(rest, ",") {
		part = strings.TrimSpace(part)
		if v, ok := strings.CutPrefix(part, "t="); ok {
			token = v
		}
		if v, ok := strings.CutPrefix(part, "k="); ok {
			k = v
		}
	}
	if k != keys.Public {
		t.Fatalf("Authorization k = %q, want the VAPID public key %q", k, keys.Public)
	}
	raw, err := base64.RawURLEncoding.DecodeString(k)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		t.Fatal(err)
	}
	claims := jwt.MapClaims{}
	_, err = jwt.ParseWithClaims(token, claims, func(*jwt.Token) (any, error) { return pub, nil },
		jwt.WithValidMethods([]string{"ES256"}), jwt.WithAudience(origin), jwt.WithExpirationRequired())
	if err != nil {
		t.Fatalf("VAPID JWT does not verify: %v", err)
	}
	if claims["sub"] != subject {
		t.Errorf("VAPID JWT sub = %v, want %s", claims["sub"], subject)
	}
}

// fixture is a started plugin with a fake host and push service.
type fixture struct {
	p    *Plugin
	h    *sdktest.Host
	ps   *pushService
	keys vapidKeys
}

func newFixture(t testing.TB, extra map[string]any) *fixture {
	t.Helper()
	return newFixtureWith(t, extra, nil)
}

// newFixtureWith is newFixture with prep run on the plugin before Start.
func newFixtureWith(t testing.TB, extra map[string]any, prep func(*Plugin)) *fixture {
	t.Helper()
	h := sdktest.NewHost()
	t.Cleanup(h.Close)
	ps := newPushService(t)
	keys := testVAPID(t)
	cfg := map[string]any{
		"vapid_public_key": keys.Public, "vapid_private_key": keys.Private,
		"vapid_subject": testSubject, "event_secret": testSecret,
	}
	for k, v := range extra {
		cfg[k] = v
	}
	p := New()
	p.client = ps.srv.Client()
	if prep != nil {
		prep(p)
	}
	sdktest.Start(t, context.Background(), p, h, cfg)
	return &fixture{p: p, h: h, ps: ps, keys: keys}
}

// hook calls a route with the event secret.
func (f *fixture) hook(t testing.TB, path string, body any) sdk.HTTPResponse {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.p.OnHTTP(context.Background(), sdk.HTTPRequest{
		Method: http.MethodPost, Path: path, Body: b,
		Header: http.Header{"X-Hasura-Event-Secret": {testSecret}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// subscribe registers s for user through the webhook.
func (f *fixture) subscribe(t testing.TB, user, name string, s subscriber) {
	t.Helper()
	resp := f.hook(t, RouteSubscriptionChanged, subEvent("INSERT", nil, row(user, f.ps.endpoint(name), s)))
	if resp.Status != 200 {
		t.Fatalf("subscribe: %d %s", resp.Status, resp.Body)
	}
}

func row(user, endpoint string, s subscriber) map[string]any {
	return map[string]any{"userId": user, "endpoint": endpoint, "auth": s.Auth, "p256dh": s.P256dh, "id": "row-1"}
}

func subEvent(op string, old, new any) map[string]any {
	return map[string]any{
		"event": map[string]any{
			"op":                op,
			"data":              map[string]any{"old": old, "new": new},
			"session_variables": map[string]any{"x-hasura-role": "admin"},
		},
		"table":   map[string]any{"schema": "public", "name": "PushNotificationSubscription"},
		"trigger": map[string]any{"name": "PushNotificationSubscriptionChanged"},
	}
}

// deliver hands a Message to the plugin as a queue delivery.
func (f *fixture) deliver(t testing.TB, m Message, redelivered bool) error {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return f.p.OnDelivery(context.Background(), sdk.Delivery{
		Queue: QueueName, Exchange: ExchangeName, RoutingKey: m.UserID, Body: b, Redelivered: redelivered,
	})
}

// stored returns the user's stored subscription endpoints.
func (f *fixture) stored(t testing.TB, user string) []string {
	t.Helper()
	got, err := sdk.Strings(f.h.Store().Do(context.Background(), "HKEYS", SubscriptionsKey(user)))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func origin(raw string) string {
	u, _ := url.Parse(raw)
	return u.Scheme + "://" + u.Host
}
