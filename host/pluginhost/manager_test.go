package pluginhost

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func newManager(t testing.TB, plugins map[string]config.PluginConfig, svc Services, reg prometheus.Registerer) *Manager {
	t.Helper()
	m, err := New(plugins, nil, svc, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

func startManager(t testing.TB, plugins map[string]config.PluginConfig, svc Services, reg prometheus.Registerer) *Manager {
	t.Helper()
	m := newManager(t, plugins, svc, reg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.Stop(ctx)
	})
	return m
}

type ackResult struct {
	ack []json.RawMessage
	err error
}

func sendEvent(t testing.TB, m *Manager, s sdk.Socket, name string, args ...any) ([]json.RawMessage, error) {
	t.Helper()
	raw, err := sdk.MarshalArgs(args)
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan ackResult, 1)
	if !m.Event(s, name, raw, func(ack []json.RawMessage, err error) { ch <- ackResult{ack, err} }) {
		t.Fatalf("event %q: no plugin declared it", name)
	}
	select {
	case r := <-ch:
		return r.ack, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("event %q: no answer", name)
	}
	return nil, nil
}

// eventually polls cond until it holds; the deadline only keeps a broken
// test from hanging.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func pidAlive(pid int) bool {
	return pid > 0 && syscall.Kill(pid, 0) == nil
}

func statusOf(m *Manager, name string) Status {
	for _, s := range m.Status() {
		if s.Name == name {
			return s
		}
	}
	return Status{}
}

func TestNewRejectsBadConfig(t *testing.T) {
	svc := newFakeServices(t)
	tests := []struct {
		name    string
		plugins map[string]config.PluginConfig
		want    string
	}{
		{"unknown plugin", map[string]config.PluginConfig{"nosuch": {Enabled: true}}, `plugin "nosuch": not a built-in`},
		{"bad mode", map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: "thread"}}, `plugin "ptest": mode "thread"`},
		{"inprocess with path", map[string]config.PluginConfig{"x": {Enabled: true, Mode: "inprocess", Path: "/bin/x"}}, `plugin "x": a plugin with a path`},
		{"inprocess with tls", map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: "inprocess", TLS: true}}, `plugin "ptest": tls is only for mode "subprocess"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.plugins, nil, svc, nil, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New = %v, want error containing %q", err, tt.want)
			}
		})
	}
	// Disabled unknown plugins are fine; config errors name the plugin.
	if _, err := New(map[string]config.PluginConfig{"nosuch": {}}, nil, svc, nil, nil); err != nil {
		t.Errorf("disabled unknown plugin: %v", err)
	}
	_, err := New(map[string]config.PluginConfig{"ptest": {Enabled: true}}, func(string) (json.RawMessage, error) {
		return nil, errors.New("boom")
	}, svc, nil, nil)
	if err == nil || !strings.Contains(err.Error(), `plugin "ptest": config`) {
		t.Errorf("config error = %v", err)
	}
}

func TestDuplicateClaims(t *testing.T) {
	tests := []struct {
		name    string
		plugins map[string]config.PluginConfig
		want    []string
	}{
		{"event", map[string]config.PluginConfig{
			"ptest": {Enabled: true, Mode: "inprocess"}, "ptest2": {Enabled: true, Mode: "subprocess"},
		}, []string{`"ptest.echo"`, `"ptest"`, `"ptest2"`}},
		{"route", map[string]config.PluginConfig{
			"ptest": {Enabled: true, Mode: "inprocess"}, "ptest3": {Enabled: true, Mode: "inprocess"},
		}, []string{`* /ptest/hello`, `GET /ptest/hello`, `"ptest"`, `"ptest3"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, tt.plugins, newFakeServices(t), nil)
			err := m.Start(context.Background())
			if err == nil {
				_ = m.Stop(context.Background())
				t.Fatal("Start succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
			for _, st := range m.Status() {
				if st.PID != 0 || st.State == StateRunning {
					t.Errorf("after failed start: %+v", st)
				}
			}
		})
	}
}

