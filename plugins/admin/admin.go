// Package admin is the built-in admin plugin: the presence summary and flush
// endpoints that Hasura's presence_Summary and presence_Flush actions call, and
// a live admin page for operators.
//
//	POST /summary  secret ?secret= or header x-hasura-presence-summary-secret (SECRET_FOR_SUMMARY)
//	               200 {"total_unique_tabs":N,"total_unique_user_ids":N,"pages":{"PresenceList:<listId>":N}}
//	POST /flush    secret ?secret= or header x-hasura-presence-flush-secret (SECRET_FOR_FLUSHING)
//	               removes the presence state; 200 {"ok":"OK"}
//	GET  /admin    the admin page (login form; admin secret from plugins.admin.config.admin_secret)
//
// Secrets are compared in constant time. As in the original, the query
// parameter wins over the header, an unset secret answers 403 "No secret
// configured" and a wrong one 403 "Secret mismatch". Failed attempts are rate
// limited per client address (429 once over the limit).
//
// Meanings kept from the original (§8.1): total_unique_tabs is the sum over
// pages of the distinct users on each page (not a count of tabs), and pages
// are keyed by the full Redis key name. The summary SCANs (never KEYS) and is
// bounded in time (config summary_timeout); a timeout answers 503.
//
// After a flush every live instance re-announces its connected sockets within
// one presence refresh period (the presence plugin re-enters each socket's
// pages), so the state becomes the truth again rather than staying empty.
//
// Everything this plugin shows comes from Redis, so the page is the same
// whichever instance serves it: instances and their plugins come from the
// host heartbeats (rt:instance:<id>), pages from PresenceList:*, the chat rate
// from the chat plugin's per-minute counters.
package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/clowdr/realtime/plugins/internal/kit"
	"github.com/clowdr/realtime/plugins/sdk"
)

func init() {
	sdk.Register("admin", func() sdk.Plugin { return New() })
}

// Config is plugins.admin.config. The host fills the three secrets from
// SECRET_FOR_SUMMARY, SECRET_FOR_FLUSHING and secrets.admin when they are
// not set here.
type Config struct {
	SummarySecret string `json:"summary_secret"`
	FlushSecret   string `json:"flush_secret"`
	AdminSecret   string `json:"admin_secret"`
	// SummaryTimeout bounds one summary or flush ("10s").
	SummaryTimeout string `json:"summary_timeout"`
	// FailuresPerMinute is how many failed secret attempts one client address
	// may make per minute.
	FailuresPerMinute int `json:"failures_per_minute"`
}

// Plugin is the admin plugin.
type Plugin struct {
	sdk.Base
	host    sdk.Host
	cfg     Config
	timeout time.Duration

	mu       sync.Mutex
	failures map[string]*rate.Limiter
}

var _ sdk.Plugin = (*Plugin)(nil)

// New makes the plugin.
func New() *Plugin { return &Plugin{failures: map[string]*rate.Limiter{}} }

// Describe implements sdk.Plugin.
func (p *Plugin) Describe() sdk.Descriptor {
	return sdk.Descriptor{
		Name:    "admin",
		Version: "1.0.0",
		Routes: []sdk.Route{
			{Method: http.MethodPost, Path: "/summary"},
			{Method: http.MethodPost, Path: "/flush"},
			{Path: "/admin"},
			{Path: "/admin/"},
		},
		// No OnConnect/OnDisconnect (sdk.Base's): spare every connect the calls.
		SkipConnect: true, SkipReplay: true, SkipDisconnect: true,
	}
}

