// Package admin is the built-in admin plugin: the presence summary and flush
// endpoints that Hasura's presence_Summary and presence_Flush actions call, and
// a live admin page for operators.
//
//	POST /summary  secret ?secret= or header x-hasura-presence-summary-secret (SECRET_FOR_SUMMARY)
//	               200 {"total_unique_tabs":N,"total_unique_user_ids":N,"pages":{"PresenceList:<listId>":N}}
//	POST /flush    secret ?secret= or header x-hasura-presence-flush-secret (SECRET_FOR_FLUSHING)
//	               removes the presence state; 200 {"ok":"OK"}
//	GET  /admin    the admin page (login form, or header x-admin-secret; admin
//	               secret from plugins.admin.config.admin_secret)
//
// Secrets are compared in constant time. As in the original, the query
// parameter wins over the header, an unset secret answers 403 "No secret
// configured" and a wrong one 403 "Secret mismatch".
//
// # Failed attempts
//
// Every wrong secret counts against the client address: /summary, /flush,
// the login form and a wrong x-admin-secret header alike (a session cookie is
// an HMAC nobody can guess, and a stale one after a secret change must not
// lock the operator out, so it does not count). Over failures_per_minute
// (burst of the same size) the address gets 429 until it earns an attempt
// back, even with the right secret.
//
// The client address is the TCP peer unless trust_forwarded_for is true;
// then it is the last X-Forwarded-For entry, the one Heroku's router appends
// (whatever the client sent comes before it). Trust it only behind a proxy
// that appends the address it saw: otherwise a client picks a new "address"
// per request and is never limited. The host sets it true when it runs on
// Heroku (env DYNO set); behind another proxy set it yourself
// (RT_PLUGINS__ADMIN__CONFIG__TRUST_FORWARDED_FOR=true), since without it
// every client shares the proxy's address and so one limit.
//
// Failures count per IPv4 address and per IPv6 /64 (one host usually holds
// a whole /64). At most 10,000 addresses are tracked. When the table is full, addresses
// whose attempts have all come back are forgotten first (a fresh entry would
// be the same), then the one that failed longest ago among those not
// limited; a limited address is never forgotten, so sending from many
// addresses cannot lift anyone's limit. If every tracked address is limited,
// the untracked ones share one more limiter of the same size.
//
// # Config (plugins.admin.config)
//
//	summary_secret, flush_secret, admin_secret  filled by the host from
//	                     SECRET_FOR_SUMMARY, SECRET_FOR_FLUSHING, secrets.admin
//	summary_timeout      bound of one summary or flush (default "10s")
//	failures_per_minute  failed attempts per client address per minute (default 10)
//	trust_forwarded_for  take the client address from X-Forwarded-For (default
//	                     false; the host sets true on Heroku)
//
// # Summary
//
// Meanings kept from the original (§8.1): total_unique_tabs is the sum over
// pages of the distinct users on each page (not a count of tabs), and pages
// are keyed by the full Redis key name. The summary SCANs (never KEYS) and is
// bounded in time (config summary_timeout); a timeout answers 503.
//
// After a flush every live instance re-announces its connected sockets within
// one presence refresh period (the presence plugin re-enters each socket's
// pages), so the state becomes the truth again rather than staying empty.
//
// Everything this plugin shows comes from Redis, so the page is the same
// whichever instance serves it: instances and their plugins come from the
// host heartbeats (rt:instance:<id>), pages from PresenceList:*, the chat rate
// from the chat plugin's per-minute counters.
package admin
