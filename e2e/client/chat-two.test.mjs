// Chat across two instances (one Redis, one RabbitMQ vhost): each
// subscriber gets each message exactly once whichever instance holds its
// socket, and per-user emits (unread counts) reach the user's sockets on
// both instances.
//
// Env: SERVER_URL_A, SERVER_URL_B.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { CHAT_EVENTS, client, env, message, reaction, send, subscribe } from "./features.mjs";

const A = env("SERVER_URL_A");
const B = env("SERVER_URL_B");

test("a message sent on one instance reaches subscribers on both exactly once", async () => {
  const chat = crypto.randomUUID();
  const [ALICE, BOB, CAROL] = [crypto.randomUUID(), crypto.randomUUID(), crypto.randomUUID()];
  const alice = await client(ALICE, CHAT_EVENTS, { url: A });
  const bob = await client(BOB, CHAT_EVENTS, { url: B });
  const carol = await client(CAROL, CHAT_EVENTS, { url: B });
  try {
    for (const c of [alice, bob, carol]) await subscribe(c, chat);
    const m1 = message("INSERT", { chatId: chat, senderId: ALICE, text: "from A 1" });
    const m2 = message("INSERT", { chatId: chat, senderId: ALICE, text: "from A 2" });
    assert.equal(await send(alice, m1), "ack");
    assert.equal(await send(alice, m2), "ack");
    const m3 = message("INSERT", { chatId: chat, senderId: BOB, text: "from B" });
    assert.equal(await send(bob, m3), "ack");
    const r = reaction("INSERT", { chatId: chat, senderId: CAROL, messageSId: m1.data.sId });
    carol.socket.emit("chat.reactions.send", r);
    // A last message from each instance is the barrier: queues are ordered
    // per publisher, so anything duplicated would have arrived before it.
    const endA = message("INSERT", { chatId: chat, senderId: ALICE, text: "end A" });
    const endB = message("INSERT", { chatId: chat, senderId: CAROL, text: "end B" });
    for (const c of [alice, bob, carol]) {
      await c.log.waitFor("chat.reactions.receive", (d) => d.sId === r.data.sId);
    }
    assert.equal(await send(alice, endA), "ack");
    assert.equal(await send(carol, endB), "ack");
    for (const [name, c] of [["alice@A", alice], ["bob@B", bob], ["carol@B", carol]]) {
      await c.log.waitFor("chat.messages.receive", (d) => d.sId === endA.data.sId, { what: `end A on ${name}` });
      await c.log.waitFor("chat.messages.receive", (d) => d.sId === endB.data.sId, { what: `end B on ${name}` });
      const got = c.log.all("chat.messages.receive").map(([d]) => d.message);
      assert.deepEqual(
        got.filter((t) => t.startsWith("from A")),
        ["from A 1", "from A 2"],
        `${name}: messages of A exactly once and in order`,
      );
      assert.deepEqual([...got].sort(), ["end A", "end B", "from A 1", "from A 2", "from B"], `${name}: every message exactly once`);
      assert.equal(c.log.all("chat.reactions.receive").length, 1, `${name}: the reaction exactly once`);
    }
  } finally {
    for (const c of [alice, bob, carol]) c.socket.close();
  }
});

test("unread counts reach the user's sockets on both instances", async () => {
  const chat = crypto.randomUUID();
  const [ALICE, BOB] = [crypto.randomUUID(), crypto.randomUUID()];
  const bob = await client(BOB, CHAT_EVENTS, { url: B });
  const tabA = await client(ALICE, CHAT_EVENTS, { url: A });
  const tabB = await client(ALICE, CHAT_EVENTS, { url: B });
  try {
    for (let i = 0; i < 2; i++) {
      assert.equal(await send(bob, message("INSERT", { chatId: chat, senderId: BOB, text: `u${i}` })), "ack");
    }
    tabA.socket.emit("chat.unreadCount.request", chat);
    for (const c of [tabA, tabB]) {
      const { args } = await c.log.waitFor("chat.unreadCount.update", (id) => id === chat);
      assert.deepEqual(args, [chat, "2"]);
    }
  } finally {
    for (const c of [bob, tabA, tabB]) c.socket.close();
  }
});
