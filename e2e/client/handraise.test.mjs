// Hand raise on one server (static directory, conference "demo", one chair):
// observe and fetch, raise and lower broadcasts, accept and reject by the
// chair only, and POST /event/ended (plugins/handraise/doc.go; the original's
// wire format: spec/original-service.md §4.4, §8.3).
//
// No hand-raise event is acknowledged, so the tests use the plugin's
// per-socket ordering as a barrier: a socket's events are handled one at a
// time in the order sent, so once a fetch sent after some events is answered
// (listing), those events were handled.
//
// Env: SERVER_URL, E2E_EVENT_SECRET (the server's EVENT_SECRET), CHAIR_ID
// (the one user in directory.chairs).
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { client, env } from "./features.mjs";
import { serverURL } from "./lib.mjs";

const HAND_EVENTS = [
  "event.handRaise.raised",
  "event.handRaise.lowered",
  "event.handRaise.accepted",
  "event.handRaise.rejected",
  "event.handRaise.listing",
];

const newId = () => crypto.randomUUID(); // v4: valid for uuid@8
const closeAll = (...cs) => cs.forEach((c) => c?.socket.close());

/** fetch emits event.handRaise.fetch(eventId) and returns the listing it gets. */
async function fetchListing(c, eventId) {
  const from = c.log.mark();
  c.socket.emit("event.handRaise.fetch", eventId);
  const { args } = await c.log.waitFor("event.handRaise.listing", (l) => l?.eventId === eventId, { from, what: `listing of ${eventId}` });
  assert.equal(args.length, 1, "listing has one argument");
  return args[0];
}

/**
 * observe emits event.handRaise.observe(eventId), then waits for the listing
 * of an unrelated event: after that the observe was handled, and the socket
 * is in the room through observe alone (fetch would join it too).
 */
async function observe(c, eventId) {
  c.socket.emit("event.handRaise.observe", eventId);
  const other = newId();
  assert.deepEqual(await fetchListing(c, other), { eventId: other, userIds: [] });
}

/** expectEvent waits for event name with exactly payload (one argument) on c. */
async function expectEvent(c, name, payload, from) {
  const { args } = await c.log.waitFor(name, (d) => JSON.stringify(d) === JSON.stringify(payload), { from, what: `${name} ${JSON.stringify(payload)}` });
  assert.deepEqual(args, [payload]);
}

/** ended POSTs the Hasura action notifyEventEnded; secret null sends no header. */
async function ended(body, secret = env("E2E_EVENT_SECRET")) {
  const headers = { "content-type": "application/json" };
  if (secret !== null) headers["x-hasura-event-secret"] = secret;
  const r = await fetch(`${serverURL()}/event/ended`, { method: "POST", headers, body: JSON.stringify(body) });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    assert.fail(`/event/ended answered ${r.status} with non-JSON ${JSON.stringify(text)}`);
  }
  return { status: r.status, json };
}

const endedBody = (eventId) => ({
  action: { name: "notifyEventEnded" },
  input: { eventId },
  session_variables: { "x-hasura-role": "user" },
});

test("observe and fetch: raise and lower reach observers, listing is oldest first, bad ids are ignored", async () => {
  const event = newId();
  const RAISER = newId();
  const SECOND = newId();
  const obs = await client(newId(), HAND_EVENTS);
  const watcher = await client(newId(), HAND_EVENTS);
  const raiser = await client(RAISER, HAND_EVENTS);
  const second = await client(SECOND, HAND_EVENTS);
  try {
    await observe(obs, event);
    // fetch alone also joins the room (the 2021 client re-sends only fetch
    // after a reconnect).
    assert.deepEqual(await fetchListing(watcher, event), { eventId: event, userIds: [] });

    let from = obs.log.mark();
    let wfrom = watcher.log.mark();
    raiser.socket.emit("event.handRaise.raise", event);
    await expectEvent(obs, "event.handRaise.raised", { eventId: event, userId: RAISER }, from);
    await expectEvent(watcher, "event.handRaise.raised", { eventId: event, userId: RAISER }, wfrom);
    // Scores are raise times in ms; let the clock move so the order below
    // is the raise order and not a tie broken by user id.
    await new Promise((r) => setTimeout(r, 5));

    from = obs.log.mark();
    second.socket.emit("event.handRaise.raise", event);
    await expectEvent(obs, "event.handRaise.raised", { eventId: event, userId: SECOND }, from);
    await new Promise((r) => setTimeout(r, 5));
    // Raising again keeps the first raise time (the queue place).
    from = obs.log.mark();
    raiser.socket.emit("event.handRaise.raise", event);
    await expectEvent(obs, "event.handRaise.raised", { eventId: event, userId: RAISER }, from);

    assert.deepEqual(await fetchListing(watcher, event), { eventId: event, userIds: [RAISER, SECOND] });
    assert.equal(raiser.log.all("event.handRaise.raised").length, 0, "a raiser that does not observe gets no broadcast");

    from = obs.log.mark();
    wfrom = watcher.log.mark();
    second.socket.emit("event.handRaise.lower", event);
    await expectEvent(obs, "event.handRaise.lowered", { eventId: event, userId: SECOND }, from);
    await expectEvent(watcher, "event.handRaise.lowered", { eventId: event, userId: SECOND }, wfrom);
    assert.deepEqual(await fetchListing(watcher, event), { eventId: event, userIds: [RAISER] });

    // Bad eventIds are ignored (e2e/features_test.go checks that no key was
    // made for them); the socket stays usable.
    for (const bad of ["not-a-uuid", "1b4e28ba-2fa1-61d2-883f-0016d3cca427", 42, "", null, { eventId: event }]) {
      raiser.socket.emit("event.handRaise.raise", bad);
    }
    assert.deepEqual(await fetchListing(raiser, event), { eventId: event, userIds: [RAISER] });
    assert.equal(raiser.socket.connected, true);
  } finally {
    closeAll(obs, watcher, raiser, second);
  }
});