// Start implements sdk.Plugin.
func (p *Plugin) Start(_ context.Context, host sdk.Host, raw json.RawMessage) error {
	p.host = host
	cfg := Config{SummaryTimeout: "10s", FailuresPerMinute: 10}
	if len(raw) > 0 {
		dec := json.NewDecoder(strings.NewReader(string(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return fmt.Errorf("admin config: %w", err)
		}
	}
	d, err := time.ParseDuration(cfg.SummaryTimeout)
	if err != nil || d <= 0 {
		return fmt.Errorf("admin config: summary_timeout: %q is not a positive duration", cfg.SummaryTimeout)
	}
	if cfg.FailuresPerMinute <= 0 {
		return fmt.Errorf("admin config: failures_per_minute must be > 0")
	}
	p.cfg, p.timeout = cfg, d
	return nil
}

// OnHTTP implements sdk.Plugin.
func (p *Plugin) OnHTTP(ctx context.Context, r sdk.HTTPRequest) (sdk.HTTPResponse, error) {
	switch {
	case r.Path == "/summary" && r.Method == http.MethodPost:
		if resp, ok := p.checkSecret(r, p.cfg.SummarySecret, "x-hasura-presence-summary-secret"); !ok {
			return resp, nil
		}
		return p.summary(ctx), nil
	case r.Path == "/flush" && r.Method == http.MethodPost:
		if resp, ok := p.checkSecret(r, p.cfg.FlushSecret, "x-hasura-presence-flush-secret"); !ok {
			return resp, nil
		}
		return p.flush(ctx), nil
	case r.Path == "/admin" || strings.HasPrefix(r.Path, "/admin/"):
		return p.page(ctx, r), nil
	}
	return text(http.StatusNotFound, "not found"), nil
}

// checkSecret applies the original's secret rules with a constant-time
// comparison and a per-address limit on failures.
func (p *Plugin) checkSecret(r sdk.HTTPRequest, want, header string) (sdk.HTTPResponse, bool) {
	addr := clientAddr(r)
	if p.limited(addr) {
		return text(http.StatusTooManyRequests, "Too many failed attempts"), false
	}
	if want == "" {
		p.fail(addr)
		return text(http.StatusForbidden, "No secret configured"), false
	}
	got := r.Header.Get(header)
	if q, ok := r.Query["secret"]; ok && len(q) > 0 {
		got = q[0]
	}
	if !secretEqual(got, want) {
		p.fail(addr)
		p.host.Logger().Warn("admin: secret mismatch", "path", r.Path, "remote", addr)
		return text(http.StatusForbidden, "Secret mismatch"), false
	}
	return sdk.HTTPResponse{}, true
}

// secretEqual compares in constant time (lengths hidden by hashing first).
func secretEqual(got, want string) bool { return kit.SecretEqual(got, want) }

func clientAddr(r sdk.HTTPRequest) string {
	if f := r.Header.Get("X-Forwarded-For"); f != "" {
		// Heroku's router appends the client address last.
		parts := strings.Split(f, ",")
		return strings.TrimSpace(parts[len(parts)-1])
	}
	host := r.RemoteAddr
	if i := strings.LastIndexByte(host, ':'); i > 0 {
		host = host[:i]
	}
	return host
}

func (p *Plugin) limiter(addr string) *rate.Limiter {
	p.mu.Lock()
	defer p.mu.Unlock()
	l, ok := p.failures[addr]
	if !ok {
		if len(p.failures) > 10000 {
			p.failures = map[string]*rate.Limiter{} // bounded memory
		}
		per := rate.Every(time.Minute / time.Duration(p.cfg.FailuresPerMinute))
		l = rate.NewLimiter(per, p.cfg.FailuresPerMinute)
		p.failures[addr] = l
	}
	return l
}

func (p *Plugin) limited(addr string) bool { return p.limiter(addr).Tokens() < 1 }
func (p *Plugin) fail(addr string)         { p.limiter(addr).Allow() }

// sessionToken is the admin cookie value: an HMAC of a fixed label under the
// admin secret, so the secret itself never sits in the browser.
func sessionToken(secret string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte("realtime-admin-session-v1"))
	return hex.EncodeToString(m.Sum(nil))
}

func text(status int, body string) sdk.HTTPResponse {
	return sdk.HTTPResponse{Status: status, Header: http.Header{"Content-Type": {"text/html; charset=utf-8"}}, Body: []byte(body)}
}

func jsonResp(status int, v any) sdk.HTTPResponse {
	b, err := json.Marshal(v)
	if err != nil {
		return text(http.StatusInternalServerError, err.Error())
	}
	return sdk.HTTPResponse{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: b}
}
