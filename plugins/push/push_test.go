package push

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestParseConfig(t *testing.T) {
	k := testVAPID(t)
	other := testVAPID(t)
	base := func(extra string) string {
		return `{"vapid_subject":"https://app.example.org"` + extra + `}`
	}
	tests := []struct {
		name    string
		raw     string
		wantErr string
		check   func(t *testing.T, c Config)
	}{
		{name: "defaults", raw: base(""), check: func(t *testing.T, c Config) {
			if *c.TTL != DefaultTTL || c.MaxAttempts != DefaultMaxAttempts || c.VAPIDPublicKey != "" {
				t.Errorf("config = %+v", c)
			}
		}},
		{name: "host-injected keys accepted", raw: base(`,"event_secret":"x","graphql_url":"http://h/v1/graphql","admin_secret":"a"`)},
		{name: "keys normalised", raw: base(`,"vapid_public_key":"` + k.Public + `==","vapid_private_key":"` + k.Private + `"`),
			check: func(t *testing.T, c Config) {
				if c.VAPIDPublicKey != k.Public {
					t.Errorf("public = %q, want %q", c.VAPIDPublicKey, k.Public)
				}
			}},
		{name: "ttl zero kept", raw: base(`,"ttl":0`), check: func(t *testing.T, c Config) {
			if *c.TTL != 0 {
				t.Errorf("ttl = %d", *c.TTL)
			}
		}},
		{name: "mailto subject", raw: `{"vapid_subject":"mailto:a@b.org"}`},
		{name: "unknown key", raw: base(`,"vapid_key":"x"`), wantErr: "vapid_key"},
		{name: "missing subject gets the default", raw: `{}`},
		{name: "http subject", raw: `{"vapid_subject":"http://localhost:3000"}`, wantErr: "vapid_subject"},
		{name: "only public key", raw: base(`,"vapid_public_key":"` + k.Public + `"`), wantErr: "both"},
		{name: "mismatched keys", raw: base(`,"vapid_public_key":"` + k.Public + `","vapid_private_key":"` + other.Private + `"`), wantErr: "does not belong"},
		{name: "garbage key", raw: base(`,"vapid_public_key":"!!","vapid_private_key":"` + k.Private + `"`), wantErr: "base64"},
		{name: "negative ttl", raw: base(`,"ttl":-1`), wantErr: "ttl"},
		{name: "ttl as string", raw: base(`,"ttl":"1h"`), wantErr: "ttl"},
		{name: "max_attempts too big", raw: base(`,"max_attempts":1000`), wantErr: "max_attempts"},
		{name: "not an object", raw: `[]`, wantErr: "push config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig(json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, c)
			}
		})
	}
}

func TestSecretAndMethod(t *testing.T) {
	f := newFixture(t, nil)
	unset := New()
	sdktest.Start(t, context.Background(), unset, f.h, map[string]any{"vapid_subject": testSubject})
	tests := []struct {
		name       string
		p          *Plugin
		method     string
		header     http.Header
		wantStatus int
		wantBody   string
	}{
		{"missing secret", f.p, http.MethodPost, nil, 401, "{}"},
		{"wrong secret", f.p, http.MethodPost, http.Header{"X-Hasura-Event-Secret": {"nope"}}, 401, "{}"},
		{"secret twice", f.p, http.MethodPost, http.Header{"X-Hasura-Event-Secret": {testSecret, testSecret}}, 401, "{}"},
		{"secret not configured", unset, http.MethodPost, http.Header{"X-Hasura-Event-Secret": {""}}, 401, "{}"},
		{"GET with secret", f.p, http.MethodGet, http.Header{"X-Hasura-Event-Secret": {testSecret}}, 405, "Method not allowed"},
	}
	for _, tt := range tests {
		for _, path := range []string{RouteVAPIDPublicKey, RouteSubscriptionChanged} {
			t.Run(tt.name+" "+path, func(t *testing.T) {
				resp, err := tt.p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: tt.method, Path: path, Header: tt.header, Body: []byte(`{}`)})
				if err != nil || resp.Status != tt.wantStatus || string(resp.Body) != tt.wantBody {
					t.Errorf("= %d %q %v, want %d %q", resp.Status, resp.Body, err, tt.wantStatus, tt.wantBody)
				}
			})
		}
	}
}

