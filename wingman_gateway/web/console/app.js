// The console: the connection form, the views and hash routes
// (#/, #/rooms, #/rooms/NAME, #/admin). It is a node of the gateway that
// served it, through the gateway's own JavaScript client.

import { el, fill } from "./dom.js";
import { room } from "./room.js";
import { Session } from "./session.js";
import { admin, overview, roomLink, rooms } from "./views.js";

const session = new Session();
const $ = (id) => document.getElementById(id);
const main = $("view");
let shown = null; // {route, view}

// -- the connection form ---------------------------------------------------

const form = $("connect-form");
const panel = $("connection");
const toggle = $("connection-toggle");

function showPanel(open) {
  panel.hidden = !open;
  toggle.setAttribute("aria-expanded", String(open));
  if (open) $("name").focus();
}

function fillForm() {
  $("name").value = session.name;
  $("token").value = session.token;
  $("admin").value = session.admin;
  $("remember").checked = session.remember;
}

toggle.addEventListener("click", () => showPanel(panel.hidden));

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  const token = $("token").value.trim();
  const reconnect = name !== session.name || token !== session.token || session.state === "offline";
  session.name = name;
  session.token = token;
  session.admin = $("admin").value.trim();
  session.remember = $("remember").checked;
  session.save();
  if (reconnect && name) {
    if (await session.connect()) showPanel(false);
  } else {
    showPanel(false);
  }
  session.poll();
});

$("disconnect").addEventListener("click", () => session.disconnect());

function showState() {
  const labels = {
    connected: `${session.name} · ${session.transport ?? ""}`,
    connecting: "connecting…",
    reconnecting: "reconnecting…",
    offline: "not connected",
  };
  toggle.dataset.state = session.state;
  fill($("connection-state"), labels[session.state]);
  $("token-field").hidden = !(session.authRequired || session.token);
  const note = session.problem
    ?? (session.authRequired && !session.token ? "This gateway requires a token." : "");
  fill($("connect-note"), note);
}

// -- routes ------------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#\/?/, "");
  if (hash.startsWith("rooms/")) return { kind: "room", name: decodeURIComponent(hash.slice("rooms/".length)) };
  if (hash === "rooms") return { kind: "rooms" };
  if (hash === "admin") return { kind: "admin" };
  return { kind: "overview" };
}

const open = (name) => { location.hash = roomLink(name); };

async function leave(name) {
  try { await session.leave(name); } catch { /* gone already */ }
  location.hash = "#/rooms";
}

async function show() {
  const wanted = route();
  const key = JSON.stringify(wanted);
  if (shown?.key !== key) {
    let view;
    if (wanted.kind === "room") {
      session.current = wanted.name;
      view = room(session, wanted.name, leave);
    } else if (wanted.kind === "rooms") view = rooms(session, open);
    else if (wanted.kind === "admin") view = admin(session);
    else view = overview(session);
    shown = { key, view, wanted };
    fill(main, view.node);
    for (const link of document.querySelectorAll("nav a")) {
      const current = link.dataset.view === (wanted.kind === "room" ? "rooms" : wanted.kind);
      if (current) link.setAttribute("aria-current", "page"); else link.removeAttribute("aria-current");
    }
    document.title = wanted.kind === "room" ? `${wanted.name} · Wingman console` : "Wingman console";
  }
  shown.view.update();
  if (wanted.kind === "room" && !session.rooms.has(wanted.name) && session.state === "connected") {
    try {
      await session.join(wanted.name); // a deep link opens (and creates) the room
      shown.view.focus?.();
    } catch (error) {
      fill(main, el("section", { class: "view" }, el("p", { class: "problem", role: "alert" }, `cannot join ${wanted.name}: ${error.message}`)));
      shown = null;
    }
  }
}

window.addEventListener("hashchange", show);
window.addEventListener("resize", () => shown?.view.resize?.());
session.addEventListener("change", (event) => {
  if (event.detail === "state" || event.detail === "figures") showState();
  if (event.detail === "state") show();
  else if (event.detail !== "message") shown?.view.update(); // a message draws itself in its stream
});

// -- start ------------------------------------------------------------------------

async function start() {
  fillForm();
  show();
  await session.startPolling();
  showState();
  if (session.health && (!session.authRequired || session.token)) {
    if (!(await session.connect())) showPanel(true);
  } else {
    showPanel(true);
  }
  session.poll();
}

start();