// TestPlugin runs the same contract checks in both modes.
func TestPlugin(t *testing.T) {
	for _, mode := range []string{ModeSubprocess, ModeInProcess} {
		t.Run(mode, func(t *testing.T) {
			svc := newFakeServices(t)
			reg := prometheus.NewRegistry()
			m := startManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: mode}}, svc, reg)
			st := statusOf(m, "ptest")
			if st.State != StateRunning || (mode == ModeSubprocess) != (st.PID > 0) || len(st.Events) != 6 {
				t.Fatalf("status = %+v", st)
			}
			if err := m.Ready(); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			if !reflect.DeepEqual(svc.exchanges, []sdk.Exchange{{Name: "ptest.ex", Kind: "topic", Durable: true}}) {
				t.Errorf("exchanges = %+v", svc.exchanges)
			}
			if got := m.Routes(); len(got) != 1 || got[0].Plugin != "ptest" || got[0].Path != "/ptest/hello" {
				t.Errorf("routes = %+v", got)
			}
			s := sdktest.Socket("s1", "u1")
			m.Connect(s)

			// Event round trip with ack, and the emit it made.
			ack, err := sendEvent(t, m, s, "ptest.echo", "hi", 2)
			if err != nil || len(ack) != 2 || string(ack[0]) != `"hi"` || string(ack[1]) != "2" {
				t.Fatalf("echo ack = %s, %v", ack, err)
			}
			emits := svc.Emits()
			if len(emits) != 1 || emits[0].Plugin != "ptest" || emits[0].To != sdk.SocketTarget("s1") || emits[0].Event != "echo" {
				t.Fatalf("emits = %+v", emits)
			}
			if _, err := sendEvent(t, m, s, "ptest.fail"); err == nil || !strings.Contains(err.Error(), "handler failed") {
				t.Errorf("failing handler: %v", err)
			}
			if m.Event(s, "nobody.handles", nil, nil) {
				t.Error("Event returned true for an undeclared event")
			}

			// Emit ordering across many events of one socket.
			const n = 200
			done := make(chan struct{}, n)
			for i := range n {
				m.Event(s, "ptest.echo", []json.RawMessage{json.RawMessage(strconv.Itoa(i))}, func([]json.RawMessage, error) { done <- struct{}{} })
			}
			for range n {
				<-done
			}
			emits = svc.Emits()[1:]
			if len(emits) != n {
				t.Fatalf("got %d emits, want %d", len(emits), n)
			}
			for i, e := range emits {
				if string(e.Args[0]) != strconv.Itoa(i) {
					t.Fatalf("emit %d carries %s: out of order", i, e.Args[0])
				}
			}

			// Host callbacks: store, join, publish, directory, instance id.
			ack, err = sendEvent(t, m, s, "ptest.host")
			if err != nil {
				t.Fatalf("ptest.host: %v", err)
			}
			if b, _ := json.Marshal(ack); string(b) != `["v",["conf-u1"],"inst1"]` {
				t.Errorf("ptest.host ack = %s", b)
			}
			if !svc.h.InRoom("s1", "room1") {
				t.Error("join not applied")
			}
			if p := svc.h.Publishes(); len(p) != 1 || p[0].Exchange != "ptest.ex" || string(p[0].Body) != "hello" {
				t.Errorf("publishes = %+v", p)
			}

			// Deliveries: the queue name had {instance} replaced.
			consume := svc.consumer("ptest.inst1")
			if consume == nil {
				t.Fatalf("no consumer for ptest.inst1: %v", svc.consumers)
			}
			if err := consume(context.Background(), sdk.Delivery{Exchange: "ptest.ex", RoutingKey: "a", Body: []byte("m1")}); err != nil {
				t.Errorf("delivery: %v", err)
			}
			if err := consume(context.Background(), sdk.Delivery{Body: []byte("drop")}); !errors.Is(err, sdk.ErrDrop) {
				t.Errorf("dropped delivery err = %v", err)
			}
			last := svc.Emits()[len(svc.Emits())-1]
			if last.Event != "delivered" || string(last.Args[0]) != `"ptest.inst1"` || string(last.Args[1]) != `"m1"` {
				t.Errorf("delivery emit = %+v", last)
			}

			// A batching queue: deliveries go on without waiting for
			// answers, so the plugin gets them in one batch, in order.
			batch := svc.asyncConsumer("ptest.batch")
			if batch == nil || svc.consumer("ptest.batch") != nil {
				t.Fatalf("ptest.batch (BatchMax 8) must be consumed asynchronously")
			}
			settled := make(chan error, 5)
			for i := range 5 {
				batch(context.Background(), sdk.Delivery{RoutingKey: "batch", Body: []byte(strconv.Itoa(i))}, func(err error) { settled <- err })
			}
			for range 5 {
				select {
				case err := <-settled:
					if err != nil {
						t.Errorf("batched delivery: %v", err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("batched deliveries not settled")
				}
			}
			var batches [][]string
			for _, e := range svc.Emits() {
				if e.Event == "batch" {
					var b []string
					_ = json.Unmarshal(e.Args[0], &b)
					batches = append(batches, b)
				}
			}
			if len(batches) == 0 || len(batches) > 4 || !slices.Equal(slices.Concat(batches...), []string{"0", "1", "2", "3", "4"}) {
				t.Errorf("batches = %v, want 0..4 in order in fewer batches than deliveries", batches)
			}

			// HTTP.
			rec := httptest.NewRecorder()
			m.ServeHTTP("ptest", rec, httptest.NewRequest(http.MethodGet, "/ptest/hello?name=bob", strings.NewReader("body")))
			if rec.Code != 200 || rec.Body.String() != "hello bob body" || rec.Header().Get("X-Plugin") != "ptest" {
				t.Errorf("HTTP = %d %q %v", rec.Code, rec.Body, rec.Header())
			}
			rec = httptest.NewRecorder()
			m.ServeHTTP("ptest", rec, httptest.NewRequest(http.MethodPost, "/ptest/hello", bytes.NewReader(make([]byte, maxHTTPBody+1))))
			if rec.Code != http.StatusRequestEntityTooLarge {
				t.Errorf("large body = %d", rec.Code)
			}
			rec = httptest.NewRecorder()
			m.ServeHTTP("nosuch", rec, httptest.NewRequest(http.MethodGet, "/x", nil))
			if rec.Code != http.StatusNotFound {
				t.Errorf("unknown plugin = %d", rec.Code)
			}

			// Disconnect reaches the plugin (an event of the same socket is
			// handled after it).
			m.Disconnect(s, "transport close")
			ack, _ = sendEvent(t, m, s, "ptest.connects")
			if string(ack[0]) != `[]` {
				t.Errorf("connects after disconnect = %s", ack[0])
			}

			if got := metricValue(t, m.metrics.up.WithLabelValues("ptest")); got != 1 {
				t.Errorf("up = %v", got)
			}
			if got := metricValue(t, m.metrics.events.WithLabelValues("ptest", "error")); got != 1 {
				t.Errorf("events_total{error} = %v", got)
			}

			// Clean stop: no child left, events refused and counted.
			pid := st.PID
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := m.Stop(ctx); err != nil {
				t.Fatalf("Stop: %v", err)
			}
			if mode == ModeSubprocess && pidAlive(pid) {
				t.Errorf("plugin process %d still alive after Stop", pid)
			}
			if statusOf(m, "ptest").State != StateStopped || m.Ready() == nil {
				t.Errorf("after stop: %+v, ready %v", statusOf(m, "ptest"), m.Ready())
			}
			if _, err := sendEvent(t, m, s, "ptest.echo"); !errors.Is(err, sdk.ErrPluginUnavailable) {
				t.Errorf("event after stop: %v", err)
			}
			if got := metricValue(t, m.metrics.dropped.WithLabelValues("ptest")); got != 1 {
				t.Errorf("dropped = %v", got)
			}
			rec = httptest.NewRecorder()
			m.ServeHTTP("ptest", rec, httptest.NewRequest(http.MethodGet, "/ptest/hello", nil))
			if rec.Code != http.StatusServiceUnavailable {
				t.Errorf("HTTP after stop = %d", rec.Code)
			}
			if svc.stopped != 2 { // ptest.<instance> and ptest.batch
				t.Errorf("consumers stopped %d times, want 2", svc.stopped)
			}
		})
	}
}

