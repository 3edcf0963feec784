// Package kit holds the small pieces that several feature plugins
// (analytics, chat, handraise, push, admin) share, so each is written once:
//
//   - config decoding: [Duration], a time.Duration read from a Go duration
//     string, and [DecodeConfig], a strict JSON decoder whose errors name
//     the offending key;
//   - Hasura: [Hasura.Do], one bounded GraphQL POST with the admin secret;
//   - webhooks: [EventSecretOK] and [SecretEqual], constant-time secret
//     checks, and [TextResponse]/[JSONHeader] for the plain answers;
//   - [ValidUUID], the uuid@8 validate check the original applied to ids.
//
// It is internal to plugins/: it is no part of the plugin contract
// (plugins/sdk), and it has no state.
package kit
