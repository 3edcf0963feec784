package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/clowdr/realtime/host/config"
)

// Refusal codes and messages, sent to the client in CONNECT_ERROR exactly as
// the original service did.
const (
	CodeCredentialsRequired = "credentials_required"
	CodeInvalidToken        = "invalid_token"
	MessageNoToken          = "no token provided"
	MessageInvalidToken     = "Unauthorized: Token is missing or invalid Bearer"
)

// HasuraClaimsKey is the claim that holds the Hasura claims object.
const HasuraClaimsKey = "https://hasura.io/jwt/claims"

// Modes reported by Verifier.Mode.
const (
	ModeAuth0 = "auth0"
	ModeTest  = "test"
	ModeDev   = "dev"
)

// Refusal reasons (Refusal.Reason, the reason label of
// realtime_auth_failures_total).
const (
	ReasonNoToken         = "no_token"
	ReasonTooLarge        = "too_large"
	ReasonMalformed       = "malformed"
	ReasonBadAlgorithm    = "bad_algorithm"
	ReasonBadSignature    = "bad_signature"
	ReasonExpired         = "expired"
	ReasonNotYetValid     = "not_yet_valid"
	ReasonIssuer          = "issuer"
	ReasonAudience        = "audience"
	ReasonUnknownKID      = "unknown_kid"
	ReasonJWKSUnavailable = "jwks_unavailable"
	ReasonTimeout         = "timeout"
	ReasonInvalidClaims   = "invalid_claims"
	ReasonInternal        = "internal"
)

const (
	// verifyBudget bounds how long Verify waits for a JWKS fetch.
	verifyBudget = 800 * time.Millisecond
	// maxTokenLen bounds the accepted token size.
	maxTokenLen = 16 << 10
	// DefaultJWKSTimeout is used when AuthConfig.JWKSTimeout is zero.
	DefaultJWKSTimeout = 3 * time.Second
	// DefaultRefreshInterval is used when AuthConfig.JWKSRefreshInterval is zero.
	DefaultRefreshInterval = 30 * time.Second
	// failedFetchBackoff is the most time a miss waits to retry after a failed fetch.
	failedFetchBackoff = 5 * time.Second
	// staleAfter is the age after which a cached JWKS is refreshed in the background.
	staleAfter = 10 * time.Minute
)

// Identity is who a verified token belongs to.
type Identity struct {
	// UserID is claims[HasuraClaimsKey]["x-hasura-user-id"].
	UserID string
	// Subject is the "sub" claim ("" when absent).
	Subject string
	// Claims is the Hasura claims object (nil when absent).
	Claims map[string]any
	// ExpiresAt is the "exp" claim (zero when absent).
	ExpiresAt time.Time
}

// Refusal is a refused token. Code and Message go to the client; Reason and
// Err stay on the server.
type Refusal struct {
	// Code is CodeCredentialsRequired or CodeInvalidToken.
	Code string
	// Message is MessageNoToken or MessageInvalidToken.
	Message string
	// Reason is a short bounded label (Reason* constants), never sent.
	Reason string
	// Err is the underlying cause, if any, never sent.
	Err error
}

// Error implements error.
func (r *Refusal) Error() string {
	if r.Err != nil {
		return fmt.Sprintf("auth: token refused (%s, %s): %v", r.Code, r.Reason, r.Err)
	}
	return fmt.Sprintf("auth: token refused (%s, %s)", r.Code, r.Reason)
}

// Unwrap returns the underlying cause.
func (r *Refusal) Unwrap() error { return r.Err }

// ErrNoHasuraClaims means the token is valid but carries no Hasura claims
// object or an empty x-hasura-user-id. The host acknowledges CONNECT and then
// disconnects the socket (40 then 41).
var ErrNoHasuraClaims = errors.New("auth: token has no Hasura claims or no x-hasura-user-id")

// ErrCannotSign is returned by Sign when no private key is available.
var ErrCannotSign = errors.New("auth: no private signing key (dev mode or TEST_JWKS with private parts needed)")

// Internal causes, classified into reasons.
var (
	errUnknownKID      = errors.New("no key for this kid")
	errJWKSUnavailable = errors.New("JWKS unavailable")
	errJWKSTimeout     = errors.New("timed out waiting for the JWKS")
)

