// Package presence is the presence plugin: who is on which page, across every
// host instance, wire-compatible with the original Clowdr realtime service
// (spec §4.2, §5, §15) with its bugs fixed: no Redlock, no ghosts after a
// crash, and the browser client's list id formula for non-conference pages.
//
// It registers itself as the built-in plugin "presence".
//
// # Events
//
// Client to server; each takes ONE string argument (extra arguments are
// ignored, no event is acked):
//
//	enterPage(path)            the socket is present on the page
//	pagePresence(path)         same (the ping-based client's name)
//	leavePage(path)            the socket is not on the page any more
//	pageUnpresence(path)       same
//	observePage(path)          join room PresenceQueue:<listId>, then get "presences"
//	unobservePage(path)        leave that room
//	conferencePresence(slug)   enter the conference-wide list <slug>
//	observeConference(slug)    observe the conference-wide list <slug>
//	unobserveConference(slug)  unobserve it
//
// An argument that is not a JSON string, is empty, is not valid UTF-8, is
// longer than max_path_bytes, or names a conference that is not among the
// socket's ConferenceSlugs is ignored: the plugin logs it (socket id, event,
// reason) and sends nothing to the client, as the original did. Each socket's
// presence events are rate-limited (events_per_second, event_burst); excess
// events are dropped with a debug log. A socket can be on at most
// max_lists_per_socket lists at once; further enters are ignored.
//
// Server to client:
//
//	presences {listId, userIds}  to the observing socket only, right after it
//	                             joined the room (so no later delta is missed)
//	entered   {listId, userId}   to room PresenceQueue:<listId> when the user's
//	                             first socket enters the list (on any instance)
//	left      {listId, userId}   to that room when the user's last socket leaves,
//	                             disconnects or expires
//
// A user counts once per list however many tabs (sockets) they have open.
//
// # Delta order
//
// Each "entered"/"left" is emitted by the one caller whose script made the
// change (see Redis layout). On one instance, every script that can change
// a list's members runs under that list's lock (locks.go), held until its
// deltas were handed to the host: enterPage and the other events, the
// disconnect, the sweeper, the replayed OnConnect and the refresher's
// retried leaves and re-entries. So one instance's deltas for a list leave
// it in the order Redis applied them, and the host keeps that order to every
// observer on every instance (local delivery in call order, one FIFO publish
// queue). Only that one round trip and the emit (queued on the plugin's
// stream, no round trip) are under the lock: the script's arguments are
// built before and a failed emit is logged after; lists never wait on
// unrelated lists. The refresher's deadline push (refresh.lua) changes
// nobody's presence and takes no lock, so a refresh round stays parallel;
// lists it finds the user missing from are re-entered under the lock. The
// cost: one list's transitions on one instance run one at a time (one script
// round trip plus one emit each).
//
// This lock is the one exception to "no lock held across a round trip"
// (the original's Redlock contention): it is in-process, per list and per
// instance, never in Redis, so no instance ever waits on another, a crashed
// holder releases it by dying, and it covers one script call. A page with
// hundreds of users entering at once on one instance is bounded by Redis's
// round trip (~0.1 ms on a LAN: ~10,000 transitions/s per list). Dropping
// it would take per-list versions from the scripts and a reorder buffer
// before the emit.
//
// Across instances the order is not guaranteed by itself: instance A's
// delta reaches B's observers through Redis pub/sub, while B's own deltas go
// straight to them, so a "left" from A (a disconnect, a sweep) and an
// "entered" from B for the same user and list, made back to back, can reach
// B's (or a third instance's) observers swapped. Rechecks repair that
// (recheck.go): every script that sends a delta marks it in
// PresenceDelta:<listId>:<userId> with the host instance's id, and a
// transition that finds the previous delta marked by another instance
// re-sends the user's current state on the list ("entered" or "left")
// `recheck` (1s) later, under the list's lock; the re-send is marked too,
// so a transition racing it is rechecked in turn. The browser client keeps a
// Set per list, so a repeated delta is a no-op there. An observer whose
// deltas arrived swapped is therefore right again within `recheck`, as long
// as pub/sub delivers within that time. Every delta is delivered once, and
// Redis (hence every later snapshot) is always right. The "presences"
// snapshot is not ordered with concurrent deltas: a delta made just before
// the snapshot was read may arrive after it and is applied on top, which
// ends right when the list's deltas arrive in order, and the recheck repairs
// the cross-instance case. A delta made after the read is never missed: the
// room was joined first.

