// Package directory answers who a user is and what they may see: the
// conferences a user belongs to (resolved before a socket's CONNECT is
// answered), chat read/write permissions, registrants, event access and event
// chairs. It implements sdk.Directory with two backends, chosen by
// directory.backend:
//
//   - static: from config alone, for local runs and tests (see Static for its
//     rules; TEST_MODE gives every user the conference "test-conference-slug").
//   - hasura: Clowdr's Hasura GraphQL API at
//     http(s)://<graphql_domain>/v1/graphql with the x-hasura-admin-secret
//     header, using the original service's queries (queries.go) and its
//     permission rules (§7 of the spec), with these differences:
//   - cached answers really expire after directory.cache_ttl (the original set
//     a ~52-year TTL by mistake); "not found" is cached for a fifth of it, at
//     most 30 s;
//   - a negative permission answer from the cache is re-checked against Hasura
//     once, as the original did, but at most once per 10 s per entry across
//     all instances (a marker key), so a client cannot turn denied requests
//     into a stream of GraphQL queries;
//   - concurrent lookups of one entry in a process share one request; every
//     request is bounded (5 s) and its failure is an error, never "allowed";
//   - ids that cannot be Hasura uuids are answered "no" without a request;
//   - IsEventChair is enforced: CONFERENCE_MANAGE_SCHEDULE in the event's
//     conference, or program person with role CHAIR (the original had none).
//
// # Cache
//
// Entries live in the Store at caches:<Name>:<key> in the original's format,
// JSON {"fetchedAt": <unix ms>, "value": "<JSON of the value>" | "undefined"},
// with a PX TTL. Names (the Cache* constants): ConferenceSlugs and
// UserPermission by user id, ChatInfo by chat id, RegistrantInfo by registrant
// id, EventInfo and EventChairs by event id. Values have the original's shapes
// (§7.1), e.g. ChatInfo {restrictToAdmins, conference{id,slug,shortName},
// items[], rooms[{id,name,managementMode,people[{registrantId,userId}]}]}.
// Entries are dropped early by POST /directory/invalidate (InvalidateHandler,
// guarded by EVENT_SECRET): an explicit {"cache","key"}, or a Hasura event
// trigger on registrant_Registrant, chat_Chat or schedule_Event. Without it an
// entry lives out its TTL. A Store outage only costs the cache: lookups then
// go to Hasura directly.
//
// # Circuit breaker
//
// A Hasura that is down or hangs would make every cache miss (every CONNECT
// of a user whose conferences are not cached) wait for the request timeout,
// while sending one more request to a Hasura already in trouble. So the HTTP
// request goes through a circuit breaker (breaker.go, sony/gobreaker): after
// 5 consecutive failures that mean Hasura is not answering well (transport
// errors, timeouts, HTTP 5xx and 429) it opens for 2 s, and lookups that miss
// the cache fail at once with an error wrapping ErrHasuraUnavailable
// ("directory: <op>: hasura unavailable: circuit open after 5 consecutive
// failures; next try in 1.4s"), without a request. Then one probe goes
// through (half-open; other lookups are still refused): if Hasura answers it
// closes, else it opens for another 2 s. An answer that shows Hasura working
// (a 4xx, a GraphQL error, a body that does not decode) counts as a success,
// and a caller cancelling counts as nothing. Cached answers never reach the
// breaker, so they keep working. WithBreaker changes the two numbers. State
// changes are logged: the opening at Warn, a failed probe at Warn for the
// first 3 of an outage and then every 30th (about once a minute; the others
// at Debug), half-open at Debug, the closing at Info. The breaker shows in
// Ready's message, in realtime_directory_breaker_open and as
// result "breaker_open" of realtime_directory_requests_total.
//
// # Health
//
// Both backends have Ready (for /readyz; Hasura's reports whether the latest
// query failed, the host lists it without failing readiness on it) and
// RegisterMetrics: realtime_directory_up, realtime_directory_requests_total
// {query,result} and realtime_directory_cache_total{cache,result} (metrics.go).
package directory