// TestRestartAfterKill kills the plugin process with SIGKILL and checks the
// supervisor brings it back: new pid, Restarts=1, OnConnect replayed for the
// live sockets, events work again.
func TestRestartAfterKill(t *testing.T) {
	svc := newFakeServices(t)
	var logs testenv.SyncBuffer
	svc.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	reg := prometheus.NewRegistry()
	m := startManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true}}, svc, reg)

	// SIGTERM (e.g. systemd signalling the whole group) does not stop a plugin.
	if err := syscall.Kill(statusOf(m, "ptest").PID, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the plugin to log the SIGTERM", func() bool { return strings.Contains(logs.String(), "SIGTERM ignored") })
	if _, err := sendEvent(t, m, sdktest.Socket("s0", "u"), "ptest.pid"); err != nil {
		t.Fatalf("event after SIGTERM: %v", err)
	}
	if st := statusOf(m, "ptest"); st.Restarts != 0 || st.State != StateRunning {
		t.Fatalf("after SIGTERM: %+v", st)
	}

	s1, s2 := sdktest.Socket("s1", "u1"), sdktest.Socket("s2", "u2")
	svc.setLive(s1, s2)
	m.Connect(s1)
	m.Connect(s2)
	ack, err := sendEvent(t, m, s1, "ptest.pid")
	if err != nil {
		t.Fatal(err)
	}
	oldPID := statusOf(m, "ptest").PID
	if string(ack[0]) != strconv.Itoa(oldPID) {
		t.Fatalf("plugin reports pid %s, status says %d", ack[0], oldPID)
	}

	if err := syscall.Kill(oldPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the plugin to restart", func() bool {
		st := statusOf(m, "ptest")
		return st.State == StateRunning && st.Restarts == 1
	})
	st := statusOf(m, "ptest")
	if st.PID == oldPID || st.PID == 0 || !strings.Contains(st.LastError, "killed") {
		t.Errorf("after restart: %+v", st)
	}
	if pidAlive(oldPID) {
		t.Errorf("old process %d still alive", oldPID)
	}
	ack, err = sendEvent(t, m, s1, "ptest.pid")
	if err != nil || string(ack[0]) != strconv.Itoa(st.PID) {
		t.Fatalf("after restart pid = %s, %v; want %d", ack, err, st.PID)
	}
	// s2's event first: it is handled after s2's replayed OnConnect, which
	// runs concurrently with s1's (different sockets).
	if _, err := sendEvent(t, m, s2, "ptest.connects"); err != nil {
		t.Fatal(err)
	}
	ack, err = sendEvent(t, m, s1, "ptest.connects")
	if err != nil || string(ack[0]) != `["s1","s2"]` {
		t.Errorf("replayed connects = %s, %v", ack, err)
	}
	if got := metricValue(t, m.metrics.restarts.WithLabelValues("ptest")); got != 1 {
		t.Errorf("restarts_total = %v", got)
	}
	var dt dto.Metric
	if err := m.metrics.downtime.WithLabelValues("ptest").(prometheus.Metric).Write(&dt); err != nil {
		t.Fatal(err)
	}
	if h := dt.GetHistogram(); h.GetSampleCount() != 1 || h.GetSampleSum() < backoffMin.Seconds() {
		t.Errorf("downtime: %d samples summing to %vs, want 1 of at least the %v backoff", h.GetSampleCount(), h.GetSampleSum(), backoffMin)
	}
	if err := m.Ready(); err != nil {
		t.Errorf("Ready: %v", err)
	}
}

