package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/internal/testserver"
	"github.com/clowdr/realtime/plugins/sdk"

	_ "github.com/clowdr/realtime/plugins/chat"
	_ "github.com/clowdr/realtime/plugins/echo"
	_ "github.com/clowdr/realtime/plugins/presence"
)

func TestMain(m *testing.M) {
	// A host started in subprocess mode re-executes this test binary to
	// serve a built-in plugin.
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

// testServer is an in-process host (embedded Redis, in-memory bus,
// TEST_JWKS) with presence, chat and echo.
type testServer struct {
	URL   string
	Token TokenFunc
}

func startServer(t testing.TB, extraEnv ...string) *testServer {
	t.Helper()
	jwks, err := sioclient.GenerateTestJWKS()
	if err != nil {
		t.Fatal(err)
	}
	env := append([]string{
		"TEST_JWKS=" + string(jwks),
		"RT_LOG__LEVEL=warn",
		"RT_SOCKETIO__EVENTS_PER_SECOND=1000000",
		"RT_SOCKETIO__EVENT_BURST=1000000",
		"RT_PLUGINS__ADMIN__ENABLED=false",
		"RT_PLUGINS__PRESENCE__ENABLED=true",
		"RT_PLUGINS__PRESENCE__MODE=inprocess",
		"RT_PLUGINS__CHAT__ENABLED=true",
		"RT_PLUGINS__CHAT__MODE=inprocess",
		`RT_PLUGINS__CHAT__CONFIG={"sends_per_second":100000,"send_burst":100000}`,
		"RT_PLUGINS__ECHO__ENABLED=true",
		"RT_PLUGINS__ECHO__MODE=inprocess",
	}, extraEnv...)
	// Later entries override earlier ones.
	seen := map[string]int{}
	var merged []string
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		if i, ok := seen[k]; ok {
			merged[i] = kv
			continue
		}
		seen[k] = len(merged)
		merged = append(merged, kv)
	}
	url, signer := testserver.StartHost(t, merged, "echo", "chat", "presence")
	return &testServer{
		URL:   url,
		Token: func(u string) (string, error) { return signer.Sign(u, time.Hour, nil) },
	}
}

func TestConfigDefaultsAndBounds(t *testing.T) {
	tok := func(string) (string, error) { return "", nil }
	tests := []struct {
		name     string
		scenario string
		cfg      Config
		wantErr  string
	}{
		{"connect defaults", ScenarioConnect, Config{Token: tok}, ""},
		{"unknown scenario", "nope", Config{Token: tok}, "unknown scenario"},
		{"no token", ScenarioConnect, Config{}, "no token"},
		{"remote refused", ScenarioConnect, Config{Token: tok, URL: "http://10.1.2.3:3002"}, "not a loopback"},
		{"remote allowed", ScenarioConnect, Config{Token: tok, URL: "http://10.1.2.3:3002", AllowRemote: true}, ""},
		{"localhost ok", ScenarioPlugin, Config{Token: tok, URL: "http://localhost:3002"}, ""},
		{"ipv6 loopback ok", ScenarioPlugin, Config{Token: tok, URL: "http://[::1]:3002"}, ""},
		{"too many connections", ScenarioConnect, Config{Token: tok, Connections: MaxConnections + 1}, "at most"},
		{"too long", ScenarioPresence, Config{Token: tok, Duration: MaxDuration + time.Second}, "duration"},
		{"rate too high", ScenarioChat, Config{Token: tok, MaxRate: MaxRate * 2}, "rate"},
		{"coldchat defaults", ScenarioColdChat, Config{Token: tok}, ""},
		{"coldchat too many", ScenarioColdChat, Config{Token: tok, Subscribers: MaxConnections + 1}, "at most"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := tc.cfg
			err := c.defaults(tc.scenario)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("defaults: %v", err)
				}
				if c.URL == "" || c.Concurrency <= 0 || c.Duration <= 0 {
					t.Fatalf("defaults not filled: %+v", c)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want %q", err, tc.wantErr)
			}
		})
	}
}

