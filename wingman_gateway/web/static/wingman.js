// Wingman Gateway client: one dependency-free ES module for browsers, Bun
// and Node >= 20. The gateway serves it at /client/wingman.js.
//
//   import { connect } from "./wingman.js";
//   const node = await connect("ws://127.0.0.1:3000/ws", { name: "echo", token, rooms: ["alpha"] });
//   // or the gateways of one cluster: the least loaded that answers, another when it dies
//   const node = await connect(["ws://east:3000/ws", "ws://west:3000/ws"], { name: "echo" });
//   node.on("message", (m) => console.log(m.type, m.fromName, m.payload));
//   await node.broadcast("alpha", { hello: "room" });
//   for await (const m of node) { ... }
//   await node.close();
//
// Wire: the global WebSocket where there is one (browsers, Bun, Node >= 22),
// a WebSocket class passed as `WebSocket`, else the HTTP bridge (fetch and a
// streamed event stream), so Node 20 needs no package. `transport: "auto"`
// (the default for ws:// URLs) falls back to the bridge when the WebSocket
// upgrade fails; http(s):// URLs use the bridge.
//
// Resuming: the node remembers each room's position (the last `offset` and
// `epoch` it has seen), rejoins with `since` after a reconnect, drops a
// broadcast it has already delivered and reports `recovered` or `gap` as a
// state event; `broadcast(room, message, {key})` sends with an idempotency key.
//
// Several gateways (a list of URLs, one cluster): before each connection and
// each reconnection the node asks every gateway's /health at once (fetch,
// `probeTimeout`), takes the fewest `stats.totalNodes` among the healthy ones,
// then the degraded ones, then those that did not answer (still tried, in the
// order given), and moves on to the next when one cannot be reached or is
// full, as the Python clients do. In a browser the page's origin must be
// allowed by every gateway (`--cors-origin`, which covers /health too), else
// the probes go unread and the URLs are tried in the order given.

const CLOSE_NORMAL = 1000;
const FINAL_ON_RECONNECT = new Set(["AUTH_FAILED"]);
const CONNECTION_CODES = new Set(["CONNECTION_LOST", "NOT_CONNECTED", "TIMEOUT"]);
// Failures of one gateway that another gateway of the list may not have.
const TRY_NEXT = new Set(["CONNECTION_FAILED", "CONNECTION_LOST", "TIMEOUT", "TLS_ERROR", "MAX_NODES_REACHED"]);
const PROBE_TIMEOUT = 2000; // ms, for /health when choosing among gateways
const READER_RETRIES = [100, 500, 1000];
const POLL_TIMEOUT = 25;
const CONFIRM_DELAY = 50;

/** A request refused by the gateway (its `code`) or failed locally
 * (NOT_CONNECTED, TIMEOUT, CONNECTION_LOST, CONNECTION_FAILED). */
export class WingmanError extends Error {
  constructor(code, message, details) {
    super(message ? `${code}: ${message}` : code);
    this.name = "WingmanError";
    this.code = code;
    this.details = details;
  }
  static fromPayload(payload) {
    if (!payload || typeof payload !== "object") return new WingmanError("INVALID_MESSAGE", "malformed error from the gateway");
    return new WingmanError(String(payload.code ?? "UNKNOWN"), String(payload.message ?? ""), payload.details);
  }
}

// -- URLs ----------------------------------------------------------------

function gatewayPath(path) {
  let base = path.replace(/\/+$/, "");
  for (const suffix of ["/ws", "/bridge"]) if (base.endsWith(suffix)) base = base.slice(0, -suffix.length);
  return base;
}

function withScheme(url, plain, secure, path) {
  const parsed = new URL(url);
  const scheme = parsed.protocol.replace(":", "");
  if (!["ws", "wss", "http", "https"].includes(scheme)) throw new WingmanError("CONNECTION_FAILED", `unsupported URL scheme ${scheme}`);
  if (scheme === plain || scheme === secure) return url;
  const tls = scheme === "wss" || scheme === "https";
  return `${tls ? secure : plain}://${parsed.host}${gatewayPath(parsed.pathname)}${path}${parsed.search}`;
}

/** `path` on the gateway `url` names, over http(s). */
function besideUrl(url, path) {
  const parsed = new URL(withScheme(url, "http", "https", ""));
  return `${parsed.protocol}//${parsed.host}${gatewayPath(parsed.pathname)}${path}`;
}

export const websocketUrl = (url) => withScheme(url, "ws", "wss", "/ws");
export const bridgeUrl = (url) => besideUrl(url, "/bridge");
export const healthUrl = (url) => besideUrl(url, "/health");

// -- choosing among the gateways of a cluster -----------------------------

