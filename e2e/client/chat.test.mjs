// Chat on one server (static directory, conference "demo"): subscribe,
// confirmed sends with ack/nack by sId, broadcasts, reactions, refused
// payloads, the per-socket rate limit, stored-sender checks on DELETE and
// UPDATE, unread counts, and the pinChanged webhook.
//
// Env: SERVER_URL, E2E_EVENT_SECRET (the server's EVENT_SECRET),
// SEND_BURST (plugins.chat.config.send_burst; sends_per_second is 1).
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { CHAT_EVENTS, client, env, message, reaction, send, subscribe } from "./features.mjs";
import { serverURL } from "./lib.mjs";

// Registrant ids are user ids in the static directory, and senderId must be
// a UUID: users are UUIDs.
const ALICE = crypto.randomUUID();
const BOB = crypto.randomUUID();
const CAROL = crypto.randomUUID();
const newChat = () => crypto.randomUUID();
const OLD = "1999-01-01T00:00:00.000Z";
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/;

const closeAll = (...cs) => cs.forEach((c) => c?.socket.close());

/**
 * webhook POSTs a Hasura event payload to the chat plugin's route with the
 * event secret (or the given one; null sends no secret header).
 */
async function webhook(route, body, secret = env("E2E_EVENT_SECRET")) {
  const headers = { "content-type": "application/json" };
  if (secret !== null) headers["x-hasura-event-secret"] = secret;
  const r = await fetch(`${serverURL()}${route}`, { method: "POST", headers, body: typeof body === "string" ? body : JSON.stringify(body) });
  return { status: r.status, body: await r.text() };
}

const pinEvent = (op, chatId, registrantId) => ({
  event: {
    op,
    data: op === "DELETE" ? { old: { chatId, registrantId }, new: null } : { old: null, new: { chatId, registrantId } },
    session_variables: null,
  },
});

test("send: ack with the sId, broadcast to every subscriber (sender included), stamped, extras kept", async () => {
  const chat = newChat();
  const other = newChat();
  const alice = await client(ALICE, CHAT_EVENTS);
  const bob = await client(BOB, CHAT_EVENTS);
  const carol = await client(CAROL, CHAT_EVENTS);
  try {
    await subscribe(alice, chat);
    await subscribe(bob, chat);
    await subscribe(carol, other); // not in chat

    const m = message("INSERT", { chatId: chat, senderId: ALICE, text: "hello <b>world</b> ¬", extra: { id: 42, clientOnly: { keep: true }, created_at: OLD, updated_at: OLD } });
    m.extraTop = "kept too";
    assert.equal(await send(alice, m), "ack");
    for (const c of [alice, bob]) {
      const { args } = await c.log.waitFor("chat.messages.receive", (d) => d.sId === m.data.sId);
      const [d] = args;
      assert.equal(args.length, 1);
      assert.equal(d.chatId, chat);
      assert.equal(d.senderId, ALICE);
      assert.equal(d.message, "hello <b>world</b> ¬");
      assert.equal(d.type, "MESSAGE");
      assert.deepEqual(d.clientOnly, { keep: true }, "superfluous data properties are passed through");
      assert.equal("id" in d, false, "INSERT deletes data.id");
      assert.match(d.created_at, ISO);
      assert.match(d.updated_at, ISO);
      assert.equal(d.created_at, d.updated_at);
      assert.ok(Math.abs(Date.parse(d.created_at) - Date.now()) < 60000, `server stamps created_at, got ${d.created_at}`);
    }

    const r = reaction("INSERT", { chatId: chat, senderId: BOB, messageSId: m.data.sId });
    bob.socket.emit("chat.reactions.send", r);
    for (const c of [alice, bob]) {
      const { args } = await c.log.waitFor("chat.reactions.receive", (d) => d.sId === r.data.sId);
      assert.equal(args[0].messageSId, m.data.sId);
      assert.equal(args[0].symbol, "👍");
      assert.equal(args[0].senderId, BOB);
      assert.match(args[0].updated_at, ISO);
    }

    // carol is not subscribed to chat: her first delivery is the message
    // sent to her chat afterwards (one distribution queue, in order).
    const m2 = message("INSERT", { chatId: other, senderId: ALICE, text: "to the other chat" });
    assert.equal(await send(alice, m2), "ack");
    await carol.log.waitFor("chat.messages.receive", (d) => d.sId === m2.data.sId);
    assert.deepEqual(carol.log.all("chat.messages.receive").map(([d]) => d.sId), [m2.data.sId]);
    assert.deepEqual(carol.log.all("chat.reactions.receive"), []);

    // Each subscriber got the message exactly once.
    for (const c of [alice, bob]) {
      assert.equal(c.log.all("chat.messages.receive").filter(([d]) => d.sId === m.data.sId).length, 1);
    }

    // After chat.unsubscribe nothing more arrives.
    bob.socket.emit("chat.unsubscribe", chat);
    await subscribe(bob, other); // barrier: the unsubscribe was processed
    const mark = bob.log.mark();
    const m3 = message("INSERT", { chatId: chat, senderId: ALICE, text: "bob left" });
    const m4 = message("INSERT", { chatId: other, senderId: ALICE, text: "barrier" });
    assert.equal(await send(alice, m3), "ack");
    assert.equal(await send(alice, m4), "ack");
    await bob.log.waitFor("chat.messages.receive", (d) => d.sId === m4.data.sId, { from: mark });
    assert.deepEqual(bob.log.all("chat.messages.receive", mark).map(([d]) => d.sId), [m4.data.sId]);
  } finally {
    closeAll(alice, bob, carol);
  }
});