// # List ids
//
//	path starts with "/conference/":  slug = strings.Split(path, "/")[2]
//	    slug among the socket's conferences -> hex(sha256(slug ‖ path))
//	    otherwise                           -> refused
//	any other path                      -> hex(sha256("<<NO-CONFERENCE>>" ‖ path))
//	conference-wide list (slug)         -> slug, if among the socket's conferences
//
// The non-conference formula is the browser client's (PresenceState.ts); the
// original server used "/<<NO-CONF>>/" and so never matched its own client.
// Paths are not normalized. Example: sha256("test-conference-slug" +
// "/conference/test-conference-slug") =
// 88fff4f0a39c2f20e459bba77266401b64615e5f52de931a40715806ca1c9dc9.
//
// # Redis layout
//
// All times are unix milliseconds. A socket's deadline is now + window, set by
// every enter and pushed forward by the refresher.
//
//	Key                                          Type  Members / score                    TTL          Written by
//	PresenceList:<listId>                        SET   userIds present on the list         none         enter.lua (SADD), exit.lua, exitall.lua (SREM)
//	PresenceList:<listId>:UserSessions:<userId>  ZSET  socketIds of the user on the list,  none         enter.lua, refresh.lua (ZADD), exit.lua, exitall.lua
//	                                                   score = deadline                                 (ZREM; all four ZREMRANGEBYSCORE -inf now, dropping
//	                                                                                                    expired tabs)
//	SessionLists:<socketId>                      SET   listIds the socket is on            max(24h,     enter.lua, refresh.lua (SADD, PEXPIRE), exit.lua
//	                                                                                       4*window)    (SREM), exitall.lua (DEL)
//	Presence.Sockets                             ZSET  socketIds, score = deadline          none         enter.lua, refresh.lua (ZADD); exit.lua when the
//	                                                                                                    socket's last list is left, exitall.lua (ZREM)
//	Presence.SocketUser                          HASH  socketId -> userId                  none         enter.lua, refresh.lua (HSET); exit.lua, exitall.lua
//	                                                                                                    (HDEL)
//	PresenceDelta:<listId>:<userId>              STR   instance id of the last delta sent  5*recheck    mark.lua (SET PX), run by enter.lua, exit.lua,
//	                                                   for the user on the list                         exitall.lua and recheck.lua (none if recheck is 0)
//
// Invariant (every script is atomic, so it holds between scripts whatever
// runs concurrently): userId ∈ PresenceList:<l> exactly when
// PresenceList:<l>:UserSessions:<userId> is non-empty, up to entries whose
// deadline has passed and that the sweeper has not reached yet. A script
// reports "entered" only when its SADD added the user and "left" only when its
// SREM removed the user, so each transition is emitted by exactly one caller.
// PresenceList:<listId> keeps the original's name and type, so /summary
// (SCAN PresenceList:*, skipping keys with ":UserSessions:") keeps working;
// the UserSessions keys changed from SET to ZSET, so data written by the Node
// service must be flushed first (admin /flush). /flush should delete
// PresenceList:*, SessionLists:*, Presence.Sockets and Presence.SocketUser
// (PresenceDelta:* expire within seconds); live instances re-create their
// sockets' state within one refresh_interval (emitting "entered" again). The
// scripts touch keys they build from their arguments, so they need a
// standalone Redis (not Redis Cluster). The scripts are sent without their
// comments (compactLua), since every call carries its script's text to the
// host.
//
// SessionLists' TTL is only a backstop against orphaned keys; it is long on
// purpose, so that even after every instance was down for a while the sweeper
// can still find (and clean) a dead socket's lists.
//
// # Crash safety
//
// Every instance pushes the deadline of each (socket, list) it holds every
// refresh_interval: refresh.lua, 64 sockets per round trip, 4 round trips at
// once; lists the user is missing from are left alone by the script and
// entered (under their lock) as by enterPage. It sweeps every sweep_interval:
// it takes up to 500 sockets from Presence.Sockets whose deadline has passed
// and runs exitall.lua on each, which re-checks the deadline atomically (so
// concurrent sweeps, or a refresh racing a sweep, are safe) and emits "left".
// Both loops wait a random 3/4 to 1 of their interval each time, so
// instances started together do not refresh and sweep in step; no wait is
// longer than the interval. The users of a SIGKILLed instance are therefore
// reported left at most window + sweep_interval (plus the sweep's own run
// time) after its last refresh (50s with the defaults; the spec requires
// under 60s). The deadlines are computed from each instance's
// clock (time.Now, passed to the scripts): instances' clocks must agree to
// well within window - 2*refresh_interval (15s by default), which NTP gives.
//
// A Redis failure during an event is returned to the host (which logs it);
// the in-memory state stays right, so the refresher repairs Redis: a failed
// enter is retried by the next refresh, and so is a failed leave.
//
// A plugin process that restarts keeps its sockets' presence: Stop leaves
// Redis alone, and the host replays OnConnect, which reloads
// SessionLists:<socketId> and refreshes it at once (if the restart took longer
// than the window the sweeper has already reported the user left).
//
// # Config (plugins.presence.config, every key optional)
//
//	window                duration  45s   presence lifetime without refresh; > 2*refresh_interval
//	refresh_interval      duration  15s   how often an instance refreshes its sockets
//	sweep_interval        duration  5s    how often an instance sweeps expired sockets
//	max_path_bytes        int       1024  longest accepted path or slug
//	events_per_second     number    20    per-socket rate of presence events
//	event_burst           int       40    per-socket burst
//	max_lists_per_socket  int       64    lists one socket can be on at once
//	recheck               duration  1s    delay of a recheck (Delta order); 0s = none; at most 1m
//
// Durations use Go syntax ("45s", "500ms"). Unknown keys are an error.
package presence