/** The gateway's /health report, or null when it does not answer as one. */
async function probe(url, timeout) {
  try {
    const response = await fetch(healthUrl(url), { signal: AbortSignal.timeout(timeout) });
    if (response.status !== 200) { await response.body?.cancel(); return null; }
    const report = await response.json();
    return report && typeof report === "object" && report.service === "wingman-gateway" ? report : null;
  } catch {
    return null; // refused, timed out, not JSON, or unreadable (CORS)
  }
}

/** `urls` (gateways of one cluster) best first, each asked for /health at
 * once: healthy ones by their load (`stats.totalNodes`, fewest first), then
 * `degraded` ones, then those that did not answer, which are still tried;
 * ties keep the order given. */
export async function rankByLoad(urls, timeout = PROBE_TIMEOUT) {
  const reports = await Promise.all(urls.map((url) => probe(url, timeout)));
  const rank = (index) => {
    const report = reports[index];
    if (!report) return [2, 0, index];
    const nodes = report.stats && typeof report.stats === "object" ? report.stats.totalNodes : undefined;
    return [report.status === "healthy" ? 0 : 1, Number.isInteger(nodes) ? nodes : 0, index];
  };
  const order = (a, b) => { const x = rank(a), y = rank(b); return x[0] - y[0] || x[1] - y[1] || x[2] - y[2]; };
  return urls.map((_, index) => index).sort(order).map((index) => urls[index]);
}

// -- wires: open(), send(text), close(code, reason); report to receiver ------

class WebSocketWire {
  constructor(url, receiver, WebSocketClass) {
    this.url = url;
    this.receiver = receiver;
    this.WebSocketClass = WebSocketClass;
    this.socket = null;
  }

  open() {
    return new Promise((resolve, reject) => {
      let opened = false;
      let socket;
      try {
        socket = new this.WebSocketClass(this.url);
      } catch (error) {
        reject(new WingmanError("CONNECTION_FAILED", `cannot connect to ${this.url}: ${error.message}`));
        return;
      }
      this.socket = socket;
      socket.onopen = () => { opened = true; resolve(); };
      socket.onmessage = (event) => {
        const data = event.data;
        this.receiver.text(typeof data === "string" ? data : new TextDecoder().decode(data));
      };
      socket.onerror = () => {};
      socket.onclose = (event) => {
        if (opened) this.receiver.lost(event.code, event.reason || "");
        else reject(new WingmanError("CONNECTION_FAILED", `no WebSocket connection to ${this.url} (${event.code})`));
      };
    });
  }

  send(text) {
    if (!this.socket || this.socket.readyState !== 1) throw new WingmanError("NOT_CONNECTED", "the connection is not open");
    this.socket.send(text);
  }

  close(code = CLOSE_NORMAL, reason = "") {
    if (!this.socket) return;
    if (this.socket.readyState === 0) { this.socket.onopen = () => this.socket.close(code, reason); return; }
    try { this.socket.close(code, reason); } catch { /* already closing */ }
  }
}

// Server-sent events: bytes in any pieces, whole events out.
class EventParser {
  constructor() { this.buffer = ""; this.data = []; this.id = null; this.event = ""; this.decoder = new TextDecoder(); }
  *feed(bytes) {
    this.buffer += this.decoder.decode(bytes, { stream: true });
    let end;
    while ((end = this.buffer.indexOf("\n")) >= 0) {
      const line = this.buffer.slice(0, end).replace(/\r$/, "");
      this.buffer = this.buffer.slice(end + 1);
      if (line === "") {
        if (this.data.length) yield { id: this.id, event: this.event || "message", data: this.data.join("\n") };
        this.data = []; this.event = "";
      } else if (!line.startsWith(":")) {
        const colon = line.indexOf(":");
        const name = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? "" : line.slice(colon + 1);
        if (value.startsWith(" ")) value = value.slice(1);
        if (name === "data") this.data.push(value);
        else if (name === "id") this.id = value;
        else if (name === "event") this.event = value;
      }
    }
  }
}

class BridgeWire {
  constructor(url, receiver, timeout) {
    this.url = url;
    this.base = bridgeUrl(url);
    this.receiver = receiver;
    this.timeout = timeout;
    this.secret = null;
    this.after = 0;
    this.confirmed = 0;
    this.outbox = [];
    this.posting = false;
    this.streaming = true;
    this.finished = false;
    this.ended = false;
    this.aborter = new AbortController();
    this.confirmTimer = null;
  }

  async request(path, body, { session = true, timeout = this.timeout, method = "POST" } = {}) {
    const headers = {};
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (session && this.secret) headers["X-Wingman-Session"] = this.secret;
    const signal = AbortSignal.any
      ? AbortSignal.any([this.aborter.signal, AbortSignal.timeout(timeout)])
      : this.aborter.signal;
    return fetch(this.base + path, { method, headers, body, signal });
  }

