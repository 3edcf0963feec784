package presence

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestParseConfig(t *testing.T) {
	def := DefaultConfig()
	tests := []struct {
		name    string
		raw     string
		want    func(c Config) bool
		wantErr string // substring naming the key
	}{
		{name: "empty", raw: "", want: func(c Config) bool { return c == def }},
		{name: "null", raw: "null", want: func(c Config) bool { return c == def }},
		{name: "empty object", raw: "{}", want: func(c Config) bool { return c == def }},
		{name: "overrides", raw: `{"window":"300ms","refresh_interval":"50ms","sweep_interval":"20ms","max_path_bytes":10,"events_per_second":1.5,"event_burst":3,"max_lists_per_socket":2}`,
			want: func(c Config) bool {
				return c.Window == 300*time.Millisecond && c.RefreshInterval == 50*time.Millisecond &&
					c.SweepInterval == 20*time.Millisecond && c.MaxPathBytes == 10 && c.EventsPerSecond == 1.5 &&
					c.EventBurst == 3 && c.MaxListsPerSocket == 2
			}},
		{name: "unknown key", raw: `{"windows":"1s"}`, wantErr: "windows"},
		{name: "bad duration", raw: `{"sweep_interval":"soon"}`, wantErr: "sweep_interval"},
		{name: "duration as number", raw: `{"window":45}`, wantErr: "window"},
		{name: "window too short for refresh", raw: `{"window":"30s"}`, wantErr: "window"},
		{name: "zero refresh", raw: `{"refresh_interval":"0s"}`, wantErr: "refresh_interval"},
		{name: "negative sweep", raw: `{"sweep_interval":"-1s"}`, wantErr: "sweep_interval"},
		{name: "zero max_path_bytes", raw: `{"max_path_bytes":0}`, wantErr: "max_path_bytes"},
		{name: "huge max_path_bytes", raw: `{"max_path_bytes":100000000}`, wantErr: "max_path_bytes"},
		{name: "zero rate", raw: `{"events_per_second":0}`, wantErr: "events_per_second"},
		{name: "zero burst", raw: `{"event_burst":0}`, wantErr: "event_burst"},
		{name: "zero lists", raw: `{"max_lists_per_socket":0}`, wantErr: "max_lists_per_socket"},
		{name: "recheck", raw: `{"recheck":"250ms"}`, want: func(c Config) bool {
			return c.Recheck == 250*time.Millisecond && c.RecheckMark() == 1250*time.Millisecond
		}},
		{name: "recheck off", raw: `{"recheck":"0s"}`, want: func(c Config) bool { return c.Recheck == 0 && c.RecheckMark() == 0 }},
		{name: "negative recheck", raw: `{"recheck":"-1s"}`, wantErr: "recheck"},
		{name: "huge recheck", raw: `{"recheck":"2h"}`, wantErr: "recheck"},
		{name: "not an object", raw: `[1]`, wantErr: "presence config"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig(json.RawMessage(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !tt.want(c) {
				t.Fatalf("config = %+v", c)
			}
		})
	}
}

func TestDefaultCrashWindow(t *testing.T) {
	c := DefaultConfig()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	if got := c.Window + c.SweepInterval; got >= time.Minute {
		t.Fatalf("default crash window %s, want < 60s", got)
	}
	if c.sessionListsTTL() <= c.Window {
		t.Fatalf("SessionLists TTL %s not longer than the window", c.sessionListsTTL())
	}
}
