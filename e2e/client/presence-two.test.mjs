// Presence across two instances sharing one Redis: deltas cross instances in
// both directions, and the users of an instance that is SIGKILLed are
// reported left by the surviving instance's sweeper.
//
// Env: SERVER_URL_A, SERVER_URL_B, SERVER_PID_B (this test SIGKILLs it last),
// LEFT_WITHIN_MS (window + sweep_interval + slack of the presence config).
import { test } from "node:test";
import assert from "node:assert/strict";
import { PRESENCE_EVENTS, client, env, listId, unique } from "./features.mjs";

const A = env("SERVER_URL_A");
const B = env("SERVER_URL_B");

async function observe(c, path) {
  const from = c.log.mark();
  c.socket.emit("observePage", path);
  const { args } = await c.log.waitFor("presences", (p) => p.listId === listId(path), { from });
  return args[0];
}

test("deltas and snapshots cross instances in both directions", async () => {
  const path = `/conference/demo/room/${unique()}`;
  const id = listId(path);
  const obsA = await client("carol", PRESENCE_EVENTS, { url: A });
  const obsB = await client("dave", PRESENCE_EVENTS, { url: B });
  const aliceB = await client("alice", PRESENCE_EVENTS, { url: B });
  const bobA = await client("bob", PRESENCE_EVENTS, { url: A });
  const alice2A = await client("alice", PRESENCE_EVENTS, { url: A });
  try {
    await observe(obsA, path);
    await observe(obsB, path);
    const startA = obsA.log.mark();
    const startB = obsB.log.mark();

    aliceB.socket.emit("enterPage", path); // on B, seen on A
    assert.deepEqual((await obsA.log.waitFor("entered", () => true, { from: startA })).args, [{ listId: id, userId: "alice" }]);
    bobA.socket.emit("enterPage", path); // on A, seen on B
    await obsB.log.waitFor("entered", (d) => d.userId === "bob", { from: startB });
    await obsB.log.waitFor("entered", (d) => d.userId === "alice", { from: startB });

    // alice's second tab is on the other instance: still one user.
    alice2A.socket.emit("enterPage", path);
    assert.deepEqual([...(await observe(alice2A, path)).userIds].sort(), ["alice", "bob"]);
    aliceB.socket.emit("leavePage", path);
    assert.deepEqual([...(await observe(aliceB, path)).userIds].sort(), ["alice", "bob"], "alice's tab on A keeps her present");
    bobA.socket.emit("leavePage", path);
    await obsA.log.waitFor("left", (d) => d.userId === "bob", { from: startA });
    await obsB.log.waitFor("left", (d) => d.userId === "bob", { from: startB });
    for (const obs of [obsA, obsB]) {
      assert.deepEqual(obs.log.all("left", 0), [[{ listId: id, userId: "bob" }]], "only bob may have left");
      assert.equal(obs.log.all("entered", 0).filter(([d]) => d.userId === "alice").length, 1, "alice entered once");
    }
    alice2A.socket.close();
    await obsB.log.waitFor("left", (d) => d.userId === "alice", { from: startB });
    await obsA.log.waitFor("left", (d) => d.userId === "alice", { from: startA });
  } finally {
    for (const c of [obsA, obsB, aliceB, bobA, alice2A]) c.socket.close();
  }
});

test("a user who moves to the other instance at once is rechecked", async () => {
  // alice leaves on A and enters on B right after: the two deltas reach each
  // instance's observers by different paths (directly, or Redis pub/sub) and
  // could arrive swapped, so B re-sends her state (recheck, 1 s by default)
  // to the observers of both instances.
  const path = `/conference/demo/room/${unique()}`;
  const id = listId(path);
  const obsA = await client("carol", PRESENCE_EVENTS, { url: A });
  const obsB = await client("dave", PRESENCE_EVENTS, { url: B });
  const aliceA = await client("alice", PRESENCE_EVENTS, { url: A });
  const aliceB = await client("alice", PRESENCE_EVENTS, { url: B });
  try {
    await observe(obsA, path);
    await observe(obsB, path);
    aliceA.socket.emit("enterPage", path);
    await obsA.log.waitFor("entered", (d) => d.userId === "alice");
    await obsB.log.waitFor("entered", (d) => d.userId === "alice");
    const fromA = obsA.log.mark();
    const fromB = obsB.log.mark();
    aliceA.socket.emit("leavePage", path);
    await obsA.log.waitFor("left", (d) => d.userId === "alice", { from: fromA });
    aliceB.socket.emit("enterPage", path);
    for (const [obs, from] of [[obsA, fromA], [obsB, fromB]]) {
      const first = await obs.log.waitFor("entered", (d) => d.userId === "alice", { from });
      const again = await obs.log.waitFor("entered", (d) => d.userId === "alice", {
        from: first.index + 1,
        what: `the recheck's "entered" of alice`,
      });
      assert.deepEqual(again.args, [{ listId: id, userId: "alice" }]);
      // A's "left" and B's first "entered" may come in either order (the
      // race being repaired); the recheck comes last and leaves her listed.
      const deltas = obs.log.items
        .slice(from)
        .filter((it) => it.name === "entered" || it.name === "left")
        .map((it) => `${it.name} ${it.args[0].userId}`);
      assert.deepEqual([...deltas].sort(), ["entered alice", "entered alice", "left alice"], "each delta once, plus the recheck");
      assert.equal(deltas.at(-1), "entered alice", "the recheck comes last");
    }
  } finally {
    for (const c of [obsA, obsB, aliceA, aliceB]) c.socket.close();
  }
});

test("SIGKILL of an instance: its users are reported left by the other", async () => {
  const pid = Number(env("SERVER_PID_B"));
  const within = Number(env("LEFT_WITHIN_MS"));
  assert.ok(pid > 0 && within > 0);
  const path = `/conference/demo/crash/${unique()}`;
  const id = listId(path);
  const obsA = await client("carol", PRESENCE_EVENTS, { url: A });
  const bobA = await client("bob", PRESENCE_EVENTS, { url: A });
  const aliceB = await client("alice", PRESENCE_EVENTS, { url: B });
  try {
    await observe(obsA, path);
    const start = obsA.log.mark();
    aliceB.socket.emit("enterPage", path);
    bobA.socket.emit("enterPage", path);
    await obsA.log.waitFor("entered", (d) => d.userId === "alice", { from: start });
    await obsA.log.waitFor("entered", (d) => d.userId === "bob", { from: start });

    const killedAt = Date.now();
    process.kill(pid, "SIGKILL");
    const left = await obsA.log.waitFor("left", () => true, {
      from: start,
      ms: within,
      what: `"left" of alice within ${within} ms of SIGKILL`,
    });
    console.log(`left after ${Date.now() - killedAt} ms (bound ${within} ms)`);
    assert.deepEqual(left.args, [{ listId: id, userId: "alice" }], "the crashed instance's user, and only her");
    assert.deepEqual(await observe(obsA, path), { listId: id, userIds: ["bob"] }, "bob on the live instance stays");
  } finally {
    for (const c of [obsA, bobA, aliceB]) c.socket.close();
  }
});
