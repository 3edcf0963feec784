package app_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/clowdr/realtime/host/app"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/plugins/sdk"

	_ "github.com/clowdr/realtime/plugins/builtin"
)

func TestMain(m *testing.M) {
	sdk.ServeBuiltinIfRequested()
	os.Exit(m.Run())
}

// start runs a whole host on embedded defaults with the given --set values.
func start(t *testing.T, sets ...string) string {
	t.Helper()
	env := []string{"RT_AUTH__DEV_KEY_FILE=" + t.TempDir() + "/dev-jwks.json"}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.AddFlags(fs)
	var args []string
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.LoadOptions{Environ: env, Flags: fs})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := fx.New(app.Options(cfg, logger, ln))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := a.Stop(ctx); err != nil {
			t.Errorf("stop: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func get(t *testing.T, method, url string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestEveryPluginAlone starts the host with each built-in plugin as the only
// one enabled, in process, and checks readiness and its routes.
func TestEveryPluginAlone(t *testing.T) {
	names := sdk.Registered()
	for _, only := range names {
		t.Run(only, func(t *testing.T) {
			var sets []string
			for _, n := range names {
				sets = append(sets, "plugins."+n+".enabled="+map[bool]string{true: "true", false: "false"}[n == only],
					"plugins."+n+".mode=inprocess")
			}
			base := start(t, sets...)
			if code, body := get(t, "GET", base+"/readyz"); code != 200 {
				t.Fatalf("readyz %d %s", code, body)
			}
			code, body := get(t, "POST", base+"/summary")
			if only == "admin" {
				if code != 403 || body != "No secret configured" {
					t.Fatalf("summary with admin on: %d %q", code, body)
				}
			} else if code != 200 || !strings.Contains(body, "OK") {
				t.Fatalf("summary with admin off should hit the catch-all: %d %q", code, body)
			}
		})
	}
}

// TestDefaultsSubprocess starts the default plugin set as child processes.
func TestDefaultsSubprocess(t *testing.T) {
	base := start(t)
	code, body := get(t, "GET", base+"/readyz")
	if code != 200 || !strings.Contains(body, `"plugins":{"status":"ok"`) {
		t.Fatalf("readyz %d %s", code, body)
	}
	if code, body := get(t, "GET", base+"/metrics"); code != 200 || !strings.Contains(body, "realtime_plugin_up") {
		t.Fatalf("metrics %d: no realtime_plugin_up", code)
	}
}