func TestVAPIDPublicKey(t *testing.T) {
	t.Run("configured keys", func(t *testing.T) {
		f := newFixture(t, nil)
		resp := f.hook(t, RouteVAPIDPublicKey, map[string]any{"action": map[string]any{"name": "vapidPublicKey"}, "input": map[string]any{}})
		if resp.Status != 200 || string(resp.Body) != `{"key":"`+f.keys.Public+`"}` {
			t.Fatalf("= %d %s", resp.Status, resp.Body)
		}
		if f.h.Redis().Exists(VAPIDStoreKey) {
			t.Errorf("configured keys were also stored in %s", VAPIDStoreKey)
		}
	})
	t.Run("generated once and shared", func(t *testing.T) {
		h := sdktest.NewHost()
		defer h.Close()
		cfg := map[string]any{"vapid_subject": testSubject, "event_secret": testSecret}
		var got []string
		for range 2 { // two instances on one Store
			p := New()
			sdktest.Start(t, context.Background(), p, h, cfg)
			f := &fixture{p: p, h: h}
			resp := f.hook(t, RouteVAPIDPublicKey, map[string]any{})
			var body struct{ Key string }
			if resp.Status != 200 || json.Unmarshal(resp.Body, &body) != nil {
				t.Fatalf("= %d %s", resp.Status, resp.Body)
			}
			got = append(got, body.Key)
		}
		if got[0] != got[1] {
			t.Errorf("instances disagree: %q vs %q", got[0], got[1])
		}
		raw, err := h.Redis().Get(VAPIDStoreKey)
		if err != nil {
			t.Fatal(err)
		}
		var stored vapidKeys
		if err := json.Unmarshal([]byte(raw), &stored); err != nil {
			t.Fatal(err)
		}
		if stored.Public != got[0] {
			t.Errorf("stored public %q, served %q", stored.Public, got[0])
		}
		if _, err := parseVAPIDKeys(stored.Public, stored.Private); err != nil {
			t.Errorf("stored pair is invalid: %v", err)
		}
	})
	t.Run("corrupt stored keys", func(t *testing.T) {
		h := sdktest.NewHost()
		defer h.Close()
		if err := h.Redis().Set(VAPIDStoreKey, `{"publicKey":"x"}`); err != nil {
			t.Fatal(err)
		}
		p := New()
		sdktest.Start(t, context.Background(), p, h, map[string]any{"vapid_subject": testSubject, "event_secret": testSecret})
		resp := (&fixture{p: p, h: h}).hook(t, RouteVAPIDPublicKey, map[string]any{})
		if resp.Status != 500 || string(resp.Body) != "Failed to get VAPID public key" {
			t.Fatalf("= %d %s", resp.Status, resp.Body)
		}
	})
}

