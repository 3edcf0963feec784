package admin

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
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
	// TrustForwardedFor takes the client address from the last
	// X-Forwarded-For entry instead of the TCP peer. Only behind a proxy
	// that appends the address it saw (Heroku's router; the host sets it
	// there): otherwise the client writes that entry itself.
	TrustForwardedFor bool `json:"trust_forwarded_for"`
}

// maxTracked bounds the failure table (one entry per client address).
const maxTracked = 10000

// Plugin is the admin plugin.
type Plugin struct {
	sdk.Base
	host    sdk.Host
	cfg     Config
	timeout time.Duration

	// now is the clock of the failure limiters (tests fix it).
	now func() time.Time

	mu       sync.Mutex
	failures map[string]*failures
	// overflow is shared by the addresses that could not be tracked because
	// every tracked one is limited (see fail).
	overflow *rate.Limiter
}

// failures is one client address's failed attempts.
type failures struct {
	lim  *rate.Limiter
	last time.Time // of the latest failure
}

var _ sdk.Plugin = (*Plugin)(nil)

// New makes the plugin.
func New() *Plugin { return &Plugin{now: time.Now, failures: map[string]*failures{}} }

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
	p.overflow = p.newLimiter()
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
	addr := p.clientAddr(r)
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

// clientAddr is the address failures count against: the TCP peer, or with
// trust_forwarded_for the last X-Forwarded-For entry (the one the proxy
// appended; earlier ones are whatever the client sent).
func (p *Plugin) clientAddr(r sdk.HTTPRequest) string {
	if p.cfg.TrustForwardedFor {
		// Several header lines count as one list in order (RFC 9110 5.3).
		if vs := r.Header.Values("X-Forwarded-For"); len(vs) > 0 {
			parts := strings.Split(vs[len(vs)-1], ",")
			if last := strings.TrimSpace(parts[len(parts)-1]); last != "" {
				return last
			}
		}
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return host
	}
	return r.RemoteAddr
}

// limitKey is the key addr's failures count under: an IPv4 address as is
// (also when written IPv4-mapped), an IPv6 address by its /64, since one
// host usually holds a whole /64 and would otherwise get 2^64 allowances;
// anything unparsable (a bad X-Forwarded-For) as is, cut to 64 bytes.
func limitKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil {
		if len(addr) > 64 {
			addr = addr[:64]
		}
		return addr
	}
	ip = ip.Unmap().WithZone("")
	if ip.Is4() {
		return ip.String()
	}
	return netip.PrefixFrom(ip, 64).Masked().String()
}

func (p *Plugin) newLimiter() *rate.Limiter {
	per := rate.Every(time.Minute / time.Duration(p.cfg.FailuresPerMinute))
	return rate.NewLimiter(per, p.cfg.FailuresPerMinute)
}

// limited reports whether addr has no failed attempt left. An address never
// seen has its own full allowance, except when the table is full of limited
// addresses (see fail): then it draws on the shared overflow limiter.
func (p *Plugin) limited(addr string) bool {
	addr = limitKey(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	if f, ok := p.failures[addr]; ok {
		return f.lim.TokensAt(now) < 1
	}
	return p.overflow.TokensAt(now) < 1
}

// fail counts a failed attempt from addr. Memory stays bounded without ever
// forgetting a limited address: clearing the table (or evicting limited
// entries) would hand an attacker with many addresses a way to lift the limit.
func (p *Plugin) fail(addr string) {
	addr = limitKey(addr)
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	f, ok := p.failures[addr]
	if !ok {
		if len(p.failures) >= maxTracked && !p.evictLocked(now) {
			p.overflow.AllowN(now, 1)
			return
		}
		f = &failures{lim: p.newLimiter()}
		p.failures[addr] = f
	}
	f.lim.AllowN(now, 1)
	f.last = now
}

// evictLocked frees room in a full table: every entry whose allowance has
// fully come back (forgetting it changes nothing), else the entry among the
// unlimited ones whose latest failure is oldest. It reports false when every
// entry is limited. It scans the table, which only happens while it is full.
func (p *Plugin) evictLocked(now time.Time) bool {
	burst := float64(p.cfg.FailuresPerMinute)
	freed := false
	for addr, f := range p.failures {
		if f.lim.TokensAt(now) >= burst {
			delete(p.failures, addr)
			freed = true
		}
	}
	if freed {
		return true
	}
	var (
		oldest   string
		oldestAt time.Time
		found    bool
	)
	for addr, f := range p.failures {
		if f.lim.TokensAt(now) >= 1 && (!found || f.last.Before(oldestAt)) {
			oldest, oldestAt, found = addr, f.last, true
		}
	}
	if !found {
		return false
	}
	delete(p.failures, oldest)
	return true
}

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
