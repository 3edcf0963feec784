package chat

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/clowdr/realtime/plugins/push"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func hasuraBody(op, oldRow, newRow, session string) string {
	return `{"event":{"op":"` + op + `","data":{"old":` + oldRow + `,"new":` + newRow + `},"session_variables":` + session +
		`},"table":{"schema":"chat","name":"Subscription"},"trigger":{"name":"t"},"id":"x","created_at":"2021-01-01T00:00:00Z"}`
}

func TestWebhooks(t *testing.T) {
	row := `{"chatId":"` + chat1 + `","registrantId":"` + regBob + `","wasManuallySubscribed":true,"created_at":"2021"}`
	session := `{"x-hasura-role":"admin"}`
	flag := `{"id":"f1","messageSId":"` + sid1 + `","type":"Spam","created_at":"2021","updated_at":"2021"}`
	type wantEmit struct {
		to    sdk.Target
		event string
		args  string
	}
	tests := []struct {
		name       string
		secretConf string
		secret     *string
		path       string
		body       string
		wantStatus int
		wantBody   string
		wantEmits  []wantEmit
		wantSet    string // key that must contain regBob
		wantNotSet string // key that must not contain regBob
		seed       string // key seeded with regBob
	}{
		{name: "missing secret", path: RouteSubscriptionChanged, body: hasuraBody("INSERT", "null", row, session), wantStatus: 401, wantBody: "{}"},
		{name: "wrong secret", secret: ptr("nope"), path: RouteSubscriptionChanged, body: hasuraBody("INSERT", "null", row, session), wantStatus: 401, wantBody: "{}"},
		{name: "secret prefix", secret: ptr("s3cre"), path: RoutePinChanged, body: hasuraBody("INSERT", "null", row, session), wantStatus: 401, wantBody: "{}"},
		{name: "no secret configured", secretConf: "-", secret: ptr(""), path: RoutePinChanged, body: hasuraBody("INSERT", "null", row, session), wantStatus: 401, wantBody: "{}"},
		{name: "bad payload", path: RouteSubscriptionChanged, body: `{"event":{}}`, wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "not JSON", path: RoutePinChanged, body: `<xml/>`, wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "bad op", path: RoutePinChanged, body: hasuraBody("UPSERT", "null", row, session), wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "row without registrant", path: RoutePinChanged, body: hasuraBody("INSERT", "null", `{"chatId":"`+chat1+`"}`, session), wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "non-string session variable", path: RoutePinChanged, body: hasuraBody("INSERT", "null", row, `{"x":1}`), wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "subscription insert", path: RouteSubscriptionChanged, body: hasuraBody("INSERT", "null", row, session), wantStatus: 200, wantBody: "OK",
			wantEmits: []wantEmit{{sdk.RoomTarget("chat:chat.subscriptions." + regBob), "chat.subscribed", `["` + chat1 + `"]`}}, wantSet: subscriptionsKey(chat1)},
		{name: "subscription manual, null session", path: RouteSubscriptionChanged, body: hasuraBody("MANUAL", "null", row, "null"), wantStatus: 200, wantBody: "OK",
			wantEmits: []wantEmit{{sdk.RoomTarget("chat:chat.subscriptions." + regBob), "chat.subscribed", `["` + chat1 + `"]`}}, wantSet: subscriptionsKey(chat1)},
		{name: "subscription delete", path: RouteSubscriptionChanged, body: hasuraBody("DELETE", row, "null", session), wantStatus: 200, wantBody: "OK", seed: subscriptionsKey(chat1),
			wantEmits: []wantEmit{{sdk.RoomTarget("chat:chat.subscriptions." + regBob), "chat.unsubscribed", `["` + chat1 + `"]`}}, wantNotSet: subscriptionsKey(chat1)},
		{name: "subscription update emits nothing", path: RouteSubscriptionChanged, body: hasuraBody("UPDATE", row, row, session), wantStatus: 200, wantBody: "OK", wantSet: subscriptionsKey(chat1)},
		{name: "pin insert", path: RoutePinChanged, body: hasuraBody("INSERT", "null", row, session), wantStatus: 200, wantBody: "OK",
			wantEmits: []wantEmit{{sdk.RoomTarget("chat:chat.pins." + regBob), "chat.pinned", `["` + chat1 + `"]`}}, wantSet: pinsKey(chat1)},
		{name: "pin delete, null session", path: RoutePinChanged, body: hasuraBody("DELETE", row, "null", "null"), wantStatus: 200, wantBody: "OK", seed: pinsKey(chat1),
			wantEmits: []wantEmit{{sdk.RoomTarget("chat:chat.pins." + regBob), "chat.unpinned", `["` + chat1 + `"]`}}, wantNotSet: pinsKey(chat1)},
		{name: "pin manual", path: RoutePinChanged, body: hasuraBody("MANUAL", "null", row, session), wantStatus: 200, wantBody: "OK",
			wantEmits: []wantEmit{{sdk.RoomTarget("chat:chat.pins." + regBob), "chat.pinned", `["` + chat1 + `"]`}}, wantSet: pinsKey(chat1)},
		{name: "flag inserted", path: RouteFlagInserted, body: hasuraBody("INSERT", "null", flag, "null"), wantStatus: 200, wantBody: "OK",
			wantEmits: []wantEmit{
				{sdk.UserTarget("mod1"), "notification", `[{"title":"Message reported","subtitle":"Reason: Spam","description":"A message has been reported. Please go to the moderation hub to resolve it."}]`},
				{sdk.UserTarget("mod2"), "notification", `[{"title":"Message reported","subtitle":"Reason: Spam","description":"A message has been reported. Please go to the moderation hub to resolve it."}]`},
			}},
		{name: "flag without type", path: RouteFlagInserted, body: hasuraBody("INSERT", "null", `{"id":"f"}`, "null"), wantStatus: 500, wantBody: "Unexpected payload"},
		{name: "unknown path", path: "/chat/other", body: "{}", wantStatus: 404, wantBody: "Not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := map[string]any{"event_secret": "s3cret", "moderators": []string{"mod1", "mod2"}}
			if tt.secretConf == "-" {
				delete(cfg, "event_secret")
			}
			p, h := newTestPlugin(t, cfg)
			if tt.seed != "" {
				_, _ = h.Redis().SAdd(tt.seed, regBob)
			}
			hdr := http.Header{}
			if tt.secret != nil {
				hdr.Set("X-Hasura-Event-Secret", *tt.secret)
			} else if !strings.HasPrefix(tt.name, "missing") {
				hdr.Set("X-Hasura-Event-Secret", "s3cret")
			}
			res, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: http.MethodPost, Path: tt.path, Header: hdr, Body: []byte(tt.body)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.wantStatus || string(res.Body) != tt.wantBody {
				t.Fatalf("response %d %q, want %d %q", res.Status, res.Body, tt.wantStatus, tt.wantBody)
			}
			emits := h.Emits()
			if len(emits) != len(tt.wantEmits) {
				t.Fatalf("emits = %+v, want %d", emits, len(tt.wantEmits))
			}
			for i, w := range tt.wantEmits {
				if emits[i].To != w.to || emits[i].Event != w.event || argsJSON(emits[i]) != w.args {
					t.Errorf("emit %d = %s to %+v %s, want %s to %+v %s", i, emits[i].Event, emits[i].To, argsJSON(emits[i]), w.event, w.to, w.args)
				}
			}
			if tt.wantSet != "" {
				if ok, _ := h.Redis().SIsMember(tt.wantSet, regBob); !ok {
					t.Errorf("%s lacks the registrant", tt.wantSet)
				}
			}
			if tt.wantNotSet != "" {
				if ok, _ := h.Redis().SIsMember(tt.wantNotSet, regBob); ok {
					t.Errorf("%s still has the registrant", tt.wantNotSet)
				}
			}
		})
	}
}

