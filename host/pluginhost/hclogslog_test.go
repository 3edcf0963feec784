package pluginhost

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"

	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/testenv"
	"github.com/clowdr/realtime/plugins/sdk/sdktest"
)

func TestHCLogAdapter(t *testing.T) {
	tests := []struct {
		name   string
		level  slog.Level
		log    func(l hclog.Logger)
		want   []string
		absent []string
	}{
		{"levels map", slog.LevelDebug, func(l hclog.Logger) {
			l.Debug("d1")
			l.Info("i1")
			l.Warn("w1")
			l.Error("e1", "k", "v")
		}, []string{"level=DEBUG msg=d1", "level=INFO msg=i1", "level=WARN msg=w1", "level=ERROR msg=e1 k=v"}, nil},
		{"trace below debug is dropped", slog.LevelDebug, func(l hclog.Logger) { l.Trace("t1") }, nil, []string{"t1"}},
		{"level filter", slog.LevelWarn, func(l hclog.Logger) { l.Info("i2"); l.Warn("w2") }, []string{"msg=w2"}, []string{"i2"}},
		{"stdio is silenced", slog.LevelDebug, func(l hclog.Logger) { l.Named("stdio").Error("noise") }, nil, []string{"noise"}},
		{"other names pass", slog.LevelDebug, func(l hclog.Logger) { l.Named("realtime").Info("x1") }, []string{"msg=x1"}, nil},
		{"go-plugin keys", slog.LevelDebug, func(l hclog.Logger) {
			l.Info("re-logged", "plugin", "/bin/p", "timestamp", "2026", "@module", "p", "n", 1)
		}, []string{"msg=re-logged path=/bin/p n=1"}, []string{"timestamp", "@module"}},
		{"with", slog.LevelDebug, func(l hclog.Logger) { l.With("a", 1).Info("w") }, []string{"msg=w a=1"}, nil},
		{"odd args", slog.LevelDebug, func(l hclog.Logger) { l.Info("odd", "k") }, []string{"extra=k"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf testenv.SyncBuffer
			l := newHCLogAdapter(slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: tt.level})))
			tt.log(l)
			out := buf.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("output %q lacks %q", out, w)
				}
			}
			for _, a := range tt.absent {
				if strings.Contains(out, a) {
					t.Errorf("output %q contains %q", out, a)
				}
			}
		})
	}
	l := newHCLogAdapter(slog.New(slog.NewTextHandler(&bytes.Buffer{}, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if l.GetLevel() != hclog.Info || l.IsDebug() || !l.IsWarn() {
		t.Errorf("GetLevel = %v", l.GetLevel())
	}
}

func TestLineLogger(t *testing.T) {
	var buf testenv.SyncBuffer
	w := &lineLogger{l: slog.New(slog.NewTextHandler(&buf, nil)), level: slog.LevelInfo, msg: "out"}
	_, _ = w.Write([]byte("first\nsec"))
	_, _ = w.Write([]byte("ond\n\n"))
	out := buf.String()
	if strings.Count(out, "msg=out") != 2 || !strings.Contains(out, "line=first") || !strings.Contains(out, "line=second") {
		t.Errorf("output %q", out)
	}
}

// TestPluginLogs checks that what a subprocess plugin logs through
// Host.Logger reaches the host's slog output at its level with plugin=<name>,
// and that SIGTERM does not stop a plugin.
func TestPluginLogs(t *testing.T) {
	for _, mode := range []string{ModeSubprocess, ModeInProcess} {
		t.Run(mode, func(t *testing.T) {
			var buf testenv.SyncBuffer
			svc := newFakeServices(t)
			svc.log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
			m := startManager(t, map[string]config.PluginConfig{"ptest": {Enabled: true, Mode: mode}}, svc, nil)
			if _, err := sendEvent(t, m, sdktest.Socket("s", "u"), "ptest.log"); err != nil {
				t.Fatal(err)
			}
			eventually(t, "the plugin's log line", func() bool { return strings.Contains(buf.String(), "hello from the plugin") })
			line := ""
			for _, l := range strings.Split(buf.String(), "\n") {
				if strings.Contains(l, "hello from the plugin") {
					line = l
				}
			}
			if !strings.Contains(line, "level=WARN") || !strings.Contains(line, "plugin=ptest") || !strings.Contains(line, "n=7") {
				t.Errorf("log line %q", line)
			}
		})
	}
}
