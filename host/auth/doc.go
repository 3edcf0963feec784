// Package auth verifies the RS256 JSON Web Token that a Socket.IO client puts
// in its CONNECT payload as {"token":"<jwt>"} (socket.handshake.auth.token in
// the original Node service), and signs test tokens.
//
// # Modes
//
// The Verifier picks its key sources from config.AuthConfig:
//
//   - "auth0": Auth0Domain or JWKSURL is set. Keys come from the JWKS at
//     JWKSURL, or https://<Auth0Domain>/.well-known/jwks.json. The set is
//     fetched in the background when the Verifier is created, cached, and
//     refetched when a token names an unknown kid: at most one such fetch per
//     JWKSRefreshInterval (30 s when zero), shared by all concurrent misses.
//     After a failed fetch a miss may retry sooner (after at most 5 s). A
//     failed fetch never drops cached keys, so an unreachable JWKS does not
//     break tokens whose kid is already known. A cached set older than ten
//     minutes is refreshed in the background while still being used. Keys in
//     TestJWKS, if any, are tried first.
//   - "test": only TestJWKS (env TEST_JWKS, {"keys":[JWK...]}) is set. Only
//     those keys are used. If its first key carries private parts, Sign works
//     (the original's GET /test/jwt).
//   - "dev": nothing is configured. A key set with a private key is created
//     once at DevKeyFile (or DefaultDevKeyFile, falling back to the temporary
//     directory) and reused, so tokens from Sign survive restarts. Anyone who
//     can read that file can mint tokens: a loud warning is logged.
//
// Only RSA keys whose "use" is "sig" or empty (and whose "alg", when given,
// is RS256) are used. Only RS256 tokens are accepted. Signature, exp and nbf
// (when present, without leeway) are checked, and iss and aud when
// AuthConfig.Issuer / AuthConfig.Audience are set. A token whose header has
// no kid is checked against every TestJWKS / dev key, or against the JWKS key
// when the fetched set holds exactly one.
//
// # Refusals
//
// Verify never panics and answers within a second. A refused token gives a
// *Refusal whose Code and Message are sent to the client in the Socket.IO
// CONNECT_ERROR packet, exactly as the original did:
//
//   - Code "credentials_required", Message "no token provided": the payload
//     has no "token", or it is not a string, or it is empty.
//   - Code "invalid_token", Message "Unauthorized: Token is missing or invalid
//     Bearer": everything else (malformed, wrong algorithm, bad signature,
//     expired, not yet valid, unknown kid, JWKS unreachable or slow, wrong
//     issuer or audience). The client detects refused tokens by this text.
//
// Refusal.Reason is a short, bounded label (for logs and the
// realtime_auth_failures_total metric) that is never sent to the client.
//
// A valid token without the "https://hasura.io/jwt/claims" object, or with an
// empty x-hasura-user-id, gives ErrNoHasuraClaims: the host then acknowledges
// CONNECT and disconnects at once (40 then 41), as the original did.
package auth