func TestParseMetricsAndBucketQuantile(t *testing.T) {
	text := `# HELP x
process_resident_memory_bytes 1.2345e+07
go_goroutines 42
realtime_plugin_event_seconds_bucket{plugin="echo",le="0.0001"} 50
realtime_plugin_event_seconds_bucket{plugin="echo",le="0.0002"} 90
realtime_plugin_event_seconds_bucket{plugin="echo",le="+Inf"} 100
realtime_plugin_event_seconds_bucket{plugin="chat",le="0.0001"} 7
weird{a="x,y",b="z"} 3
`
	s, err := ParseMetrics(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := value(s, "process_resident_memory_bytes", nil); !ok || v != 12345000 {
		t.Fatalf("rss = %v %v", v, ok)
	}
	if v, ok := value(s, "weird", map[string]string{"a": "x,y", "b": "z"}); !ok || v != 3 {
		t.Fatalf("weird = %v %v", v, ok)
	}
	after := HistogramBuckets(s, "realtime_plugin_event_seconds", map[string]string{"plugin": "echo"})
	if len(after) != 3 {
		t.Fatalf("buckets = %v", after)
	}
	tests := []struct {
		q    float64
		want float64
	}{
		{0.25, 0.00005}, // halfway into the first bucket (0..100µs)
		{0.5, 0.0001},   // exactly the first bucket's top
		{0.7, 0.00015},  // halfway into 100..200µs
		{0.99, 0.0002},  // in +Inf: the last finite bound
	}
	for _, tc := range tests {
		got, n, ok := BucketQuantile(tc.q, nil, after)
		if !ok || n != 100 || abs(got-tc.want) > 1e-9 {
			t.Errorf("q%.2f = %v (n %v ok %v), want %v", tc.q, got, n, ok, tc.want)
		}
	}
	// The difference of two scrapes.
	before := map[float64]float64{0.0001: 50, 0.0002: 50, inf(): 50}
	got, n, ok := BucketQuantile(0.5, before, after)
	if !ok || n != 50 || abs(got-0.0001625) > 1e-9 {
		t.Errorf("diff q0.5 = %v n %v ok %v", got, n, ok)
	}
	if _, _, ok := BucketQuantile(0.5, after, after); ok {
		t.Error("no observations should give ok=false")
	}
}

func TestParseVmRSS(t *testing.T) {
	got, err := parseVmRSS(strings.NewReader("Name:\tx\nVmPeak:\t 100 kB\nVmRSS:\t    2048 kB\n"))
	if err != nil || got != 2048*1024 {
		t.Fatalf("got %d %v", got, err)
	}
	if _, err := parseVmRSS(strings.NewReader("Name: x\n")); err == nil {
		t.Fatal("no VmRSS: want an error")
	}
	if _, err := parseVmRSS(strings.NewReader("VmRSS: lots kB\n")); err == nil {
		t.Fatal("bad VmRSS: want an error")
	}
	if rss, err := ReadRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Fatalf("own RSS %d %v", rss, err)
	}
}

func TestChatMarkerRoundTrip(t *testing.T) {
	tr := newSendTracker()
	st := &chatStepState{}
	sID := tr.next(st)
	msg := chatMessage(newUUID(), newUUID(), sID, 3, 1234567890123)
	if !jsonValid(msg) {
		t.Fatalf("invalid JSON: %s", msg)
	}
	step, at, ok := parseMarker(msg)
	if !ok || step != 3 || at != 1234567890123 {
		t.Fatalf("parseMarker = %d %d %v", step, at, ok)
	}
	for _, bad := range []string{"", "bench:", "bench:x:1", "bench:1:", `"bench:1:x"`} {
		if _, _, ok := parseMarker([]byte(bad)); ok {
			t.Errorf("parseMarker(%q) ok", bad)
		}
	}
	if _, ok := tr.done("not-an-sid", true); ok {
		t.Error("done(bad sId) ok")
	}
	if _, ok := tr.done(sID, true); !ok || st.acked.Load() != 1 {
		t.Errorf("done(sId) acked=%d", st.acked.Load())
	}
	if _, ok := tr.done(sID, true); ok {
		t.Error("an sId resolved twice")
	}
	if u := newUUID(); len(u) != 36 || u[14] != '4' {
		t.Errorf("uuid %q", u)
	}
}

