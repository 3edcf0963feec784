// Package store is the host's shared state: Redis through go-redis v9, or an
// embedded Redis (alicebob/miniredis) when no URL is configured, so that
// `go run ./cmd/realtime` needs nothing installed.
//
// # Behaviour
//
//   - Replies are RESP2-shaped (the client speaks protocol 2): int64, string,
//     []any, nil. A nil reply from Do or Eval is sdk.ErrNil.
//   - Context deadlines are honoured (ContextTimeoutEnabled) and every command is
//     also bounded by redis.timeout.
//   - New never fails because Redis is down: the host starts, Ready reports the
//     outage, and go-redis redials on its own when the server is back.
//   - Eval caches one *redis.Script per script text (bounded) and runs it with
//     EVALSHA, falling back to EVAL on NOSCRIPT (e.g. after a Redis restart).
//   - The embedded server listens on 127.0.0.1:<random>. miniredis does not
//     expire keys by itself; the store enables its ClockTTL mode, in which every
//     command first advances all TTLs by the wall-clock time elapsed since the
//     previous one. Keys with EXPIRE/PEXPIRE/SET PX therefore expire in real time
//     (lazily: on the next command, which is all a client can observe). No
//     goroutine is needed. miniredis has no CONFIG, CLIENT, keyspace
//     notifications or cluster; its data is lost on exit.
//
// # Keys
//
// Every Redis key the host and the built-in plugins use is listed here. Key
// names the original Node service used keep their names (other systems read
// them); ours are prefixed rt:.
//
//	key                                   type    TTL                       written by
//	rt:instances                          ZSET    none (pruned by readers)  store.Heartbeat (member = instance id, score = last heartbeat, unix ms); dead ids removed by store.Instances
//	rt:instance:<instanceId>              HASH    redis.instance_ttl        store.Heartbeat (field heartbeat = unix ms, plus the instance's info)
//	caches:<Name>:<key>                   STRING  directory.cache_ttl       directory (hasura): JSON {fetchedAt, value}; Name = ConferenceSlugs, UserPermission, ChatInfo, RegistrantInfo, EventInfo, EventChairs
//	caches:<Name>:<key>:refetch           STRING  30 s                      directory (hasura): rate limit of forced refetches
//	PresenceList:<listId> ...             -       see plugins/presence      presence plugin (the original's names, §10 of the spec)
//	chat:..., event:..., analytics...     -       see the plugins           chat and other plugins (the original's names)
//
// Plugins document their own keys in their package docs; the table above is the
// host's part.
package store
