package reliability

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"
)

// fakeHasura answers the chat writeback's GraphQL mutations as Hasura would
// (one request per batch: each objects variable o<N> is an insert whose rows
// come back in f<N>.returning, each s<N> an update or delete of one row) and
// counts the message sIds it was asked to insert.
type fakeHasura struct {
	mu       sync.Mutex
	inserts  map[string]int
	requests int
}

func newFakeHasura(t *testing.T) (*fakeHasura, string) {
	h := &fakeHasura{inserts: map[string]int{}}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return h, srv.URL + "/v1/graphql"
}

func (h *fakeHasura) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	var req struct {
		Query     string                     `json:"query"`
		Variables map[string]json.RawMessage `json:"variables"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	data := map[string]any{}
	h.mu.Lock()
	h.requests++
	for name, v := range req.Variables {
		switch {
		case strings.HasPrefix(name, "o"):
			var objs []struct {
				SID string `json:"sId"`
			}
			_ = json.Unmarshal(v, &objs)
			rows := []map[string]string{}
			for _, o := range objs {
				if strings.Contains(req.Query, "insert_chat_Message") {
					h.inserts[o.SID]++
				}
				rows = append(rows, map[string]string{"sId": o.SID})
			}
			data["f"+name[1:]] = map[string]any{"returning": rows}
		case strings.HasPrefix(name, "s") && !strings.HasPrefix(name, "set"):
			data["f"+name[1:]] = map[string]any{"affected_rows": 1}
		}
	}
	h.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

// stats returns how many requests and inserted messages Hasura saw.
func (h *fakeHasura) stats() (requests, inserted int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests, len(h.inserts)
}

// missing returns the ids never inserted.
func (h *fakeHasura) missing(ids []string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, id := range ids {
		if h.inserts[id] == 0 {
			out = append(out, id)
		}
	}
	return out
}

// TestRabbitConnectionsClosed force-closes every RabbitMQ connection of two
// instances, twice, on the machine's broker (in the test's own vhost), while
// clients on both send chat messages: host/bus redials, redeclares and
// resubscribes.
func TestRabbitConnectionsClosed(t *testing.T) {
	t.Parallel()
	amqp := amqpURL(t)
	chatUnderBusFault(t, amqp, 2, func(round int) {
		n := closeVhostConnections(t)
		t.Logf("round %d: force-closed %d connections of the vhost", round, n)
		if n < 4 {
			t.Errorf("round %d: only %d connections in the vhost, want at least 4 (pub and sub of both instances)", round, n)
		}
	})
}

// TestRabbitRestart restarts a RabbitMQ node of the test's own (the
// machine's broker is shared) while clients on two instances send chat
// messages: the broker is down for a few seconds (sends are nacked), and
// what it confirmed before going down must survive it — the durable
// distribution and writeback queues and their persistent messages.
func TestRabbitRestart(t *testing.T) {
	t.Parallel()
	node := startRabbitNode(t)
	chatUnderBusFault(t, node.URL(), 1, func(round int) {
		t0 := time.Now()
		node.stop(t)
		time.Sleep(2 * time.Second) // sends meet a broker that is gone
		node.start(t)
		t.Logf("round %d: broker restarted, down for %v", round, time.Since(t0).Round(100*time.Millisecond))
		queues := node.queues(t)
		n := 0
		for name, durable := range queues {
			if strings.HasPrefix(name, "chat.messages.distribution.") {
				n++
				if !durable {
					t.Errorf("queue %s is not durable: what it held died with the broker", name)
				}
			}
		}
		if n != 2 {
			t.Errorf("after the restart the broker has %d chat.messages distribution queues, want 2 (one per instance): %v", n, queues)
		}
	})
}

// chatUnderBusFault runs two instances on the broker at amqp, with 4
// subscribers (2 per instance), 6 senders (3 per instance, 10 messages/s
// each) and the writeback to a fake Hasura, applies fault rounds times
// (waiting for both instances to be ready after each), and checks that every
// message acked to a client reached every subscriber exactly once and the
// writeback, and that every other send was nacked.
func chatUnderBusFault(t *testing.T, amqp string, rounds int, fault func(round int)) {
	redis := testserver.StartRedis(t)
	hasura, gqlURL := newFakeHasura(t)
	opts := func(name string) serverOpts {
		return serverOpts{name: name, plugins: []string{"chat"},
			env: map[string]string{"REDIS_URL": redis.URL(), "CLOUDAMQP_URL": amqp},
			args: []string{
				"--set", "plugins.chat.config.sends_per_second=1000", "--set", "plugins.chat.config.send_burst=1000",
				"--set", "plugins.chat.config.writeback=true", "--set", "plugins.chat.config.graphql_url=" + gqlURL,
				"--set", "plugins.chat.config.admin_secret=test",
			}}
	}
	a := launch(t, opts(t.Name()+"-a"))
	b := launch(t, opts(t.Name()+"-b"))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	chatID := newUUID()

	type subscriber struct {
		name string
		rc   *receipts
		rec  *recorder
	}
	var subs []subscriber
	for i, srv := range []*server{a, a, b, b} {
		rc, rec := newReceipts(), newRecorder()
		name := srv.Name + "-sub" + string(rune('0'+i))
		c, err := dialWith(ctx, srv.URL, name, token(t, name), multi(rc.onEvent, rec.onEvent), rec.onDisconnect)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := subscribeChat(ctx, c, rec, chatID); err != nil {
			t.Fatal(err)
		}
		subs = append(subs, subscriber{name, rc, rec})
	}
	ledger := newChatLedger()
	var stats ackStats
	type sender struct {
		id string
		c  *sioclient.Client
	}
	var senders []sender
	for _, srv := range []*server{a, a, a, b, b, b} {
		id := newUUID()
		c, err := dialWith(ctx, srv.URL, id, token(t, id), ledger.onEvent, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		senders = append(senders, sender{id, c})
	}
	loadCtx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, snd := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-loadCtx.Done():
					return
				case <-tick.C:
				}
				sID := newUUID()
				ledger.markSent(sID)
				if stats.emitAcked(loadCtx, snd.c, "chat.messages.send", chatMessage(sID, chatID, snd.id, "rabbit")) == ackFailed {
					ledger.markFailed(sID)
				}
			}
		}()
	}
	time.Sleep(2 * time.Second)
	for round := 1; round <= rounds; round++ {
		fault(round)
		// Wait until both instances are ready again (the bus reconnected).
		if !within(60*time.Second, func() bool {
			ca, _ := a.readyz()
			cb, _ := b.readyz()
			return ca == 200 && cb == 200
		}) {
			t.Errorf("round %d: instances not ready within 60s of the fault", round)
		}
		time.Sleep(2 * time.Second)
	}
	stopLoad()
	wg.Wait()

	acked := ledger.ackedIDs()
	counts := ledger.counts()
	t.Logf("chat sends: %s; events with ack ids: %s", counts, &stats)
	if len(acked) == 0 {
		t.Fatal("no send was acked")
	}
	if counts.unanswered > 0 || counts.both > 0 || counts.failed > 0 || stats.lost.Load() > 0 {
		t.Errorf("every send must be acked or nacked: %s", counts)
	}
	within(30*time.Second, func() bool {
		for _, s := range subs {
			if !s.rc.has(acked) {
				return false
			}
		}
		return len(hasura.missing(acked)) == 0
	})
	for _, s := range subs {
		missing, dup := s.rc.check(acked)
		if len(missing) > 0 {
			t.Errorf("%s: %d of %d acked messages never arrived: %s", s.name, len(missing), len(acked), head(missing))
		}
		if len(dup) > 0 {
			t.Errorf("%s: %d messages arrived more than once: %s", s.name, len(dup), head(dup))
		}
		if d := s.rec.disconnects(); len(d) > 0 {
			t.Errorf("%s was disconnected: %v", s.name, d)
		}
	}
	reqs, inserted := hasura.stats()
	t.Logf("writeback: %d messages inserted in %d GraphQL requests", inserted, reqs)
	if m := hasura.missing(acked); len(m) > 0 {
		t.Errorf("writeback: %d of %d acked messages never reached Hasura: %s", len(m), len(acked), head(m))
	}
}
