// Analytics view counts on one server (static directory, conference "demo"):
// the node side only sends analytics.view.count, which the server never
// answers; e2e/features_test.go then reads the counters from the server's
// private Redis (analytics.view.count:<contentType>:<identifier>) and wants
// exactly the valid, non-duplicate views (plugins/analytics/doc.go; the
// original's wire format: spec/original-service.md §4.5).
//
// Env: SERVER_URL; ITEM_ID, ELEMENT_ID, HLS_ID (valid views), BARRIER_A_ID,
// BARRIER_B_ID (each socket's last view, which tells the Go side that the
// socket's earlier views were handled), BAD_ID (identifier of invalid views).
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import { client, env } from "./features.mjs";

const VIEW = "analytics.view.count";

/**
 * flushed waits until the server has read every frame the socket sent
 * before: it round-trips a hand-raise fetch, which the server handles after
 * the socket's earlier events. Then closing the socket cannot lose a view.
 */
async function flushed(c) {
  const eventId = crypto.randomUUID();
  const from = c.log.mark();
  c.socket.emit("event.handRaise.fetch", eventId);
  await c.log.waitFor("event.handRaise.listing", (l) => l?.eventId === eventId, { from, what: "the barrier listing" });
  assert.equal(c.socket.connected, true, "the server keeps the socket after bad views");
}

test("valid views are counted once per socket; invalid ones are ignored", async () => {
  const ITEM = env("ITEM_ID");
  const BAD = env("BAD_ID");
  const a = await client(crypto.randomUUID(), ["event.handRaise.listing"]);
  const b = await client(crypto.randomUUID(), ["event.handRaise.listing"]);
  try {
    const invalid = [
      [{ identifier: BAD, contentType: "Video" }],
      [{ identifier: BAD, contentType: "item" }], // literals match exactly
      [{ identifier: BAD, contentType: "Room" }],
      [{ identifier: BAD, contentType: ["Item"] }],
      [{ identifier: BAD, contentType: null }],
      [{ identifier: BAD }], // contentType is required
      [{ contentType: "Item" }], // identifier is required
      [{ identifier: 42, contentType: "Item" }],
      [{ identifier: [BAD], contentType: "Item" }],
      [{ identifier: "not-a-uuid", contentType: "Item" }],
      [{ identifier: BAD.replaceAll("-", ""), contentType: "Item" }],
      [{ identifier: BAD.slice(0, 14) + "6" + BAD.slice(15), contentType: "Element" }], // version 6: not uuid@8-valid
      [`{"identifier":"${BAD}","contentType":"Item"}`], // a string, not an object
      [[{ identifier: BAD, contentType: "Item" }]], // an array
      [null, { identifier: BAD, contentType: "Item" }], // falsy first argument
      [0],
      [false],
      [""],
      [],
    ];
    for (const args of invalid) {
      a.socket.emit(VIEW, ...args);
    }
    // Upper case: counted under the lower-cased id.
    a.socket.emit(VIEW, { identifier: ITEM.toUpperCase(), contentType: "Item" });
    // The same content again from the same socket: deduplicated.
    a.socket.emit(VIEW, { identifier: ITEM, contentType: "Item" });
    a.socket.emit(VIEW, { identifier: env("ELEMENT_ID"), contentType: "Element" });
    // Extra keys are allowed (typescript-is semantics).
    a.socket.emit(VIEW, { identifier: env("HLS_ID"), contentType: "Room.HLSStream", roomId: "extra" });
    a.socket.emit(VIEW, { identifier: env("BARRIER_A_ID"), contentType: "Element" });

    // Another user's view of the same item counts.
    b.socket.emit(VIEW, { identifier: ITEM, contentType: "Item" });
    b.socket.emit(VIEW, { identifier: env("BARRIER_B_ID"), contentType: "Room.HLSStream" });

    await flushed(a);
    await flushed(b);
  } finally {
    a.socket.close();
    b.socket.close();
  }
});
