// A token printed by `realtime token --user alice` is accepted by a server in
// dev mode that shares its dev_key_file. Env TOKEN holds that token.
import { test } from "node:test";
import assert from "node:assert/strict";
import { connected, once, requireEnv, ANSWER_WITHIN_MS } from "./lib.mjs";

test("dev token connects and is served", async () => {
  const socket = await connected(requireEnv("TOKEN"));
  try {
    const reply = once(socket, "time", ANSWER_WITHIN_MS * 5);
    socket.emit("time", { id: 1, clientSendTime: 1 });
    const [got] = await reply;
    assert.equal(got.id, 1);
    assert.equal(got.clientSendTime, 1);
    assert.equal(typeof got.serverSendTime, "number");
  } finally {
    socket.close();
  }
});