// Verifier checks tokens. It is safe for concurrent use.
type Verifier struct {
	cfg    config.AuthConfig
	mode   string
	logger *slog.Logger
	m      *metrics
	local  []*jwk
	byKID  map[string]*jwk
	remote *remoteKeys
	parser *jwt.Parser
	// now is the clock (tests replace it).
	now func() time.Time

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// New builds a Verifier. In auth0 mode it starts fetching the JWKS in the
// background; call Close to stop. reg may be nil.
func New(cfg config.AuthConfig, logger *slog.Logger, reg prometheus.Registerer) (*Verifier, error) {
	return newVerifier(cfg, logger, reg, time.Now)
}

// newVerifier is New with a clock.
func newVerifier(cfg config.AuthConfig, logger *slog.Logger, reg prometheus.Registerer, now func() time.Time) (*Verifier, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "auth")
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	v := &Verifier{cfg: cfg, logger: logger, m: m, byKID: map[string]*jwk{}, now: now}

	remoteURL, err := jwksURL(cfg)
	if err != nil {
		return nil, err
	}
	switch {
	case remoteURL != "":
		v.mode = ModeAuth0
	case strings.TrimSpace(cfg.TestJWKS) != "":
		v.mode = ModeTest
	default:
		v.mode = ModeDev
	}

	if strings.TrimSpace(cfg.TestJWKS) != "" {
		keys, err := parseKeySet([]byte(cfg.TestJWKS), logger)
		if err != nil {
			return nil, fmt.Errorf("auth: test_jwks (TEST_JWKS): %w", err)
		}
		v.setLocal(keys)
	}
	if v.mode == ModeDev {
		if err := v.loadDevKeys(); err != nil {
			return nil, err
		}
	}

	opts := []jwt.ParserOption{
		jwt.WithValidMethods([]string{jwt.SigningMethodRS256.Alg()}),
		jwt.WithTimeFunc(func() time.Time { return v.now() }),
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	v.parser = jwt.NewParser(opts...)

	if remoteURL != "" {
		ctx, cancel := context.WithCancel(context.Background())
		v.cancel = cancel
		timeout := cfg.JWKSTimeout
		if timeout <= 0 {
			timeout = DefaultJWKSTimeout
		}
		interval := cfg.JWKSRefreshInterval
		if interval <= 0 {
			interval = DefaultRefreshInterval
		}
		v.remote = newRemoteKeys(ctx, &v.wg, remoteURL, timeout, interval, logger, m, func() time.Time { return v.now() })
		v.remote.prefetch()
		logger.Info("auth: verifying tokens against JWKS", "url", remoteURL, "test_keys", len(v.local))
	} else if v.mode == ModeTest {
		logger.Info("auth: verifying tokens against TEST_JWKS only", "keys", len(v.local))
	}
	return v, nil
}

// setLocal installs TEST_JWKS or dev keys.
func (v *Verifier) setLocal(keys []*jwk) {
	v.local = keys
	for _, k := range keys {
		if k.kid != "" {
			if _, dup := v.byKID[k.kid]; !dup {
				v.byKID[k.kid] = k
			}
		}
	}
}

// loadDevKeys loads or creates the dev key set.
func (v *Verifier) loadDevKeys() error {
	path := v.cfg.DevKeyFile
	var data []byte
	var err error
	if path != "" {
		data, err = DevKeySet(path)
		if err != nil {
			return fmt.Errorf("auth: dev key set: %w", err)
		}
	} else {
		path, err = DefaultDevKeyFile()
		if err == nil {
			data, err = DevKeySet(path)
		}
		if err != nil {
			fallback := filepath.Join(os.TempDir(), "realtime-dev-jwks.json")
			v.logger.Warn("auth: cannot use the default dev key file, using the temporary directory",
				"path", path, "error", err, "fallback", fallback)
			path = fallback
			data, err = DevKeySet(path)
			if err != nil {
				return fmt.Errorf("auth: dev key set: %w", err)
			}
		}
	}
	keys, err := parseKeySet(data, v.logger)
	if err != nil {
		return fmt.Errorf("auth: dev key set %s: %w", path, err)
	}
	v.setLocal(keys)
	v.logger.Warn("auth: DEV MODE: no auth0_domain, jwks_url or test_jwks configured; "+
		"tokens are DEV TOKENS signed with a local key and NOTHING IS SECURE. Do not use in production.",
		"dev_key_file", path)
	return nil
}

// jwksURL returns the remote JWKS address ("" when none is configured).
func jwksURL(cfg config.AuthConfig) (string, error) {
	raw := strings.TrimSpace(cfg.JWKSURL)
	if raw == "" {
		d := strings.TrimSpace(cfg.Auth0Domain)
		if d == "" {
			return "", nil
		}
		if !strings.Contains(d, "://") {
			d = "https://" + d
		}
		raw = strings.TrimRight(d, "/") + "/.well-known/jwks.json"
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", fmt.Errorf("auth: JWKS address %q: %w", raw, err)
	}
	if (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return "", fmt.Errorf("auth: JWKS address %q: want an http(s) URL with a host", raw)
	}
	return u.String(), nil
}

// Mode is "auth0", "test" or "dev".
func (v *Verifier) Mode() string { return v.mode }

// Ready returns nil when tokens can be verified: local keys are present, or
// the JWKS was fetched successfully at least once. Otherwise it reports the
// last fetch error (and starts a new fetch if none is running and the last
// attempt is old enough).
func (v *Verifier) Ready() error {
	if len(v.local) > 0 {
		return nil
	}
	if v.remote == nil {
		return errors.New("auth: no keys")
	}
	return v.remote.ready()
}

// Close stops background JWKS fetches and waits for them. Verify keeps
// working with the cached keys.
func (v *Verifier) Close() error {
	v.closeOnce.Do(func() {
		if v.remote != nil {
			v.remote.close()
		}
		if v.cancel != nil {
			v.cancel()
		}
		v.wg.Wait()
	})
	return nil
}

// Verify checks the token in auth, the JSON payload of the Socket.IO CONNECT
// packet ({"token":"<jwt>"}). It returns a *Refusal for a refused token, or
// ErrNoHasuraClaims (with the partial Identity) for a valid token without a
// user id. It returns within about a second whatever happens.
func (v *Verifier) Verify(ctx context.Context, auth json.RawMessage) (id Identity, err error) {
	defer func() {
		if r := recover(); r != nil {
			id = Identity{}
			err = v.refuse(ReasonInternal, fmt.Errorf("panic: %v", r))
		}
	}()
	token, ok := tokenFrom(auth)
	if !ok {
		return Identity{}, v.refuse(ReasonNoToken, nil)
	}
	if len(token) > maxTokenLen {
		return Identity{}, v.refuse(ReasonTooLarge, fmt.Errorf("token of %d bytes", len(token)))
	}
	if ctx == nil {
		ctx = context.Background()
	}
	deadline := time.Now().Add(verifyBudget)
	claims := jwt.MapClaims{}
	tok, perr := v.parser.ParseWithClaims(token, claims, v.keyFunc(ctx, deadline))
	if perr != nil {
		return Identity{}, v.refuse(classify(tok, perr), perr)
	}
	id = identityFrom(claims)
	if id.UserID == "" {
		v.m.failure("no_hasura_claims", "no_hasura_claims")
		return id, ErrNoHasuraClaims
	}
	return id, nil
}

// tokenFrom extracts a non-empty string "token" from the CONNECT payload.
func tokenFrom(auth json.RawMessage) (string, bool) {
	if len(auth) == 0 {
		return "", false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(auth, &obj); err != nil || obj == nil {
		return "", false
	}
	raw, ok := obj["token"]
	if !ok {
		return "", false
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil || s == "" {
		return "", false
	}
	return s, true
}

// identityFrom reads the identity out of verified claims.
func identityFrom(c jwt.MapClaims) Identity {
	var id Identity
	if sub, ok := c["sub"].(string); ok {
		id.Subject = sub
	}
	if exp, err := c.GetExpirationTime(); err == nil && exp != nil {
		id.ExpiresAt = exp.Time
	}
	if h, ok := c[HasuraClaimsKey].(map[string]any); ok {
		id.Claims = h
		if uid, ok := h["x-hasura-user-id"].(string); ok {
			id.UserID = uid
		}
	}
	return id
}

// keyFunc finds the verification key(s) for a token.
func (v *Verifier) keyFunc(ctx context.Context, deadline time.Time) jwt.Keyfunc {
	return func(t *jwt.Token) (any, error) {
		var kid string
		if raw, present := t.Header["kid"]; present && raw != nil {
			s, ok := raw.(string)
			if !ok {
				return nil, fmt.Errorf("%w: kid is not a string", errUnknownKID)
			}
			kid = s
		}
		if kid == "" {
			if len(v.local) > 0 {
				set := jwt.VerificationKeySet{Keys: make([]jwt.VerificationKey, 0, len(v.local))}
				for _, k := range v.local {
					set.Keys = append(set.Keys, k.pub)
				}
				return set, nil
			}
		} else if k, ok := v.byKID[kid]; ok {
			return k.pub, nil
		}
		if v.remote == nil {
			return nil, errUnknownKID
		}
		wctx, cancel := context.WithDeadline(ctx, deadline)
		defer cancel()
		return v.remote.get(wctx, kid)
	}
}

// classify maps a parse error to a reason.
func classify(tok *jwt.Token, err error) string {
	switch {
	case errors.Is(err, errJWKSTimeout):
		return ReasonTimeout
	case errors.Is(err, errJWKSUnavailable):
		return ReasonJWKSUnavailable
	case errors.Is(err, errUnknownKID):
		return ReasonUnknownKID
	case errors.Is(err, jwt.ErrTokenMalformed):
		return ReasonMalformed
	}
	if tok != nil {
		if alg, _ := tok.Header["alg"].(string); alg != jwt.SigningMethodRS256.Alg() {
			return ReasonBadAlgorithm
		}
	}
	switch {
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return ReasonBadSignature
	case errors.Is(err, jwt.ErrTokenExpired):
		return ReasonExpired
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return ReasonNotYetValid
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return ReasonAudience
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		// Only iss/aud checks make claims required.
		if strings.Contains(err.Error(), "aud") {
			return ReasonAudience
		}
		return ReasonIssuer
	case errors.Is(err, jwt.ErrTokenInvalidClaims):
		return ReasonInvalidClaims
	}
	return ReasonMalformed
}

// refuse builds a Refusal and counts it.
func (v *Verifier) refuse(reason string, cause error) *Refusal {
	r := &Refusal{Code: CodeInvalidToken, Message: MessageInvalidToken, Reason: reason, Err: cause}
	if reason == ReasonNoToken {
		r.Code, r.Message = CodeCredentialsRequired, MessageNoToken
	}
	v.m.failure(r.Code, reason)
	v.logger.Debug("auth: token refused", "code", r.Code, "reason", reason, "error", cause)
	return r
}
