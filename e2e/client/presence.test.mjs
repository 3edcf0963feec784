// Presence on one server: observer snapshots and entered/left deltas, the
// list id formula, several tabs of one user, disconnect cleanup, refused
// foreign conferences, and events emitted before the connection is up.
//
// The server runs with the presence plugin and directory.conferences=demo.
import { test } from "node:test";
import assert from "node:assert/strict";
import { CONNECT_WITHIN_MS } from "./lib.mjs";
import { PRESENCE_EVENTS, client, listId, sha256hex, socketFor, unique } from "./features.mjs";

const SLUG = "demo";

/** settle gives a wrongly emitted event a chance to arrive (negative checks only). */
const settle = (ms = 500) => new Promise((r) => setTimeout(r, ms));

/** observe emits observePage(path) and waits for its snapshot. */
async function observe(c, path) {
  const from = c.log.mark();
  c.socket.emit("observePage", path);
  const { args } = await c.log.waitFor("presences", (p) => p.listId === listId(path), { from, what: `presences of ${path}` });
  return args[0];
}

const closeAll = (...cs) => cs.forEach((c) => c?.socket.close());

test("list ids: sha256(slug+path) for conference pages, sha256(<<NO-CONFERENCE>>+path) otherwise", async () => {
  // Known vector from plugins/presence's package doc.
  assert.equal(
    sha256hex("test-conference-slug", "/conference/test-conference-slug"),
    "88fff4f0a39c2f20e459bba77266401b64615e5f52de931a40715806ca1c9dc9",
  );
  const obs = await client("carol", PRESENCE_EVENTS);
  try {
    const conf = `/conference/${SLUG}/room/${unique()}`;
    const other = `/some/page/${unique()}`;
    for (const [path, want] of [
      [conf, sha256hex(SLUG, conf)],
      [other, sha256hex("<<NO-CONFERENCE>>", other)],
    ]) {
      const from = obs.log.mark();
      obs.socket.emit("observePage", path);
      const { args } = await obs.log.waitFor("presences", () => true, { from });
      assert.deepEqual(args[0], { listId: want, userIds: [] }, `snapshot of ${path}`);
    }
  } finally {
    closeAll(obs);
  }
});

test("observer gets a snapshot, then entered and left deltas", async () => {
  const path = `/conference/${SLUG}/item/${unique()}`;
  const id = listId(path);
  const obs = await client("carol", PRESENCE_EVENTS);
  const alice = await client("alice", PRESENCE_EVENTS);
  let late;
  try {
    assert.deepEqual(await observe(obs, path), { listId: id, userIds: [] });

    let from = obs.log.mark();
    alice.socket.emit("enterPage", path);
    const entered = await obs.log.waitFor("entered", (d) => d.userId === "alice", { from });
    assert.deepEqual(entered.args, [{ listId: id, userId: "alice" }]);

    // A later observer sees alice in its snapshot.
    late = await client("dave", PRESENCE_EVENTS);
    assert.deepEqual(await observe(late, path), { listId: id, userIds: ["alice"] });

    from = obs.log.mark();
    alice.socket.emit("leavePage", path);
    const left = await obs.log.waitFor("left", () => true, { from });
    assert.deepEqual(left.args, [{ listId: id, userId: "alice" }]);
    await late.log.waitFor("left", (d) => d.userId === "alice" && d.listId === id, { from: 0 });
    assert.deepEqual(await observe(late, path), { listId: id, userIds: [] }, "snapshot after leave");

    // unobservePage stops the deltas: alice enters again, then bob; the
    // unobserved socket gets neither, the observer both in order.
    late.socket.emit("unobservePage", path);
    await observe(late, `/other/${unique()}`); // barrier: unobserve processed
    const lateMark = late.log.mark();
    from = obs.log.mark();
    alice.socket.emit("enterPage", path);
    await obs.log.waitFor("entered", (d) => d.userId === "alice", { from });
    const bob = await client("bob", PRESENCE_EVENTS);
    try {
      bob.socket.emit("pagePresence", path); // the ping-based client's name
      await obs.log.waitFor("entered", (d) => d.userId === "bob", { from });
      bob.socket.emit("pageUnpresence", path);
      await obs.log.waitFor("left", (d) => d.userId === "bob", { from });
    } finally {
      closeAll(bob);
    }
    await settle();
    assert.deepEqual(late.log.all("entered", lateMark), [], "unobserved socket still got entered");
  } finally {
    closeAll(obs, alice, late);
  }
});

