// Package chat is the chat plugin: live chat streams, sending messages and
// reactions, pins and subscriptions listeners and webhooks, unread counts and
// notifications. It is wire-compatible with the original Node service
// (spec/original-service.md §4.3, §6, §8.3, §9), with the bugs of §14.2
// fixed. It registers itself as the built-in plugin "chat".
//
// # Events (client to server)
//
//	chat.subscribe(chatId)                  CanSelectChat; join room chat:chat.<chatId>, record the
//	                                        listener, emit chat.subscribe.ack(chatId) to the socket (HEAD)
//	chat.unsubscribe(chatId)                leave the room, forget the listener (no permission needed)
//	chat.messages.send(Action<Message>)     validate, authorize, stamp, publish to chat.messages,
//	                                        then chat.messages.send.ack(sId); any failure emits
//	                                        chat.messages.send.nack(sId), or nack(null) without a string sId
//	chat.reactions.send(Action<Reaction>)   same, published to chat.reactions; no ack/nack (as the original)
//	chat.subscriptions.changed.on/off(registrantId)
//	chat.pins.changed.on/off(registrantId)  join/leave chat:chat.subscriptions.<id> / chat:chat.pins.<id>
//	                                        when the registrant is the socket's user
//	chat.unreadCount.request(chatId)        CanSelectChat; emit chat.unreadCount.update(chatId, count)
//	                                        to all the user's sockets
//	chat.unreadCount.setReadUpTo(chatId, messageSId)
//	                                        CanSelectChat; store the index; emit the count
//
// No handler answers a client ack callback, and except for the nack every
// refusal is only logged (§4.0).
//
// Server to client: chat.messages.receive/update/delete(Message),
// chat.reactions.receive/update/delete(Reaction) (to chat:chat.<chatId>),
// chat.subscribed/unsubscribed(chatId), chat.pinned/unpinned(chatId),
// chat.unreadCount.update(chatId, count), notification(Notification),
// chat.subscribe.ack(chatId), chat.messages.send.ack/nack(sId).
//
// # Payloads and validation
//
// Actions are {op: "INSERT"|"UPDATE"|"DELETE", data}. Message and Reaction
// are checked with typescript-is semantics (§4.0, §4.3.1): every required key
// present (even when its value may be null or anything), enums exact,
// optional keys may be absent, superfluous properties (of the action and of
// data) are kept and passed through to the bus and the broadcasts unchanged.
// sId, chatId (and messageSId for reactions) must be uuid@8-valid; senderId,
// duplicatedMessageSId and duplicateSId are UUID-checked when non-empty (an
// empty one is written back to Hasura as null: a uuid column refuses "").
// An action larger than max_message_bytes is refused, and each socket may
// send at most sends_per_second (burst send_burst) messages and reactions.
//
// Server stamps: INSERT deletes data.id and sets data.created_at; every op
// sets data.updated_at (JavaScript toISOString format).
//
// Write permission (§7.3 with §14.2 #7 fixed): INSERT asks
// Directory.CanWriteChat(socket, chatId, data.senderId) and records the
// sender at chat:message:<sId> (reactions: chat:reaction:<sId>) with SET NX,
// reading the existing record in the same script when there is one; an
// INSERT reusing another sender's or chat's sId is refused. UPDATE and
// DELETE never trust the payload's senderId: they use the recorded sender
// (whose chatId must match the payload's) and overwrite data.senderId with
// it; without a record (older than message_record_ttl, or sent before this
// service) they need moderator rights, i.e. CanWriteChat(socket, chatId, "").
//
// # Delivery model
//
// A send is acked only after Host.Publish returned, i.e. after the broker
// confirmed the message (publisher confirms, §14.2 #12). Each host instance
// consumes its own copy of every message through the per-instance queues
// chat.messages.distribution.{instance} and chat.reactions.distribution.{instance}
// (durable, neither exclusive nor auto-delete, expiring 5 minutes after their
// last consumer, bound "*", prefetch 100: what the broker confirmed survives a
// dropped connection and a broker restart; after a reconnect the redelivered
// messages this process already emitted are skipped by sId) and emits it
// with sdk.LocalRoomTarget to its own members of chat:chat.<chatId> only. So
// each subscriber, whichever instance holds its socket, gets each message
// exactly once, and in queue order: the bus hands one queue's deliveries to
// the plugin one at a time, and RabbitMQ keeps one publisher's order per
// queue. Invalid bus messages are dropped (sdk.ErrDrop); a failed local emit
// is logged and acked (requeueing would duplicate to members already served;
// the original acked before processing too).
//
// A send costs the socket, in order: CanWriteChat, one store round trip
// (the sender record; UPDATE/DELETE read it before CanWriteChat), Publish.
// The socket's next event is handled once the ack is emitted; the socket's
// sends are therefore published one after another, in the order sent.
//
// The once-per-message work runs on the SENDING instance after the publish
// was confirmed, so it happens once however many instances there are:
//   - right after the ack, in the background (one pipeline; the runs of one
//     chat happen in publish order; at most 1024 wait per process, beyond
//     which the send runs its own before returning; Stop waits for them):
//     for INSERT, count the message (rt:stats) and, for a type other than
//     DUPLICATION_MARKER and EMOTE, ZADD it to the chat's recent-messages
//     window (score = created_at in ms) and trim it to the 10 newest; for
//     DELETE, ZREM it. A client may see its ack, or the message, just before
//     the window holds it;
//   - after notify_delay (1500 ms, as the original), in a goroutine bounded
//     by an in-flight limit (4096, then skipped with a warning) and canceled
//     by Stop: unread counts (INSERT and DELETE) and notifications (INSERT),
//     both skipped for DUPLICATION_MARKER and EMOTE.
//
// Unread counts (§6.3): if the sender pinned the chat, their read-up-to index
// becomes this message; then every registrant in chat:pins.<chatId> is
// resolved (Directory.Registrant) to a user who gets
// chat.unreadCount.update(chatId, count) on all their sockets. count is
// rank = ZREVRANK(window, readUpTo.messageSId), or ZCARD(window) without an
// index or when the read message left the window; formatted "" for 0, "10+"
// for 10 or more, else the number.
//
// Read-up-to index in Hasura mode (graphql_url set; the host sets it with
// the Hasura directory), as the original's lib/cache/readUpToIndex.ts and
// workers/chat/unreadCountWriteback.ts (§6.3):
//   - a cache miss loads the index from Hasura (query ReadUpToIndex:
//     chat_ReadUpToIndex where chatId and registrant.userId) and caches it
//     with SET NX (a setReadUpTo that ran meanwhile wins): found for 30 days,
//     not found (or a null messageSId) as {chatId,userId,messageSId:""} for
//     5 minutes (the original's refetch limit of a miss). A Hasura failure
//     (bounded to 5 s) is logged and counts without an index, uncached;
//   - setReadUpTo also SADDs "<chatId>¬<userId>" to
//     caches:ReadUpToIndex:modified, in one Lua script with the SET;
//   - every read_up_to_writeback_interval (3 min, the original's) each
//     instance SPOPs up to 500 entries (atomic: an entry goes to one
//     instance) and, in the same script, claims them for 2 minutes in
//     caches:ReadUpToIndex:writing, MGETs their cached indices (expired ones are skipped),
//     resolves each user to their registrant in the chat's conference (query
//     RegistrantIdsFromChatsAndUsers; users without one are skipped with a
//     warning, as the original) and upserts the rows with ONE mutation
//     insert_chat_ReadUpToIndex(on_conflict: ReadUpToIndex_pkey,
//     update_columns: [messageSId]); it repeats while batches come back
//     full. A network/HTTP failure SADDs the popped entries back and the
//     claim ends (one script). Should the process die mid-batch, the next
//     writeback after the claim ran out, on any instance, moves the entries
//     back to the modified set first, so nothing is lost. A
//     GraphQL refusal (e.g. a foreign-key violation for a message not yet
//     written back) splits the batch down to the refused row; that row goes
//     back once and is dropped when refused again with the same messageSId
//     (the original ignored such errors, losing the whole batch). The 30 s
//     delay of the original is not kept: the messages writeback is batched
//     within writeback_batch_wait, and a refused row is retried anyway.
//
// No lock serializes the writeback across instances: the upsert writes the
// cached value and is idempotent. The one race: an instance that read an
// index, then lost the race to another instance that wrote a newer one, may
// land the older value in Hasura; Redis still holds the newer one (the
// cache is authoritative while it exists) and the next setReadUpTo fixes
// Hasura. In static mode the index lives in Redis only: nothing is loaded,
// marked or written back.
//
// Notifications (§6.2): every registrant in chat:subscriptions.<chatId> except
// the sender's, resolved to users, minus users with a live socket listening to
// the chat (chat:chat.<chatId>.listeners, whose entries count only while their
// socket's chat:socket.<id>.chats key exists; stale ones are removed), gets
// notification{title, description, chatId, linkURL?, subtitle?}, built as the
// original from Directory.ChatDetails (Hasura: the cached ChatInfo): title is
// "<conference short name>: New message|answer|question|emote" (the prefix
// omitted without a short name); description is the message text; linkURL
// is /conference/<chat's conference slug>/chat/<chatId>; subtitle is "from
// <sender display name>" when the chat's first room is a DM and the sender
// is known, else "in <first item's title, else first room's name, else
// 'Unknown chat'>". When the details are unavailable (the static
// directory, which knows no chats; a directory error; an unknown chat; a
// host older than ChatDetails) the plugin falls back to what it knows: title without
// prefix, linkURL with the SENDER socket's first conference slug (omitted
// when it has none), subtitle "from <sender display name>" when the sender is
// known. The details are only looked up when someone is to be notified.
//
// Delivery: with web_push on (the host sets it when the push plugin is
// enabled) each notification is published to the push plugin's exchange
// "notifications" (plugins/push), which uses Web Push for users with
// subscriptions and the notification event on their sockets for the others
// (§4.3.7); with web_push off it is emitted to chat:chat.<userId> directly.
// Flagged-message notifications travel the same way.
//
// # HTTP webhooks (Hasura event triggers)
//
// POST /chat/subscriptionChanged, POST /chat/pinChanged, POST /chat/flag/inserted.
// The x-hasura-event-secret header is compared in constant time with
// event_secret; a missing or wrong header, or an empty event_secret, gives
// 401 with body {} (as the original). The body must be a Hasura event
// payload (event.op INSERT|UPDATE|DELETE|MANUAL, event.data.old/new present);
// event.session_variables may be null (the original's 500 there was a bug).
// A bad payload gives 500 "Unexpected payload"; success gives 200 "OK".
//   - subscriptionChanged: INSERT/MANUAL SADD chat:subscriptions.<chatId> and
//     emit chat.subscribed(chatId) to chat:chat.subscriptions.<registrantId>;
//     DELETE SREM and chat.unsubscribed; UPDATE only moves the set entry.
//   - pinChanged: the same with chat:pins.<chatId>, chat.pinned/unpinned and
//     chat:chat.pins.<registrantId>.
//   - flag/inserted: notification{title "Message reported", description "A
//     message has been reported. Please go to the moderation hub to resolve
//     it.", linkURL "/conference/<slug>/manage/chats/moderation", subtitle
//     "Reason: <type>"} to the moderators of the flagged message's conference
//     from Directory.MessageModerators (Hasura, uncached: registrants in an
//     enabled group whose role grants CONFERENCE_MODERATE_ATTENDEES), as the
//     original; a conference without moderators notifies no one. When the
//     directory cannot say (the static directory, a message it does not
//     know, an error, a host older than MessageModerators) every user id in
//     config moderators gets it instead, without linkURL.
//
// The pins and subscriptions sets are built from these webhooks only; after
// a first deployment they can be filled by re-delivering the triggers as
// MANUAL events from the Hasura console.
//
// # Redis keys
//
//	Key                                      Type    Content                              TTL
//	chat:chat.<chatId>.listeners             SET     "<socketId>¬<userId>" (§6.1 name)    1h, refreshed on subscribe and every 3 min
//	chat:socket.<socketId>.chats             SET     chatIds the socket subscribed        10 min, refreshed every 3 min by the socket's instance
//	chat:chat.<chatId>.recentMessages        ZSET    10 newest sIds, score created_at ms  none (bounded to 10 members)
//	chat:pins.<chatId>                       SET     registrant ids that pinned the chat  none (webhook-maintained)
//	chat:subscriptions.<chatId>              SET     registrant ids subscribed            none (webhook-maintained)
//	caches:ReadUpToIndex:<chatId>¬<userId>   STRING  JSON {chatId,userId,messageSId}      30 days, reset on each write (5 min for a
//	                                                 (messageSId "" = none)               Hasura miss)
//	caches:ReadUpToIndex:modified            SET     "<chatId>¬<userId>" to write back    none (Hasura mode only; popped by the writeback)
//	caches:ReadUpToIndex:writing             ZSET    "<batch>\n<chatId>¬<userId>" being   none (entries leave when written, or go back to
//	                                                 written, score = claim deadline ms   the modified set when the claim ran out)
//	chat:message:<sId>, chat:reaction:<sId>  STRING  JSON {chatId,senderId}               message_record_ttl (720h)
//	rt:stats:chat.messages:<unix minute>     STRING  messages sent that minute (admin page) 1h
//
// The per-socket TTLs make a crashed instance's entries disappear on their
// own: its sockets' chat sets expire within 10 minutes, after which their
// listener entries are ignored and removed the next time a notification for
// that chat is computed. The original's chat:socket.<id>.user key is not
// written (nothing read it). Without graphql_url the read-up-to index is
// neither loaded from nor written back to Hasura: a user without an index
// counts the whole window (see Unread counts).
//
// # Writeback (optional)
//
// With writeback: true the durable queues chat.messages.writeback and
// chat.reactions.writeback (bound "*", prefetch max(100,
// writeback_batch_max), as the original topology) are declared and their
// messages are written to Hasura at graphql_url (header
// x-hasura-admin-secret: admin_secret) in batches (sdk.BatchDeliveryHandler:
// up to writeback_batch_max, default 100, waiting up to
// writeback_batch_wait, default 50 ms, for a batch to fill). A batch is ONE
// GraphQL mutation whose aliased fields f0, f1, ... follow delivery order
// (Hasura runs them one after the other in one transaction): consecutive
// INSERTs share one insert_chat_Message / insert_chat_Reaction (on conflict
// Message_sId_key / Reaction_sId_key; an sId repeated starts a new field),
// each UPDATE is update_<table>(where sId, _set: the updatable columns only
// — the original's whole-object _set failed on non-column fields), each
// DELETE delete_<table>(where sId); so an UPDATE runs after its INSERT. Only
// the table's columns are sent.
//
// A delivery is acked only when Hasura confirmed its row (an INSERT's sId
// returned, an UPDATE/DELETE with affected_rows). Network and HTTP errors
// requeue the whole batch (after a 1 s pause, forever); once one request of
// a batch failed so, the rest of it is requeued untried. A GraphQL error
// rolls the whole request back, so the batch is split in halves until the
// refused row is alone: the other rows are written and acked; the refused
// one is requeued once and dropped with an error log on its redelivery (the
// original acked such rows at once, and lost the nacks of a batch on a
// network error). An UPDATE/DELETE that finds no row is requeued once, then
// acked. Every delivery gets exactly one answer. The host keeps up to the
// queue's prefetch (max(100, writeback_batch_max)) in flight to the plugin
// (bus.ConsumeAsync), so a batch holds what arrived meanwhile. Describe
// lists the writeback queues only once Start has seen the config (the host
// asks Describe again after Start).
//
// # Config (plugins.chat.config, all optional)
//
//	event_secret        string    secret of the webhooks (the host injects EVENT_SECRET); "" refuses all
//	max_message_bytes   int       16384; JSON size limit of one send
//	sends_per_second    number    10; per-socket send rate (messages and reactions)
//	send_burst          int       20; per-socket burst
//	notify_delay        duration  "1500ms"; delay of unread counts and notifications
//	message_record_ttl  duration  "720h"; how long senders are remembered for UPDATE/DELETE
//	moderators          []string  user ids notified of flagged messages when the
//	                              directory cannot name the conference's moderators
//	                              (static mode, errors)
//	writeback           bool      false; consume the writeback queues and write to Hasura
//	graphql_url         string    Hasura GraphQL URL (required with writeback; also turns on the
//	                              read-up-to index load and writeback)
//	admin_secret        string    Hasura admin secret for the writeback
//	web_push            bool      false; send notifications through the push plugin (the host
//	                              sets it when plugins.push is enabled)
//	writeback_batch_max   int       100; most writeback rows per GraphQL request, [1, 1000]
//	writeback_batch_wait  duration  "50ms"; how long a writeback batch waits to fill, [0, 10s]
//	read_up_to_writeback_interval  duration  "3m" (the original's); how often the modified read-up-to
//	                              indices are written back to Hasura, [100ms, 24h]; with graphql_url only
//
// Unknown keys and bad values fail Start with an error naming the key.
package chat
