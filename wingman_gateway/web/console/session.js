// The console's one connection: a node through the JavaScript client
// (WebSocket, else the HTTP bridge), the rooms it is in with their members
// and message streams, and the gateway's figures polled from /health and
// /stats. Secrets stay in memory, or in session storage when the user
// asks to be remembered; never in the URL.

import { connect } from "../client/wingman.js";
import * as gateway from "./gateway.js";
import { RoomStream } from "./stream.js";

const SAVED = "wingman-console";
const POLL_MS = 2000;
const RATE_SAMPLES = 90;

function randomName() {
  const bytes = crypto.getRandomValues(new Uint8Array(2));
  return `console-${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

class Room {
  constructor(name, id) {
    this.name = name;
    this.id = id;
    this.members = new Map(); // nodeId -> {nodeId, name, capabilities, agentName}
    this.stream = new RoomStream();
    this.closed = false;
  }

  setMembers(members) {
    this.members = new Map((members ?? []).map((member) => [member.nodeId, member]));
  }
}

export class Session extends EventTarget {
  constructor() {
    super();
    const saved = this.saved();
    this.remember = Boolean(saved.remember);
    this.name = saved.name || randomName();
    this.token = saved.token || "";
    this.admin = saved.admin || "";
    this.node = null;
    this.state = "offline"; // offline, connecting, connected, reconnecting
    this.problem = null;
    this.rooms = new Map(); // room name -> Room
    this.current = null; // the room on screen, where direct messages show
    this.health = null;
    this.stats = null;
    this.statsProblem = null;
    this.rates = [];
    this.last = null; // {count, at} of the previous /health
    this.timer = null;
    this.refusal = null; // {at, text}: the last error the gateway sent without a request's id
  }

  saved() {
    try { return JSON.parse(sessionStorage.getItem(SAVED) || "{}") || {}; } catch { return {}; }
  }

  /** Keep name and secrets for this tab only when asked to; forget them otherwise. */
  save() {
    if (this.remember) sessionStorage.setItem(SAVED, JSON.stringify({ remember: true, name: this.name, token: this.token, admin: this.admin }));
    else sessionStorage.removeItem(SAVED);
  }

  changed(what) {
    this.dispatchEvent(new CustomEvent("change", { detail: what }));
  }

  get authRequired() {
    return this.health?.auth === "required";
  }

  get transport() {
    return this.node?.chosen === "http" ? "http bridge" : this.node?.chosen ?? null;
  }

  // -- the gateway's figures -------------------------------------------------

  startPolling() {
    if (this.timer) return;
    const tick = async () => {
      await this.poll(true);
      this.timer = setTimeout(tick, POLL_MS);
    };
    return tick();
  }

  /** Ask /health and /stats now; `sample` (the regular tick) also measures the message rate. */
  async poll(sample = false) {
    try {
      const health = await gateway.health();
      const count = health.stats?.messagesProcessed ?? 0;
      const at = health.timestamp ?? Date.now();
      if (sample) {
        if (this.last && at - this.last.at >= 500 && count >= this.last.count) {
          this.rates.push((count - this.last.count) * 1000 / (at - this.last.at));
          if (this.rates.length > RATE_SAMPLES) this.rates.shift();
        }
        this.last = { count, at };
      }
      this.health = health;
    } catch (error) {
      this.health = null;
      this.problem = `the gateway does not answer /health: ${error.message}`;
    }
    try {
      this.stats = await gateway.stats(this.admin || this.token || undefined);
      this.statsProblem = null;
    } catch (error) {
      this.stats = null;
      this.statsProblem = error.status === 401 || error.status === 403
        ? `node and room lists need a credential (/stats: ${error.message})`
        : `/stats: ${error.message}`;
    }
    this.changed("figures");
  }

  /** The node /stats reports for `nodeId`, if it was visible. */
  reported(nodeId) {
    return this.stats?.nodes?.nodes?.find((node) => node.id === nodeId) ?? null;
  }

  // -- the node ----------------------------------------------------------------

  async connect() {
    await this.disconnect();
    this.save();
    this.state = "connecting";
    this.problem = null;
    this.changed("state");
    const wanted = [...this.rooms.keys()];
    let node;
    try {
      node = await connect(gateway.nodeUrl(), {
        name: this.name, token: this.token || undefined, capabilities: ["console"], rooms: wanted,
      });
    } catch (error) {
      this.state = "offline";
      this.problem = error.code === "AUTH_FAILED" ? `the gateway refused the token (${error.message})` : error.message;
      this.changed("state");
      return false;
    }
    this.node = node;
    this.state = "connected";
    node.on("state", (event, details) => this.nodeState(node, event, details));
    node.on("message", (message) => this.received(message));
    await Promise.all(wanted.map((name) => this.refresh(name)));
    this.changed("state");
    return true;
  }

  async disconnect() {
    const node = this.node;
    this.node = null;
    if (node) await node.close();
    this.state = "offline";
    this.changed("state");
  }

  nodeState(node, event, details) {
    if (node !== this.node) return;
    if (event === "recovered" || event === "gap") {
      this.rooms.get(details?.room)?.stream.resumed(event, details); // the line draws itself
      return;
    }
    if (event === "disconnected") {
      this.state = node.reconnecting ? "reconnecting" : "offline";
      this.problem = details?.reason ? `disconnected: ${details.reason}` : null;
    } else if (event === "reconnecting") {
      this.state = "reconnecting";
    } else if (event === "reconnected" || event === "connected") {
      this.state = "connected";
      this.problem = null;
      for (const name of this.rooms.keys()) this.refresh(name);
    }
    this.changed("state");
  }

  /** Members of a room as the gateway has them now (after a (re)join). */
  async refresh(name) {
    const room = this.rooms.get(name);
    if (!room || !this.node) return;
    try {
      room.setMembers(await this.node.who(name));
      room.id = this.node.rooms.get(name) ?? room.id;
      room.closed = false;
    } catch { /* not in it any more; presence says so */ }
    this.changed("members");
  }

  // -- rooms ---------------------------------------------------------------------

  async join(name) {
    if (!this.node) throw new Error("not connected: connect first");
    const ack = await this.node.join(name);
    let room = this.rooms.get(ack.groupName);
    if (!room) {
      room = new Room(ack.groupName, ack.groupId);
      this.rooms.set(ack.groupName, room);
    }
    room.id = ack.groupId;
    room.closed = false;
    room.setMembers(ack.members);
    room.stream.notice(ack.created ? `you created ${ack.groupName}` : `you joined ${ack.groupName}`);
    this.changed("rooms");
    return room;
  }

  async leave(name) {
    if (this.node && !this.rooms.get(name)?.closed) await this.node.leave(name);
    this.rooms.delete(name);
    this.changed("rooms");
  }

  async say(name, text, to = null) {
    const room = this.rooms.get(name);
    if (!this.node || !room) throw new Error("not connected");
    if (to) await this.node.direct(to.nodeId, text);
    else await this.node.broadcast(name, text);
    room.stream.sent(text, to?.name ?? null);
  }

  roomOf(message) {
    if (message.groupName && this.rooms.has(message.groupName)) return this.rooms.get(message.groupName);
    return [...this.rooms.values()].find((room) => room.id === message.groupId) ?? null;
  }

  received(message) {
    if (message.type === "presence") return this.presence(message);
    if (message.type === "error") {
      // A refusal the gateway could not tie to a request (an oversized message is not read).
      this.refusal = { at: Date.now(), text: `${message.payload?.code}: ${message.payload?.message}` };
      this.changed("refusal");
      return;
    }
    if (message.type === "broadcast") {
      this.roomOf(message)?.stream.add(message);
    } else if (message.type === "direct") {
      // A direct message belongs to no room: it shows in the room on screen.
      const room = this.rooms.get(this.current) ?? this.rooms.values().next().value;
      room?.stream.add({ ...message, direct: true });
    }
    this.changed("message");
  }

  presence(message) {
    const about = message.payload ?? {};
    const room = this.roomOf(message);
    if (!room) return;
    // Joins and departures within one turn of the gateway come as one batch.
    const events = about.event === "batch" && Array.isArray(about.events) ? about.events : [about];
    for (const one of events) this.presenceEvent(room, one ?? {});
    this.changed("members");
  }

  presenceEvent(room, about) {
    if (about.event === "joined") {
      room.members.set(about.nodeId, { nodeId: about.nodeId, name: about.name, capabilities: about.capabilities ?? [], agentName: about.agentName });
      room.stream.notice(`${about.name} joined`);
    } else if (about.event === "left") {
      room.members.delete(about.nodeId);
      room.stream.notice(`${about.name} left${about.reason ? ` (${about.reason})` : ""}`);
    } else if (about.event === "closed") {
      room.closed = true;
      room.members.clear();
      // The gateway closed it: the client must not rejoin it on reconnect.
      this.node?.rooms.delete(room.name);
      room.stream.notice(`the room was closed by the gateway${about.reason ? `: ${about.reason}` : ""}`);
    }
  }
}