  async open() {
    let response;
    try {
      response = await this.request("/send", '{"type":"ping"}', { session: false });
    } catch (error) {
      throw new WingmanError("CONNECTION_FAILED", `cannot reach ${this.url}: ${error.cause?.message || error.message}`);
    }
    const text = await response.text();
    if (response.status !== 200 || !text.startsWith('{"type":"pong"')) {
      const what = response.status === 404 ? "no HTTP bridge" : "not a Wingman Gateway bridge";
      throw new WingmanError("CONNECTION_FAILED", `${what} at ${this.url} (HTTP ${response.status})`);
    }
  }

  send(text) {
    if (this.finished) throw new WingmanError("NOT_CONNECTED", "the connection is not open");
    this.outbox.push(text);
    this.pump();
  }

  async pump() {
    if (this.posting) return;
    this.posting = true;
    try {
      while (this.outbox.length && !this.finished) {
        const response = await this.request("/send", this.outbox.shift());
        if (response.status === 204) continue;
        const text = await response.text();
        let envelope;
        try { envelope = JSON.parse(text); } catch { return this.lose(null, `${this.url} answered HTTP ${response.status}, not a bridge reply`); }
        if (envelope.type === "ack" && typeof envelope.session === "string" && !this.secret) {
          this.secret = envelope.session;
          this.read();
        } else if (envelope.type === "ack" && envelope.payload?.action === "unregister") {
          this.ended = true;
        }
        this.receiver.text(text);
        if (response.status === 401 && this.secret && ["AUTH_FAILED", "NOT_REGISTERED"].includes(envelope.payload?.code)) {
          this.ended = true;
          return this.lose(null, `the bridge session ended: ${envelope.payload.message}`);
        }
      }
    } catch (error) {
      this.lose(null, `sending to ${this.url} failed: ${error.message}`);
    } finally {
      this.posting = false;
    }
  }

  async read() {
    let failures = 0;
    while (!this.finished) {
      let flowed = false;
      let why = `event stream from ${this.url} ended`;
      try {
        flowed = this.streaming ? await this.stream() : await this.poll();
      } catch (error) {
        if (this.finished) return;
        why = `reading from ${this.url} failed: ${error.message}`;
      }
      if (this.finished) return;
      if (flowed) { failures = 0; continue; }
      if (failures >= READER_RETRIES.length) return this.lose(null, why);
      await new Promise((resolve) => setTimeout(resolve, READER_RETRIES[failures++]));
    }
  }

  async stream() {
    const headers = { Accept: "text/event-stream", "X-Wingman-Session": this.secret };
    const response = await fetch(`${this.base}/sse?after=${this.after}`, { headers, signal: this.aborter.signal });
    if (response.status === 401) { this.ended = true; this.lose(null, "the bridge session ended (HTTP 401)"); return true; }
    if (response.status !== 200 || !(response.headers.get("content-type") || "").startsWith("text/event-stream") || !response.body) {
      await response.body?.cancel();
      this.streaming = false; // refused: poll from now on
      return true;
    }
    const reader = response.body.getReader();
    const parser = new EventParser();
    let first = true;
    try {
      for (;;) {
        let chunk;
        if (first) {
          let timer;
          const silent = new Promise((resolve) => { timer = setTimeout(() => resolve(null), this.timeout); });
          chunk = await Promise.race([reader.read(), silent]);
          clearTimeout(timer);
          if (chunk === null) { this.streaming = false; return true; } // held back by a proxy: poll
          first = false;
        } else {
          chunk = await reader.read();
        }
        if (chunk.done) return true;
        for (const event of parser.feed(chunk.value)) {
          if (event.event === "close") { this.closedByGateway(event.data); return true; }
          this.take(event.id, event.data);
          if (this.finished) return true;
        }
      }
    } finally {
      reader.cancel().catch(() => {});
    }
  }

  async poll() {
    const response = await this.request(`/poll?after=${this.after}&timeout=${POLL_TIMEOUT}`, undefined,
      { method: "GET", timeout: POLL_TIMEOUT * 1000 + this.timeout });
    if (response.status === 401) { this.ended = true; this.lose(null, "the bridge session ended (HTTP 401)"); return true; }
    if (response.status !== 200) return false;
    const body = await response.json();
    for (const item of body.messages || []) {
      this.take(String(item.seq), JSON.stringify(item.envelope));
      if (this.finished) return true;
    }
    this.confirmed = this.after;
    if (body.closed) this.closedByGateway(JSON.stringify(body.closed));
    return true;
  }

  take(id, data) {
    if (id !== null && /^\d+$/.test(id)) {
      const seq = Number(id);
      if (seq <= this.after) return; // already had it (a resumed reader)
      this.after = seq;
    }
    this.receiver.text(data);
    if (this.streaming && !this.confirmTimer) this.confirmTimer = setTimeout(() => this.confirm(), CONFIRM_DELAY);
  }