// The scenarios against an in-process server, with small numbers. Only the
// plumbing is checked (counts add up, nothing dropped on an idle server),
// never speed.
func TestScenariosInProcess(t *testing.T) {
	srv := startServer(t)
	var progress bytes.Buffer
	base := Config{URL: srv.URL, Token: srv.Token, Progress: &syncWriter{w: &progress}}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	t.Run("connect", func(t *testing.T) {
		c := base
		c.Connections, c.Users, c.Pages, c.Duration = 50, 10, 5, 200*time.Millisecond
		r, err := Run(ctx, ScenarioConnect, c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Connections != 50 || r.ConnectErrors != 0 || r.Connect == nil || r.Connect.Count != 50 || r.ConnectsPerSec <= 0 {
			t.Fatalf("result %+v", r)
		}
		if r.Memory == nil || r.Memory.RSSAfter <= 0 || r.Memory.Source == "" {
			t.Fatalf("memory %+v notes %v", r.Memory, r.Notes)
		}
	})
	t.Run("presence", func(t *testing.T) {
		c := base
		c.Rate, c.Duration, c.Pages, c.Observers, c.Connections = 100, 500*time.Millisecond, 5, 2, 20
		r, err := Run(ctx, ScenarioPresence, c)
		if err != nil {
			t.Fatal(err)
		}
		if r.Latency == nil || r.Latency.Count == 0 || r.Drops != 0 || r.EventsPerSec <= 0 {
			t.Fatalf("result %+v latency %+v notes %v", r, r.Latency, r.Notes)
		}
		if r.LeaveLatency == nil || r.LeaveLatency.Count == 0 {
			t.Fatalf("no leave latency: %+v", r.LeaveLatency)
		}
	})
	t.Run("chat", func(t *testing.T) {
		c := base
		c.Subscribers, c.Rate, c.MaxRate, c.Duration = 20, 20, 40, 300*time.Millisecond
		r, err := Run(ctx, ScenarioChat, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Steps) == 0 {
			t.Fatalf("no steps: %+v", r)
		}
		s := r.Steps[0]
		if s.Sent == 0 || s.Acked != s.Sent || s.Received != s.Acked*20 || s.Drops != 0 {
			t.Fatalf("step %+v notes %v", s, r.Notes)
		}
		if r.Ack == nil || r.Ack.Acked == 0 || r.Ack.Nacked != 0 {
			t.Fatalf("ack phase %+v notes %v", r.Ack, r.Notes)
		}
	})
	t.Run("coldchat", func(t *testing.T) {
		c := base
		c.Subscribers, c.Duration = 30, 2*time.Second
		r, err := Run(ctx, ScenarioColdChat, c)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.Cold) != 2 || r.Cold[0].Mode != ColdAfterAcks || r.Cold[1].Mode != ColdAfterEmits {
			t.Fatalf("rounds %+v notes %v", r.Cold, r.Notes)
		}
		for _, cr := range r.Cold {
			// Every subscribe is answered, whether the message won the race
			// or not; every socket either got the message or missed it.
			if cr.Subscribers != 30 || cr.Subscribed != 30 || cr.Subscribe.Count != 30 || cr.Received+cr.Missed != 30 ||
				cr.Latency.Count != uint64(cr.Received) || cr.SendAck <= 0 {
				t.Fatalf("round %+v notes %v", cr, r.Notes)
			}
		}
		// Sent after every ack: nobody may miss it.
		if a := r.Cold[0]; a.Received != 30 || a.Missed != 0 || r.Drops != 0 || r.Latency == nil || r.Latency.Count != 30 {
			t.Fatalf("after_acks %+v drops %d notes %v", a, r.Drops, r.Notes)
		}
		if len(r.Notes) != 0 {
			t.Fatalf("notes %v", r.Notes)
		}
	})
	t.Run("plugin", func(t *testing.T) {
		c := base
		c.Connections, c.Duration = 2, 300*time.Millisecond
		r, err := Run(ctx, ScenarioPlugin, c)
		if err != nil {
			t.Fatal(err)
		}
		if r.EventsPerSec <= 0 || r.Latency == nil || r.Latency.Count == 0 || r.Drops != 0 {
			t.Fatalf("result %+v", r)
		}
		if r.ServerPlugin == nil || r.ServerPlugin.Count < r.Latency.Count {
			t.Fatalf("server plugin latency %+v (client count %d)", r.ServerPlugin, r.Latency.Count)
		}
	})
}

