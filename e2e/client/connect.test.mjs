// Connection-level behaviour with a valid token: CONNECT, server.ready, the
// `time` round trip, the echo plugin (events and acks), a clean client
// disconnect, and events emitted before the connection is up.
//
// Needs the echo plugin enabled (--set plugins.echo.enabled=true).
import { test } from "node:test";
import assert from "node:assert/strict";
import { connect, connected, once, validToken, ANSWER_WITHIN_MS, CONNECT_WITHIN_MS } from "./lib.mjs";

test("connect with a valid token: connect, then server.ready", async () => {
  const socket = connect(validToken("alice"), { autoConnect: false });
  const order = [];
  socket.on("connect", () => order.push("connect"));
  const ready = once(socket, "server.ready", CONNECT_WITHIN_MS);
  socket.connect();
  try {
    await ready;
    assert.deepEqual(order, ["connect"], "connect must come before server.ready");
    assert.equal(socket.connected, true);
    assert.equal(typeof socket.id, "string");
    assert.ok(socket.id.length > 0, "socket id is empty");
    assert.ok(!/[.¬]/.test(socket.id), `socket id ${socket.id} contains . or ¬`);
  } finally {
    socket.close();
  }
});

test("two sockets get different ids", async () => {
  const a = await connected(validToken("alice"));
  const b = await connected(validToken("alice"));
  try {
    assert.notEqual(a.id, b.id);
  } finally {
    a.close();
    b.close();
  }
});

test("time round trip keeps the fields and adds serverSendTime", async () => {
  const socket = await connected(validToken("alice"));
  try {
    const sent = { id: 7, clientSendTime: Date.now(), isInitial: true };
    const reply = once(socket, "time", ANSWER_WITHIN_MS * 5);
    socket.emit("time", sent);
    const [got] = await reply;
    assert.equal(typeof got.serverSendTime, "number");
    assert.ok(Number.isFinite(got.serverSendTime) && got.serverSendTime > 0, `serverSendTime ${got.serverSendTime}`);
    const { serverSendTime, ...rest } = got;
    assert.deepEqual(rest, sent);
  } finally {
    socket.close();
  }
});

test("echo emits the same arguments back and answers the ack with them", async () => {
  const socket = await connected(validToken("alice"));
  try {
    const args = ["a", 1, { x: true, nested: [null, "¬", 1.5] }, [1, 2]];
    const event = once(socket, "echo", ANSWER_WITHIN_MS * 5);
    const ack = new Promise((resolve) => socket.emit("echo", ...args, (...ackArgs) => resolve(ackArgs)));
    const [gotEvent, gotAck] = await Promise.all([event, ack]);
    assert.deepEqual(gotEvent, args);
    assert.deepEqual(gotAck, args);
  } finally {
    socket.close();
  }
});

test("acks match their calls when several are in flight", async () => {
  const socket = await connected(validToken("alice"));
  try {
    const acks = [];
    for (let i = 0; i < 10; i++) {
      acks.push(new Promise((resolve) => socket.emit("echo", `call-${i}`, (...a) => resolve(a))));
    }
    const got = await Promise.all(acks);
    got.forEach((a, i) => assert.deepEqual(a, [`call-${i}`]));
  } finally {
    socket.close();
  }
});

test("events emitted before the connection is up are all processed, in order", async () => {
  // Emitted right after io(): socket.io-client buffers them and flushes them
  // together with the CONNECT, so the server must not drop early events.
  const socket = connect(validToken("alice"));
  const n = 20;
  const got = [];
  const all = new Promise((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`got ${got.length} of ${n} echoes: ${JSON.stringify(got)}`)),
      CONNECT_WITHIN_MS,
    );
    socket.on("echo", (i) => {
      got.push(i);
      if (got.length === n) {
        clearTimeout(timer);
        resolve();
      }
    });
    socket.on("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error: ${err.message}`));
    });
  });
  for (let i = 0; i < n; i++) socket.emit("echo", i);
  try {
    await all;
    assert.deepEqual(got, Array.from({ length: n }, (_, i) => i));
  } finally {
    socket.close();
  }
});

test("client disconnect is clean and the server keeps serving", async () => {
  const socket = await connected(validToken("alice"));
  const disconnected = once(socket, "disconnect", ANSWER_WITHIN_MS);
  socket.disconnect();
  const [reason] = await disconnected;
  assert.equal(reason, "io client disconnect");
  assert.equal(socket.connected, false);
  assert.equal(socket.active, false, "a client-side disconnect must not reconnect");

  // The same user connects again and is served.
  const again = await connected(validToken("alice"));
  try {
    const reply = once(again, "echo", ANSWER_WITHIN_MS * 5);
    again.emit("echo", "after");
    assert.deepEqual(await reply, ["after"]);
  } finally {
    again.close();
  }
});

test("unknown events are ignored and the socket stays usable", async () => {
  const socket = await connected(validToken("alice"));
  try {
    socket.emit("no.such.event", { a: 1 });
    socket.emit("time"); // falsy payload: ignored by the original
    const reply = once(socket, "echo", ANSWER_WITHIN_MS * 5);
    socket.emit("echo", "still here");
    assert.deepEqual(await reply, ["still here"]);
    assert.equal(socket.connected, true);
  } finally {
    socket.close();
  }
});