test("refused payloads are nacked with their sId (null without one) and not broadcast", async () => {
  const chat = newChat();
  const alice = await client(ALICE, CHAT_EVENTS);
  try {
    await subscribe(alice, chat);
    const bad = [];
    const notUUID = message("INSERT", { chatId: "not-a-uuid", senderId: ALICE });
    bad.push(["chatId not a UUID", notUUID]);
    const missing = message("INSERT", { chatId: chat, senderId: ALICE });
    delete missing.data.isPinned;
    bad.push(["missing isPinned", missing]);
    bad.push(["bad op", { ...message("INSERT", { chatId: chat, senderId: ALICE }), op: "UPSERT" }]);
    bad.push(["bad type", message("INSERT", { chatId: chat, senderId: ALICE, type: "SHOUT" })]);
    bad.push(["too large", message("INSERT", { chatId: chat, senderId: ALICE, text: "x".repeat(20000) })]);
    for (const [name, action] of bad) {
      assert.equal(await send(alice, action), "nack", name);
    }
    // No string sId: nack(null).
    const from = alice.log.mark();
    alice.socket.emit("chat.messages.send", { op: "INSERT", data: { chatId: chat } });
    const { args } = await alice.log.waitFor("chat.messages.send.nack", () => true, { from });
    assert.deepEqual(args, [null]);

    const good = message("INSERT", { chatId: chat, senderId: ALICE });
    assert.equal(await send(alice, good), "ack");
    await alice.log.waitFor("chat.messages.receive", (d) => d.sId === good.data.sId);
    assert.deepEqual(alice.log.all("chat.messages.receive").map(([d]) => d.sId), [good.data.sId], "refused sends must not be broadcast");
    assert.deepEqual(alice.log.all("chat.messages.send.ack"), [[good.data.sId]]);
  } finally {
    closeAll(alice);
  }
});