func TestSubscriptionChanged(t *testing.T) {
	s := newSubscriber(t)
	tests := []struct {
		name       string
		events     func(f *fixture) []map[string]any
		wantStatus int
		wantBody   string
		want       map[string][]string // user -> endpoints
	}{
		{name: "insert", events: func(f *fixture) []map[string]any {
			return []map[string]any{subEvent("INSERT", nil, row("u1", f.ps.endpoint("a"), s))}
		}, wantStatus: 200, wantBody: "OK", want: map[string][]string{"u1": {"a"}}},
		{name: "manual and insert upsert the same endpoint", events: func(f *fixture) []map[string]any {
			return []map[string]any{
				subEvent("INSERT", nil, row("u1", f.ps.endpoint("a"), s)),
				subEvent("MANUAL", nil, row("u1", f.ps.endpoint("a"), s)),
			}
		}, wantStatus: 200, wantBody: "OK", want: map[string][]string{"u1": {"a"}}},
		{name: "update moves the endpoint", events: func(f *fixture) []map[string]any {
			return []map[string]any{
				subEvent("INSERT", nil, row("u1", f.ps.endpoint("a"), s)),
				subEvent("UPDATE", row("u1", f.ps.endpoint("a"), s), row("u2", f.ps.endpoint("b"), s)),
			}
		}, wantStatus: 200, wantBody: "OK", want: map[string][]string{"u1": nil, "u2": {"b"}}},
		{name: "delete", events: func(f *fixture) []map[string]any {
			return []map[string]any{
				subEvent("INSERT", nil, row("u1", f.ps.endpoint("a"), s)),
				subEvent("INSERT", nil, row("u1", f.ps.endpoint("b"), s)),
				subEvent("DELETE", row("u1", f.ps.endpoint("a"), s), nil),
			}
		}, wantStatus: 200, wantBody: "OK", want: map[string][]string{"u1": {"b"}}},
		{name: "null session_variables", events: func(f *fixture) []map[string]any {
			ev := subEvent("INSERT", nil, row("u1", f.ps.endpoint("a"), s))
			ev["event"].(map[string]any)["session_variables"] = nil
			return []map[string]any{ev}
		}, wantStatus: 200, wantBody: "OK", want: map[string][]string{"u1": {"a"}}},
		{name: "non-string session variable", events: func(f *fixture) []map[string]any {
			ev := subEvent("INSERT", nil, row("u1", f.ps.endpoint("a"), s))
			ev["event"].(map[string]any)["session_variables"] = map[string]any{"x": 1}
			return []map[string]any{ev}
		}, wantStatus: 500, wantBody: "Unexpected payload", want: map[string][]string{"u1": nil}},
		{name: "unknown op", events: func(f *fixture) []map[string]any {
			return []map[string]any{subEvent("TRUNCATE", nil, row("u1", f.ps.endpoint("a"), s))}
		}, wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "no data", events: func(f *fixture) []map[string]any {
			return []map[string]any{{"event": map[string]any{"op": "INSERT"}}}
		}, wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "missing userId", events: func(f *fixture) []map[string]any {
			r := row("", f.ps.endpoint("a"), s)
			return []map[string]any{subEvent("INSERT", nil, r)}
		}, wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "http endpoint refused", events: func(f *fixture) []map[string]any {
			return []map[string]any{subEvent("INSERT", nil, row("u1", "http://push.example.org/x", s))}
		}, wantStatus: 500, wantBody: "Unexpected payload", want: map[string][]string{"u1": nil}},
		{name: "bad p256dh", events: func(f *fixture) []map[string]any {
			r := row("u1", f.ps.endpoint("a"), s)
			r["p256dh"] = "AAAA"
			return []map[string]any{subEvent("INSERT", nil, r)}
		}, wantStatus: 500, wantBody: "Unexpected payload", want: map[string][]string{"u1": nil}},
		{name: "delete without old", events: func(f *fixture) []map[string]any {
			return []map[string]any{subEvent("DELETE", nil, nil)}
		}, wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "body not JSON", events: func(f *fixture) []map[string]any { return nil }, wantStatus: 500, wantBody: "Unexpected payload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			evs := tt.events(f)
			var resp sdk.HTTPResponse
			if evs == nil {
				var err error
				resp, err = f.p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: http.MethodPost, Path: RouteSubscriptionChanged,
					Header: http.Header{"X-Hasura-Event-Secret": {testSecret}}, Body: []byte("not json")})
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, ev := range evs {
				resp = f.hook(t, RouteSubscriptionChanged, ev)
			}
			if resp.Status != tt.wantStatus || string(resp.Body) != tt.wantBody {
				t.Fatalf("last = %d %q, want %d %q", resp.Status, resp.Body, tt.wantStatus, tt.wantBody)
			}
			for user, names := range tt.want {
				var want []string
				for _, n := range names {
					want = append(want, f.ps.endpoint(n))
				}
				got := f.stored(t, user)
				slices.Sort(got)
				if !slices.Equal(got, want) {
					t.Errorf("user %s endpoints = %v, want %v", user, got, want)
				}
			}
		})
	}
	t.Run("stored value shape", func(t *testing.T) {
		f := newFixture(t, nil)
		f.subscribe(t, "u1", "a", s)
		v := f.h.Redis().HGet(SubscriptionsKey("u1"), f.ps.endpoint("a"))
		want := `{"endpoint":"` + f.ps.endpoint("a") + `","keys":{"auth":"` + s.Auth + `","p256dh":"` + s.P256dh + `"}}`
		if v != want {
			t.Errorf("stored = %s, want %s", v, want)
		}
	})
}

