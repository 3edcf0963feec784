// Helpers of the feature tests (presence, chat): an event log with
// index-based waits (so tests can use barriers instead of sleeps), the
// presence list id formula, and chat payload builders.
import crypto from "node:crypto";
import { io } from "socket.io-client";
import { CONNECT_WITHIN_MS, once, requireEnv, serverURL, validToken } from "./lib.mjs";

/** Upper bound for an event that the server must produce "soon". */
export const EVENT_WITHIN_MS = 5000;

/** The browser client's prefix for pages outside /conference/ (PresenceState.ts). */
export const NO_CONFERENCE = "<<NO-CONFERENCE>>";

/** sha256hex is lowercase hex sha256 of the concatenated strings. */
export function sha256hex(...parts) {
  const h = crypto.createHash("sha256");
  for (const p of parts) h.update(p, "utf8");
  return h.digest("hex");
}

/**
 * listId is the presence list id of path, as the browser client computes it:
 * sha256(slug + path) for /conference/<slug>/..., else
 * sha256("<<NO-CONFERENCE>>" + path).
 */
export function listId(path) {
  if (path.startsWith("/conference/")) {
    return sha256hex(path.split("/")[2], path);
  }
  return sha256hex(NO_CONFERENCE, path);
}

/** unique returns a short random string for page paths and names. */
export const unique = () => crypto.randomBytes(6).toString("hex");

/**
 * EventLog records every occurrence of the named events on a socket, in
 * arrival order, and lets tests wait for one by predicate from an index on.
 */
export class EventLog {
  /**
   * @param {import("socket.io-client").Socket} socket
   * @param {string[]} names
   */
  constructor(socket, names) {
    this.socket = socket;
    /** @type {{name: string, args: any[]}[]} */
    this.items = [];
    this.waiters = new Set();
    for (const name of names) {
      socket.on(name, (...args) => this.push(name, args));
    }
    socket.on("disconnect", (reason) => {
      for (const w of this.waiters) w.fail(new Error(`socket disconnected (${reason}) while waiting for ${w.what}`));
    });
  }

  push(name, args) {
    this.items.push({ name, args });
    for (const w of this.waiters) w.check();
  }

  /** mark is the index the next event will get. */
  mark() {
    return this.items.length;
  }

  /** all returns the recorded events named name (from index from on). */
  all(name, from = 0) {
    return this.items.slice(from).filter((it) => it.name === name).map((it) => it.args);
  }

  /**
   * waitFor resolves with {index, args} of the first event named name at or
   * after index from whose args satisfy pred; it rejects after ms.
   */
  waitFor(name, pred = () => true, { from = 0, ms = EVENT_WITHIN_MS, what } = {}) {
    const label = what || `"${name}"`;
    return new Promise((resolve, reject) => {
      const w = {
        what: label,
        check: () => {
          for (let i = from; i < this.items.length; i++) {
            const it = this.items[i];
            if (it.name === name && pred(...it.args)) {
              done();
              resolve({ index: i, args: it.args });
              return;
            }
          }
        },
        fail: (err) => {
          done();
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        done();
        const seen = JSON.stringify(this.items.slice(from)).slice(0, 2000);
        reject(new Error(`no ${label} within ${ms} ms; events since ${from}: ${seen}`));
      }, ms);
      const done = () => {
        clearTimeout(timer);
        this.waiters.delete(w);
      };
      this.waiters.add(w);
      w.check();
    });
  }
}

/**
 * socketFor opens a socket the way the browser client does (websocket only,
 * token in the CONNECT auth payload, no reconnection) to url (default
 * SERVER_URL), with an EventLog for names attached before it connects.
 * It does not wait for the connection: see client.
 */
export function socketFor(userId, names, { url = serverURL(), ...opts } = {}) {
  const socket = io(url, {
    transports: ["websocket"],
    auth: { token: validToken(userId) },
    reconnection: false,
    forceNew: true,
    ...opts,
  });
  return { socket, log: new EventLog(socket, names) };
}

/**
 * client connects a socket for userId and resolves once "connect" and
 * "server.ready" arrived. Returns {socket, log}.
 */
export async function client(userId, names, opts = {}) {
  const c = socketFor(userId, names, { ...opts, autoConnect: false });
  const ready = once(c.socket, "server.ready", CONNECT_WITHIN_MS);
  const conn = once(c.socket, "connect", CONNECT_WITHIN_MS);
  c.socket.connect();
  try {
    await Promise.all([conn, ready]);
  } catch (err) {
    c.socket.close();
    throw err;
  }
  return c;
}

/** PRESENCE_EVENTS are the server-to-client presence events. */
export const PRESENCE_EVENTS = ["presences", "entered", "left"];

/** CHAT_EVENTS are the server-to-client chat events. */
export const CHAT_EVENTS = [
  "chat.subscribe.ack",
  "chat.messages.send.ack",
  "chat.messages.send.nack",
  "chat.messages.receive",
  "chat.messages.update",
  "chat.messages.delete",
  "chat.reactions.receive",
  "chat.reactions.update",
  "chat.reactions.delete",
  "chat.unreadCount.update",
  "chat.pinned",
  "chat.unpinned",
  "chat.subscribed",
  "chat.unsubscribed",
  "notification",
];

/** message builds an Action<Message> as the browser client sends it. */
export function message(op, { chatId, senderId, sId = crypto.randomUUID(), text = "hello", type = "MESSAGE", extra = {} }) {
  return {
    op,
    data: {
      created_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
      type,
      chatId,
      senderId,
      message: text,
      data: {},
      isPinned: false,
      sId,
      ...extra,
    },
  };
}

/** reaction builds an Action<Reaction>. */
export function reaction(op, { chatId, senderId, messageSId, sId = crypto.randomUUID(), symbol = "👍" }) {
  return {
    op,
    data: {
      chatId,
      sId,
      senderId,
      messageSId,
      type: "EMOJI",
      symbol,
      data: {},
      created_at: new Date().toISOString(),
      updated_at: new Date().toISOString(),
    },
  };
}

/**
 * subscribe emits chat.subscribe(chatId) and waits for its ack.
 * @param {{socket: any, log: EventLog}} c
 */
export async function subscribe(c, chatId) {
  const from = c.log.mark();
  c.socket.emit("chat.subscribe", chatId);
  await c.log.waitFor("chat.subscribe.ack", (id) => id === chatId, { from, what: `chat.subscribe.ack(${chatId})` });
}

/**
 * send emits chat.messages.send(action) and resolves with "ack" or "nack"
 * (whichever carries the action's sId first).
 */
export async function send(c, action) {
  const sId = action?.data?.sId;
  const from = c.log.mark();
  c.socket.emit("chat.messages.send", action);
  const { args } = await Promise.any([
    c.log.waitFor("chat.messages.send.ack", (id) => id === sId, { from }).then((r) => ({ ...r, args: ["ack"] })),
    c.log.waitFor("chat.messages.send.nack", (id) => id === (sId ?? null), { from }).then((r) => ({ ...r, args: ["nack"] })),
  ]).catch((err) => {
    throw new Error(`no ack or nack for sId ${sId}: ${err.errors?.map((e) => e.message).join("; ")}`);
  });
  return args[0];
}

/** env returns a required environment variable (alias of requireEnv). */
export const env = requireEnv;