test("several tabs of one user: entered once, left after the last tab left", async () => {
  const path = `/conference/${SLUG}/room/${unique()}`;
  const id = listId(path);
  const obs = await client("carol", PRESENCE_EVENTS);
  const tab1 = await client("alice", PRESENCE_EVENTS);
  const tab2 = await client("alice", PRESENCE_EVENTS);
  const bob = await client("bob", PRESENCE_EVENTS);
  try {
    await observe(obs, path);
    const start = obs.log.mark();
    tab1.socket.emit("enterPage", path);
    await obs.log.waitFor("entered", (d) => d.userId === "alice", { from: start });
    tab2.socket.emit("enterPage", path);
    // Barrier: tab2's own snapshot is computed after its enter; then bob
    // enters, and his delta reaches the observer after any delta of tab2.
    assert.deepEqual(await observe(tab2, path), { listId: id, userIds: ["alice"] });
    bob.socket.emit("enterPage", path);
    await obs.log.waitFor("entered", (d) => d.userId === "bob", { from: start });
    assert.deepEqual(
      obs.log.all("entered", start),
      [[{ listId: id, userId: "alice" }], [{ listId: id, userId: "bob" }]],
      "alice's second tab must not produce a second entered",
    );

    // tab1 leaves: alice is still there (tab2).
    const afterEnter = obs.log.mark();
    tab1.socket.emit("leavePage", path);
    const snap = await observe(tab1, path); // barrier for tab1's leave
    assert.deepEqual([...snap.userIds].sort(), ["alice", "bob"], "alice left with one tab still open");
    bob.socket.emit("leavePage", path);
    await obs.log.waitFor("left", (d) => d.userId === "bob", { from: afterEnter });
    assert.deepEqual(obs.log.all("left", afterEnter), [[{ listId: id, userId: "bob" }]], "left for alice while tab2 is open");

    // tab2 disconnects without leaving: now alice is gone.
    tab2.socket.close();
    const left = await obs.log.waitFor("left", (d) => d.userId === "alice", { from: afterEnter });
    assert.deepEqual(left.args, [{ listId: id, userId: "alice" }]);
    assert.deepEqual(await observe(bob, path), { listId: id, userIds: [] });
  } finally {
    closeAll(obs, tab1, tab2, bob);
  }
});

test("disconnect cleanup: a user is left only when all their tabs disconnected", async () => {
  const pathA = `/conference/${SLUG}/a/${unique()}`;
  const pathB = `/elsewhere/${unique()}`;
  const obs = await client("carol", PRESENCE_EVENTS);
  const tab1 = await client("alice", PRESENCE_EVENTS);
  const tab2 = await client("alice", PRESENCE_EVENTS);
  try {
    await observe(obs, pathA);
    await observe(obs, pathB);
    const start = obs.log.mark();
    tab1.socket.emit("enterPage", pathA);
    tab1.socket.emit("enterPage", pathB);
    tab2.socket.emit("enterPage", pathA);
    await observe(tab2, pathA);
    await obs.log.waitFor("entered", (d) => d.listId === listId(pathA), { from: start });
    await obs.log.waitFor("entered", (d) => d.listId === listId(pathB), { from: start });

    tab1.socket.close(); // was on A and B; tab2 is still on A
    const leftB = await obs.log.waitFor("left", (d) => d.listId === listId(pathB), { from: start });
    assert.deepEqual(leftB.args, [{ listId: listId(pathB), userId: "alice" }]);
    await settle();
    assert.deepEqual(
      obs.log.all("left", start),
      [[{ listId: listId(pathB), userId: "alice" }]],
      "closing one tab must not remove alice from a page her other tab is on",
    );
    assert.deepEqual((await observe(obs, pathA)).userIds, ["alice"]);

    tab2.socket.close();
    await obs.log.waitFor("left", (d) => d.listId === listId(pathA) && d.userId === "alice", { from: start });
    assert.deepEqual(await observe(obs, pathA), { listId: listId(pathA), userIds: [] });
  } finally {
    closeAll(obs, tab1, tab2);
  }
});

