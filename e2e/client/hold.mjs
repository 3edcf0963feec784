// hold.mjs keeps real socket.io clients connected and present on pages while
// a Go test inspects the server from outside (e2e/services_test.go, holder).
//
// Env: SERVER_URL, TEST_JWKS_PRIVATE, HOLD_SPEC = JSON [{user, pages: [path]}]
// (one socket per entry; repeat a user for several tabs).
//
// Prints READY once every socket entered its pages (each socket observes its
// last page after entering; its snapshot proves the enters were processed),
// then "entered <listId> <userId>" / "left <listId> <userId>" for deltas its
// sockets observe. Exits 0 when stdin closes (all sockets disconnect first),
// 1 when a socket fails or is disconnected by the server.
import { CONNECT_WITHIN_MS, requireEnv } from "./lib.mjs";
import { PRESENCE_EVENTS, client, listId } from "./features.mjs";

const spec = JSON.parse(requireEnv("HOLD_SPEC"));
const sockets = [];
let stopping = false;

function fail(msg) {
  console.error(`hold.mjs: ${msg}`);
  for (const c of sockets) c.socket.close();
  process.exit(1);
}

try {
  for (const { user, pages } of spec) {
    const c = await client(user, PRESENCE_EVENTS);
    sockets.push(c);
    c.socket.on("disconnect", (reason) => {
      if (!stopping) fail(`socket of ${user} disconnected: ${reason}`);
    });
    c.socket.on("entered", (d) => console.log(`entered ${d.listId} ${d.userId}`));
    c.socket.on("left", (d) => console.log(`left ${d.listId} ${d.userId}`));
    for (const p of pages) c.socket.emit("enterPage", p);
    if (pages.length > 0) {
      const last = pages[pages.length - 1];
      const from = c.log.mark();
      c.socket.emit("observePage", last);
      const { args } = await c.log.waitFor("presences", (s) => s.listId === listId(last), { from, ms: CONNECT_WITHIN_MS });
      if (!args[0].userIds.includes(user)) fail(`${user} is not in the snapshot of ${last}: ${JSON.stringify(args[0])}`);
    }
  }
} catch (err) {
  fail(err.message);
}
console.log("READY");

process.stdin.resume();
process.stdin.on("end", () => {
  stopping = true;
  for (const c of sockets) c.socket.close();
  process.exit(0);
});