func TestDescribe(t *testing.T) {
	svc := newFakeServices(t)
	m := newManager(t, map[string]config.PluginConfig{"ptest2": {Enabled: false}}, svc, nil)
	for _, name := range []string{"ptest2", "ptest3"} { // configured but disabled; registered only
		d, err := m.Describe(name)
		if err != nil || d.Name != name {
			t.Errorf("Describe(%s) = %+v, %v", name, d, err)
		}
	}
	if _, err := m.Describe("nosuch"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("Describe(nosuch) = %v", err)
	}
}

// TestExternalBinary builds plugins/echo/cmd and runs it by path.
func TestExternalBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go toolchain in PATH")
	}
	bin := filepath.Join(t.TempDir(), "echo")
	cmd := exec.Command(goBin, "build", "-o", bin, "github.com/clowdr/realtime/plugins/echo/cmd")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	svc := newFakeServices(t)
	m := startManager(t, map[string]config.PluginConfig{"external-echo": {Enabled: true, Path: bin}}, svc, nil)
	ack, err := sendEvent(t, m, sdktest.Socket("s1", "u1"), "echo", "x")
	if err != nil || len(ack) != 1 || string(ack[0]) != `"x"` {
		t.Fatalf("echo = %s, %v", ack, err)
	}
	rec := httptest.NewRecorder()
	m.ServeHTTP("external-echo", rec, httptest.NewRequest(http.MethodGet, "/echo/ping", nil))
	if rec.Code != 200 || rec.Body.String() != "pong" {
		t.Errorf("ping = %d %q", rec.Code, rec.Body)
	}
}

// metricValue reads a gauge's or counter's value.
func metricValue(t *testing.T, c prometheus.Metric) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatal(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}