func TestColdSummarize(t *testing.T) {
	s := newColdState(5)
	ms := int64(time.Millisecond)
	// Socket 4 wrote no subscribe (not connected): it does not count.
	for i := range 4 {
		s.emitAt[i].Store(1000*ms + int64(i)*ms)
	}
	s.ackAt[0].Store(1010 * ms) // 10 ms
	s.ackAt[1].Store(1031 * ms) // 30 ms, the last ack
	s.ackAt[2].Store(1022 * ms) // 20 ms; socket 3 never answered
	s.sendAt.Store(2000 * ms)
	s.sendAck.Store(2005 * ms)
	s.recvAt[0].Store(2100 * ms) // 100 ms
	s.recvAt[1].Store(2500 * ms) // 500 ms: exactly the target, within it
	s.recvAt[2].Store(2700 * ms) // 700 ms: late; socket 3 missed it
	r := s.summarize(ColdAfterAcks, 500*time.Millisecond, 3*time.Millisecond)
	if r.Subscribers != 4 || r.Subscribed != 3 || r.Received != 3 || r.Missed != 1 || r.WithinTarget != 2 || r.MetTarget {
		t.Fatalf("counts %+v", r)
	}
	if r.SubscribeSpan != Dur(31*time.Millisecond) || r.SendAck != Dur(5*time.Millisecond) || r.EmitSpan != Dur(3*time.Millisecond) {
		t.Fatalf("spans %+v", r)
	}
	near := func(d Dur, want time.Duration) bool { return math.Abs(float64(d)-float64(want)) <= 0.01*float64(want) }
	if r.Latency.Count != 3 || !near(r.Latency.P50, 500*time.Millisecond) || !near(r.Latency.Max, 700*time.Millisecond) {
		t.Fatalf("latency %+v", r.Latency)
	}
	if r.Subscribe.Count != 3 || !near(r.Subscribe.Max, 30*time.Millisecond) {
		t.Fatalf("subscribe %+v", r.Subscribe)
	}
	// Everyone in time: met.
	s.recvAt[2].Store(2200 * ms)
	s.recvAt[3].Store(2300 * ms)
	if r := s.summarize(ColdAfterAcks, 500*time.Millisecond, 0); !r.MetTarget || r.Missed != 0 || r.WithinTarget != 4 {
		t.Fatalf("all in time %+v", r)
	}
	// Never sent: everyone missed it, no latency.
	if r := newColdState(2).summarize(ColdAfterEmits, time.Second, 0); r.Subscribers != 0 || r.MetTarget || r.Latency.Count != 0 {
		t.Fatalf("empty %+v", r)
	}
}

func jsonValid(b []byte) bool { return json.Valid(b) }

func abs(x float64) float64 { return math.Abs(x) }

func inf() float64 { return math.Inf(1) }

// syncWriter serializes writes (progress lines come from several goroutines).
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
