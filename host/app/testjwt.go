package app

import (
	"net/http"
	"time"

	"github.com/clowdr/realtime/host/auth"
	"github.com/clowdr/realtime/host/httpapi"
)

// testJWTRoute is the original's GET /test/jwt?userId=U&confSlug=S (§8.3): a
// token signed with the first TEST_JWKS key, for load-test clients. It exists
// only when TEST_JWKS is set.
func testJWTRoute(v *auth.Verifier) (httpapi.Route, bool) {
	if v.Mode() != auth.ModeTest || !v.CanSign() {
		return httpapi.Route{}, false
	}
	return httpapi.Route{Method: http.MethodGet, Path: "/test/jwt", Owner: "host", Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		q := r.URL.Query()
		for _, p := range []string{"userId", "confSlug"} {
			if q.Get(p) == "" {
				w.WriteHeader(http.StatusInternalServerError)
				_, _ = w.Write([]byte("Error: Missing " + p + " query parameter"))
				return
			}
		}
		tok, err := v.Sign(q.Get("userId"), 30*time.Minute, map[string]any{
			"aud": []string{"hasura", "https://clowdr.eu.auth0.com/userinfo"},
			"iss": "https://auth.midspace.app/",
		})
		if err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("Test JWKs not available"))
			return
		}
		_, _ = w.Write([]byte(tok))
	})}, true
}
