package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
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
			reply:      `{"data":{"f0":{"returning":[{"sId":"` + sid1 + `"}]}}}`,
			wantQuery:  "f0: insert_chat_Message(objects: $o0, on_conflict: {constraint: Message_sId_key, update_columns: [updated_at]})",
			wantObject: sorted([]string{"chatId", "data", "isPinned", "message", "sId", "senderId", "systemId", "type"}), wantVar: "o0"},
		{name: "message insert not returned", queue: QueueMessagesWriteback, body: msgBody("INSERT"),
			reply: `{"data":{"f0":{"returning":[]}}}`, wantErr: true},
		{name: "graphql error is retried once", queue: QueueMessagesWriteback, body: msgBody("INSERT"),
			reply: `{"errors":[{"message":"foreign key violation"}]}`, wantErr: true},
		{name: "graphql error twice is dropped", queue: QueueMessagesWriteback, body: msgBody("INSERT"), redelivered: true,
			reply: `{"errors":[{"message":"foreign key violation"}]}`, wantDrop: true},
		{name: "hasura down is requeued even when redelivered", queue: QueueMessagesWriteback, body: msgBody("INSERT"), redelivered: true,
			status: 503, reply: `oops`, wantErr: true},
		{name: "message update sends only columns", queue: QueueMessagesWriteback, body: msgBody("UPDATE"),
			reply:      `{"data":{"f0":{"affected_rows":1}}}`,
			wantQuery:  "f0: update_chat_Message(where: {sId: {_eq: $s0}}, _set: $set0)",
			wantObject: sorted([]string{"data", "isPinned", "message", "systemId", "type"}), wantVar: "set0"},
		{name: "update of a missing row is retried", queue: QueueMessagesWriteback, body: msgBody("UPDATE"),
			reply: `{"data":{"f0":{"affected_rows":0}}}`, wantErr: true},
		{name: "update of a missing row twice is acked", queue: QueueMessagesWriteback, body: msgBody("UPDATE"), redelivered: true,
			reply: `{"data":{"f0":{"affected_rows":0}}}`},
		{name: "message delete", queue: QueueMessagesWriteback, body: msgBody("DELETE"),
			reply: `{"data":{"f0":{"affected_rows":1}}}`, wantQuery: "f0: delete_chat_Message(where: {sId: {_eq: $s0}})", wantVar: "s0"},
		{name: "reaction insert", queue: QueueReactionsWriteback, body: reactBody("INSERT"),
			reply:      `{"data":{"f0":{"returning":[{"sId":"` + sid2 + `"}]}}}`,
			wantQuery:  "f0: insert_chat_Reaction(objects: $o0, on_conflict: {constraint: Reaction_sId_key",
			wantObject: sorted([]string{"chatId", "data", "sId", "senderId", "type", "messageSId", "symbol"}), wantVar: "o0"},
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
				if tt.wantVar == "o0" {
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

// smartHasura answers writeback documents the way Hasura would: every
// object of an o<N> variable comes back in f<N>.returning, every s<N>
// affects one row; a request that names a refused sId fails as a whole with
// a GraphQL error (one transaction). status, when set, answers every
// request from the down'th on with it.
type smartHasura struct {
	refused map[string]bool
	status  int
	down    int // 1-based request number from which status applies (0 = 1)
	// gate, when set, holds the first request until it is closed.
	gate chan struct{}

	mu      sync.Mutex
	reqs    []gqlRequest
	written []string // sIds of the requests that succeeded, in order
}

func (f *smartHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var req gqlRequest
	_ = json.Unmarshal(b, &req)
	f.mu.Lock()
	f.reqs = append(f.reqs, req)
	n := len(f.reqs)
	f.mu.Unlock()
	if n == 1 && f.gate != nil {
		<-f.gate
	}
	if f.status != 0 && n >= max(f.down, 1) {
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, "down")
		return
	}
	data := map[string]any{}
	var sids []string
	for name, v := range req.Variables {
		switch {
		case strings.HasPrefix(name, "o"):
			var objs []struct {
				SID string `json:"sId"`
			}
			_ = json.Unmarshal(v, &objs)
			var ret []map[string]string
			for _, o := range objs {
				ret = append(ret, map[string]string{"sId": o.SID})
				sids = append(sids, o.SID)
			}
			data["f"+name[1:]] = map[string]any{"returning": ret}
		case strings.HasPrefix(name, "s") && !strings.HasPrefix(name, "set"):
			var sid string
			_ = json.Unmarshal(v, &sid)
			data["f"+name[1:]] = map[string]any{"affected_rows": 1}
			sids = append(sids, sid)
		}
	}
	for _, s := range sids {
		if f.refused[s] {
			_, _ = io.WriteString(w, `{"errors":[{"message":"check constraint violated: `+s+`"}]}`)
			return
		}
	}
	slices.Sort(sids)
	f.mu.Lock()
	f.written = append(f.written, sids...)
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (f *smartHasura) requests() []gqlRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.reqs)
}