func ptr(s string) *string { return &s }

func TestConfig(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		wantErr string // substring; "" = ok
		check   func(t *testing.T, c Config)
	}{
		{name: "empty gives defaults", raw: ``, check: func(t *testing.T, c Config) {
			if c.MaxMessageBytes != 16384 || c.SendsPerSecond != 10 || c.SendBurst != 20 || c.NotifyDelay.D != DefaultNotifyDelay || c.MessageRecordTTL.D != DefaultMessageRecordTTL || c.Writeback {
				t.Errorf("defaults = %+v", c)
			}
		}},
		{name: "null gives defaults", raw: `null`},
		{name: "all keys", raw: `{"event_secret":"s","max_message_bytes":1024,"sends_per_second":2.5,"send_burst":3,"notify_delay":"2s","message_record_ttl":"1h","moderators":["m"],"writeback":true,"graphql_url":"http://h/v1/graphql","admin_secret":"a"}`,
			check: func(t *testing.T, c Config) {
				if c.NotifyDelay.D.Seconds() != 2 || c.SendsPerSecond != 2.5 || c.GraphQLURL != "http://h/v1/graphql" {
					t.Errorf("parsed = %+v", c)
				}
			}},
		{name: "zero notify delay", raw: `{"notify_delay":"0s"}`, check: func(t *testing.T, c Config) {
			if c.NotifyDelay.D != 0 {
				t.Errorf("notify_delay = %v", c.NotifyDelay.D)
			}
		}},
		{name: "unknown key", raw: `{"evnt_secret":"s"}`, wantErr: "evnt_secret"},
		{name: "wrong type", raw: `{"max_message_bytes":"big"}`, wantErr: "max_message_bytes"},
		{name: "bad duration", raw: `{"notify_delay":"soon"}`, wantErr: "notify_delay"},
		{name: "numeric duration", raw: `{"notify_delay":1500}`, wantErr: "notify_delay"},
		{name: "negative rate", raw: `{"sends_per_second":-1}`, wantErr: "sends_per_second"},
		{name: "tiny size", raw: `{"max_message_bytes":10}`, wantErr: "max_message_bytes"},
		{name: "short record ttl", raw: `{"message_record_ttl":"1s"}`, wantErr: "message_record_ttl"},
		{name: "empty moderator", raw: `{"moderators":[""]}`, wantErr: "moderators"},
		{name: "writeback without url", raw: `{"writeback":true}`, wantErr: "graphql_url"},
		{name: "bad url", raw: `{"graphql_url":"ftp://x"}`, wantErr: "graphql_url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := parseConfig([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to name %q", err, tt.wantErr)
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

func TestDescribe(t *testing.T) {
	p := New()
	d := p.Describe()
	if d.Name != "chat" || len(d.Events) != 10 || len(d.Routes) != 3 || len(d.Exchanges) != 2 || len(d.Queues) != 2 {
		t.Fatalf("descriptor = %+v", d)
	}
	for _, q := range d.Queues {
		if !strings.Contains(q.Name, "{instance}") || !q.Durable || q.AutoDelete || q.Exclusive || q.ExpiresMs <= 0 || q.Prefetch != 100 || len(q.Bindings) != 1 || q.Bindings[0] != "*" {
			t.Errorf("distribution queue = %+v", q)
		}
	}
	for _, ex := range d.Exchanges {
		if ex.Kind != "topic" || !ex.Durable {
			t.Errorf("exchange = %+v", ex)
		}
	}
	h := sdktest.NewHost()
	defer h.Close()
	sdktest.Start(t, context.Background(), p, h, map[string]any{"writeback": true, "graphql_url": "http://127.0.0.1:1/v1/graphql"})
	defer func() { _ = p.Stop(context.Background()) }()
	d = p.Describe()
	if len(d.Queues) != 4 || d.Queues[2].Name != QueueMessagesWriteback || !d.Queues[2].Durable || d.Queues[3].Name != QueueReactionsWriteback {
		t.Errorf("with writeback: queues = %+v", d.Queues)
	}
	if f, ok := sdk.Lookup("chat"); !ok || f() == nil {
		t.Error("chat is not registered")
	}
}

// With web_push on, notifications go to the push plugin's exchange instead
// of the sockets, and the chat plugin declares that exchange.
func TestWebPushNotifications(t *testing.T) {
	p, h := newTestPlugin(t, map[string]any{"event_secret": "s3cret", "moderators": []string{"mod1"}, "web_push": true})
	found := false
	for _, ex := range p.Describe().Exchanges {
		found = found || ex.Name == push.ExchangeName
	}
	if !found {
		t.Fatalf("exchanges %+v lack %q", p.Describe().Exchanges, push.ExchangeName)
	}
	flag := `{"id":"f1","messageSId":"` + sid1 + `","type":"Spam","created_at":"2021","updated_at":"2021"}`
	hdr := http.Header{}
	hdr.Set("X-Hasura-Event-Secret", "s3cret")
	res, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: http.MethodPost, Path: RouteFlagInserted, Header: hdr, Body: []byte(hasuraBody("INSERT", "null", flag, "null"))})
	if err != nil || res.Status != 200 {
		t.Fatalf("flag: %d %v", res.Status, err)
	}
	if n := len(emitsNamed(h, "notification")); n != 0 {
		t.Fatalf("%d notification emits with web_push on", n)
	}
	pubs := h.Publishes()
	if len(pubs) != 1 || pubs[0].Exchange != push.ExchangeName {
		t.Fatalf("publishes %+v, want one to %q", pubs, push.ExchangeName)
	}
	var m push.Message
	if err := json.Unmarshal(pubs[0].Body, &m); err != nil || m.UserID != "mod1" || m.Notification.Title != "Message reported" {
		t.Fatalf("published %s (%v)", pubs[0].Body, err)
	}
}
