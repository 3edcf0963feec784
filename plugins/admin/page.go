package admin

import (
	"context"
	"embed"
	"encoding/json"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/clowdr/realtime/plugins/sdk"
)

//go:embed static
var static embed.FS

// cookieName holds the admin session (an HMAC, see sessionToken).
const cookieName = "rt_admin"

// Chat message counters written by the chat plugin: one key per minute.
const chatRateKeyPrefix = "rt:stats:chat.messages:"

func (p *Plugin) page(ctx context.Context, r sdk.HTTPRequest) sdk.HTTPResponse {
	if p.cfg.AdminSecret == "" {
		return text(http.StatusForbidden, "The admin page is off: set secrets.admin (env RT_SECRETS__ADMIN).")
	}
	sub := strings.TrimPrefix(r.Path, "/admin")
	switch {
	case sub == "/login" && r.Method == http.MethodPost:
		return p.login(r)
	case sub == "/logout" && r.Method == http.MethodPost:
		return redirect("/admin", &http.Cookie{Name: cookieName, Value: "", Path: "/admin", MaxAge: -1, HttpOnly: true, SameSite: http.SameSiteStrictMode})
	case strings.HasPrefix(sub, "/static/") && r.Method == http.MethodGet:
		return serveStatic(strings.TrimPrefix(sub, "/static/"))
	}
	switch p.authed(r) {
	case authLimited:
		if sub == "/api/state" {
			return jsonResp(http.StatusTooManyRequests, map[string]string{"error": "too many failed attempts"})
		}
		return serveFileWith("login.html", http.StatusTooManyRequests, "Too many failed attempts; wait a minute.")
	case authNo:
		if sub == "/api/state" {
			return jsonResp(http.StatusUnauthorized, map[string]string{"error": "log in first"})
		}
		return serveFile("login.html", http.StatusOK)
	}
	switch sub {
	case "", "/":
		return serveFile("index.html", http.StatusOK)
	case "/api/state":
		st, err := p.state(ctx)
		if err != nil {
			p.host.Logger().Warn("admin: state failed", "err", err)
			return jsonResp(http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
		}
		return jsonResp(http.StatusOK, st)
	}
	return text(http.StatusNotFound, "not found")
}

// authResult is the answer of authed.
type authResult int

const (
	authNo authResult = iota
	authOK
	authLimited
)

// authed accepts the session cookie or the x-admin-secret header. The header
// carries the secret itself, so a wrong one counts as a failed attempt like a
// wrong login; the cookie is an HMAC nobody can guess and a stale one (after
// the secret changed) must not lock its owner out, so it does not count.
func (p *Plugin) authed(r sdk.HTTPRequest) authResult {
	if h := r.Header.Get("x-admin-secret"); h != "" {
		addr := p.clientAddr(r)
		if p.limited(addr) {
			return authLimited
		}
		if !secretEqual(h, p.cfg.AdminSecret) {
			p.fail(addr)
			p.host.Logger().Warn("admin: wrong x-admin-secret", "path", r.Path, "remote", addr)
			return authNo
		}
		return authOK
	}
	req := http.Request{Header: r.Header}
	c, err := req.Cookie(cookieName)
	if err != nil || !secretEqual(c.Value, sessionToken(p.cfg.AdminSecret)) {
		return authNo
	}
	return authOK
}

func (p *Plugin) login(r sdk.HTTPRequest) sdk.HTTPResponse {
	addr := p.clientAddr(r)
	if p.limited(addr) {
		return serveFileWith("login.html", http.StatusTooManyRequests, "Too many failed attempts; wait a minute.")
	}
	form, err := url.ParseQuery(string(r.Body))
	if err != nil || !secretEqual(form.Get("secret"), p.cfg.AdminSecret) {
		p.fail(addr)
		p.host.Logger().Warn("admin: failed login", "remote", addr)
		return serveFileWith("login.html", http.StatusForbidden, "Wrong secret.")
	}
	return redirect("/admin", &http.Cookie{
		Name: cookieName, Value: sessionToken(p.cfg.AdminSecret), Path: "/admin",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, MaxAge: 12 * 3600,
	})
}

func redirect(to string, c *http.Cookie) sdk.HTTPResponse {
	h := http.Header{"Location": {to}}
	if c != nil {
		h.Set("Set-Cookie", c.String())
	}
	return sdk.HTTPResponse{Status: http.StatusSeeOther, Header: h}
}

var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

func serveStatic(name string) sdk.HTTPResponse {
	if name == "" || strings.Contains(name, "..") || strings.HasSuffix(name, ".html") {
		return text(http.StatusNotFound, "not found")
	}
	return serveFile(name, http.StatusOK)
}

func serveFile(name string, status int) sdk.HTTPResponse { return serveFileWith(name, status, "") }

func serveFileWith(name string, status int, message string) sdk.HTTPResponse {
	b, err := static.ReadFile("static/" + name)
	if err != nil {
		return text(http.StatusNotFound, "not found")
	}
	if message != "" {
		b = []byte(strings.Replace(string(b), "<!--message-->", `<p class="error">`+message+`</p>`, 1))
	}
	h := http.Header{
		"Content-Type":            {contentTypes[path.Ext(name)]},
		"Cache-Control":           {"no-store"},
		"X-Frame-Options":         {"DENY"},
		"Content-Security-Policy": {"default-src 'self'; style-src 'self'; script-src 'self'; frame-ancestors 'none'"},
	}
	return sdk.HTTPResponse{Status: status, Header: h, Body: b}
}

// State is what the admin page shows.
type State struct {
	GeneratedAt int64          `json:"generatedAt"`
	Instances   []InstanceView `json:"instances"`
	Pages       []PageView     `json:"pages"`
	Totals      Totals         `json:"totals"`
	ChatPerMin  []int64        `json:"chatPerMinute"` // oldest first, last 10 minutes
}

// InstanceView is one live instance from its heartbeat.
type InstanceView struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Sockets  int             `json:"sockets"`
	LastSeen int64           `json:"lastSeen"`
	Plugins  json.RawMessage `json:"plugins,omitempty"`
}