func testSID(i int) string { return fmt.Sprintf("%08d-0000-4000-8000-000000000000", i) }

func wbDelivery(t *testing.T, queue, op, sid string, redelivered bool) sdk.Delivery {
	t.Helper()
	d := message(sid, regAlice)
	if queue == QueueReactionsWriteback {
		d = reaction(sid, regAlice)
	}
	d["remoteServiceId"] = "not a column"
	return sdk.Delivery{Queue: queue, Body: mustJSON(t, act(op, d)), Redelivered: redelivered}
}

func newWritebackPlugin(t *testing.T, f http.Handler) *Plugin {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	p, _ := newTestPlugin(t, map[string]any{"writeback": true, "graphql_url": srv.URL})
	return p
}

// sidsOf returns the sIds in a variable: an objects list or one uuid.
func sidsOf(t *testing.T, raw json.RawMessage) []string {
	t.Helper()
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}
	}
	var objs []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &objs); err != nil {
		t.Fatalf("variable %s", raw)
	}
	var out []string
	for _, o := range objs {
		var s string
		_ = json.Unmarshal(o["sId"], &s)
		out = append(out, s)
	}
	return out
}

// A batch is one request: consecutive INSERTs in one insert, each UPDATE
// and DELETE its own field, in delivery order (an UPDATE after its INSERT),
// a repeated sId starting a new insert.
func TestWritebackBatchDocument(t *testing.T) {
	f := &smartHasura{}
	p := newWritebackPlugin(t, f)
	q := QueueMessagesWriteback
	ds := []sdk.Delivery{
		wbDelivery(t, q, "INSERT", testSID(1), false),
		wbDelivery(t, q, "INSERT", testSID(2), false),
		wbDelivery(t, q, "UPDATE", testSID(1), false),
		wbDelivery(t, q, "INSERT", testSID(3), false),
		wbDelivery(t, q, "INSERT", testSID(3), true),
		{Queue: q, Body: []byte(`{"op":"INSERT"}`)}, // invalid: dropped, not sent
		wbDelivery(t, q, "DELETE", testSID(2), false),
	}
	errs := p.OnDeliveries(context.Background(), ds)
	for i, err := range errs {
		if (i == 5) != errors.Is(err, sdk.ErrDrop) || (i != 5 && err != nil) {
			t.Errorf("delivery %d: err = %v", i, err)
		}
	}
	reqs := f.requests()
	if len(reqs) != 1 {
		t.Fatalf("requests = %d, want 1", len(reqs))
	}
	req := reqs[0]
	wantFields := []string{
		"f0: insert_chat_Message(objects: $o0, on_conflict: {constraint: Message_sId_key, update_columns: [updated_at]}) { returning { sId } }",
		"f1: update_chat_Message(where: {sId: {_eq: $s1}}, _set: $set1) { affected_rows }",
		"f2: insert_chat_Message(objects: $o2,",
		"f3: insert_chat_Message(objects: $o3,",
		"f4: delete_chat_Message(where: {sId: {_eq: $s4}}) { affected_rows }",
	}
	last := -1
	for _, w := range wantFields {
		i := strings.Index(req.Query, w)
		if i <= last {
			t.Errorf("query lacks %q after the previous field:\n%s", w, req.Query)
		}
		last = i
	}
	if !strings.HasPrefix(req.Query, "mutation ChatWriteback($o0: [chat_Message_insert_input!]!, $s1: uuid!, $set1: chat_Message_set_input!, $o2: [chat_Message_insert_input!]!, $o3: [chat_Message_insert_input!]!, $s4: uuid!) {") {
		t.Errorf("declarations: %s", req.Query)
	}
	wantVars := map[string][]string{
		"o0": {testSID(1), testSID(2)}, "s1": {testSID(1)}, "o2": {testSID(3)}, "o3": {testSID(3)}, "s4": {testSID(2)},
	}
	for name, want := range wantVars {
		if got := sidsOf(t, req.Variables[name]); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if len(req.Variables) != len(wantVars)+1 {
		t.Errorf("variables = %v", keysOf(mustJSON(t, req.Variables)))
	}
	if got := keysOf(req.Variables["set1"]); !slices.Equal(got, []string{"data", "isPinned", "message", "type"}) {
		t.Errorf("set1 columns = %v", got)
	}
	var objs []json.RawMessage
	_ = json.Unmarshal(req.Variables["o0"], &objs)
	for _, o := range objs {
		if slices.Contains(keysOf(o), "remoteServiceId") {
			t.Errorf("insert sent a non-column: %s", o)
		}
	}
}

// A row Hasura refuses fails its whole request; the batch is split until
// the bad row is alone, so the others are written and acked.
func TestWritebackIsolatesRefusedRow(t *testing.T) {
	for _, redelivered := range []bool{false, true} {
		t.Run(fmt.Sprint("redelivered=", redelivered), func(t *testing.T) {
			bad := testSID(11)
			f := &smartHasura{refused: map[string]bool{bad: true}}
			p := newWritebackPlugin(t, f)
			var ds []sdk.Delivery
			var good []string
			for i := range 16 {
				ds = append(ds, wbDelivery(t, QueueReactionsWriteback, "INSERT", testSID(i), redelivered))
				if testSID(i) != bad {
					good = append(good, testSID(i))
				}
			}
			errs := p.OnDeliveries(context.Background(), ds)
			for i, err := range errs {
				switch {
				case testSID(i) != bad:
					if err != nil {
						t.Errorf("good row %d: err = %v", i, err)
					}
				case redelivered:
					if !errors.Is(err, sdk.ErrDrop) {
						t.Errorf("bad row, redelivered: err = %v, want ErrDrop", err)
					}
				default:
					if err == nil || errors.Is(err, sdk.ErrDrop) {
						t.Errorf("bad row: err = %v, want requeue (once)", err)
					}
				}
			}
			f.mu.Lock()
			written := slices.Sorted(slices.Values(f.written))
			f.mu.Unlock()
			if !slices.Equal(written, good) {
				t.Errorf("written = %v, want each good row once", written)
			}
			if n := len(f.requests()); n >= len(ds) {
				t.Errorf("requests = %d, want fewer than one per row", n)
			}
		})
	}
}

// Hasura down: the whole batch is requeued, and once a request failed so,
// the rest of the batch is not tried.
func TestWritebackBatchHasuraDown(t *testing.T) {
	var ds []sdk.Delivery
	for i := range 6 {
		ds = append(ds, wbDelivery(t, QueueMessagesWriteback, "INSERT", testSID(i), true))
	}
	tests := []struct {
		name     string
		f        *smartHasura
		requests int
	}{
		{"503", &smartHasura{status: http.StatusServiceUnavailable}, 1},
		{"503 while isolating", &smartHasura{refused: map[string]bool{testSID(5): true}, status: http.StatusBadGateway, down: 2}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newWritebackPlugin(t, tt.f)
			for i, err := range p.OnDeliveries(context.Background(), ds) {
				if err == nil || errors.Is(err, sdk.ErrDrop) {
					t.Errorf("delivery %d: err = %v, want requeue", i, err)
				}
			}
			if n := len(tt.f.requests()); n != tt.requests {
				t.Errorf("requests = %d, want %d", n, tt.requests)
			}
		})
	}
}

