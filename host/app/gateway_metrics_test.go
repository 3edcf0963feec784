package app_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
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

// startEchoHost runs a host with only echo enabled (in process) and the given
// extra --set values; it returns the base URL and a token signer.
func startEchoHost(t *testing.T, sets ...string) (string, func(user string) string) {
	t.Helper()
	env := []string{"RT_AUTH__DEV_KEY_FILE=" + t.TempDir() + "/dev-jwks.json"}
	var args []string
	for _, n := range sdk.Registered() {
		args = append(args, "--set", "plugins."+n+".enabled="+strconv.FormatBool(n == "echo"),
			"--set", "plugins."+n+".mode=inprocess")
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

// scrapeSamples returns the samples of the named metric from base's /metrics,
// keyed by their label text (`result="routed"`, or "" without labels).
func scrapeSamples(t *testing.T, base, name string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name) {
			continue
		}
		rest := line[len(name):]
		labels := ""
		if strings.HasPrefix(rest, "{") {
			end := strings.Index(rest, "}")
			if end < 0 {
				t.Fatalf("/metrics: malformed line %q", line)
			}
			labels, rest = rest[1:end], rest[end+1:]
		}
		if !strings.HasPrefix(rest, " ") { // a longer name sharing the prefix
			continue
		}
		v, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		if err != nil {
			t.Fatalf("/metrics: line %q: %v", line, err)
		}
		out[labels] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestGatewayEventMetrics sends events that are routed to a plugin, that no
// plugin handles, and that exceed the per-socket rate limit, and checks that
// realtime_events_in_total counts each under its result, exactly.
func TestGatewayEventMetrics(t *testing.T) {
	const (
		routed      = 2 // "echo", handled by the echo plugin
		unknown     = 3 // no plugin declares the event
		rateLimited = 4 // sent after the burst is spent
	)
	// A burst of exactly routed+unknown events and a refill of one token
	// per 1000 s: every event after the burst is refused, however slow the
	// machine.
	base, token := startEchoHost(t,
		"socketio.events_per_second=0.001",
		"socketio.event_burst="+strconv.Itoa(routed+unknown))

	refusals := make(chan string, 2*rateLimited)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := sioclient.Dial(ctx, base, sioclient.Options{
		Token: token("alice"),
		OnEvent: func(name string, args []json.RawMessage) {
			if name != "server.error" || len(args) == 0 {
				return
			}
			var e struct{ Code string }
			_ = json.Unmarshal(args[0], &e)
			select {
			case refusals <- e.Code:
			default: // more refusals than events sent: counted below
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

	const metric = "realtime_events_in_total"
	before := scrapeSamples(t, base, metric)
	limitedBefore := scrapeSamples(t, base, "realtime_events_rate_limited_total")[""]

	for i := range routed {
		ack, err := c.EmitWithAck(ctx, "echo", i)
		if err != nil {
			t.Fatalf("echo %d: %v", i, err)
		}
		if len(ack) != 1 || string(ack[0]) != strconv.Itoa(i) {
			t.Fatalf("echo %d acked %s, want [%d] (not routed to the echo plugin?)", i, ack, i)
		}
	}
	for i := range unknown {
		if err := c.Emit("metrics.nosuch", i); err != nil {
			t.Fatal(err)
		}
	}
	for i := range rateLimited {
		// Both kinds of event are refused once the bucket is empty.
		name := "echo"
		if i%2 == 1 {
			name = "metrics.nosuch"
		}
		if err := c.Emit(name, i); err != nil {
			t.Fatal(err)
		}
	}
	// socketio handles one socket's events one at a time, in order, and each
	// refusal is emitted after its count: once the last refusal arrived,
	// every event above has been counted.
	for i := range rateLimited {
		select {
		case code := <-refusals:
			if code != "rate_limited" {
				t.Fatalf("refusal %d has code %q, want rate_limited", i, code)
			}
		case <-ctx.Done():
			t.Fatalf("got %d of %d rate-limit refusals", i, rateLimited)
		}
	}

	after := scrapeSamples(t, base, metric)
	for _, w := range []struct {
		result string
		sent   int
	}{{"routed", routed}, {"unknown", unknown}, {"rate_limited", rateLimited}} {
		key := `result="` + w.result + `"`
		if got := after[key] - before[key]; got != float64(w.sent) {
			t.Errorf("%s{%s} went up by %v, want %d (before %v, after %v)", metric, key, got, w.sent, before[key], after[key])
		}
	}
	if len(after) != 3 {
		t.Errorf("%s has series %v, want only routed, unknown and rate_limited", metric, after)
	}
	if got := scrapeSamples(t, base, "realtime_events_rate_limited_total")[""] - limitedBefore; got != rateLimited {
		t.Errorf("realtime_events_rate_limited_total went up by %v, want %d", got, rateLimited)
	}
	if n := len(refusals); n != 0 {
		t.Errorf("%d refusals more than the %d events sent over the limit", n, rateLimited)
	}
}