  async confirm() {
    this.confirmTimer = null;
    if (this.finished || this.after <= this.confirmed) return;
    const after = this.after;
    try {
      const response = await this.request(`/ack?after=${after}`, "");
      if (response.status === 204) this.confirmed = Math.max(this.confirmed, after);
    } catch { /* the next message confirms again */ }
  }

  closedByGateway(data) {
    let code = null, reason = "closed by the gateway";
    try { const closed = JSON.parse(data); code = Number(closed.code); reason = String(closed.reason ?? ""); } catch { /* keep defaults */ }
    this.ended = true;
    this.lose(code, reason);
  }

  close(code = CLOSE_NORMAL, reason = "") {
    if (this.finished) return;
    const alive = this.secret && !this.ended;
    const secret = this.secret;
    this.lose(code, reason || "closed");
    if (alive) {
      // HTTP has no closing handshake: end the session now.
      fetch(this.base + "/send", { method: "POST", body: '{"type":"unregister"}',
        headers: { "Content-Type": "application/json", "X-Wingman-Session": secret } }).catch(() => {});
    }
  }

  lose(code, reason) {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.confirmTimer);
    this.aborter.abort();
    this.receiver.lost(code, reason);
  }
}

// -- positions: where the node is in each room, for resuming ----------------

const MAX_OWN = 1000; // own positions waiting for earlier deliveries, per room

/** The first `{offset, epoch}` pair among `places` (envelope, payload), or null. */
function findPosition(...places) {
  for (const place of places) {
    if (!place || typeof place !== "object") continue;
    if (Number.isInteger(place.offset) && place.epoch !== undefined && place.epoch !== null) {
      return { offset: place.offset, epoch: place.epoch };
    }
  }
  return null;
}

/** Each room's position, by room name. The gateway numbers each room's
 * broadcasts (`offset`, in an `epoch`); the node remembers the last offset up
 * to which it has seen everything (what others sent, and its own sends, which
 * the gateway acknowledges with their position instead of delivering them
 * back), asks for what came after it when it rejoins (`since`), drops a
 * broadcast it has already delivered, and tells the application whether it
 * got all of it (`recovered`) or not (`gap`). Over the HTTP bridge a send's
 * ack can overtake deliveries that precede it: its offset waits in `own`
 * until they have come. */
class Positions {
  constructor() { this.rooms = new Map(); } // name -> {epoch, last, own}

  /** The `since` to rejoin `room` with, or null when nothing is known. */
  get(room) {
    const known = this.rooms.get(room);
    return known ? { offset: known.last, epoch: known.epoch } : null;
  }

  room(room, position, last) {
    let known = this.rooms.get(room);
    if (!known || known.epoch !== position.epoch) {
      known = { epoch: position.epoch, last, own: new Set() };
      this.rooms.set(room, known);
    }
    return known;
  }

  static advance(known, offset) {
    known.last = Math.max(known.last, offset);
    while (known.own.has(known.last + 1)) known.last += 1;
    for (const own of known.own) if (own <= known.last) known.own.delete(own);
  }

  /** A join ack: the room's position then (a new epoch replaces the old). */
  joined(room, ack, envelope) {
    const position = findPosition(ack, envelope);
    if (position) Positions.advance(this.room(room, position, position.offset), position.offset);
  }

  /** A broadcast's ack: the position of the node's own message. */
  sent(room, ack) {
    const position = findPosition(ack);
    if (!position) return;
    const known = this.room(room, position, position.offset - 1);
    if (position.offset > known.last && known.own.size < MAX_OWN) {
      known.own.add(position.offset);
      Positions.advance(known, known.last);
    }
  }

  /** A broadcast in `room`; false if it was delivered (or sent) before. */
  delivered(room, envelope) {
    const position = findPosition(envelope); // never the payload: that is the sender's
    if (!position) return true;
    const known = this.room(room, position, position.offset - 1);
    if (position.offset <= known.last || known.own.has(position.offset)) return false;
    Positions.advance(known, position.offset);
    return true;
  }

  /** After a rejoin from `since`: [event, details] to tell (`recovered` or
   * `gap`), or null when there was nothing to resume. */
  resumed(room, since, ack, envelope) {
    if (!since) { this.joined(room, ack, envelope); return null; }
    const details = { room, since: { offset: since.offset, epoch: since.epoch } };
    if (ack.recovered === true) {
      // The missed messages follow the ack; they move the position on.
      details.missed = Number.isInteger(ack.offset) ? ack.offset - since.offset : 0;
      return ["recovered", details];
    }
    details.reason = ack.reason ?? "history off";
    this.joined(room, ack, envelope);
    return ["gap", details];
  }

  forget(room) { this.rooms.delete(room); }

  keep(rooms) {
    for (const room of [...this.rooms.keys()]) if (!rooms.includes(room)) this.rooms.delete(room);
  }
}

// -- the node ----------------------------------------------------------------

