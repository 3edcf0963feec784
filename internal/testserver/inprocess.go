package testserver

import (
	"context"
	"io"
	"log/slog"
	"net"
	"testing"
	"time"

	"go.uber.org/fx"

	"github.com/clowdr/realtime/host/app"
	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/config"
)

// StartHost runs a whole host in this test process on the config loaded
// from environ (no config file), listening on a free loopback port, with
// only the plugins named in only enabled (the defaults may grow; a test
// enables what it imports). It returns the base URL and a signer for tokens
// the host accepts (environ must set TEST_JWKS with private keys, or a dev
// key file). Both are stopped when the test ends.
func StartHost(t testing.TB, environ []string, only ...string) (baseURL string, signer *auth.Verifier) {
	t.Helper()
	cfg, err := config.Load(config.LoadOptions{File: "", Environ: environ})
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	keep := map[string]bool{}
	for _, n := range only {
		keep[n] = true
	}
	for name, pc := range cfg.Plugins {
		if !keep[name] {
			pc.Enabled = false
			cfg.Plugins[name] = pc
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := fx.New(app.Options(cfg, logger, ln), fx.NopLogger)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := a.Start(ctx); err != nil {
		t.Fatalf("start host: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
		defer cancel()
		_ = a.Stop(ctx)
	})
	signer, err = auth.New(cfg.Auth, logger, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = signer.Close() })
	return "http://" + ln.Addr().String(), signer
}