var testNotification = Notification{
	Title: "Conf: New message", Subtitle: "in Lobby", Description: "hello <world> & \"friends\" é",
	ChatID: "c1", LinkURL: "/conference/conf/chat/c1",
}

func TestWebPushDelivery(t *testing.T) {
	long := strings.Repeat("ü", 5000) // 10000 bytes: must be shortened to fit one record
	tests := []struct {
		name string
		n    Notification
		ttl  any
		// want is the notification the subscriber must decrypt.
		check func(t *testing.T, got Notification)
	}{
		{name: "notification arrives intact", n: testNotification, check: func(t *testing.T, got Notification) {
			if got != testNotification {
				t.Errorf("decrypted %+v, want %+v", got, testNotification)
			}
		}},
		{name: "long description is shortened", n: Notification{Title: "t", Description: long}, ttl: 60, check: func(t *testing.T, got Notification) {
			if got.Title != "t" || !strings.HasSuffix(got.Description, "…") || !utf8.ValidString(got.Description) ||
				!strings.HasPrefix(long, strings.TrimSuffix(got.Description, "…")) || len(got.Description) < 3000 {
				t.Errorf("description of %d bytes: %.40q…", len(got.Description), got.Description)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra map[string]any
			wantTTL := "3600"
			if tt.ttl != nil {
				extra = map[string]any{"ttl": tt.ttl}
				wantTTL = "60"
			}
			f := newFixture(t, extra)
			s := newSubscriber(t)
			f.subscribe(t, "u1", "a", s)
			if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: tt.n}, false); err != nil {
				t.Fatal(err)
			}
			reqs := f.ps.requests("a")
			if len(reqs) != 1 {
				t.Fatalf("push service got %d requests, want 1", len(reqs))
			}
			r := reqs[0]
			if r.Header.Get("Content-Encoding") != "aes128gcm" || r.Header.Get("TTL") != wantTTL {
				t.Errorf("headers = %v", r.Header)
			}
			verifyVAPID(t, r.Header, f.keys, origin(f.ps.srv.URL), testSubject)
			plain, err := s.decrypt(r.Body)
			if err != nil {
				t.Fatalf("decrypt: %v", err)
			}
			var got Notification
			if err := json.Unmarshal(plain, &got); err != nil {
				t.Fatalf("payload %q: %v", plain, err)
			}
			tt.check(t, got)
			if e := f.h.Emits(); len(e) != 0 {
				t.Errorf("socket emits = %+v, want none for a subscribed user", e)
			}
			// A different subscriber's keys cannot read it.
			if _, err := newSubscriber(t).decrypt(r.Body); err == nil {
				t.Error("another subscriber decrypted the message")
			}
		})
	}
}