class MessageStream {
  constructor(onEnd) { this.buffer = []; this.waiting = null; this.ended = false; this.onEnd = onEnd; }
  push(message) {
    if (this.ended) return;
    if (this.waiting) { const resolve = this.waiting; this.waiting = null; resolve({ value: message, done: false }); }
    else this.buffer.push(message);
  }
  end() {
    this.ended = true;
    if (this.waiting) { const resolve = this.waiting; this.waiting = null; resolve({ value: undefined, done: true }); }
  }
  next() {
    if (this.buffer.length) return Promise.resolve({ value: this.buffer.shift(), done: false });
    if (this.ended) return Promise.resolve({ value: undefined, done: true });
    return new Promise((resolve) => { this.waiting = resolve; });
  }
  return() { this.end(); this.buffer = []; this.onEnd(this); return Promise.resolve({ value: undefined, done: true }); }
  [Symbol.asyncIterator]() { return this; }
}

function toMessage(envelope) {
  const payload = envelope.payload;
  const about = payload && typeof payload === "object" ? payload : {};
  const presence = envelope.type === "presence";
  return {
    type: String(envelope.type),
    payload,
    fromNodeId: envelope.fromNodeId ?? envelope.nodeId ?? (presence ? about.nodeId : undefined) ?? null,
    fromName: envelope.fromName ?? (presence ? about.name : undefined) ?? null,
    groupId: envelope.groupId ?? (presence ? about.groupId : undefined) ?? null,
    groupName: envelope.groupName ?? (presence ? about.groupName : undefined) ?? null,
    timestamp: Number.isInteger(envelope.timestamp) ? envelope.timestamp : null,
    envelope,
  };
}

/** A node's connection to a Wingman Gateway; made by `connect()`. */
export class Node {
  constructor(url, options = {}) {
    if (!options.name) throw new TypeError("connect(url, {name}) needs a name");
    // Several URLs: one cluster's gateways, ranked by load at each connection.
    this.urls = typeof url === "string" ? [url] : Array.from(url ?? []);
    if (!this.urls.length || !this.urls.every((each) => typeof each === "string")) {
      throw new TypeError("connect(url) needs a gateway URL or a list of them");
    }
    this.url = this.urls[0]; // the gateway of the current (or last) connection
    this.name = options.name;
    this.token = options.token;
    this.options = {
      reconnect: true, minBackoff: 500, maxBackoff: 30000, requestTimeout: 10000, transport: undefined,
      probeTimeout: PROBE_TIMEOUT, ...options,
    };
    this.WebSocketClass = options.WebSocket ?? globalThis.WebSocket;
    this.nodeId = null;
    this.rooms = new Map(); // name -> id
    this.positions = new Positions();
    this.descriptions = new Map();
    this.connected = false;
    this.closed = false;
    this.wire = null;
    this.chosen = null; // "websocket" or "http", once open
    this.pending = new Map();
    this.listeners = { message: new Set(), state: new Set() };
    this.streams = new Set();
    // What arrived before anyone consumed (say, while connect() joined
    // rooms: over the bridge a message can overtake the join's reply); null
    // once the first listener or loop took it.
    this.held = [];
    this.ids = 0;
    this.prefix = Math.random().toString(16).slice(2, 10);
    this.reconnecting = null;
  }

  /** `on("message", fn)` for every delivered message; `on("state", fn)` with
   * `(event, details)` for connected ({nodeId, url}), disconnected ({reason,
   * code}), reconnecting ({attempt, delay, lastError}), reconnected ({nodeId,
   * rooms, url}: `url` is the gateway now joined),
   * and, for each room resumed after a reconnect, `recovered` ({room, since,
   * missed}: what was said while away follows, in order) or `gap` ({room,
   * since, reason}: messages may have been lost; reason is the gateway's:
   * "other epoch", "too old", "unknown offset" or "history off"). A broadcast
   * already delivered is never delivered again. Returns a remover. */
  on(event, callback) {
    if (!this.listeners[event]) throw new TypeError(`unknown event ${event}`);
    this.listeners[event].add(callback);
    if (event === "message") for (const message of this.takeHeld()) callback(message);
    return () => this.listeners[event].delete(callback);
  }

  [Symbol.asyncIterator]() {
    const stream = new MessageStream((s) => this.streams.delete(s));
    for (const message of this.takeHeld()) stream.push(message);
    if (this.closed) stream.end(); else this.streams.add(stream);
    return stream;
  }

  takeHeld() {
    const held = this.held ?? [];
    this.held = null;
    return held;
  }

  emit(event, details) {
    for (const callback of [...this.listeners.state]) {
      try { callback(event, details); } catch (error) { console.error("wingman state listener failed", error); }
    }
  }

