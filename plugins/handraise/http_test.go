package handraise

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
)

func TestEventEnded(t *testing.T) {
	body := func(input string) string {
		return `{"action":{"name":"notifyEventEnded"},"input":` + input + `,"session_variables":{"x-hasura-role":"admin"}}`
	}
	good := body(`{"eventId":"` + ev1 + `"}`)
	tests := []struct {
		name       string
		noConfig   bool    // no event_secret configured
		secret     *string // header value; nil = no header
		method     string
		path       string
		body       string
		wantStatus int
		wantBody   string
		wantClear  bool
	}{
		{name: "ok clears the hands", secret: ptr("s3cret"), body: good, wantStatus: 200, wantBody: `{"ok":true}`, wantClear: true},
		{name: "ok without session variables", secret: ptr("s3cret"), body: `{"action":{"name":"notifyEventEnded"},"input":{"eventId":"` + ev1 + `"}}`, wantStatus: 200, wantBody: `{"ok":true}`, wantClear: true},
		{name: "ok with null session variables", secret: ptr("s3cret"), body: `{"action":{"name":"n"},"input":{"eventId":"` + ev1 + `"},"session_variables":null}`, wantStatus: 200, wantBody: `{"ok":true}`, wantClear: true},
		{name: "missing secret", body: good, wantStatus: 401, wantBody: `{}`},
		{name: "wrong secret", secret: ptr("nope"), body: good, wantStatus: 401, wantBody: `{}`},
		{name: "secret prefix", secret: ptr("s3cre"), body: good, wantStatus: 401, wantBody: `{}`},
		{name: "no secret configured", noConfig: true, secret: ptr(""), body: good, wantStatus: 401, wantBody: `{}`},
		{name: "no secret configured, any header", noConfig: true, secret: ptr("s3cret"), body: good, wantStatus: 401, wantBody: `{}`},
		{name: "not JSON", secret: ptr("s3cret"), body: `<xml/>`, wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "no input", secret: ptr("s3cret"), body: `{"action":{"name":"n"}}`, wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "no action", secret: ptr("s3cret"), body: `{"input":{"eventId":"` + ev1 + `"}}`, wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "action name not a string", secret: ptr("s3cret"), body: `{"action":{"name":1},"input":{"eventId":"` + ev1 + `"}}`, wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "eventId not a string", secret: ptr("s3cret"), body: body(`{"eventId":42}`), wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "eventId not a UUID", secret: ptr("s3cret"), body: body(`{"eventId":"*"}`), wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "input an array", secret: ptr("s3cret"), body: body(`["` + ev1 + `"]`), wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "non-string session variable", secret: ptr("s3cret"), body: `{"action":{"name":"n"},"input":{"eventId":"` + ev1 + `"},"session_variables":{"a":1}}`, wantStatus: 500, wantBody: `{"ok":false}`},
		{name: "too large", secret: ptr("s3cret"), body: strings.Repeat(" ", maxWebhookBody+1), wantStatus: 413, wantBody: `{"ok":false}`},
		{name: "GET", secret: ptr("s3cret"), method: http.MethodGet, body: good, wantStatus: 405, wantBody: `{"ok":false}`},
		{name: "other path", secret: ptr("s3cret"), path: "/event/other", body: good, wantStatus: 404, wantBody: `{"error":"not found"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := map[string]any{"event_secret": "s3cret"}
			if tt.noConfig {
				cfg = map[string]any{}
			}
			p, h, _ := newTestPlugin(t, cfg)
			for _, u := range []string{"alice", "bob"} {
				if _, err := h.Redis().ZAdd(HandsKey(ev1), 1, u); err != nil {
					t.Fatal(err)
				}
			}
			hdr := http.Header{}
			if tt.secret != nil {
				hdr.Set("X-Hasura-Event-Secret", *tt.secret)
			}
			method, path := http.MethodPost, RouteEventEnded
			if tt.method != "" {
				method = tt.method
			}
			if tt.path != "" {
				path = tt.path
			}
			res, err := p.OnHTTP(context.Background(), sdk.HTTPRequest{Method: method, Path: path, Header: hdr, Body: []byte(tt.body)})
			if err != nil {
				t.Fatal(err)
			}
			if res.Status != tt.wantStatus || string(res.Body) != tt.wantBody || !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("response %d %q %v, want %d %q", res.Status, res.Body, res.Header, tt.wantStatus, tt.wantBody)
			}
			cleared := !h.Redis().Exists(HandsKey(ev1))
			if cleared != tt.wantClear {
				t.Errorf("cleared = %v, want %v", cleared, tt.wantClear)
			}
			emits := h.Emits()
			if tt.wantClear {
				want := `[{"eventId":"` + ev1 + `","userIds":[]}]`
				if len(emits) != 1 || emits[0].To != sdk.RoomTarget(Room(ev1)) || emits[0].Event != EmitListing || argsJSON(emits[0]) != want {
					t.Errorf("emits = %+v, want an empty listing to the room", emits)
				}
			} else if len(emits) != 0 {
				t.Errorf("emits = %+v, want none", emits)
			}
		})
	}
}

func ptr(s string) *string { return &s }