test("refused arguments: a foreign conference, a non-string, an empty path", async () => {
  const foreign = `/conference/not-${SLUG}/room/${unique()}`;
  const valid = `/conference/${SLUG}/room/${unique()}`;
  const obs = await client("carol", PRESENCE_EVENTS);
  const alice = await client("alice", PRESENCE_EVENTS);
  try {
    const start = obs.log.mark();
    obs.socket.emit("observePage", foreign);
    obs.socket.emit("observePage", { path: valid });
    obs.socket.emit("observePage", "");
    obs.socket.emit("observeConference", `not-${SLUG}`);
    obs.socket.emit("observePage", valid);
    await obs.log.waitFor("presences", (p) => p.listId === listId(valid), { from: start });
    assert.deepEqual(
      obs.log.all("presences", start),
      [[{ listId: listId(valid), userIds: [] }]],
      "only the valid observe may be answered",
    );
    // alice on the foreign page: refused, so nobody sees her anywhere.
    const mark = obs.log.mark();
    alice.socket.emit("enterPage", foreign);
    alice.socket.emit("enterPage", valid);
    await obs.log.waitFor("entered", (d) => d.userId === "alice", { from: mark });
    assert.deepEqual(obs.log.all("entered", mark), [[{ listId: listId(valid), userId: "alice" }]]);
  } finally {
    closeAll(obs, alice);
  }
});

test("conference-wide presence: the list id is the slug", async () => {
  const obs = await client("carol", PRESENCE_EVENTS);
  const alice = await client("alice", PRESENCE_EVENTS);
  try {
    const start = obs.log.mark();
    obs.socket.emit("observeConference", SLUG);
    const snap = await obs.log.waitFor("presences", (p) => p.listId === SLUG, { from: start });
    assert.equal(Array.isArray(snap.args[0].userIds), true);
    alice.socket.emit("conferencePresence", SLUG);
    const entered = await obs.log.waitFor("entered", () => true, { from: start });
    assert.deepEqual(entered.args, [{ listId: SLUG, userId: "alice" }]);
    alice.socket.close();
    const left = await obs.log.waitFor("left", () => true, { from: start });
    assert.deepEqual(left.args, [{ listId: SLUG, userId: "alice" }]);
  } finally {
    closeAll(obs, alice);
  }
});

test("events emitted right after io(), before the connection is up, are not lost", async () => {
  const path = `/conference/${SLUG}/early/${unique()}`;
  const id = listId(path);
  const obs = await client("carol", PRESENCE_EVENTS);
  let early;
  try {
    await observe(obs, path);
    const start = obs.log.mark();
    // No await between io() and the emits: socket.io-client buffers them
    // and sends them right after its CONNECT.
    early = socketFor("erin", PRESENCE_EVENTS);
    assert.equal(early.socket.connected, false, "the emits must happen before the connection is up");
    early.socket.emit("enterPage", path);
    early.socket.emit("observePage", path);
    const snap = await early.log.waitFor("presences", () => true, { ms: CONNECT_WITHIN_MS });
    assert.deepEqual(snap.args, [{ listId: id, userIds: ["erin"] }], "the early enter must be processed before the early observe");
    const entered = await obs.log.waitFor("entered", () => true, { from: start });
    assert.deepEqual(entered.args, [{ listId: id, userId: "erin" }]);
  } finally {
    closeAll(obs, early);
  }
});