  kind() {
    const scheme = new URL(this.url).protocol;
    const wanted = this.options.transport ?? (scheme.startsWith("http") ? "http" : "auto");
    if (!["websocket", "http", "auto"].includes(wanted)) throw new WingmanError("CONNECTION_FAILED", `unknown transport ${wanted}`);
    return wanted;
  }

  async openWire(receiver) {
    const kind = this.kind();
    const timeout = this.options.requestTimeout;
    if (kind !== "http" && this.WebSocketClass) {
      const wire = new WebSocketWire(websocketUrl(this.url), receiver, this.WebSocketClass);
      try {
        await this.bounded(wire.open(), `connecting to ${this.url}`, kind === "auto" ? timeout / 2 : timeout);
        this.chosen = "websocket";
        return wire;
      } catch (error) {
        wire.close();
        if (kind === "websocket") throw error;
      }
    } else if (kind === "websocket") {
      throw new WingmanError("CONNECTION_FAILED", "no WebSocket class here: pass one as the WebSocket option");
    }
    const wire = new BridgeWire(this.url, receiver, timeout);
    await this.bounded(wire.open(), `connecting to ${this.url}`);
    this.chosen = "http";
    return wire;
  }

  bounded(promise, what, ms = this.options.requestTimeout) {
    let timer;
    const late = new Promise((_, reject) => {
      timer = setTimeout(() => reject(new WingmanError("TIMEOUT", `${what}: no answer within ${ms / 1000} s`)), ms);
    });
    return Promise.race([promise, late]).finally(() => clearTimeout(timer));
  }

  async connect() {
    if (this.closed) throw new WingmanError("NOT_CONNECTED", "the client is closed");
    if (this.connected) return this.nodeId;
    const nodeId = await this.establish();
    this.connected = true;
    this.emit("connected", { nodeId, url: this.url });
    for (const room of this.options.rooms ?? []) await this.join(room);
    return nodeId;
  }

  /** Register with the first gateway that takes the node: the only URL, or
   * the list ranked by load, moving on while a gateway is unreachable or full. */
  async establish() {
    const urls = this.urls.length > 1
      ? await rankByLoad(this.urls, Math.min(this.options.probeTimeout, this.options.requestTimeout))
      : this.urls;
    for (const [index, url] of urls.entries()) {
      if (this.closed) break;
      this.url = url;
      try {
        return await this.establishAt();
      } catch (error) {
        if (!TRY_NEXT.has(error.code) || index === urls.length - 1 || this.closed) throw error;
      }
    }
    throw new WingmanError("NOT_CONNECTED", "the client was closed while connecting");
  }

  /** Open a wire to `this.url` and register on it. */
  async establishAt() {
    const link = { current: true };
    const receiver = {
      text: (text) => { if (this.link === link) this.received(text); },
      lost: (code, reason) => { if (this.link === link) this.lost(code, reason); },
    };
    this.link = link;
    let wire = null;
    try {
      wire = await this.openWire(receiver);
      if (this.link !== link) throw new WingmanError("NOT_CONNECTED", "the client was closed while connecting");
      this.wire = wire;
      const payload = { name: this.name };
      if (this.token !== undefined) payload.token = this.token;
      if (this.options.capabilities) payload.capabilities = this.options.capabilities;
      if (this.options.agentName) payload.agentName = this.options.agentName;
      if (this.options.metadata) payload.metadata = this.options.metadata;
      const reply = await this.request("register", payload, true);
      this.nodeId = reply.payload.nodeId;
      return this.nodeId;
    } catch (error) {
      wire?.close(CLOSE_NORMAL, "client gave up"); // this attempt's wire, whatever happened since
      if (this.link === link) {
        this.link = null;
        this.wire = null;
        this.failPending("the connection was abandoned");
      }
      throw error;
    }
  }

  lost(code, reason) {
    this.link = null;
    this.wire = null;
    const wasUp = this.connected;
    this.connected = false;
    this.nodeId = null;
    this.failPending(`the connection was lost: ${reason || code}`);
    if (!wasUp) return;
    this.emit("disconnected", { reason: reason || "connection lost", code });
    if (this.closed) return;
    if (this.options.reconnect) this.reconnecting = this.reconnectLoop().finally(() => { this.reconnecting = null; });
    else this.endStreams();
  }

  async reconnectLoop() {
    let lastError = null; // the code that refused the previous attempt
    for (let attempt = 1; !this.closed; attempt++) {
      const ceiling = Math.min(this.options.maxBackoff, this.options.minBackoff * 2 ** Math.min(attempt, 60));
      const delay = this.options.minBackoff + Math.random() * (ceiling - this.options.minBackoff);
      this.emit("reconnecting", { attempt, delay, lastError });
      await new Promise((resolve) => { this.sleeping = setTimeout(resolve, delay); });
      if (this.closed) return;
      let nodeId, rooms;
      try {
        nodeId = await this.establish();
        rooms = await this.rejoin();
      } catch (error) {
        if (this.link) { const wire = this.wire; this.link = null; this.wire = null; wire?.close(); }
        if (FINAL_ON_RECONNECT.has(error.code)) {
          this.emit("disconnected", { reason: error.message, code: null });
          this.endStreams();
          return;
        }
        lastError = error.code ?? null;
        continue;
      }
      if (!this.link) continue; // lost again while rejoining
      this.connected = true;
      this.emit("reconnected", { nodeId, rooms: Object.fromEntries(rooms), url: this.url });
      return;
    }
  }