func TestDeliveryOutcomes(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantErr   bool
		wantKept  bool
		wantEmits int // socket fallback
	}{
		{name: "201 sent", status: 201, wantKept: true},
		{name: "410 removes the subscription and falls back to the socket", status: 410, wantEmits: 1},
		{name: "404 removes the subscription", status: 404, wantEmits: 1},
		{name: "500 keeps it and nacks", status: 500, wantErr: true, wantKept: true},
		{name: "429 keeps it and nacks", status: 429, wantErr: true, wantKept: true},
		{name: "400 keeps it, not retried", status: 400, wantKept: true},
		{name: "403 keeps it, not retried", status: 403, wantKept: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			f.subscribe(t, "u1", "a", newSubscriber(t))
			f.ps.setStatus("a", tt.status)
			err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil && errors.Is(err, sdk.ErrDrop) {
				t.Errorf("err = %v wraps ErrDrop; want a requeue", err)
			}
			if kept := len(f.stored(t, "u1")) == 1; kept != tt.wantKept {
				t.Errorf("subscription kept = %v, want %v", kept, tt.wantKept)
			}
			if n := len(f.ps.requests("a")); n != 1 {
				t.Errorf("requests = %d, want 1", n)
			}
			emits := f.h.Emits()
			if len(emits) != tt.wantEmits {
				t.Fatalf("emits = %+v, want %d", emits, tt.wantEmits)
			}
			if tt.wantEmits == 1 && (emits[0].To != sdk.UserTarget("u1") || emits[0].Event != EventNotification) {
				t.Errorf("emit = %+v", emits[0])
			}
		})
	}
}

func TestDeliveryRetry(t *testing.T) {
	t.Run("settled endpoints are not sent twice", func(t *testing.T) {
		f := newFixture(t, nil)
		f.subscribe(t, "u1", "a", newSubscriber(t))
		f.subscribe(t, "u1", "b", newSubscriber(t))
		f.subscribe(t, "u1", "c", newSubscriber(t))
		f.ps.setStatus("b", 503)
		f.ps.setStatus("c", 410)
		m := Message{ID: "m1", UserID: "u1", Notification: testNotification}
		if err := f.deliver(t, m, false); err == nil || errors.Is(err, sdk.ErrDrop) {
			t.Fatalf("first delivery: err = %v, want a requeue error", err)
		}
		f.ps.setStatus("b", 201)
		if err := f.deliver(t, m, true); err != nil {
			t.Fatalf("redelivery: %v", err)
		}
		for name, want := range map[string]int{"a": 1, "b": 2, "c": 1} {
			if got := len(f.ps.requests(name)); got != want {
				t.Errorf("requests to %s = %d, want %d", name, got, want)
			}
		}
		if got := f.stored(t, "u1"); len(got) != 2 || slices.Contains(got, f.ps.endpoint("c")) {
			t.Errorf("stored = %v, want a and b", got)
		}
		if f.h.Redis().Exists(sentKey("m1")) || f.h.Redis().Exists(attemptsKey("m1")) {
			t.Errorf("retry state left behind: %v", f.h.Redis().Keys())
		}
		if e := f.h.Emits(); len(e) != 0 {
			t.Errorf("emits = %+v", e)
		}
	})
	t.Run("dropped after max_attempts", func(t *testing.T) {
		f := newFixture(t, map[string]any{"max_attempts": 3})
		f.subscribe(t, "u1", "a", newSubscriber(t))
		f.ps.setStatus("a", 500)
		m := Message{UserID: "u1", Notification: testNotification} // no id: hashed body
		for i := 1; i <= 3; i++ {
			err := f.deliver(t, m, i > 1)
			if err == nil {
				t.Fatalf("attempt %d: no error", i)
			}
			if dropped := errors.Is(err, sdk.ErrDrop); dropped != (i == 3) {
				t.Fatalf("attempt %d: err = %v, dropped = %v", i, err, dropped)
			}
		}
		if n := len(f.ps.requests("a")); n != 3 {
			t.Errorf("requests = %d, want 3", n)
		}
		if len(f.stored(t, "u1")) != 1 {
			t.Error("subscription removed after transient failures")
		}
		if keys := f.h.Redis().Keys(); slices.ContainsFunc(keys, func(k string) bool { return strings.HasPrefix(k, "push:attempts:") }) {
			t.Errorf("retry state left behind: %v", keys)
		}
	})
	t.Run("subscription gone between attempts: no socket duplicate", func(t *testing.T) {
		f := newFixture(t, nil)
		sa, sb := newSubscriber(t), newSubscriber(t)
		f.subscribe(t, "u1", "a", sa)
		f.subscribe(t, "u1", "b", sb)
		f.ps.setStatus("b", 500)
		m := Message{ID: "m2", UserID: "u1", Notification: testNotification}
		if err := f.deliver(t, m, false); err == nil {
			t.Fatal("want requeue")
		}
		for _, name := range []string{"a", "b"} {
			s := sa
			if name == "b" {
				s = sb
			}
			if r := f.hook(t, RouteSubscriptionChanged, subEvent("DELETE", row("u1", f.ps.endpoint(name), s), nil)); r.Status != 200 {
				t.Fatalf("delete: %d", r.Status)
			}
		}
		if err := f.deliver(t, m, true); err != nil {
			t.Fatal(err)
		}
		if e := f.h.Emits(); len(e) != 0 {
			t.Errorf("emits = %+v; the user already got it by push", e)
		}
	})
}

