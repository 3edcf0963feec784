// Package httpapi is the host's HTTP front: the Socket.IO endpoint, the routes
// that plugins declare, /healthz, /readyz, /metrics, and the original service's
// catch-all 200 "OK" page that load balancers use as a health check.
//
//	/socket.io/   websocket endpoint (host/socketio)
//	/healthz      200 while the process serves HTTP
//	/readyz       200 when every required dependency is ready, else 503; JSON detail
//	/metrics      Prometheus text format
//	plugin routes as declared (exact path, or prefix when the path ends in "/")
//	host routes mounted by host/app: POST /directory/invalidate (host/directory),
//	GET /test/jwt (only with TEST_JWKS)
//	anything else 200 text/html "<html>…OK…</html>" (as the original)
//
// CORS for the HTTP routes follows CORS_ORIGIN (comma-separated); preflight
// OPTIONS requests are answered here.
package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Route is one HTTP route served by a plugin (or the host).
type Route struct {
	// Method is GET, POST, ... ("" = any).
	Method string
	// Path is exact, or a prefix when it ends in "/".
	Path    string
	Handler http.Handler
	// Owner names who serves it (for logs and conflicts).
	Owner string
}

// Check is one readiness check.
type Check struct {
	Name string
	// Required checks make /readyz fail; others are only reported.
	Required bool
	Check    func(ctx context.Context) error
}

// Options configure the mux.
type Options struct {
	SocketIO http.Handler
	Routes   []Route
	Checks   []Check
	Gatherer prometheus.Gatherer
	// AllowedOrigins for CORS on HTTP routes; empty or "*" = any.
	AllowedOrigins []string
}

// OKPage is the original service's catch-all page.
const OKPage = "<!DOCTYPE html>\n<html><head><title>Realtime</title></head><body>OK</body></html>\n"

// New builds the HTTP handler.
func New(o Options) http.Handler {
	mux := http.NewServeMux()
	if o.SocketIO != nil {
		mux.Handle("/socket.io/", o.SocketIO)
	}
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("/readyz", readyz(o.Checks))
	if o.Gatherer != nil {
		mux.Handle("/metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	rt := &router{exact: map[string][]Route{}}
	for _, r := range o.Routes {
		if strings.HasSuffix(r.Path, "/") && len(r.Path) > 1 {
			rt.prefix = append(rt.prefix, r)
		} else {
			rt.exact[r.Path] = append(rt.exact[r.Path], r)
		}
	}
	sort.Slice(rt.prefix, func(i, j int) bool { return len(rt.prefix[i].Path) > len(rt.prefix[j].Path) })
	mux.Handle("/", rt)
	return cors(o.AllowedOrigins, mux)
}

type router struct {
	exact  map[string][]Route
	prefix []Route
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h := rt.match(r); h != nil {
		h.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(OKPage))
}

func (rt *router) match(r *http.Request) http.Handler {
	for _, route := range rt.exact[r.URL.Path] {
		if route.Method == "" || route.Method == r.Method {
			return route.Handler
		}
	}
	for _, route := range rt.prefix {
		if strings.HasPrefix(r.URL.Path, route.Path) && (route.Method == "" || route.Method == r.Method) {
			return route.Handler
		}
	}
	return nil
}

func readyz(checks []Check) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		type result struct {
			Status   string `json:"status"`
			Required bool   `json:"required"`
			Error    string `json:"error,omitempty"`
		}
		out := struct {
			Status string            `json:"status"`
			Checks map[string]result `json:"checks"`
		}{Status: "ready", Checks: map[string]result{}}
		code := http.StatusOK
		for _, c := range checks {
			res := result{Status: "ok", Required: c.Required}
			if err := c.Check(ctx); err != nil {
				res.Status = "failing"
				res.Error = err.Error()
				if c.Required {
					code = http.StatusServiceUnavailable
					out.Status = "not ready"
				}
			}
			out.Checks[c.Name] = res
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(out)
	}
}

// OriginAllowed reports whether origin is in the allowed list (empty list or
// "*" allows any). Comparison is case-insensitive and ignores a trailing slash.
func OriginAllowed(allowed []string, origin string) bool {
	if len(allowed) == 0 {
		return true
	}
	o := strings.TrimSuffix(strings.ToLower(origin), "/")
	for _, a := range allowed {
		a = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(a)), "/")
		if a == "*" || a == o {
			return true
		}
	}
	return false
}

func cors(allowed []string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		origin := r.Header.Get("Origin")
		if origin != "" && !strings.HasPrefix(r.URL.Path, "/socket.io/") && OriginAllowed(allowed, origin) {
			h := w.Header()
			if len(allowed) == 0 {
				h.Set("Access-Control-Allow-Origin", "*")
			} else {
				h.Set("Access-Control-Allow-Origin", origin)
				h.Add("Vary", "Origin")
			}
			if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", "GET,HEAD,PUT,PATCH,POST,DELETE")
				if rh := r.Header.Get("Access-Control-Request-Headers"); rh != "" {
					h.Set("Access-Control-Allow-Headers", rh)
				}
				w.WriteHeader(http.StatusNoContent)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