test("accept and reject: refused for a non-chair, broadcast for the chair (eventPerson null)", async () => {
  const event = newId();
  const RAISER = newId();
  const SECOND = newId();
  const obs = await client(newId(), HAND_EVENTS);
  const raiser = await client(RAISER, HAND_EVENTS);
  const second = await client(SECOND, HAND_EVENTS);
  const nonChair = await client(newId(), HAND_EVENTS);
  const chair = await client(env("CHAIR_ID"), HAND_EVENTS);
  try {
    await observe(obs, event);
    let from = obs.log.mark();
    raiser.socket.emit("event.handRaise.raise", event);
    await expectEvent(obs, "event.handRaise.raised", { eventId: event, userId: RAISER }, from);
    from = obs.log.mark();
    second.socket.emit("event.handRaise.raise", event);
    await expectEvent(obs, "event.handRaise.raised", { eventId: event, userId: SECOND }, from);

    // A non-chair's accept and reject are refused: the hands stay.
    nonChair.socket.emit("event.handRaise.accept", event, RAISER);
    nonChair.socket.emit("event.handRaise.reject", event, SECOND);
    assert.deepEqual((await fetchListing(nonChair, event)).userIds.sort(), [RAISER, SECOND].sort());

    from = obs.log.mark();
    chair.socket.emit("event.handRaise.accept", event, RAISER);
    await expectEvent(obs, "event.handRaise.accepted", { eventId: event, userId: RAISER, eventPerson: null }, from);
    from = obs.log.mark();
    chair.socket.emit("event.handRaise.reject", event, SECOND);
    await expectEvent(obs, "event.handRaise.rejected", { eventId: event, userId: SECOND }, from);
    assert.deepEqual(await fetchListing(chair, event), { eventId: event, userIds: [] });

    // Had the non-chair's calls gone through, their broadcasts would have
    // reached obs before the chair's (same room, one plugin, sent earlier).
    assert.deepEqual(obs.log.all("event.handRaise.accepted"), [[{ eventId: event, userId: RAISER, eventPerson: null }]]);
    assert.deepEqual(obs.log.all("event.handRaise.rejected"), [[{ eventId: event, userId: SECOND }]]);
  } finally {
    closeAll(obs, raiser, second, nonChair, chair);
  }
});

test("POST /event/ended: 401 without the secret; with it 200 {ok:true}, hands cleared, observers told", async () => {
  const event = newId();
  const RAISER = newId();
  const obs = await client(newId(), HAND_EVENTS);
  const raiser = await client(RAISER, HAND_EVENTS);
  try {
    await observe(obs, event);
    let from = obs.log.mark();
    raiser.socket.emit("event.handRaise.raise", event);
    await expectEvent(obs, "event.handRaise.raised", { eventId: event, userId: RAISER }, from);

    assert.deepEqual(await ended(endedBody(event), null), { status: 401, json: {} }, "no secret");
    assert.deepEqual(await ended(endedBody(event), "wrong-" + env("E2E_EVENT_SECRET")), { status: 401, json: {} }, "wrong secret");
    assert.deepEqual(await fetchListing(raiser, event), { eventId: event, userIds: [RAISER] }, "refused calls keep the hands");
    assert.deepEqual(await ended(endedBody("not-a-uuid")), { status: 500, json: { ok: false } }, "non-UUID eventId");
    assert.deepEqual(await ended({ input: { eventId: event } }), { status: 500, json: { ok: false } }, "no action");

    from = obs.log.mark();
    assert.deepEqual(await ended(endedBody(event)), { status: 200, json: { ok: true } });
    // Not in the original: observers still on the page clear their list.
    await expectEvent(obs, "event.handRaise.listing", { eventId: event, userIds: [] }, from);
    assert.deepEqual(await fetchListing(raiser, event), { eventId: event, userIds: [] });
  } finally {
    closeAll(obs, raiser);
  }
});
