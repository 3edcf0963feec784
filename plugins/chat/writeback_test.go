package chat

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/clowdr/realtime/plugins/sdk"
)

// fakeHasura records GraphQL requests and answers with the next reply.
type fakeHasura struct {
	mu      sync.Mutex
	reqs    []gqlRequest
	status  int
	reply   string
	secrets []string
}

type gqlRequest struct {
	Query     string                     `json:"query"`
	Variables map[string]json.RawMessage `json:"variables"`
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
	}
	_, _ = io.WriteString(w, f.reply)
}

func keysOf(raw json.RawMessage) []string {
	var m map[string]json.RawMessage
	_ = json.Unmarshal(raw, &m)
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

func TestWriteback(t *testing.T) {
	msgBody := func(op string) []byte {
		d := message(sid1, regAlice)
		d["remoteServiceId"] = "r1"
		d["extra"] = "x"
		d["systemId"] = nil
		b, _ := marshalJSON(act(op, d))
		return b
	}
	reactBody := func(op string) []byte { b, _ := marshalJSON(act(op, reaction(sid2, regAlice))); return b }
	sorted := func(s []string) []string { s = slices.Clone(s); slices.Sort(s); return s }
	tests := []struct {
		name        string
		queue       string
		body        []byte
		redelivered bool
		status      int
		reply       string
		wantErr     bool // requeue
		wantDrop    bool
		wantQuery   string   // substring of the GraphQL text
		wantObject  []string // keys of objects[0] (insert) or set (update)
		wantVar     string   // a variable that must be present
	}{
		{name: "message insert confirmed", queue: QueueMessagesWriteback, body: msgBody("INSERT"),
			reply:      `{"data":{"insert_chat_Message":{"returning":[{"sId":"` + sid1 + `"}]}}}`,
			wantQuery:  "insert_chat_Message(objects: $objects, on_conflict: {constraint: Message_sId_key, update_columns: [updated_at]})",
			wantObject: sorted([]string{"chatId", "data", "isPinned", "message", "sId", "senderId", "systemId", "type"}), wantVar: "objects"},
		{name: "message insert not returned", queue: QueueMessagesWriteback, body: msgBody("INSERT"),
			reply: `{"data":{"insert_chat_Message":{"returning":[]}}}`, wantErr: true},
		{name: "graphql error is retried once", queue: QueueMessagesWriteback, body: msgBody("INSERT"),
			reply: `{"errors":[{"message":"foreign key violation"}]}`, wantErr: true},
		{name: "graphql error twice is dropped", queue: QueueMessagesWriteback, body: msgBody("INSERT"), redelivered: true,
			reply: `{"errors":[{"message":"foreign key violation"}]}`, wantDrop: true},
		{name: "hasura down is requeued even when redelivered", queue: QueueMessagesWriteback, body: msgBody("INSERT"), redelivered: true,
			status: 503, reply: `oops`, wantErr: true},
		{name: "message update sends only columns", queue: QueueMessagesWriteback, body: msgBody("UPDATE"),
			reply:      `{"data":{"update_chat_Message":{"affected_rows":1}}}`,
			wantQuery:  "update_chat_Message(where: {sId: {_eq: $sId}}, _set: $set)",
			wantObject: sorted([]string{"data", "isPinned", "message", "systemId", "type"}), wantVar: "set"},
		{name: "update of a missing row is retried", queue: QueueMessagesWriteback, body: msgBody("UPDATE"),
			reply: `{"data":{"update_chat_Message":{"affected_rows":0}}}`, wantErr: true},
		{name: "update of a missing row twice is acked", queue: QueueMessagesWriteback, body: msgBody("UPDATE"), redelivered: true,
			reply: `{"data":{"update_chat_Message":{"affected_rows":0}}}`},
		{name: "message delete", queue: QueueMessagesWriteback, body: msgBody("DELETE"),
			reply: `{"data":{"delete_chat_Message":{"affected_rows":1}}}`, wantQuery: "delete_chat_Message(where: {sId: {_eq: $sId}})", wantVar: "sId"},
		{name: "reaction insert", queue: QueueReactionsWriteback, body: reactBody("INSERT"),
			reply:      `{"data":{"insert_chat_Reaction":{"returning":[{"sId":"` + sid2 + `"}]}}}`,
			wantQuery:  "insert_chat_Reaction(objects: $objects, on_conflict: {constraint: Reaction_sId_key",
			wantObject: sorted([]string{"chatId", "data", "sId", "senderId", "type", "messageSId", "symbol"}), wantVar: "objects"},
		{name: "invalid message dropped", queue: QueueMessagesWriteback, body: []byte(`{"op":"INSERT"}`), wantDrop: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeHasura{status: tt.status, reply: tt.reply}
			srv := httptest.NewServer(f)
			defer srv.Close()
			p, _ := newTestPlugin(t, map[string]any{"writeback": true, "graphql_url": srv.URL + "/v1/graphql", "admin_secret": "adm"})
			err := p.OnDelivery(context.Background(), sdk.Delivery{Queue: tt.queue, Body: tt.body, Redelivered: tt.redelivered})
			switch {
			case tt.wantDrop:
				if !errors.Is(err, sdk.ErrDrop) {
					t.Fatalf("err = %v, want ErrDrop", err)
				}
			case tt.wantErr:
				if err == nil || errors.Is(err, sdk.ErrDrop) {
					t.Fatalf("err = %v, want a requeue error", err)
				}
			default:
				if err != nil {
					t.Fatalf("err = %v, want ack", err)
				}
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if tt.wantQuery == "" {
				return
			}
			if len(f.reqs) != 1 {
				t.Fatalf("requests = %d", len(f.reqs))
			}
			req := f.reqs[0]
			if !strings.Contains(req.Query, tt.wantQuery) {
				t.Errorf("query = %s, want it to contain %s", req.Query, tt.wantQuery)
			}
			if f.secrets[0] != "adm" {
				t.Errorf("admin secret = %q", f.secrets[0])
			}
			v, ok := req.Variables[tt.wantVar]
			if !ok {
				t.Fatalf("variables = %v, want %s", req.Variables, tt.wantVar)
			}
			if tt.wantObject != nil {
				obj := v
				if tt.wantVar == "objects" {
					var objs []json.RawMessage
					_ = json.Unmarshal(v, &objs)
					if len(objs) != 1 {
						t.Fatalf("objects = %s", v)
					}
					obj = objs[0]
				}
				if got := keysOf(obj); !slices.Equal(got, tt.wantObject) {
					t.Errorf("columns = %v, want %v", got, tt.wantObject)
				}
			}
		})
	}
}