// Through the SDK's in-process client: deliveries that wait while a request
// is in flight go out together in the next one.
func TestWritebackBatchesThroughSDK(t *testing.T) {
	f := &smartHasura{gate: make(chan struct{})}
	srv := httptest.NewServer(f)
	defer srv.Close()
	h := sdktest.NewHost()
	defer h.Close()
	p := New()
	p.retryBackoff = 0
	c := sdk.NewLocalClient(p)
	defer func() { _ = c.Close() }()
	ctx := context.Background()
	cfg := mustJSON(t, map[string]any{"writeback": true, "graphql_url": srv.URL, "writeback_batch_max": 4, "writeback_batch_wait": "10s"})
	if err := c.Start(ctx, h.Services(), cfg); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Stop(ctx) }()
	var chs []chan error
	deliver := func(op string, i int) {
		ch := make(chan error, 1)
		if err := c.Deliver(wbDelivery(t, QueueMessagesWriteback, op, testSID(i), false), func(err error) { ch <- err }); err != nil {
			t.Fatal(err)
		}
		chs = append(chs, ch)
	}
	deliver("INSERT", 0)
	for len(f.requests()) == 0 { // the first request is held by the gate
		time.Sleep(time.Millisecond)
	}
	deliver("INSERT", 1)
	deliver("INSERT", 2)
	deliver("UPDATE", 1)
	deliver("INSERT", 3) // fills a batch of 4
	deliver("INSERT", 4) // the next batch: waits for 3 more (10 s) unless...
	close(f.gate)
	for i, ch := range chs[:5] {
		select {
		case err := <-ch:
			if err != nil {
				t.Errorf("delivery %d: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("delivery %d: no answer", i)
		}
	}
	_ = c.Close() // ...the client closes: what waits is written at once
	if err := <-chs[5]; err != nil {
		t.Errorf("delivery 5: %v", err)
	}
	reqs := f.requests()
	if len(reqs) != 3 {
		t.Fatalf("requests = %d, want 3", len(reqs))
	}
	if got := sidsOf(t, reqs[1].Variables["o0"]); !slices.Equal(got, []string{testSID(1), testSID(2)}) {
		t.Errorf("second request inserts %v", got)
	}
	if !strings.Contains(reqs[1].Query, "f1: update_chat_Message") || !strings.Contains(reqs[1].Query, "f2: insert_chat_Message") {
		t.Errorf("second request: %s", reqs[1].Query)
	}
}

func TestWritebackQueues(t *testing.T) {
	for _, tt := range []struct {
		cfg           map[string]any
		max, prefetch int
		wait          time.Duration
	}{
		{map[string]any{}, 100, 100, 50 * time.Millisecond},
		{map[string]any{"writeback_batch_max": 250, "writeback_batch_wait": "0s"}, 250, 250, 0},
	} {
		tt.cfg["writeback"], tt.cfg["graphql_url"] = true, "http://hasura/v1/graphql"
		p, _ := newTestPlugin(t, tt.cfg)
		var n int
		for _, q := range p.Describe().Queues {
			if q.Name != QueueMessagesWriteback && q.Name != QueueReactionsWriteback {
				if q.BatchMax != 0 {
					t.Errorf("%s is batched", q.Name)
				}
				continue
			}
			n++
			if q.BatchMax != tt.max || q.Prefetch != tt.prefetch || q.BatchWait != tt.wait || !q.Durable {
				t.Errorf("cfg %v: queue = %+v", tt.cfg, q)
			}
		}
		if n != 2 {
			t.Errorf("writeback queues = %d", n)
		}
	}
	for _, raw := range []string{`{"writeback_batch_max":0.5}`, `{"writeback_batch_max":-1}`, `{"writeback_batch_max":1001}`, `{"writeback_batch_wait":"1m"}`, `{"writeback_batch_wait":"-1s"}`} {
		if _, err := parseConfig([]byte(raw)); err == nil || !strings.Contains(err.Error(), "writeback_batch") {
			t.Errorf("%s: err = %v", raw, err)
		}
	}
}

// An optional uuid column sent as "" is written as null (Postgres refuses
// "" for a uuid); other columns keep their values.
func TestPickEmptyUUIDIsNull(t *testing.T) {
	data := map[string]json.RawMessage{
		"duplicatedMessageSId": json.RawMessage(`""`),
		"duplicateSId":         json.RawMessage(`"` + sid1 + `"`),
		"message":              json.RawMessage(`""`),
		"extra":                json.RawMessage(`1`),
	}
	got := pick(data, []string{"duplicatedMessageSId", "duplicateSId", "message", "systemId"})
	want := map[string]string{"duplicatedMessageSId": `null`, "duplicateSId": `"` + sid1 + `"`, "message": `""`}
	if len(got) != len(want) {
		t.Fatalf("pick = %v, want %v", got, want)
	}
	for k, v := range want {
		if string(got[k]) != v {
			t.Errorf("%s = %s, want %s", k, got[k], v)
		}
	}
}
