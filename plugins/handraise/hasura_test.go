package handraise

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

const (
	confID   = "cccccccc-cccc-4ccc-8ccc-cccccccccccc"
	personID = "dddddddd-dddd-4ddd-8ddd-dddddddddddd"
	regID    = "eeeeeeee-eeee-4eee-8eee-eeeeeeeeeeee"
	epID     = "ffffffff-ffff-4fff-8fff-ffffffffffff"
)

type gqlRequest struct {
	Query     string                     `json:"query"`
	Variables map[string]json.RawMessage `json:"variables"`
}

// fakeHasura answers the three accept requests by the operation they name.
type fakeHasura struct {
	mu       sync.Mutex
	reqs     []gqlRequest
	secrets  []string
	status   int    // answer of every request when non-zero
	event    string // data of HandRaiseEventConference
	existing string // data of GetExistingProgramPerson
}

func (f *fakeHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req gqlRequest
	_ = json.Unmarshal(b, &req)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reqs = append(f.reqs, req)
	f.secrets = append(f.secrets, r.Header.Get("X-Hasura-Admin-Secret"))
	if f.status != 0 {
		w.WriteHeader(f.status)
		return
	}
	switch {
	case strings.Contains(req.Query, "HandRaiseEventConference"):
		_, _ = io.WriteString(w, `{"data":`+f.event+`}`)
	case strings.Contains(req.Query, "GetExistingProgramPerson"):
		_, _ = io.WriteString(w, `{"data":`+f.existing+`}`)
	case strings.Contains(req.Query, "InsertEventParticipant"):
		_, _ = io.WriteString(w, `{"data":{"insert_schedule_EventProgramPerson_one":{"id":"`+epID+`","person":{"id":"`+personID+`","name":"Alice","affiliation":null,"registrantId":"`+regID+`"}}}}`)
	default:
		_, _ = io.WriteString(w, `{"errors":[{"message":"unknown operation"}]}`)
	}
}

func TestAcceptWithHasura(t *testing.T) {
	event := `{"schedule_Event_by_pk":{"id":"` + ev1 + `","conferenceId":"` + confID + `"}}`
	accepted := `[{"eventId":"` + ev1 + `","userId":"alice","eventPerson":{"id":"` + epID + `","eventId":"` + ev1 + `","roleName":"PARTICIPANT","person":{"id":"` + personID + `","name":"Alice","affiliation":null,"registrantId":"` + regID + `"}}}]`
	tests := []struct {
		name         string
		status       int
		event        string
		existing     string
		wantRequests int
		wantInsert   string // JSON of the eventPerson variable; "" = no insert
		wantAccepted string // JSON args of the broadcast; "" = none
	}{
		{
			name: "existing program person", event: event,
			existing:     `{"collection_ProgramPerson":[{"id":"` + personID + `"}],"registrant_Registrant":[{"id":"` + regID + `","displayName":"Alice"}]}`,
			wantRequests: 3,
			wantInsert:   `{"eventId":"` + ev1 + `","personId":"` + personID + `","roleName":"PARTICIPANT"}`,
			wantAccepted: accepted,
		},
		{
			name: "registrant only: a new person is nested", event: event,
			existing:     `{"collection_ProgramPerson":[],"registrant_Registrant":[{"id":"` + regID + `","displayName":"Alice"}]}`,
			wantRequests: 3,
			wantInsert:   `{"eventId":"` + ev1 + `","person":{"data":{"conferenceId":"` + confID + `","name":"Alice","registrantId":"` + regID + `"}},"roleName":"PARTICIPANT"}`,
			wantAccepted: accepted,
		},
		{
			name: "neither: nothing happens (as the original)", event: event,
			existing:     `{"collection_ProgramPerson":[],"registrant_Registrant":[]}`,
			wantRequests: 2,
		},
		{name: "unknown event: nothing happens", event: `{"schedule_Event_by_pk":null}`, wantRequests: 1},
		{name: "hasura down: nothing happens", status: 500, wantRequests: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHasura{status: tt.status, event: tt.event, existing: tt.existing}
			srv := httptest.NewServer(f)
			defer srv.Close()
			p, h, _ := newTestPlugin(t, map[string]any{"graphql_url": srv.URL + "/v1/graphql", "admin_secret": "adm"})
			ctx := context.Background()
			if _, err := sdktest.Event(t, ctx, p, alice, EventRaise, ev1); err != nil {
				t.Fatal(err)
			}
			h.Reset()
			if _, err := sdktest.Event(t, ctx, p, chair, EventAccept, ev1, "alice"); err != nil {
				t.Fatal(err)
			}
			f.mu.Lock()
			reqs, secrets := f.reqs, f.secrets
			f.mu.Unlock()
			if len(reqs) != tt.wantRequests {
				t.Fatalf("%d requests, want %d", len(reqs), tt.wantRequests)
			}
			for _, s := range secrets {
				if s != "adm" {
					t.Errorf("admin secret header = %q", s)
				}
			}
			if len(reqs) >= 2 && string(reqs[1].Variables["userId"]) != `"alice"` {
				t.Errorf("person lookup variables = %s", reqs[1].Variables)
			}
			if tt.wantInsert != "" {
				if got := string(reqs[2].Variables["eventPerson"]); got != tt.wantInsert {
					t.Errorf("insert = %s, want %s", got, tt.wantInsert)
				}
			}
			emits := h.Emits()
			if tt.wantAccepted == "" {
				if len(emits) != 0 {
					t.Errorf("emits = %+v, want none", emits)
				}
				if got := hands(t, h, ev1); len(got) != 1 {
					t.Errorf("hands = %v, want alice's kept", got)
				}
				return
			}
			if len(emits) != 1 || emits[0].To != sdk.RoomTarget(Room(ev1)) || emits[0].Event != EmitAccepted || argsJSON(emits[0]) != tt.wantAccepted {
				t.Errorf("emits = %+v\nwant %s", emits, tt.wantAccepted)
			}
			if got := hands(t, h, ev1); len(got) != 0 {
				t.Errorf("hands = %v, want none", got)
			}
		})
	}
}

// A non-chair's accept never reaches Hasura.
func TestAcceptNonChairSkipsHasura(t *testing.T) {
	f := &fakeHasura{}
	srv := httptest.NewServer(f)
	defer srv.Close()
	p, _, _ := newTestPlugin(t, map[string]any{"graphql_url": srv.URL})
	if _, err := sdktest.Event(t, context.Background(), p, bob, EventAccept, ev1, "alice"); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 0 {
		t.Errorf("%d Hasura requests, want 0", len(f.reqs))
	}
}
