// A room's message stream: agent answers as one bubble each (text streaming
// in, tool calls as collapsible steps, completion or error marked), plain
// messages as chat lines, any other JSON shown indented. Text only ever
// enters the page as text nodes.

import { chunkText } from "../client/wingman.js";
import { clock, el, readable } from "./dom.js";

const AGENT_EVENTS = new Set(["agent-start", "agent-stream", "tool-start", "tool-end", "agent-complete", "agent-error"]);
const KEEP = 500; // entries kept per room; older ones are dropped from the page

/** The text of a chat-like payload (a string, or {text|content|message: string}), else null. */
function chatText(payload) {
  if (typeof payload === "string") return payload;
  if (payload && typeof payload === "object" && !Array.isArray(payload)) {
    const keys = Object.keys(payload).filter((key) => key !== "type" && key !== "timestamp");
    for (const key of ["text", "content", "message"]) {
      if (typeof payload[key] === "string" && keys.length === 1) return payload[key];
    }
  }
  return null;
}

function sender(message) {
  return message.fromName ?? (message.fromNodeId ? message.fromNodeId : "gateway");
}

class Answer {
  constructor(message, start) {
    this.status = el("span", { class: "badge state streaming" }, "streaming");
    this.steps = el("div", { class: "steps" });
    this.text = el("div", { class: "text" });
    this.pending = [];
    const agent = start?.agent ? String(start.agent) : null;
    // Busy while streaming, so a screen reader reads the answer once, not token by token.
    this.node = el("article", { class: "entry answer", "data-from": message.fromNodeId ?? "", "aria-busy": "true" },
      el("header", {},
        el("span", { class: "who" }, sender(message)),
        agent && agent !== sender(message) ? el("span", { class: "agent" }, agent) : null,
        message.direct ? el("span", { class: "badge direct" }, "direct") : null,
        this.status,
        el("time", {}, clock(message.timestamp))),
      start?.prompt !== undefined ? el("p", { class: "prompt" }, String(start.prompt)) : null,
      this.steps,
      this.text);
  }

  add(payload) {
    const text = chunkText(payload.chunk);
    if (text) this.text.append(document.createTextNode(text));
  }

  toolStart(payload) {
    const state = el("span", { class: "badge running" }, "running");
    const step = el("details", { class: "step" },
      el("summary", {}, el("span", { class: "tool" }, String(payload.toolName ?? "tool")), state),
      el("div", { class: "label" }, "input"),
      el("pre", {}, readable(payload.toolInput ?? null)));
    this.pending.push({ name: payload.toolName, step, state });
    this.steps.append(step);
  }

  toolEnd(payload) {
    let index = this.pending.findIndex((entry) => entry.name === payload.toolName);
    if (index < 0) { this.toolStart(payload); index = this.pending.length - 1; }
    const [{ step, state }] = this.pending.splice(index, 1);
    state.className = "badge done";
    state.textContent = "done";
    step.append(el("div", { class: "label" }, "output"), el("pre", {}, readable(payload.toolOutput ?? null)));
  }

  finish(payload) {
    this.status.className = "badge state done";
    this.status.textContent = "complete";
    if (!this.text.textContent && payload.result !== undefined && payload.result !== null) {
      const result = payload.result;
      const response = typeof result?.response === "string" ? result.response : null;
      this.text.append(document.createTextNode(response ?? readable(result)));
    }
    this.node.classList.add("complete");
    this.node.removeAttribute("aria-busy");
  }

  fail(payload) {
    this.status.className = "badge state error";
    this.status.textContent = "error";
    this.node.classList.add("failed");
    this.node.removeAttribute("aria-busy");
    this.node.append(el("p", { class: "error-text" }, String(payload.error ?? "the agent failed")));
    if (payload.stack) this.node.append(el("details", { class: "step" }, el("summary", {}, "stack"), el("pre", {}, String(payload.stack))));
  }
}

export class RoomStream {
  constructor() {
    this.node = el("div", { class: "stream", role: "log", "aria-live": "polite", "aria-label": "messages" });
    this.answers = new Map(); // sender node id -> the answer it is streaming
    this.following = undefined; // whether to scroll to the end after this frame
  }

  /** A delivered broadcast or direct (`message.direct` set for directs). */
  add(message) {
    const payload = message.payload;
    const kind = payload && typeof payload === "object" ? payload.type : undefined;
    if (AGENT_EVENTS.has(kind)) return this.agent(message, kind, payload);
    const text = chatText(payload);
    if (text !== null) return this.chat(message, text);
    this.append(el("article", { class: "entry json" },
      this.head(message),
      el("pre", {}, readable(payload))));
  }

  agent(message, kind, payload) {
    this.follow();
    const key = message.fromNodeId ?? "gateway";
    let answer = this.answers.get(key);
    if (kind === "agent-start" || !answer) {
      answer = new Answer(message, kind === "agent-start" ? payload : null);
      this.answers.set(key, answer);
      this.append(answer.node);
      if (kind === "agent-start") return;
    }
    if (kind === "agent-stream") answer.add(payload);
    else if (kind === "tool-start") answer.toolStart(payload);
    else if (kind === "tool-end") answer.toolEnd(payload);
    else {
      if (kind === "agent-complete") answer.finish(payload); else answer.fail(payload);
      this.answers.delete(key);
    }
  }

  chat(message, text, mine = false) {
    this.append(el("p", { class: mine ? "entry chat mine" : "entry chat" },
      el("time", {}, clock(message.timestamp)),
      el("span", { class: "who" }, mine ? "you" : sender(message)),
      message.direct ? el("span", { class: "badge direct" }, mine ? `to ${message.to}` : "direct") : null,
      el("span", { class: "body" }, text)));
  }

  /** What this console sent (the gateway does not echo it back). */
  sent(text, to = null) {
    this.chat({ timestamp: Date.now(), direct: Boolean(to), to }, text, true);
  }

  /** A line about the room itself: presence, closing, resuming. */
  notice(text, kind = null) {
    this.append(el("p", { class: kind ? `entry notice ${kind}` : "entry notice" },
      el("time", {}, clock()), el("span", { class: "what" }, text)));
  }

  /** How the room resumed after a reconnect (the client's `recovered` or
   * `gap`): what was said meanwhile follows, or some of it is lost. */
  resumed(event, details) {
    if (event === "recovered") {
      const missed = Number(details?.missed ?? 0);
      this.notice(`${missed} missed message${missed === 1 ? "" : "s"} recovered`, "recovered");
    } else {
      this.notice(`messages may have been lost while away (${details?.reason ?? "unknown"})`, "gap");
    }
  }

  head(message) {
    return el("header", {},
      el("span", { class: "who" }, sender(message)),
      message.direct ? el("span", { class: "badge direct" }, "direct") : null,
      el("time", {}, clock(message.timestamp)));
  }

  append(entry) {
    this.follow();
    this.node.append(entry);
    while (this.node.childElementCount > KEEP) this.node.firstElementChild.remove();
  }

  /** Keep the newest entry in view if the reader was at the end: measured
   * once per frame, before this frame's changes, and scrolled after them
   * (not once per token, which would lay the page out for each). */
  follow() {
    if (this.following !== undefined) return;
    this.following = this.atEnd();
    requestAnimationFrame(() => {
      if (this.following) this.toEnd();
      this.following = undefined;
    });
  }

  toEnd() {
    this.node.scrollTop = this.node.scrollHeight;
  }

  atEnd() {
    return this.node.scrollHeight - this.node.scrollTop - this.node.clientHeight < 48;
  }
}
