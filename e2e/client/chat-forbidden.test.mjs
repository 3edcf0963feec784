// Chat permissions with the Hasura directory (a fake Hasura in the Go test):
// a private chat (a PRIVATE room whose only person is alice) and a public
// chat of conference "demo". bob is a member of "demo" but not of the
// private room; eve is no member of any conference.
//
// Env: SERVER_URL, ALICE, BOB, EVE (user ids = registrant ids),
// PRIVATE_CHAT, PUBLIC_CHAT.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CHAT_EVENTS, client, env, message, send, subscribe } from "./features.mjs";

const [ALICE, BOB, EVE] = [env("ALICE"), env("BOB"), env("EVE")];
const PRIVATE = env("PRIVATE_CHAT");
const PUBLIC = env("PUBLIC_CHAT");

test("a forbidden chat can be neither subscribed nor written, and its messages do not leak", async () => {
  const alice = await client(ALICE, CHAT_EVENTS);
  const bob = await client(BOB, CHAT_EVENTS);
  const eve = await client(EVE, CHAT_EVENTS);
  try {
    await subscribe(alice, PRIVATE);
    await subscribe(alice, PUBLIC);
    await subscribe(bob, PUBLIC);

    // bob tries the private chat: no ack (the nack of his next send, on the
    // same socket, is the barrier), and his send is refused.
    bob.socket.emit("chat.subscribe", PRIVATE);
    assert.equal(await send(bob, message("INSERT", { chatId: PRIVATE, senderId: BOB, text: "let me in" })), "nack");
    assert.deepEqual(bob.log.all("chat.subscribe.ack"), [[PUBLIC]], "bob must not be subscribed to the private chat");

    // eve (no conference) may not even use the public chat.
    eve.socket.emit("chat.subscribe", PUBLIC);
    assert.equal(await send(eve, message("INSERT", { chatId: PUBLIC, senderId: EVE, text: "hi" })), "nack");
    assert.deepEqual(eve.log.all("chat.subscribe.ack"), []);

    // alice writes to both; bob gets only the public one (the public message
    // is sent second: one distribution queue, in order).
    const secret = message("INSERT", { chatId: PRIVATE, senderId: ALICE, text: "private" });
    const open = message("INSERT", { chatId: PUBLIC, senderId: ALICE, text: "public" });
    assert.equal(await send(alice, secret), "ack");
    assert.equal(await send(alice, open), "ack");
    await alice.log.waitFor("chat.messages.receive", (d) => d.sId === secret.data.sId);
    await bob.log.waitFor("chat.messages.receive", (d) => d.sId === open.data.sId);
    assert.deepEqual(bob.log.all("chat.messages.receive").map(([d]) => d.message), ["public"], "the private message leaked to bob");
    assert.deepEqual(eve.log.all("chat.messages.receive"), [], "a message leaked to eve");

    // bob may not delete alice's public message either (not a moderator).
    assert.equal(await send(bob, message("DELETE", { chatId: PUBLIC, senderId: ALICE, sId: open.data.sId })), "nack");
    // ... but alice may.
    assert.equal(await send(alice, message("DELETE", { chatId: PUBLIC, senderId: ALICE, sId: open.data.sId })), "ack");
    await bob.log.waitFor("chat.messages.delete", (d) => d.sId === open.data.sId);
  } finally {
    for (const c of [alice, bob, eve]) c.socket.close();
  }
});