  /** Join every room this node was in again, by name, from its last position
   * (`since`); tell `recovered` or `gap` for each; drop those refused. */
  async rejoin() {
    const joined = new Map();
    for (const name of [...this.rooms.keys()]) {
      const since = this.positions.get(name);
      let reply;
      try {
        reply = await this.request("join_group", this.joinPayload(name, true, this.descriptions.get(name), since), true);
      } catch (error) {
        if (CONNECTION_CODES.has(error.code)) throw error;
        continue;
      }
      const ack = reply.payload;
      joined.set(ack.groupName, ack.groupId);
      const resumed = this.positions.resumed(ack.groupName, since, ack, reply);
      if (resumed) this.emit(...resumed);
    }
    for (const name of this.rooms.keys()) if (!joined.has(name)) this.descriptions.delete(name);
    this.positions.keep([...joined.keys()]);
    this.rooms = joined;
    return joined;
  }

  joinPayload(room, create, description, since) {
    const payload = { groupName: room, createIfNotExists: create };
    if (description !== undefined) payload.description = description;
    if (since) payload.since = { offset: since.offset, epoch: since.epoch };
    return payload;
  }

  async close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.sleeping);
    if (this.wire && this.connected) {
      try { await this.request("unregister", undefined, true); } catch { /* closing anyway */ }
    }
    const wire = this.wire;
    const wasUp = this.connected;
    this.link = null;
    this.wire = null;
    this.connected = false;
    this.nodeId = null;
    wire?.close(CLOSE_NORMAL, "client closed");
    this.failPending("the client closed");
    if (wasUp) this.emit("disconnected", { reason: "client closed", code: null });
    this.endStreams();
  }

  endStreams() {
    for (const stream of this.streams) stream.end();
    this.streams.clear();
  }

  // -- requests ------------------------------------------------------------

  async join(room, { create = true, description } = {}) {
    const reply = await this.request("join_group", this.joinPayload(room, create, description));
    const ack = reply.payload;
    this.rooms.set(ack.groupName, ack.groupId);
    if (description !== undefined) this.descriptions.set(ack.groupName, description);
    this.positions.joined(ack.groupName, ack, reply);
    return ack;
  }

  async leave(room) {
    const reply = await this.request("leave_group", { groupId: this.rooms.get(room) ?? room });
    const name = reply.payload.groupName ?? room;
    this.rooms.delete(name);
    this.descriptions.delete(name);
    this.positions.forget(name);
    return reply.payload;
  }

  /** Send `message` to the other members of `room`; how many there were. A
   * retry with the same idempotency `key` (say, after a reconnect, when the
   * first ack was lost) is delivered only once: the gateway answers it with the
   * first send's recipients. */
  async broadcast(room, message, { key } = {}) {
    const fields = key === undefined ? undefined : { idempotencyKey: key };
    const reply = await this.request("broadcast", { groupId: this.rooms.get(room) ?? room, message }, false, fields);
    this.positions.sent(reply.payload.groupName ?? room, reply.payload);
    return reply.payload.recipients;
  }

  async direct(nodeId, message) {
    await this.request("direct", { targetNodeId: nodeId, message });
  }

  async ping() {
    const started = Date.now();
    await this.request("ping");
    return Date.now() - started;
  }

  async who(room) {
    const groupId = this.rooms.get(room) ?? ([...this.rooms.values()].includes(room) ? room : null);
    if (!groupId) throw new WingmanError("NOT_A_MEMBER", `not in room ${room}; join it first`);
    const reply = await this.request("join_group", { groupId, createIfNotExists: false });
    return reply.payload.members;
  }

  request(type, payload, internal = false, fields = undefined) {
    if (!this.wire || !(internal || this.connected)) {
      const state = this.closed ? "the client is closed" : "not connected to the gateway";
      return Promise.reject(new WingmanError("NOT_CONNECTED", this.reconnecting ? `${state} (reconnecting)` : state));
    }
    const messageId = `${this.prefix}-${++this.ids}`;
    const envelope = { type, messageId, ...fields };
    if (payload !== undefined) envelope.payload = payload;
    const text = JSON.stringify(envelope);
    const answer = new Promise((resolve, reject) => { this.pending.set(messageId, { resolve, reject }); });
    try {
      this.wire.send(text);
    } catch (error) {
      this.pending.delete(messageId);
      return Promise.reject(error);
    }
    return this.bounded(answer, `waiting for the reply to ${type}`)
      .finally(() => this.pending.delete(messageId))
      .then((reply) => {
        if (reply.type === "error") throw WingmanError.fromPayload(reply.payload);
        return reply;
      });
  }

  failPending(why) {
    for (const { reject } of this.pending.values()) reject(new WingmanError("CONNECTION_LOST", why));
    this.pending.clear();
  }

  // -- what arrives ----------------------------------------------------------

  received(text) {
    let envelope;
    try { envelope = JSON.parse(text); } catch { return; }
    if (!envelope || typeof envelope !== "object" || Array.isArray(envelope)) return;
    const kind = envelope.type;
    if (kind === "ping") {
      const pong = { type: "pong" };
      if (envelope.messageId !== undefined) pong.messageId = envelope.messageId;
      try { this.wire?.send(JSON.stringify(pong)); } catch { /* lost; noticed elsewhere */ }
      return;
    }
    if ((kind === "ack" || kind === "error" || kind === "pong") && envelope.messageId !== undefined) {
      this.pending.get(envelope.messageId)?.resolve(envelope);
      return;
    }
    if (kind === "ack" || kind === "pong") return;
    const message = toMessage(envelope);
    if (kind === "broadcast") {
      const room = message.groupName ?? [...this.rooms].find(([, id]) => id === message.groupId)?.[0];
      if (room && !this.positions.delivered(room, envelope)) return; // delivered before a reconnect already
    }
    if (this.held) {
      if (this.held.length < 100) this.held.push(message);
      return;
    }
    for (const callback of [...this.listeners.message]) {
      try { callback(message); } catch (error) { console.error("wingman message listener failed", error); }
    }
    for (const stream of this.streams) stream.push(message);
  }
}

