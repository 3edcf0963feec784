// Authentication refusals (original-service.md §2.4, §2.5): each bad CONNECT
// gets a connect_error with the exact code and message, within a second, and
// a token without Hasura claims is disconnected by the server.
import { test } from "node:test";
import assert from "node:assert/strict";
import crypto from "node:crypto";
import {
  connect,
  once,
  claims,
  testKey,
  signRS256,
  signHS256,
  unsigned,
  nowSeconds,
  validToken,
  ANSWER_WITHIN_MS,
  CONNECT_WITHIN_MS,
  INVALID_TOKEN_MESSAGE,
  NO_TOKEN_MESSAGE,
} from "./lib.mjs";

const key = testKey();
const otherKey = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 }).privateKey;
const publicPEM = key.publicKey.export({ type: "spki", format: "pem" });
const publicPKCS1 = key.publicKey.export({ type: "pkcs1", format: "pem" });

const expired = () => {
  const c = claims("alice");
  c.iat = nowSeconds() - 7200;
  c.exp = nowSeconds() - 3600;
  return signRS256(c, key.privateKey, key.kid);
};
const notYetValid = () => {
  const c = claims("alice");
  c.nbf = nowSeconds() + 3600;
  return signRS256(c, key.privateKey, key.kid);
};
const tampered = () => {
  const [h, , s] = validToken("alice").split(".");
  const p = Buffer.from(JSON.stringify(claims("mallory"))).toString("base64url");
  return `${h}.${p}.${s}`;
};

const credentialsRequired = { code: "credentials_required", message: NO_TOKEN_MESSAGE };
const invalidToken = { code: "invalid_token", message: INVALID_TOKEN_MESSAGE };

// auth is the CONNECT payload; undefined sends {}.
const cases = [
  { name: "no auth payload", auth: undefined, want: credentialsRequired },
  { name: "token is not a string", auth: { token: 42 }, want: credentialsRequired },
  { name: "token is null", auth: { token: null }, want: credentialsRequired },
  { name: "garbage token", auth: { token: "not-a-jwt" }, want: invalidToken },
  { name: "empty token", auth: { token: "" }, want: "either" },
  { name: "three garbage segments", auth: { token: "a.b.c" }, want: invalidToken },
  { name: "expired", auth: { token: expired() }, want: invalidToken },
  { name: "not valid yet (nbf)", auth: { token: notYetValid() }, want: invalidToken },
  { name: "signed by another key, right kid", auth: { token: signRS256(claims("alice"), otherKey, key.kid) }, want: invalidToken },
  { name: "signed by another key, no kid", auth: { token: signRS256(claims("alice"), otherKey, undefined) }, want: invalidToken },
  { name: "payload tampered after signing", auth: { token: tampered() }, want: invalidToken },
  { name: "alg none", auth: { token: unsigned(claims("alice"), key.kid) }, want: invalidToken },
  { name: "HS256 with the public key PEM as secret", auth: { token: signHS256(claims("alice"), publicPEM, key.kid) }, want: invalidToken },
  { name: "HS256 with the PKCS#1 public PEM as secret", auth: { token: signHS256(claims("alice"), publicPKCS1, key.kid) }, want: invalidToken },
  { name: "unknown kid", auth: { token: signRS256(claims("alice"), key.privateKey, "no-such-kid-" + crypto.randomUUID()) }, want: invalidToken },
];

/**
 * refusal connects with the raw auth payload and resolves with the
 * connect_error; it FAILS when none arrives within ANSWER_WITHIN_MS of io()
 * (the service must never hang a CONNECT, original-service.md §16).
 */
async function refusal(auth) {
  const socket = connect(undefined, { auth: auth ?? {}, autoConnect: false });
  const events = [];
  socket.on("connect", () => events.push("connect"));
  const got = once(socket, "connect_error", ANSWER_WITHIN_MS);
  socket.connect();
  try {
    const [err] = await got;
    assert.deepEqual(events, [], "the socket must not connect");
    return err;
  } finally {
    socket.close();
  }
}

for (const c of cases) {
  test(`refused: ${c.name}`, async () => {
    const err = await refusal(c.auth);
    assert.ok(err instanceof Error, "connect_error carries an Error");
    assert.equal(typeof err.data, "object", `connect_error without data: ${err.message}`);
    if (c.want === "either") {
      // An empty string is falsy (the original says "no token provided"),
      // but a stricter "invalid token" is acceptable too.
      assert.ok(["credentials_required", "invalid_token"].includes(err.data.code), `code ${err.data.code}`);
      assert.equal(err.message, err.data.message);
    } else {
      assert.equal(err.message, c.want.message);
      assert.deepEqual(err.data, { message: c.want.message, code: c.want.code, type: "UnauthorizedError" });
    }
  });
}

test("refusals are per connection: a good token connects right after bad ones", async () => {
  await refusal({ token: "garbage" });
  await refusal({});
  const socket = connect(validToken("alice"), { autoConnect: false });
  const ready = once(socket, "server.ready", CONNECT_WITHIN_MS);
  socket.connect();
  try {
    await ready;
    assert.equal(socket.connected, true);
  } finally {
    socket.close();
  }
});

test("a valid token without Hasura claims is disconnected by the server", async () => {
  const c = claims("alice");
  delete c["https://hasura.io/jwt/claims"];
  const socket = connect(signRS256(c, key.privateKey, key.kid), { autoConnect: false });
  const events = [];
  socket.on("connect", () => events.push("connect"));
  socket.on("server.ready", () => events.push("server.ready"));
  const disconnected = new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error("no disconnect within " + CONNECT_WITHIN_MS + " ms")), CONNECT_WITHIN_MS);
    socket.on("disconnect", (reason) => {
      clearTimeout(timer);
      resolve(reason);
    });
    socket.on("connect_error", (err) => {
      clearTimeout(timer);
      reject(new Error(`connect_error instead of connect+disconnect: ${err.message} ${JSON.stringify(err.data)}`));
    });
  });
  socket.connect();
  try {
    const reason = await disconnected;
    assert.equal(reason, "io server disconnect");
    assert.deepEqual(events, ["connect"], "connects, then is disconnected without server.ready");
    assert.equal(socket.active, false, "the client must not reconnect after a server disconnect");
  } finally {
    socket.close();
  }
});
