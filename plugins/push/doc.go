// Package push is the Web Push plugin: the VAPID key, the push-subscription
// webhook, and the delivery of notifications (§4.3.7, §6.2, §8.3 of
// original-service.md) by Web Push to users who have subscriptions and as
// the `notification` socket event to those who have none.
//
// Web Push (RFC 8030, payload encryption RFC 8291, VAPID RFC 8292) is done
// by github.com/SherClockHolmes/webpush-go; this package has no crypto of its
// own beyond validating keys. The tests decrypt what a local push service
// receives and verify the VAPID JWT independently.
//
// # Routes
//
// Both check the header x-hasura-event-secret against event_secret in
// constant time; a missing, wrong or repeated header, or an unset
// event_secret, gives 401 with body {}. Other methods than POST give 405.
//
//   - POST /vapid/publicKey (Hasura action vapidPublicKey; the body is
//     ignored): 200 {"key":"<VAPID public key, base64url>"}; if the keys
//     cannot be loaded, 500 "Failed to get VAPID public key".
//   - POST /pushNotificationSubscription/changed (Hasura event trigger on
//     PushNotificationSubscription, data.new/old = {userId, endpoint, auth,
//     p256dh}): INSERT, UPDATE and MANUAL upsert the subscription (an UPDATE
//     that changes userId or endpoint removes the old entry), DELETE removes
//     it; 200 "OK". A payload that does not fit gives 500 "Unexpected
//     payload"; a Store failure 500 "Internal error". session_variables may
//     be null or absent.
//
// # Keys
//
//	push:vapid                  STRING JSON {"publicKey","privateKey"} (base64url),
//	                            only when the keys are not configured
//	push:subscriptions:<user>   HASH endpoint -> JSON {"endpoint","keys":{"auth","p256dh"}}
//	push:sent:<message id>      SET of endpoints already settled for a message
//	                            being retried (TTL 1 h)
//	push:attempts:<message id>  STRING count of failed attempts (TTL 1 h)
//	push:loaded:<user>          STRING number of rows Hasura had when the user's
//	                            subscriptions were last loaded (only with
//	                            graphql_url; TTL 7 days, or 5 min when 0)
//	push:touched:<user>         HASH endpoint -> "1": endpoints the webhook wrote
//	                            or removed lately, which a load in flight must
//	                            not overwrite (only with graphql_url; TTL 1 min)
//
// VAPID keys come from config (vapid_public_key + vapid_private_key). When
// neither is set, the first instance that needs them generates a pair and
// stores it with SET NX under push:vapid, and every instance uses what is
// stored, so all agree. (The original kept them in Hasura's
// system_Configuration table.) The private key then lives in Redis: set the
// keys in config where Redis is not trusted with it. Changing the keys
// invalidates every browser subscription (push services answer 401/403
// until the user subscribes again); deleting push:vapid does that too.
//
// # Delivery model
//
// Plugins cannot call each other, so notifications travel on the bus. The
// push plugin declares the durable topic exchange "notifications" and one
// durable queue "push.notifications" bound with "#", shared by every
// instance, so exactly one instance handles each notification. A delivery
// body is a Message:
//
//	{"id":"<random hex>","userId":"<user>","notification":{"title","subtitle"?,"description","chatId"?,"linkURL"?}}
//
// published with routing key = userId (Publish does all of this). For each
// delivery, the user's subscriptions are read from push:subscriptions:<user>
// (loaded from Hasura first if need be, see below), then:
//
//   - the user has no subscription: emit `notification` (the
//     notification object) to sdk.UserTarget(userId), as the original did;
//   - otherwise send a Web Push to each subscription (at most 32, 8 at a
//     time, 10 s each) with body JSON(notification), TTL ttl, VAPID subject
//     vapid_subject, and no socket event. The description (then subtitle,
//     then title) is shortened with "…" so the JSON fits webpush-go's single
//     4096-byte record.
//
// Outcomes per subscription: 2xx sent; 404/410 the subscription has expired
// and is removed; other 4xx (400, 401, 403, 413, ...) logged, kept, not
// retried; 429, 5xx and network errors are transient. If any send was
// transient, the endpoints settled so far are recorded in push:sent:<id> and
// the delivery is nacked and requeued; the redelivery sends only to the
// endpoints not settled yet, and after max_attempts failed attempts the
// message is dropped (nack without requeue: dead-lettered if the broker is
// set up for it). If every subscription turned out expired or unusable, the
// notification goes to the socket instead. Malformed deliveries are dropped.
//
// # Loading subscriptions from Hasura
//
// The webhook keeps push:subscriptions:<user> current, but it only reports
// changes: after a deploy onto an empty Redis, a flush, or with rows made
// while nothing listened, the Store does not know a user's subscriptions.
// With graphql_url set (Hasura mode), a delivery for a user without
// push:loaded:<user> first runs the original's query (as admin, with
// admin_secret)
//
//	query PushNotificationSubscriptions($userId: String!) {
//	  PushNotificationSubscription(where: {userId: {_eq: $userId}}) { userId endpoint p256dh auth }
//	}
//
// validates the rows as the webhook does (bad ones are logged and skipped),
// HSETs them into push:subscriptions:<user> (merging: entries the webhook
// wrote meanwhile stay, and later webhooks apply on top), and sets
// push:loaded:<user>. That marker lives 7 days when rows were found (the
// original's refetch period; the reload repairs missed INSERT events) and
// 5 minutes when none were (the original's rate limit for this cache), so
// a user without subscriptions costs at most one query per 5 minutes and
// gets the socket event meanwhile. Concurrent deliveries for one user in
// one instance share one query (10 s timeout, not tied to any one
// delivery). If Hasura fails, the error is logged, nothing is cached, and
// the delivery goes on with what is stored (the socket event when nothing
// is); the next delivery tries again. A webhook racing a load wins: each
// webhook change first marks its endpoint in push:touched:<user> (1 min,
// longer than a query may take), and the load's merge (one script) skips
// marked endpoints, so a row Hasura just deleted or changed is not put back
// from an answer read before the change.
//
// Without graphql_url (static mode) Hasura is never queried: subscriptions
// are only learnt from the webhook, rows that existed before the plugin ran
// are unknown until Hasura replays them (a MANUAL trigger run), and those
// users get socket notifications meanwhile.
//
// # What the chat plugin changes to use this
//
// When the push plugin is enabled, the chat plugin publishes instead of
// emitting: in unread.go (notifySubscribers) and webhooks.go (flagInserted),
// replace
//
//	p.host.Emit(ctx, sdk.UserTarget(uid), "notification", n)
//
// with
//
//	push.Publish(ctx, p.host, uid, push.Notification(n))
//
// (chat.Notification has the same fields and tags, so the conversion
// compiles; or use push.Notification directly), add push.Exchange() to the
// chat Descriptor's Exchanges so the exchange exists whichever plugin starts
// first, and gate the switch on a chat config key (e.g. "web_push": true):
// with the push plugin disabled nothing consumes "notifications" and the
// notifications would be lost. push imports only plugins/sdk, so chat may
// import it. Names: push.ExchangeName ("notifications"), push.QueueName
// ("push.notifications"), push.EventNotification ("notification").
//
// # Config (plugins.push.config; unknown keys are an error)
//
//	vapid_public_key   string  ""     base64url uncompressed P-256 point
//	vapid_private_key  string  ""     base64url 32-byte scalar; both or neither
//	vapid_subject      string  mailto:realtime@localhost  https://… (HOST_PUBLIC_URL) or mailto:…; set it in production
//	event_secret       string  ""     injected by the host from EVENT_SECRET
//	ttl                int     3600   seconds a push service keeps a message, [0, 2419200]
//	max_attempts       int     5      attempts with transient failures before dropping
//	graphql_url        string  ""     injected by the host; set: load subscriptions from Hasura on a miss
//	admin_secret       string  ""     injected by the host; sent as x-hasura-admin-secret
//
// # Fixes and changes versus the original
//
//   - The original deleted a subscription on ANY send error (a push service
//     outage or a timeout unsubscribed everyone); only 404 and 410 remove
//     one here, transient failures are retried a bounded number of times
//     and other refusals are logged.
//   - A Hasura event with null session_variables (changes made without a
//     session) is accepted; the original answered 500.
//   - Rows are validated before they are stored: an https endpoint of at
//     most 2048 bytes (so the server never POSTs to http:// addresses), a
//     16-byte auth secret and a valid P-256 p256dh.
//   - A notification too long for one push record is shortened instead of
//     failing (which, in the original, also deleted the subscription).
//   - The original cached Hasura's answer under
//     caches:PushNotificationSubscriptions:<user> as one JSON value for
//     ~52 years (a TTL bug) behind a Redlock; here the webhook's HASH is the
//     cache, a Hasura load merges into it, the marker bounds its age, and
//     concurrent loads are shared in-process instead of locked.
//   - Keys generated when not configured are shared through Redis with
//     SET NX instead of Hasura; configured keys are checked to be a pair.
//   - The VAPID subject must be https:// or mailto: (webpush-go would turn
//     anything else into a bogus mailto: that push services reject).
package push