func TestSocketFallback(t *testing.T) {
	tests := []struct {
		name  string
		setup func(f *fixture)
	}{
		{name: "no subscriptions", setup: func(*fixture) {}},
		{name: "only an unusable stored subscription", setup: func(f *fixture) {
			f.h.Redis().HSet(SubscriptionsKey("u1"), "https://x.example/y", "not json")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, nil)
			tt.setup(f)
			if err := f.deliver(t, Message{ID: "m1", UserID: "u1", Notification: testNotification}, false); err != nil {
				t.Fatal(err)
			}
			emits := f.h.Emits()
			if len(emits) != 1 || emits[0].To != sdk.UserTarget("u1") || emits[0].Event != EventNotification || len(emits[0].Args) != 1 {
				t.Fatalf("emits = %+v", emits)
			}
			var got Notification
			if err := emits[0].Arg(0, &got); err != nil || got != testNotification {
				t.Errorf("arg = %+v (%v), want %+v", got, err, testNotification)
			}
			if len(f.stored(t, "u1")) != 0 {
				t.Error("unusable subscription not removed")
			}
		})
	}
}

func TestBadDeliveries(t *testing.T) {
	f := newFixture(t, nil)
	for _, body := range []string{
		`not json`,
		`{"userId":"","notification":{"title":"t","description":"d"}}`,
		`{"userId":"u1","notification":{"description":"d"}}`,
		`{"userId":"u1","notification":"x"}`,
		`{"userId":"` + strings.Repeat("u", 300) + `","notification":{"title":"t"}}`,
		`{"userId":"u1","notification":{"title":"t","description":"` + strings.Repeat("x", MaxMessageBytes) + `"}}`,
	} {
		err := f.p.OnDelivery(context.Background(), sdk.Delivery{Queue: QueueName, Body: []byte(body)})
		if !errors.Is(err, sdk.ErrDrop) {
			t.Errorf("body %.60q: err = %v, want ErrDrop", body, err)
		}
	}
	if len(f.h.Emits()) != 0 {
		t.Errorf("emits = %+v", f.h.Emits())
	}
}

func TestPublish(t *testing.T) {
	h := sdktest.NewHost()
	defer h.Close()
	if err := Publish(context.Background(), h, "auth0|u1", testNotification); err != nil {
		t.Fatal(err)
	}
	if err := Publish(context.Background(), h, "", testNotification); err == nil {
		t.Error("publish without a user: no error")
	}
	if err := Publish(context.Background(), h, "u1", Notification{Description: "no title"}); err == nil {
		t.Error("publish without a title: no error")
	}
	h.PublishFunc = func(context.Context, string, string, []byte) error { return errors.New("broker down") }
	if err := Publish(context.Background(), h, "u1", testNotification); err == nil || !strings.Contains(err.Error(), "broker down") {
		t.Errorf("err = %v, want the broker's", err)
	}
	pubs := h.Publishes()
	if len(pubs) != 2 || pubs[0].Exchange != ExchangeName || pubs[0].RoutingKey != "auth0|u1" {
		t.Fatalf("publishes = %+v", pubs)
	}
	var m Message
	if err := json.Unmarshal(pubs[0].Body, &m); err != nil || m.UserID != "auth0|u1" || m.Notification != testNotification || len(m.ID) != 32 {
		t.Errorf("body = %s (%v)", pubs[0].Body, err)
	}
	var m2 Message
	_ = json.Unmarshal(pubs[1].Body, &m2)
	if m2.ID == m.ID {
		t.Error("two publishes share an id")
	}
}

