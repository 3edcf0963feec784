// Shared helpers of the end-to-end tests: environment, token crafting with
// node:crypto, and promise wrappers around socket.io-client events.
//
// Environment (set by e2e/e2e_test.go):
//   SERVER_URL          base URL of the running service, e.g. http://127.0.0.1:40123
//   TEST_JWKS_PRIVATE   the RSA JWK (with private parts and kid) whose public
//                       half the server got in TEST_JWKS
import crypto from "node:crypto";
import { io } from "socket.io-client";

/** The claims object the original service reads the user id from. */
export const HASURA_CLAIMS = "https://hasura.io/jwt/claims";

/** The exact refusal message of any bad token (original-service.md §2.4). */
export const INVALID_TOKEN_MESSAGE = "Unauthorized: Token is missing or invalid Bearer";

/** The refusal message when no token is in the CONNECT payload. */
export const NO_TOKEN_MESSAGE = "no token provided";

/** Upper bound for anything the server must answer "at once". */
export const ANSWER_WITHIN_MS = 1000;

/** Upper bound for a successful connect (handshake + auth + plugin hooks). */
export const CONNECT_WITHIN_MS = 5000;

/**
 * requireEnv returns the environment variable or throws a clear error.
 * @param {string} name
 */
export function requireEnv(name) {
  const v = process.env[name];
  if (!v) {
    throw new Error(`${name} is not set: run these tests through e2e/e2e_test.go (go test ./e2e/)`);
  }
  return v;
}

/** serverURL is SERVER_URL without a trailing slash. */
export function serverURL() {
  return requireEnv("SERVER_URL").replace(/\/+$/, "");
}

/**
 * testKey returns the TEST_JWKS private key: {kid, privateKey, publicKey}.
 */
export function testKey() {
  const jwk = JSON.parse(requireEnv("TEST_JWKS_PRIVATE"));
  if (!jwk.kid || !jwk.d) {
    throw new Error("TEST_JWKS_PRIVATE must be an RSA JWK with kid and private parts");
  }
  const privateKey = crypto.createPrivateKey({ key: jwk, format: "jwk" });
  const publicKey = crypto.createPublicKey(privateKey);
  return { kid: jwk.kid, privateKey, publicKey };
}

const b64url = (buf) => Buffer.from(buf).toString("base64url");
const b64json = (obj) => b64url(JSON.stringify(obj));

/** now in seconds since the epoch. */
export const nowSeconds = () => Math.floor(Date.now() / 1000);

/**
 * claims returns a payload with the Hasura claims of userId, valid for an hour.
 * @param {string} userId
 */
export function claims(userId) {
  const iat = nowSeconds();
  return {
    sub: userId,
    iat,
    exp: iat + 3600,
    [HASURA_CLAIMS]: {
      "x-hasura-user-id": userId,
      "x-hasura-default-role": "user",
      "x-hasura-allowed-roles": ["user"],
    },
  };
}

/**
 * signRS256 signs payload with an RSA private KeyObject.
 * @param {object} payload
 * @param {crypto.KeyObject} privateKey
 * @param {string|undefined} kid  omitted from the header when undefined
 */
export function signRS256(payload, privateKey, kid) {
  const header = { alg: "RS256", typ: "JWT" };
  if (kid !== undefined) header.kid = kid;
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = crypto.sign("sha256", Buffer.from(input), privateKey);
  return `${input}.${b64url(sig)}`;
}

/**
 * signHS256 signs payload with HMAC-SHA256 (the classic "RS256 public key as
 * HMAC secret" algorithm-confusion attack when secret is the public PEM).
 */
export function signHS256(payload, secret, kid) {
  const header = { alg: "HS256", typ: "JWT" };
  if (kid !== undefined) header.kid = kid;
  const input = `${b64json(header)}.${b64json(payload)}`;
  const sig = crypto.createHmac("sha256", secret).update(input).digest();
  return `${input}.${b64url(sig)}`;
}

/** unsigned returns an alg "none" token (empty signature). */
export function unsigned(payload, kid) {
  const header = { alg: "none", typ: "JWT" };
  if (kid !== undefined) header.kid = kid;
  return `${b64json(header)}.${b64json(payload)}.`;
}

/** validToken returns a token the server must accept, for userId. */
export function validToken(userId = "e2e-user") {
  const k = testKey();
  return signRS256(claims(userId), k.privateKey, k.kid);
}

/**
 * connect opens a socket the way the real client does (websocket only, token
 * in the CONNECT auth payload), without reconnection unless opts say so.
 * @param {string|undefined} token  undefined sends an empty auth object
 * @param {object} [opts]  extra socket.io-client options
 */
export function connect(token, opts = {}) {
  const auth = token === undefined ? {} : { token };
  return io(serverURL(), {
    transports: ["websocket"],
    auth,
    reconnection: false,
    forceNew: true,
    ...opts,
  });
}

/**
 * once resolves with the arguments of the next `event` on emitter, or rejects
 * after ms (and on connect_error / disconnect when they are not the awaited
 * event, so failures surface with their reason instead of as a timeout).
 * @param {import("socket.io-client").Socket} socket
 * @param {string} event
 * @param {number} ms
 * @returns {Promise<any[]>}
 */
export function once(socket, event, ms) {
  return new Promise((resolve, reject) => {
    const cleanups = [];
    const done = (fn, v) => {
      for (const c of cleanups) c();
      fn(v);
    };
    const on = (ev, fn) => {
      socket.on(ev, fn);
      cleanups.push(() => socket.off(ev, fn));
    };
    const timer = setTimeout(
      () => done(reject, new Error(`no "${event}" within ${ms} ms`)),
      ms,
    );
    cleanups.push(() => clearTimeout(timer));
    on(event, (...args) => done(resolve, args));
    if (event !== "connect_error") {
      on("connect_error", (err) =>
        done(reject, new Error(`connect_error while waiting for "${event}": ${err.message} ${JSON.stringify(err.data)}`)),
      );
    }
    if (event !== "disconnect") {
      on("disconnect", (reason) =>
        done(reject, new Error(`disconnected (${reason}) while waiting for "${event}"`)),
      );
    }
  });
}

/**
 * connected opens a socket with token and resolves once both "connect" and
 * "server.ready" arrived. Listeners are attached before the socket connects.
 */
export async function connected(token, opts = {}) {
  const socket = connect(token, { autoConnect: false, ...opts });
  const ready = once(socket, "server.ready", CONNECT_WITHIN_MS);
  const conn = once(socket, "connect", CONNECT_WITHIN_MS);
  socket.connect();
  try {
    await Promise.all([conn, ready]);
  } catch (err) {
    socket.close();
    throw err;
  }
  return socket;
}
