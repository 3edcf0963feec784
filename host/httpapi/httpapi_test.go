package httpapi

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRoutes(t *testing.T) {
	named := func(s string) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, s) })
	}
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "realtime_test_total", Help: "x"})
	reg.MustRegister(c)
	c.Inc()
	h := New(Options{
		SocketIO: named("sio"),
		Routes: []Route{
			{Method: http.MethodPost, Path: "/summary", Handler: named("summary")},
			{Path: "/admin/", Handler: named("admin-prefix")},
			{Path: "/admin", Handler: named("admin")},
		},
		Checks: []Check{
			{Name: "store", Required: true, Check: func(context.Context) error { return nil }},
			{Name: "optional", Check: func(context.Context) error { return errors.New("down") }},
		},
		Gatherer: reg,
	})
	cases := []struct {
		method, path string
		status       int
		body         string
	}{
		{"GET", "/socket.io/?EIO=4", 200, "sio"},
		{"POST", "/summary", 200, "summary"},
		{"GET", "/summary", 200, "OK</body>"}, // wrong method falls to the catch-all, as the original
		{"GET", "/admin", 200, "admin"},
		{"GET", "/admin/api/state", 200, "admin-prefix"},
		{"GET", "/healthz", 200, "ok"},
		{"GET", "/readyz", 200, `"optional":{"status":"failing","required":false,"error":"down"}`},
		{"GET", "/metrics", 200, "realtime_test_total 1"},
		{"DELETE", "/anything/else", 200, "<html>"},
	}
	for _, tc := range cases {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.status || !strings.Contains(rec.Body.String(), tc.body) {
			t.Errorf("%s %s = %d %q, want %d containing %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.status, tc.body)
		}
	}
}

func TestReadyzFailsOnRequiredCheck(t *testing.T) {
	h := New(Options{Checks: []Check{{Name: "bus", Required: true, Check: func(context.Context) error { return errors.New("broker down") }}}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "broker down") {
		t.Fatalf("readyz = %d %s", rec.Code, rec.Body.String())
	}
}

func TestCORS(t *testing.T) {
	h := New(Options{AllowedOrigins: []string{"https://app.example.org"}})
	req := httptest.NewRequest("OPTIONS", "/summary", nil)
	req.Header.Set("Origin", "https://app.example.org")
	req.Header.Set("Access-Control-Request-Method", "POST")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusNoContent || rec.Header().Get("Access-Control-Allow-Origin") != "https://app.example.org" {
		t.Fatalf("preflight = %d %v", rec.Code, rec.Header())
	}
	req = httptest.NewRequest("GET", "/", nil)
	req.Header.Set("Origin", "https://evil.example")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if got := rec.Header().Get("Access-Control-Allow-Origin"); got != "" {
		t.Fatalf("foreign origin got ACAO %q", got)
	}
	for _, tc := range []struct {
		allowed []string
		origin  string
		want    bool
	}{
		{nil, "https://x", true},
		{[]string{"*"}, "https://x", true},
		{[]string{"https://A.example/"}, "https://a.example", true},
		{[]string{"https://a.example"}, "https://b.example", false},
	} {
		if got := OriginAllowed(tc.allowed, tc.origin); got != tc.want {
			t.Errorf("OriginAllowed(%v, %q) = %v", tc.allowed, tc.origin, got)
		}
	}
}
