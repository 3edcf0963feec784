// Graceful shutdown: a connected client (with reconnection on, as the real
// client) sees the server go away on SIGTERM with a reason that makes it
// reconnect, i.e. not "io server disconnect". Env SERVER_PID is the server
// process to signal; e2e_test.go checks that it then exits 0.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connected, requireEnv, validToken } from "./lib.mjs";

// Generous bound: the server's drain budget (shutdown.timeout) is set by the
// Go test; the client must be let go well before the process is killed.
const DISCONNECT_WITHIN_MS = 20000;

test("SIGTERM disconnects clients so that they reconnect elsewhere", async () => {
  const pid = Number(requireEnv("SERVER_PID"));
  assert.ok(Number.isInteger(pid) && pid > 0, `SERVER_PID ${pid}`);
  const socket = await connected(validToken("alice"), {
    reconnection: true,
    reconnectionDelay: 60000, // no reconnect attempt while the test runs
    reconnectionDelayMax: 60000,
  });
  try {
    const disconnected = new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error("no disconnect after SIGTERM")), DISCONNECT_WITHIN_MS);
      socket.on("disconnect", (reason) => {
        clearTimeout(timer);
        resolve({ reason, active: socket.active });
      });
    });
    process.kill(pid, "SIGTERM");
    const { reason, active } = await disconnected;
    assert.notEqual(reason, "io server disconnect", "a draining server must not tell clients to stay away");
    assert.ok(["transport close", "transport error"].includes(reason), `unexpected reason ${reason}`);
    assert.equal(active, true, "the client must plan to reconnect");
  } finally {
    socket.close();
  }
});
