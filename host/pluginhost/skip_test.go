package pluginhost

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

// skipPlugin records its OnConnect and OnDisconnect calls; "<name>.calls"
// answers them. pskipall does without both calls (as a plugin that only
// embeds sdk.Base declares), pskipconn without OnConnect for new sockets
// only (as presence and chat declare).
type skipPlugin struct {
	sdk.Base
	name string

	mu                    sync.Mutex
	connects, disconnects []string
}

func init() {
	sdk.Register("pskipall", func() sdk.Plugin { return &skipPlugin{name: "pskipall"} })
	sdk.Register("pskipconn", func() sdk.Plugin { return &skipPlugin{name: "pskipconn"} })
}

func (p *skipPlugin) Describe() sdk.Descriptor {
	d := sdk.Descriptor{Name: p.name, Events: []string{p.name + ".calls", p.name + ".pid"}}
	if p.name == "pskipall" {
		d.SkipConnect, d.SkipReplay, d.SkipDisconnect = true, true, true
	} else {
		d.SkipConnect = true
	}
	return d
}

func (p *skipPlugin) OnConnect(_ context.Context, s sdk.Socket) error {
	p.mu.Lock()
	p.connects = append(p.connects, s.ID)
	p.mu.Unlock()
	return nil
}

func (p *skipPlugin) OnDisconnect(_ context.Context, s sdk.Socket, _ string) error {
	p.mu.Lock()
	p.disconnects = append(p.disconnects, s.ID)
	p.mu.Unlock()
	return nil
}

func (p *skipPlugin) OnEvent(_ context.Context, e sdk.Event) ([]any, error) {
	if e.Name == p.name+".pid" {
		return []any{syscall.Getpid()}, nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	c, d := append([]string{}, p.connects...), append([]string{}, p.disconnects...)
	sort.Strings(c)
	sort.Strings(d)
	return []any{c, d}, nil
}

// calls asks plugin which OnConnect and OnDisconnect calls it got, with an
// event of socket s: it is handled after every call of s queued before it,
// so a call that was sent is seen.
func calls(t *testing.T, m *Manager, plugin string, s sdk.Socket) (connects, disconnects string) {
	t.Helper()
	ack, err := sendEvent(t, m, s, plugin+".calls")
	if err != nil || len(ack) != 2 {
		t.Fatalf("%s.calls = %s, %v", plugin, ack, err)
	}
	return string(ack[0]), string(ack[1])
}

func TestSkipSocketCalls(t *testing.T) {
	for _, mode := range []string{ModeSubprocess, ModeInProcess} {
		t.Run(mode, func(t *testing.T) {
			svc := newFakeServices(t)
			m := startManager(t, map[string]config.PluginConfig{
				"ptest":     {Enabled: true, Mode: mode}, // wants every call (sets no Skip flag)
				"pskipall":  {Enabled: true, Mode: mode},
				"pskipconn": {Enabled: true, Mode: mode},
			}, svc, prometheus.NewRegistry())

			s1, s2 := sdktest.Socket("s1", "u1"), sdktest.Socket("s2", "u2")
			m.Connect(s1)
			if ack, err := sendEvent(t, m, s1, "ptest.connects"); err != nil || string(ack[0]) != `["s1"]` {
				t.Errorf("ptest connects = %s, %v", ack, err)
			}
			for _, p := range []string{"pskipall", "pskipconn"} {
				if c, d := calls(t, m, p, s1); c != "[]" || d != "[]" {
					t.Errorf("%s after Connect: connects %s, disconnects %s; want none", p, c, d)
				}
			}

			m.Disconnect(s1, "transport close")
			if ack, err := sendEvent(t, m, s1, "ptest.connects"); err != nil || string(ack[0]) != `[]` {
				t.Errorf("ptest connects after disconnect = %s, %v", ack, err)
			}
			if c, d := calls(t, m, "pskipall", s1); c != "[]" || d != "[]" {
				t.Errorf("pskipall after Disconnect: connects %s, disconnects %s; want none", c, d)
			}
			if c, d := calls(t, m, "pskipconn", s1); c != "[]" || d != `["s1"]` {
				t.Errorf("pskipconn after Disconnect: connects %s, disconnects %s; want only the disconnect", c, d)
			}

			// A plugin that takes OnConnect does not hear of the disconnect
			// of a socket it never saw connect (s2 was never Connect-ed);
			// one that skips OnConnect does.
			m.Disconnect(s2, "transport close")
			if ack, err := sendEvent(t, m, s2, "ptest.connects"); err != nil || string(ack[0]) != `[]` {
				t.Errorf("ptest connects = %s, %v", ack, err)
			}
			if c, d := calls(t, m, "pskipconn", s2); c != "[]" || d != `["s1","s2"]` {
				t.Errorf("pskipconn: connects %s, disconnects %s", c, d)
			}
		})
	}
}

// TestSkipSocketCallsReplay kills the subprocess plugins: OnConnect is
// replayed after the restart to a plugin that skips only new sockets'
// OnConnect, not to one that set SkipReplay.
func TestSkipSocketCallsReplay(t *testing.T) {
	svc := newFakeServices(t)
	m := startManager(t, map[string]config.PluginConfig{
		"pskipall":  {Enabled: true},
		"pskipconn": {Enabled: true},
	}, svc, prometheus.NewRegistry())

	s1, s2 := sdktest.Socket("s1", "u1"), sdktest.Socket("s2", "u2")
	svc.setLive(s1, s2)
	m.Connect(s1)
	m.Connect(s2)
	for _, p := range []string{"pskipall", "pskipconn"} {
		old := statusOf(m, p).PID
		ack, err := sendEvent(t, m, s1, p+".pid")
		if err != nil || string(ack[0]) != strconv.Itoa(old) {
			t.Fatalf("%s pid = %s, %v; status says %d", p, ack, err, old)
		}
		if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		eventually(t, p+" to restart", func() bool {
			st := statusOf(m, p)
			return st.State == StateRunning && st.Restarts == 1
		})
	}
	// Ask with each socket's event: it is handled after that socket's
	// replayed OnConnect (sockets are dispatched concurrently).
	for _, s := range []sdk.Socket{s1, s2} {
		if c, d := calls(t, m, "pskipall", s); c != "[]" || d != "[]" {
			t.Errorf("pskipall after restart: connects %s, disconnects %s; want none", c, d)
		}
		calls(t, m, "pskipconn", s)
	}
	if c, d := calls(t, m, "pskipconn", s1); c != `["s1","s2"]` || d != "[]" {
		t.Errorf("pskipconn after restart: connects %s, disconnects %s; want the replay of s1 and s2", c, d)
	}
	// A replayed socket's disconnect reaches the plugin once.
	m.Disconnect(s1, "transport close")
	if c, d := calls(t, m, "pskipconn", s1); c != `["s1","s2"]` || d != `["s1"]` {
		t.Errorf("pskipconn after Disconnect: connects %s, disconnects %s", c, d)
	}
}
