// The Overview, Rooms and Admin views. Each is built once when shown and
// refreshed in place (`update()`), so typing and focus survive the polls.

import { api } from "./gateway.js";
import { RateChart, formatRate } from "./chart.js";
import { duration, el, fill } from "./dom.js";

export const roomLink = (name) => `#/rooms/${encodeURIComponent(name)}`;

function card(title, ...body) {
  return el("div", { class: "card" }, el("h3", {}, title), ...body);
}

function transportsOf(session) {
  const counts = new Map();
  for (const node of session.stats?.nodes?.nodes ?? []) counts.set(node.transport, (counts.get(node.transport) ?? 0) + 1);
  return counts;
}

/** The cluster's gateways, when /health has a cluster section. */
function clusterOf(health) {
  const gateways = health?.cluster?.gateways;
  if (!Array.isArray(gateways) || !gateways.length) return null;
  return el("ul", { class: "gateways" }, gateways.map((gateway) => el("li", {},
    String(gateway.name ?? gateway.id ?? "?"),
    Number.isInteger(gateway.nodes) ? el("span", { class: "muted" }, ` ${gateway.nodes} node${gateway.nodes === 1 ? "" : "s"} `) : " ",
    gateway.self ? el("span", { class: "badge" }, "this one") : null)));
}

export function overview(session) {
  const figures = el("div", { class: "cards" });
  const canvas = el("canvas", { class: "chart", role: "img", "aria-label": "messages per second" });
  const rate = el("span", { class: "rate" });
  const transports = el("ul", { class: "chips" });
  const note = el("p", { class: "note" });
  const chart = new RateChart(canvas);
  const node = el("section", { class: "view overview" },
    el("h2", {}, "Overview"),
    figures,
    el("section", { class: "panel" },
      el("h3", {}, "Messages per second ", rate),
      canvas),
    el("section", { class: "panel" }, el("h3", {}, "Transports in use"), transports, note));
  const update = () => {
    const health = session.health;
    const stats = health?.stats ?? {};
    fill(figures,
      card("Gateway", el("p", { class: "big", "data-figure": "gateway" }, health?.name ?? "—"),
        el("p", { class: "muted" }, health ? `version ${health.version} · auth ${health.auth}` : "not answering"),
        clusterOf(health)),
      card("Uptime", el("p", { class: "big" }, health ? duration(stats.uptime ?? 0) : "—")),
      card("Nodes", el("p", { class: "big", "data-figure": "nodes" }, String(stats.totalNodes ?? "—"))),
      card("Rooms", el("p", { class: "big", "data-figure": "rooms" }, String(stats.totalGroups ?? "—"))),
      card("Messages", el("p", { class: "big" }, String(stats.messagesProcessed ?? "—")),
        el("p", { class: "muted" }, "processed since start")));
    const rates = session.rates;
    fill(rate, rates.length ? `${formatRate(rates[rates.length - 1])}/s` : "");
    chart.samples = rates.slice();
    chart.draw();
    const counts = transportsOf(session);
    fill(transports, [...counts].map(([name, count]) => el("li", { class: "chip", "data-transport": name }, `${name} ${count}`)));
    fill(note, session.statsProblem ?? (session.transport ? `this console: ${session.transport}` : ""));
  };
  return { node, update, resize: () => chart.draw() };
}

export function rooms(session, open) {
  const input = el("input", { id: "room-name", name: "room", required: true, maxlength: 128, placeholder: "room name", autocomplete: "off" });
  const problem = el("p", { class: "problem", role: "alert" });
  const form = el("form", { class: "join-form", onsubmit: async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    if (!name) return;
    fill(problem);
    try {
      await session.join(name);
      open(name);
    } catch (error) {
      fill(problem, `cannot join ${name}: ${error.message}`);
    }
  } }, el("label", { for: "room-name", class: "visually-hidden" }, "Room"), input, el("button", { type: "submit" }, "Join"));
  const list = el("ul", { class: "room-list" });
  const note = el("p", { class: "note" });
  const node = el("section", { class: "view rooms" }, el("h2", {}, "Rooms"), form, problem, list, note);
  const update = () => {
    const known = new Map();
    for (const room of session.stats?.groups?.groups ?? []) known.set(room.name, { name: room.name, count: room.memberCount, description: room.description });
    for (const room of session.rooms.values()) {
      if (!known.has(room.name) && !room.closed) known.set(room.name, { name: room.name, count: room.members.size });
    }
    const entries = [...known.values()].sort((a, b) => a.name.localeCompare(b.name));
    fill(list, entries.map((room) => el("li", { "data-room": room.name },
      el("a", { href: roomLink(room.name) }, room.name),
      room.description ? el("span", { class: "muted" }, room.description) : null,
      session.rooms.has(room.name) ? el("span", { class: "badge" }, "joined") : null,
      el("span", { class: "count" }, `${room.count} member${room.count === 1 ? "" : "s"}`))));
    fill(note, entries.length ? (session.statsProblem ?? "") : (session.statsProblem ?? "No rooms yet: join one to create it."));
  };
  return { node, update };
}