/** Connect to the gateway at `url`, register as `name` and join `rooms`.
 * `url` may be a list: gateways of one cluster; each connection and
 * reconnection takes the least loaded that answers (see the top of this file).
 * Options: token, rooms, capabilities, agentName, metadata, WebSocket (a
 * class), transport ("websocket" | "http" | "auto"), reconnect (true),
 * minBackoff/maxBackoff (ms), requestTimeout (ms), probeTimeout (ms, 2000:
 * how long /health is waited for, at most requestTimeout). */
export async function connect(url, options = {}) {
  const node = new Node(url, options);
  try {
    await node.connect();
  } catch (error) {
    await node.close();
    throw error;
  }
  return node;
}

// -- agent-stream helpers ---------------------------------------------------

const stamp = (type, fields) => ({ type, ...fields, timestamp: Date.now() });

/** The text tokens in a raw agent-stream chunk, whatever its common shape. */
export function chunkText(chunk) {
  if (typeof chunk === "string") return chunk;
  if (Array.isArray(chunk)) return chunk.map(chunkText).join("");
  if (chunk && typeof chunk === "object") {
    for (const key of ["text", "content", "delta", "token"]) {
      if (typeof chunk[key] === "string" || Array.isArray(chunk[key])) return chunkText(chunk[key]);
    }
    if (chunk.data && typeof chunk.data === "object" && "chunk" in chunk.data) return chunkText(chunk.data.chunk);
    if ("chunk" in chunk) return chunkText(chunk.chunk);
  }
  return "";
}

/** Stream one answer to `room`: agent-start now, then `send(chunk)` for
 * agent-stream, `tool(name, input, fn)` for tool-start/tool-end, and
 * `complete(result?)` or `fail(error)`.
 *
 *   const reply = await answer(node, "alpha", { prompt, agent: "model" });
 *   for await (const token of model(prompt)) await reply.send(token);
 *   await reply.complete();
 */
export async function answer(node, room, { prompt, agent, sessionId } = {}) {
  let text = "";
  const emit = (payload) => node.broadcast(room, payload);
  await emit(stamp("agent-start", sessionId === undefined ? { agent, prompt } : { agent, prompt, sessionId }));
  return {
    get text() { return text; },
    send(chunk) { text += chunkText(chunk); return emit(stamp("agent-stream", { chunk })); },
    async tool(toolName, toolInput, run) {
      await emit(stamp("tool-start", { toolName, toolInput }));
      let toolOutput;
      try { toolOutput = await run(); } catch (error) {
        await emit(stamp("tool-end", { toolName, toolOutput: { error: String(error?.message ?? error) } }));
        throw error;
      }
      await emit(stamp("tool-end", { toolName, toolOutput }));
      return toolOutput;
    },
    complete(result) { return emit(stamp("agent-complete", { result: result ?? { response: text } })); },
    fail(error) {
      const fields = { error: String(error?.message ?? error) };
      if (error?.stack) fields.stack = error.stack;
      return emit(stamp("agent-error", fields));
    },
  };
}
