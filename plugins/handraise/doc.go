// Package handraise is the hand-raise plugin: attendees of an event raise and
// lower their hands, the event's chairs accept or reject them, and observers
// get every change live. It is wire-compatible with the original Node service
// (spec/original-service.md §4.4, §7.4, §8.3 /event/ended) with its gaps
// fixed (see "Fixes"). It registers itself as the built-in plugin
// "handraise"; it is a compact model of a plugin with events, rooms, a
// Redis structure, a secret-guarded webhook and an optional Hasura call.
//
// # Events (client to server)
//
// Every argument is positional; no handler answers an ack callback, and a
// refusal or bad input is only logged (§4.0).
//
//	event.handRaise.raise(eventId)              access; ZADD NX key now userId; broadcast raised
//	event.handRaise.lower(eventId)              access; ZREM key userId; broadcast lowered
//	event.handRaise.fetch(eventId)              access; join the room; emit listing to this socket only
//	event.handRaise.accept(eventId, targetUserId) access + chair; [Hasura upsert]; ZREM key target; broadcast accepted
//	event.handRaise.reject(eventId, targetUserId) access + chair; ZREM key target; broadcast rejected
//	event.handRaise.observe(eventId)            access; join the room
//	event.handRaise.unobserve(eventId)          leave the room (no check)
//
// "access" is Directory.CanAccessEvent(socket, eventId) (§7.4); "chair" is
// Directory.IsEventChair(socket, eventId) (the static directory answers from
// directory.chairs, the hasura one from the event's program people).
// userId is always the socket's verified user, never a payload field.
//
// Input checks: a falsy argument (missing, null, false, 0, "") is silently
// ignored (the original's truthiness guard); a non-string, an eventId that
// is not a uuid@8-valid UUID, or a targetUserId over 256 bytes is ignored
// with a warning.
//
// # Broadcasts (server to client)
//
// To the room event:event.<eventId>.handRaise.update unless noted:
//
//	event.handRaise.raised    {eventId, userId}
//	event.handRaise.lowered   {eventId, userId}
//	event.handRaise.accepted  {eventId, userId: targetUserId, eventPerson}
//	event.handRaise.rejected  {eventId, userId: targetUserId}
//	event.handRaise.listing   {eventId, userIds: [oldest raise first]}   to the fetching socket only
//
// eventPerson is {id, eventId, roleName: "PARTICIPANT", person: {id, name,
// affiliation, registrantId}} when graphql_url is set, else null (see
// "Accept and Hasura").
//
// # Redis keys
//
//	event:event.<eventId>.handRaise.users   ZSET  member userId, score raise time (Unix ms)   TTL hand_ttl, renewed on raise
//
// A listing carries at most 10000 ids. Disconnect does not touch hands: a
// raised hand survives its user's disconnect, as in the original.
//
// # HTTP: POST /event/ended
//
// The Hasura action notifyEventEnded(eventId), called by the actions service
// when an event ends. The body is {action: {name}, input: {eventId},
// session_variables?} (at most 100 kB). The header x-hasura-event-secret is
// compared in constant time with event_secret:
//
//	missing or wrong header, or no event_secret configured   401 {}
//	bad payload (shape, non-string or non-UUID eventId)       500 {"ok":false}
//	ok: DEL the event's key                                   200 {"ok":true}
//
// On success the plugin also broadcasts listing {eventId, userIds: []} to the
// room, so observers still on the page clear their list (not in the
// original, which left them showing stale hands until reload).
//
// # Accept and Hasura
//
// Without graphql_url (the static directory: the host injects graphql_url
// and admin_secret only when Hasura is the directory) accept removes the
// hand and broadcasts accepted with eventPerson null; making the person a
// participant of the event is left to the chair's UI. With graphql_url (and admin_secret), accept does what the
// original did, best effort against the 2021 schema: it reads the event's
// conferenceId (schedule_Event_by_pk), looks up the target's
// collection_ProgramPerson and registrant_Registrant in that conference, and
// upserts a schedule_EventProgramPerson {eventId, personId | nested new person
// {conferenceId, name: displayName, registrantId}, roleName: PARTICIPANT} on
// conflict EventProgramPerson_eventId_personId_roleName_key. When the target
// has neither a person nor a registrant, or the event does not exist, nothing
// happens (as the original: no ZREM, no broadcast). A Hasura failure is
// logged and nothing happens either; the chair can retry.
//
// # Fixes versus the original
//
//   - Only chairs accept or reject: the original's "TODO: Enforce event
//     person role" let any attendee do so. require_chair: false restores the
//     old behaviour.
//   - A reconnected observer keeps receiving updates: the 2021 client
//     re-sends only fetch (not observe) after a reconnect, so fetch (re)joins
//     the room, after the access check and before reading the list, so no
//     change between the two is missed.
//   - eventId must be a UUID (the original let Hasura fail on it).
//   - Raising twice keeps the first raise time (ZADD NX), so a client that
//     re-sends raise does not lose its place in the queue.
//   - The key has a TTL (hand_ttl), so events whose end is never notified do
//     not leak hands forever.
//   - /event/ended also clears the observers' lists (broadcast above).
//
// # Config (plugins.handraise.config, all optional)
//
//	event_secret   string    secret of /event/ended (the host injects EVENT_SECRET); "" refuses all
//	require_chair  bool      true; accept and reject need Directory.IsEventChair
//	hand_ttl       duration  "24h"; lifetime of an event's hands after the last raise, in [1m, 720h]
//	graphql_url    string    "" ; Hasura GraphQL URL for accept's participant upsert
//	admin_secret   string    "" ; sent as x-hasura-admin-secret to graphql_url
//
// Unknown keys and bad values fail Start with an error naming the key.
package handraise