test("rate limit: a burst beyond send_burst is nacked by sId", async () => {
  const burst = Number(env("SEND_BURST"));
  const chat = newChat();
  const alice = await client(ALICE, CHAT_EVENTS);
  try {
    const n = burst + 12;
    const actions = Array.from({ length: n }, (_, i) => message("INSERT", { chatId: chat, senderId: ALICE, text: `m${i}` }));
    const results = await Promise.all(actions.map((a) => send(alice, a)));
    const acks = results.filter((r) => r === "ack").length;
    assert.deepEqual(results.slice(0, burst), Array(burst).fill("ack"), "the burst itself is accepted");
    assert.ok(results.includes("nack"), `no send was rate limited: ${results}`);
    // sends_per_second is 1: at most a few tokens refill while this runs.
    assert.ok(acks <= burst + 5, `${acks} of ${n} sends accepted with send_burst ${burst}`);
  } finally {
    closeAll(alice);
  }
});

test("stored sender: a spoofed DELETE or UPDATE is nacked; the sender's DELETE is acked and broadcast", async () => {
  const chat = newChat();
  const alice = await client(ALICE, CHAT_EVENTS);
  const bob = await client(BOB, CHAT_EVENTS);
  try {
    await subscribe(alice, chat);
    await subscribe(bob, chat);
    const m = message("INSERT", { chatId: chat, senderId: ALICE, text: "mine" });
    assert.equal(await send(alice, m), "ack");
    await bob.log.waitFor("chat.messages.receive", (d) => d.sId === m.data.sId);

    // bob claims to be alice.
    assert.equal(await send(bob, message("INSERT", { chatId: chat, senderId: ALICE, text: "spoofed insert" })), "nack");
    assert.equal(await send(bob, message("DELETE", { chatId: chat, senderId: ALICE, sId: m.data.sId })), "nack");
    assert.equal(await send(bob, message("UPDATE", { chatId: chat, senderId: ALICE, sId: m.data.sId, text: "edited by bob" })), "nack");
    assert.equal(await send(bob, message("DELETE", { chatId: chat, senderId: BOB, sId: m.data.sId })), "nack", "claiming the message is bob's");
    // Reusing alice's sId for bob's own INSERT is refused too.
    assert.equal(await send(bob, message("INSERT", { chatId: chat, senderId: BOB, sId: m.data.sId, text: "steal sId" })), "nack");

    const upd = message("UPDATE", { chatId: chat, senderId: ALICE, sId: m.data.sId, text: "edited" });
    assert.equal(await send(alice, upd), "ack");
    const del = message("DELETE", { chatId: chat, senderId: ALICE, sId: m.data.sId });
    assert.equal(await send(alice, del), "ack");
    for (const c of [alice, bob]) {
      const { args } = await c.log.waitFor("chat.messages.delete", (d) => d.sId === m.data.sId);
      assert.equal(args[0].senderId, ALICE);
      assert.equal(args[0].chatId, chat);
      assert.deepEqual(c.log.all("chat.messages.delete").length, 1, "exactly one delete (alice's)");
      assert.deepEqual(c.log.all("chat.messages.update").map(([d]) => d.message), ["edited"], "only alice's update");
      assert.deepEqual(c.log.all("chat.messages.receive").map(([d]) => d.sId), [m.data.sId], "no spoofed insert");
    }
  } finally {
    closeAll(alice, bob);
  }
});

test("unread counts: request and setReadUpTo answer every socket of the user", async () => {
  const chat = newChat();
  const bob = await client(BOB, CHAT_EVENTS);
  const tab1 = await client(ALICE, CHAT_EVENTS);
  const tab2 = await client(ALICE, CHAT_EVENTS);
  try {
    const sent = [];
    for (let i = 0; i < 3; i++) {
      const m = message("INSERT", { chatId: chat, senderId: BOB, text: `unread ${i}` });
      assert.equal(await send(bob, m), "ack");
      sent.push(m.data.sId);
    }
    const expectCount = async (emit, want) => {
      const marks = [tab1.log.mark(), tab2.log.mark()];
      emit();
      for (const [i, c] of [tab1, tab2].entries()) {
        const { args } = await c.log.waitFor("chat.unreadCount.update", (id) => id === chat, { from: marks[i] });
        assert.deepEqual(args, [chat, want], `tab ${i + 1}`);
      }
    };
    await expectCount(() => tab1.socket.emit("chat.unreadCount.request", chat), "3");
    await expectCount(() => tab2.socket.emit("chat.unreadCount.setReadUpTo", chat, sent[1]), "1");
    await expectCount(() => tab1.socket.emit("chat.unreadCount.setReadUpTo", chat, sent[2]), "");
    // bob never read anything: all three.
    const from = bob.log.mark();
    bob.socket.emit("chat.unreadCount.request", chat);
    assert.deepEqual((await bob.log.waitFor("chat.unreadCount.update", () => true, { from })).args, [chat, "3"]);
  } finally {
    closeAll(bob, tab1, tab2);
  }
});

