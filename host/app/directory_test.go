package app_test

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"go.uber.org/fx"

	"github.com/clowdr/realtime/host/app"
	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
	"github.com/clowdr/realtime/internal/sioclient"
	"github.com/clowdr/realtime/plugins/sdk"
)

const testEventSecret = "ev-secret"

// fakeGraphQL answers every query with one conference, or 500 while failing.
type fakeGraphQL struct {
	failing  atomic.Bool
	requests atomic.Int64
}

func (f *fakeGraphQL) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.requests.Add(1)
	if f.failing.Load() {
		http.Error(w, "hasura down", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"data":{"conference_Conference":[{"id":"c1","slug":"conf1"}]}}`)
}

// startDirectoryHost runs a host with no plugin, the directory settings in
// sets and EVENT_SECRET set; it returns the base URL and a token maker.
func startDirectoryHost(t *testing.T, sets ...string) (string, func(user string) string) {
	t.Helper()
	env := []string{"RT_AUTH__DEV_KEY_FILE=" + t.TempDir() + "/dev-jwks.json"}
	args := []string{"--set", "secrets.event=" + testEventSecret}
	for _, n := range sdk.Registered() {
		args = append(args, "--set", "plugins."+n+".enabled=false")
	}
	for _, s := range sets {
		args = append(args, "--set", s)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	config.AddFlags(fs)
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
	a := fx.New(app.Options(cfg, slog.New(slog.DiscardHandler), ln), fx.NopLogger)
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
	signer, err := auth.New(cfg.Auth, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = signer.Close() })
	token := func(user string) string {
		tok, err := signer.Sign(user, time.Hour, nil)
		if err != nil {
			t.Fatalf("sign: %v", err)
		}
		return tok
	}
	return "http://" + ln.Addr().String(), token
}

type readyCheck struct {
	Status   string `json:"status"`
	Required bool   `json:"required"`
	Error    string `json:"error"`
}

// readyz returns /readyz's status code, overall status and its directory check.
func readyz(t *testing.T, base string) (int, string, readyCheck) {
	t.Helper()
	code, body := get(t, "GET", base+"/readyz")
	var out struct {
		Status string                `json:"status"`
		Checks map[string]readyCheck `json:"checks"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("readyz %d %q: %v", code, body, err)
	}
	dir, ok := out.Checks["directory"]
	if !ok {
		t.Fatalf("readyz lists no directory check: %s", body)
	}
	return code, out.Status, dir
}

// metricLine returns the line of /metrics that starts with prefix, or "".
func metricLine(t *testing.T, base, prefix string) string {
	t.Helper()
	code, body := get(t, "GET", base+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("metrics %d", code)
	}
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func invalidate(t *testing.T, base, secret, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, base+"/directory/invalidate", strings.NewReader(body))
	req.Header.Set("x-hasura-event-secret", secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func dial(base, token string) (*sioclient.Client, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return sioclient.Dial(ctx, base, sioclient.Options{Token: token})
}

// TestDirectoryHasuraHealth: with Hasura answering 500, a connect fails (the
// conference lookup is a Hasura query), /readyz stays 200 but reports the
// directory failing, and realtime_directory_up is 0; once Hasura recovers,
// the next connect succeeds and both turn back. POST /directory/invalidate
// is mounted: it drops the cached conferences so the next connect asks again.
func TestDirectoryHasuraHealth(t *testing.T) {
	fake := &fakeGraphQL{}
	fake.failing.Store(true)
	hasura := httptest.NewServer(fake)
	t.Cleanup(hasura.Close)
	base, token := startDirectoryHost(t,
		"directory.backend=hasura",
		"directory.graphql_domain="+strings.TrimPrefix(hasura.URL, "http://"),
		"directory.graphql_secure=false",
		"directory.admin_secret=admin")

	if c, err := dial(base, token("alice")); err == nil {
		c.Close()
		t.Fatal("connect succeeded while Hasura answers 500")
	}
	if fake.requests.Load() == 0 {
		t.Fatal("the connect did not query Hasura")
	}
	code, status, dir := readyz(t, base)
	if code != http.StatusOK || status != "ready" {
		t.Errorf("readyz while Hasura fails = %d %q, want 200 ready (the directory is reported, not required)", code, status)
	}
	if dir.Status != "failing" || dir.Required || !strings.Contains(dir.Error, "500") {
		t.Errorf("directory check while Hasura fails = %+v, want failing, not required, with the 500", dir)
	}
	if l := metricLine(t, base, "realtime_directory_up "); l != "realtime_directory_up 0" {
		t.Errorf("metrics while Hasura fails: %q, want realtime_directory_up 0", l)
	}
	if l := metricLine(t, base, `realtime_directory_requests_total{query="GetUserConferenceSlugs",result="error"}`); l == "" {
		t.Error("metrics: no failed GetUserConferenceSlugs counted")
	}

	fake.failing.Store(false)
	c, err := dial(base, token("alice"))
	if err != nil {
		t.Fatalf("connect after Hasura recovered: %v", err)
	}
	c.Close()
	if _, _, dir := readyz(t, base); dir.Status != "ok" || dir.Error != "" {
		t.Errorf("directory check after recovery = %+v, want ok", dir)
	}
	if l := metricLine(t, base, "realtime_directory_up "); l != "realtime_directory_up 1" {
		t.Errorf("metrics after recovery: %q, want realtime_directory_up 1", l)
	}

	// The route is mounted and guarded.
	if code, body := invalidate(t, base, "wrong", `{"cache":"ConferenceSlugs","key":"alice"}`); code != http.StatusUnauthorized {
		t.Errorf("invalidate with a wrong secret = %d %s, want 401", code, body)
	}
	before := fake.requests.Load()
	if code, body := invalidate(t, base, testEventSecret, `{"cache":"ConferenceSlugs","key":"alice"}`); code != http.StatusOK || body != `{"invalidated":1,"ok":true}` {
		t.Fatalf("invalidate = %d %s, want 200 invalidated 1", code, body)
	}
	c, err = dial(base, token("alice"))
	if err != nil {
		t.Fatalf("connect after invalidate: %v", err)
	}
	c.Close()
	if fake.requests.Load() != before+1 {
		t.Errorf("Hasura requests %d -> %d: the connect after invalidate should ask again", before, fake.requests.Load())
	}
}

// TestDirectoryStaticHealth: the static directory is listed in /readyz (ok),
// realtime_directory_up is 1, and the route answers 0 dropped.
func TestDirectoryStaticHealth(t *testing.T) {
	base, _ := startDirectoryHost(t, "directory.backend=static")
	if code, _, dir := readyz(t, base); code != http.StatusOK || dir.Status != "ok" || dir.Required {
		t.Errorf("readyz = %d, directory %+v; want 200 and ok, not required", code, dir)
	}
	if l := metricLine(t, base, "realtime_directory_up "); l != "realtime_directory_up 1" {
		t.Errorf("metrics: %q, want realtime_directory_up 1", l)
	}
	if code, body := invalidate(t, base, testEventSecret, `{"cache":"ChatInfo","key":"c"}`); code != http.StatusOK || body != `{"invalidated":0,"ok":true}` {
		t.Errorf("invalidate = %d %s, want 200 invalidated 0", code, body)
	}
}
