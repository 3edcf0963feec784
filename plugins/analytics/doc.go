// Package analytics is the view-count plugin: clients report that they viewed
// a content item, element or HLS stream; the plugin counts the views in Redis
// and, in hasura mode, periodically adds them to Hasura's stats tables. It is
// wire-compatible with the original Node service (spec/original-service.md
// §4.5) with its gaps fixed (see "Fixes"). It registers itself as the
// built-in plugin "analytics"; it is the model of a plugin with per-socket
// limits and a crash-safe periodic writeback.
//
// # Event (client to server)
//
//	analytics.view.count({identifier, contentType})
//
// identifier must be a uuid@8-valid UUID string and contentType exactly
// "Item", "Element" or "Room.HLSStream"; both keys are required, extra keys
// are allowed and ignored (typescript-is semantics, §4.0). A falsy argument
// is silently ignored; an invalid one is logged. No ack is ever answered and
// nothing is emitted.
//
// A valid view is counted (INCR analytics.view.count:<contentType>:<identifier>,
// identifier lower-cased) when:
//   - the socket has at least one conference (Socket.ConferenceSlugs). The
//     Directory has no content-level check, so this is the only permission
//     check: any signed-in member of some conference can count views of any
//     content id (the original checked nothing at all);
//   - the same socket did not count the same content within dedupe_window
//     (default 60 s), so one tab cannot inflate a count by re-sending;
//   - the socket's rate limit allows it (views_per_second, default 1, burst
//     view_burst, default 5). A rate-limited view is dropped, not remembered.
//
// The per-socket limiter and dedupe memory live in the plugin process
// (a socket lives on one instance), are bounded to 512 entries per socket
// and are dropped on disconnect; a plugin restart forgets them.
//
// # Writeback (hasura mode only)
//
// Without graphql_url nothing is written back: counts accumulate in Redis
// (and a later process with graphql_url writes them). With graphql_url (the
// host injects it, and admin_secret, in hasura mode) a round runs at Start
// and then every writeback_interval (default 60 s):
//
//  1. take the lock rt:analytics:writeback.lock (SET NX PX 150 s, value
//     "<instance>/<random>"); if another instance holds it, skip the round;
//  2. SCAN analytics.view.count:* and, per SCAN page, run one Lua script that
//     moves each counter into the in-flight hash rt:analytics:inflight:
//     HINCRBY inflight <key> n; DECRBY <key> n; DEL <key> at 0. Views counted
//     meanwhile simply start a new counter: nothing is lost or double-moved;
//  3. HSCAN the in-flight hash (including what an earlier round or a dead
//     process left there) and write it in batches of 500: the original's
//     SelectViewCounts (rows of the same contents created within the last
//     hour) then InsertViewCounts (insert_analytics_ContentItemStats /
//     ContentElementStats / RoomStats on conflict <Table>_pkey, updating
//     viewCount / hlsViewCount): a recent row gets its count plus the delta,
//     other contents get a new row;
//  4. only when Hasura confirmed a batch (2xx, no GraphQL errors, every
//     affected_rows present) subtract it from the in-flight hash (a Lua
//     script: HINCRBY -n, HDEL at 0). A failed batch stays in flight and is
//     retried by the next round, on whichever instance takes the lock;
//  5. release the lock (only if still ours).
//
// Guarantees: a count is never lost while Redis keeps its data. Delivery to
// Hasura is at-least-once: a process that dies (or a round that times out)
// after Hasura applied a batch but before step 4 leaves the batch in flight,
// and it is written again. The in-flight hash is shared by all instances,
// rather than one per instance, because instance ids change with every
// process start: a per-instance hash of a crashed process would never be
// retried. The lock keeps two instances from doing the read-modify-write of
// step 3 on the same rows at once (which would lose one's delta). A round is
// bounded to 2 min, 20000 counters and 20000 in-flight entries; the rest
// waits for the next round. In-flight entries that can never be written
// (unknown content type, bad identifier or count) are deleted with an error
// log; counters that are not positive integers are left alone (a "0" left by
// the original's GETSET is deleted).
//
// The GraphQL text follows the original's 2022 worker (column names itemId,
// elementId, roomId, viewCount, hlsViewCount, created_at); it is untested
// against a real Hasura.
//
// # Redis keys
//
//	analytics.view.count:<type>:<id>   STRING  views not yet moved             no TTL (moved every round)
//	rt:analytics:inflight              HASH    counter key -> count in flight  no TTL (emptied on success)
//	rt:analytics:writeback.lock        STRING  holder token                    150 s
//
// # Fixes versus the original
//
//   - The original's writeback did GETSET key "0" and then wrote to Hasura:
//     any failure lost those counts, and "0" keys piled up. Here counts move
//     to an in-flight hash and leave it only when Hasura confirmed them.
//   - Only one instance writes back at a time (the original ran the worker
//     in every web process, racing on the same rows).
//   - Views need a conference, are deduplicated per socket and content, and
//     are rate limited per socket (the original counted anything anyone sent).
//   - identifier is UUID-validated and lower-cased.
//
// # Config (plugins.analytics.config, all optional)
//
//	graphql_url         string    "" ; Hasura GraphQL URL (host-injected in hasura mode); "" = no writeback
//	admin_secret        string    "" ; x-hasura-admin-secret (host-injected)
//	writeback_interval  duration  "60s"; time between rounds, in [1s, 24h]
//	views_per_second    number    1; per-socket sustained rate of counted views, in (0, 1000]
//	view_burst          int       5; per-socket burst, in [1, 1000]
//	dedupe_window       duration  "60s"; per-socket dedupe of one content, in [0s, 24h]; "0s" = off
//
// Unknown keys and bad values fail Start with an error naming the key.
package analytics