test("pinChanged webhook: secret checked, chat.pinned sent, pinned users get unread counts pushed", async () => {
  const chat = newChat();
  // Secret and payload checks.
  assert.deepEqual(await webhook("/chat/pinChanged", pinEvent("INSERT", chat, ALICE), null), { status: 401, body: "{}" });
  assert.deepEqual(await webhook("/chat/pinChanged", pinEvent("INSERT", chat, ALICE), "wrong"), { status: 401, body: "{}" });
  assert.deepEqual(await webhook("/chat/pinChanged", { event: { op: "INSERT" } }), { status: 500, body: "Unexpected payload" });

  const bob = await client(BOB, CHAT_EVENTS);
  const tab1 = await client(ALICE, CHAT_EVENTS);
  const tab2 = await client(ALICE, CHAT_EVENTS);
  try {
    tab1.socket.emit("chat.pins.changed.on", ALICE);
    bob.socket.emit("chat.pins.changed.on", ALICE); // not bob's registrant: ignored
    await subscribe(tab1, chat); // barrier for the pins.changed.on above
    await subscribe(bob, chat);
    assert.deepEqual(await webhook("/chat/pinChanged", pinEvent("INSERT", chat, ALICE)), { status: 200, body: "OK" });
    assert.deepEqual((await tab1.log.waitFor("chat.pinned")).args, [chat]);

    const m1 = message("INSERT", { chatId: chat, senderId: BOB, text: "one" });
    const m2 = message("INSERT", { chatId: chat, senderId: BOB, text: "two" });
    assert.equal(await send(bob, m1), "ack");
    assert.equal(await send(bob, m2), "ack");
    // After notify_delay the sending instance pushes the count to the
    // pinned user's sockets (the last follow-up sees both messages).
    for (const c of [tab1, tab2]) {
      await c.log.waitFor("chat.unreadCount.update", (id, n) => id === chat && n === "2", { what: `unread "2" on alice's tab` });
    }
    // bob did not pin: no counts pushed to him, and he is not in alice's pins room.
    assert.deepEqual(bob.log.all("chat.unreadCount.update"), []);
    assert.deepEqual(bob.log.all("chat.pinned"), []);

    // bob pins too; his own next message is marked read for him.
    bob.socket.emit("chat.pins.changed.on", BOB);
    await subscribe(bob, chat);
    assert.deepEqual(await webhook("/chat/pinChanged", pinEvent("INSERT", chat, BOB)), { status: 200, body: "OK" });
    await bob.log.waitFor("chat.pinned", (id) => id === chat);
    const m3 = message("INSERT", { chatId: chat, senderId: BOB, text: "three" });
    assert.equal(await send(bob, m3), "ack");
    await bob.log.waitFor("chat.unreadCount.update", (id, n) => id === chat && n === "", { what: `bob's count "" after his own message` });
    await tab2.log.waitFor("chat.unreadCount.update", (id, n) => id === chat && n === "3", { what: `alice's count "3"` });

    // Unpin: chat.unpinned to the registrant's room.
    assert.deepEqual(await webhook("/chat/pinChanged", pinEvent("DELETE", chat, ALICE)), { status: 200, body: "OK" });
    assert.deepEqual((await tab1.log.waitFor("chat.unpinned")).args, [chat]);
  } finally {
    closeAll(bob, tab1, tab2);
  }
});