/** Fill a select, keeping the user's pick when it is still there. */
function offer(select, options, empty) {
  const picked = select.value;
  fill(select, options.length ? null : el("option", { value: "" }, empty),
    options.map(([value, text]) => el("option", { value }, text)));
  if (options.some(([value]) => value === picked)) select.value = picked;
}

function knownTargets(session) {
  const nodes = (session.stats?.nodes?.nodes ?? []).map((n) => [n.id, `${n.name} (${n.transport}, ${n.id})`]);
  for (const room of session.rooms.values()) {
    for (const member of room.members.values()) {
      if (!nodes.some(([id]) => id === member.nodeId)) nodes.push([member.nodeId, `${member.name} (${member.nodeId})`]);
    }
  }
  const names = new Set([...(session.stats?.groups?.groups ?? []).map((r) => r.name),
    ...[...session.rooms.values()].filter((r) => !r.closed).map((r) => r.name)]);
  return { nodes, rooms: [...names].sort().map((name) => [name, name]) };
}

export function admin(session) {
  const result = el("p", { class: "result", role: "status", "aria-live": "polite" });
  const act = async (what, call) => {
    // Without a credential the call still goes out: the gateway's refusal says what is missing.
    result.className = "result";
    fill(result, `${what}…`);
    try {
      const answer = await call(session.admin);
      result.classList.add("good");
      fill(result, `${what}: done ${JSON.stringify(answer)}`);
      session.poll();
    } catch (error) {
      result.classList.add("bad");
      const hint = error.status === 401 && !session.admin ? " (give the admin credential under Connection)" : "";
      fill(result, `${what} failed: ${error.status ? `HTTP ${error.status} ` : ""}${error.message}${hint}`);
    }
  };
  const nodeSelect = el("select", { id: "admin-node", required: true });
  const nodeReason = el("input", { id: "admin-node-reason", placeholder: "reason (optional)", maxlength: 200 });
  const closeSelect = el("select", { id: "admin-close-room", required: true });
  const closeReason = el("input", { id: "admin-close-reason", placeholder: "reason (optional)", maxlength: 200 });
  const publishSelect = el("select", { id: "admin-publish-room", required: true });
  const message = el("textarea", { id: "admin-message", rows: 3, required: true, placeholder: "text, or JSON with the box ticked" });
  const asJson = el("input", { type: "checkbox", id: "admin-json" });
  const form = (action, title, submit, ...fields) => el("form", { class: "panel", "data-action": action, onsubmit: (event) => {
    event.preventDefault();
    submit();
  } }, el("h3", {}, title), ...fields);
  const node = el("section", { class: "view admin" },
    el("h2", {}, "Admin"),
    el("p", { class: "note" }, "These actions use the server API with the admin credential given under Connection."),
    result,
    el("div", { class: "admin-forms" },
      form("disconnect", "Disconnect a node",
        () => act("disconnect", (credential) => api.disconnect(credential, nodeSelect.value, nodeReason.value.trim())),
        el("label", { for: "admin-node" }, "Node"), nodeSelect,
        el("label", { for: "admin-node-reason" }, "Reason"), nodeReason,
        el("button", { type: "submit", class: "danger" }, "Disconnect")),
      form("close", "Close a room",
        () => act("close room", (credential) => api.close(credential, closeSelect.value, closeReason.value.trim())),
        el("label", { for: "admin-close-room" }, "Room"), closeSelect,
        el("label", { for: "admin-close-reason" }, "Reason"), closeReason,
        el("button", { type: "submit", class: "danger" }, "Close room")),
      form("publish", "Publish as the gateway", () => {
        let value = message.value;
        if (asJson.checked) {
          try { value = JSON.parse(value); } catch (error) {
            result.className = "result bad";
            fill(result, `publish: not JSON: ${error.message}`);
            return;
          }
        }
        act("publish", (credential) => api.publish(credential, publishSelect.value, value));
      },
      el("label", { for: "admin-publish-room" }, "Room"), publishSelect,
      el("label", { for: "admin-message" }, "Message"), message,
      el("label", { class: "check" }, asJson, "send as JSON"),
      el("button", { type: "submit" }, "Publish"))));
  const update = () => {
    const { nodes, rooms } = knownTargets(session);
    offer(nodeSelect, nodes, "no nodes known");
    offer(closeSelect, rooms, "no rooms known");
    offer(publishSelect, rooms, "no rooms known");
  };
  return { node, update };
}