func TestFitPayload(t *testing.T) {
	tests := []struct {
		name    string
		n       Notification
		wantErr bool
	}{
		{"small", testNotification, false},
		{"escaped description", Notification{Title: "t", Description: strings.Repeat("<\"", 4000)}, false},
		{"long everything", Notification{Title: strings.Repeat("é", 3000), Subtitle: strings.Repeat("s", 3000), Description: strings.Repeat("d", 3000)}, false},
		{"huge link", Notification{Title: "t", LinkURL: strings.Repeat("l", 5000)}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := fitPayload(tt.n)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if err != nil {
				return
			}
			if len(b) > maxPayloadBytes || !json.Valid(b) || !utf8.Valid(b) {
				t.Errorf("payload of %d bytes (max %d), valid JSON %v", len(b), maxPayloadBytes, json.Valid(b))
			}
		})
	}
}

func TestDescribe(t *testing.T) {
	d := New().Describe()
	if d.Name != Name || len(d.Routes) != 2 || len(d.Exchanges) != 1 || d.Exchanges[0] != Exchange() {
		t.Fatalf("descriptor = %+v", d)
	}
	q := d.Queues[0]
	if len(d.Queues) != 1 || q.Name != QueueName || q.Exchange != ExchangeName || !q.Durable || q.AutoDelete || q.Exclusive ||
		!slices.Equal(q.Bindings, []string{"#"}) || strings.Contains(q.Name, "{instance}") {
		t.Errorf("queues = %+v", d.Queues)
	}
	if !slices.Contains(sdk.Registered(), Name) {
		t.Errorf("not registered: %v", sdk.Registered())
	}
}

// TestSubprocess runs the plugin the way the host runs it.
func TestSubprocess(t *testing.T) {
	keys := testVAPID(t)
	fh := newFakeHasura(t) // u1 has no subscription there either
	sp := sdktest.StartSubprocess(t, Name, sdktest.WithConfig(map[string]any{
		"vapid_public_key": keys.Public, "vapid_private_key": keys.Private,
		"vapid_subject": "https://app.example.org", "event_secret": testSecret,
		"graphql_url": fh.url(), "admin_secret": testAdminSecret,
	}))
	resp, err := sp.HTTP(sdk.HTTPRequest{Method: http.MethodPost, Path: RouteVAPIDPublicKey,
		Header: http.Header{"X-Hasura-Event-Secret": {testSecret}}, Body: []byte(`{}`)})
	if err != nil || resp.Status != 200 || string(resp.Body) != `{"key":"`+keys.Public+`"}` {
		t.Fatalf("publicKey = %d %s %v", resp.Status, resp.Body, err)
	}
	body, err := Encode("u1", testNotification)
	if err != nil {
		t.Fatal(err)
	}
	if err := sp.Deliver(sdk.Delivery{Queue: QueueName, Exchange: ExchangeName, RoutingKey: "u1", Body: body}); err != nil {
		t.Fatalf("deliver: %v", err)
	}
	emits := sp.Host.Emits()
	if len(emits) != 1 || emits[0].To != sdk.UserTarget("u1") || emits[0].Event != EventNotification {
		t.Fatalf("emits = %+v", emits)
	}
	if n := fh.queries("u1"); n != 1 {
		t.Errorf("%d Hasura queries from the subprocess, want 1", n)
	}
	var got Notification
	if err := emits[0].Arg(0, &got); err != nil || got != testNotification {
		t.Errorf("arg = %+v %v", got, err)
	}
}