// PageView is one page with its number of users.
type PageView struct {
	Key   string `json:"key"`
	Users int    `json:"users"`
}

// Totals sums the instances and pages.
type Totals struct {
	Sockets int `json:"sockets"`
	Users   int `json:"users"`
	Pages   int `json:"pages"`
}

// Instance registry keys written by host/store's heartbeat.
const (
	instancesKey      = "rt:instances"
	instanceKeyPrefix = "rt:instance:"
)

func (p *Plugin) state(ctx context.Context) (State, error) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout)
	defer cancel()
	st := p.host.Store()
	out := State{GeneratedAt: time.Now().UnixMilli(), Instances: []InstanceView{}, Pages: []PageView{}}

	ids, err := sdk.Strings(st.Do(ctx, "ZREVRANGEBYSCORE", instancesKey, "+inf", strconv.FormatInt(time.Now().Add(-time.Minute).UnixMilli(), 10), "WITHSCORES"))
	if err != nil {
		return out, err
	}
	for i := 0; i+1 < len(ids); i += 2 {
		id := ids[i]
		seen, _ := strconv.ParseFloat(ids[i+1], 64)
		fields, err := sdk.Strings(st.Do(ctx, "HGETALL", instanceKeyPrefix+id))
		if err != nil || len(fields) == 0 {
			continue // expired between the two reads
		}
		iv := InstanceView{ID: id, LastSeen: int64(seen)}
		for j := 0; j+1 < len(fields); j += 2 {
			switch fields[j] {
			case "name":
				iv.Name = fields[j+1]
			case "sockets":
				iv.Sockets, _ = strconv.Atoi(fields[j+1])
			case "plugins":
				if json.Valid([]byte(fields[j+1])) {
					iv.Plugins = json.RawMessage(fields[j+1])
				}
			}
		}
		out.Totals.Sockets += iv.Sockets
		out.Instances = append(out.Instances, iv)
	}
	sort.Slice(out.Instances, func(i, j int) bool { return out.Instances[i].Name < out.Instances[j].Name })

	sum, err := Summarize(ctx, st)
	if err != nil {
		return out, err
	}
	for k, n := range sum.Pages {
		out.Pages = append(out.Pages, PageView{Key: k, Users: n})
	}
	sort.Slice(out.Pages, func(i, j int) bool {
		if out.Pages[i].Users != out.Pages[j].Users {
			return out.Pages[i].Users > out.Pages[j].Users
		}
		return out.Pages[i].Key < out.Pages[j].Key
	})
	out.Totals.Pages = len(out.Pages)
	out.Totals.Users = sum.TotalUniqueUserIDs
	if len(out.Pages) > 20 {
		out.Pages = out.Pages[:20]
	}

	now := time.Now().Unix() / 60
	cmds := make([][]any, 0, 10)
	for m := now - 9; m <= now; m++ {
		cmds = append(cmds, []any{"GET", chatRateKeyPrefix + strconv.FormatInt(m, 10)})
	}
	replies, err := st.Pipeline(ctx, cmds)
	if err != nil {
		return out, err
	}
	for _, r := range replies {
		n, _ := sdk.Int64(r.Value, r.Err)
		out.ChatPerMin = append(out.ChatPerMin, n)
	}
	return out, nil
}
