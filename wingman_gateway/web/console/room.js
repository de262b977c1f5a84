// One room: its members (name, capabilities, transport; live through
// presence), its message stream, and a compose box that broadcasts as a
// person or sends a direct message to one member.

import { el, fill } from "./dom.js";

export function room(session, name, leave) {
  const title = el("h2", {}, name);
  const count = el("span", { class: "count" });
  const state = el("p", { class: "problem state", role: "status" }); // the room's or the connection's state
  const refusal = el("p", { class: "problem refusal", role: "alert" }); // why the last message was not sent
  const members = el("ul", { class: "members", "aria-label": "members" });
  const target = el("select", { id: "compose-to", "aria-label": "send to" });
  const text = el("input", { id: "compose-text", autocomplete: "off", maxlength: 65536, placeholder: "Message the room" });
  const send = el("button", { type: "submit" }, "Send");
  const streamHolder = el("div", { class: "stream-holder" });
  let sentAt = Infinity; // when the message being sent went out
  const compose = el("form", { class: "compose", onsubmit: async (event) => {
    event.preventDefault();
    const value = text.value;
    if (!value.trim()) return;
    const room = session.rooms.get(name);
    const to = target.value ? room?.members.get(target.value) ?? null : null;
    send.disabled = true;
    sentAt = Date.now();
    try {
      await session.say(name, value, to);
      text.value = "";
      fill(refusal);
    } catch (error) {
      const refused = session.refusal?.at >= sentAt ? session.refusal.text : null;
      fill(refusal, `not sent: ${refused ?? error.message}`);
    } finally {
      send.disabled = false;
      text.focus();
    }
  } }, el("label", { for: "compose-to", class: "visually-hidden" }, "To"), target,
  el("label", { for: "compose-text", class: "visually-hidden" }, "Message"), text, send);
  const node = el("section", { class: "view room" },
    el("header", { class: "room-head" }, title, count,
      el("button", { type: "button", class: "quiet", onclick: () => leave(name) }, "Leave")),
    state,
    refusal,
    el("div", { class: "room-body" },
      el("aside", { class: "panel members-panel" }, el("h3", {}, "Members"), members),
      el("div", { class: "conversation" }, streamHolder, compose)));

  const direct = (member) => {
    target.value = member.nodeId;
    text.placeholder = `Direct message to ${member.name}`;
    text.focus();
  };
  target.addEventListener("change", () => {
    const member = session.rooms.get(name)?.members.get(target.value);
    text.placeholder = member ? `Direct message to ${member.name}` : "Message the room";
  });

  const update = () => {
    if (session.refusal?.at >= sentAt) fill(refusal, `not sent: ${session.refusal.text}`);
    const room = session.rooms.get(name);
    if (!room) {
      fill(state, session.state === "connected" ? `not in ${name}` : "not connected");
      return;
    }
    if (streamHolder.firstChild !== room.stream.node) {
      fill(streamHolder, room.stream.node);
      // A detached element forgets where it was scrolled: back to the end once laid out.
      requestAnimationFrame(() => room.stream.toEnd());
    }
    fill(state, room.closed ? "This room was closed by the gateway." : session.state !== "connected" ? `connection: ${session.state}` : "");
    const list = [...room.members.values()];
    fill(count, `${list.length} member${list.length === 1 ? "" : "s"}`);
    const self = session.node?.nodeId;
    fill(members, list.map((member) => {
      const transport = session.reported(member.nodeId)?.transport ?? (member.nodeId === self ? session.node?.chosen : null);
      return el("li", { "data-node": member.nodeId, "data-name": member.name },
        el("div", { class: "member-name" },
          el("span", { class: "who" }, member.name),
          member.agentName ? el("span", { class: "agent" }, member.agentName) : null,
          member.nodeId === self ? el("span", { class: "badge" }, "you") : null),
        el("div", { class: "member-facts" },
          el("span", { class: "transport" }, transport ?? "transport unknown"),
          (member.capabilities ?? []).map((capability) => el("span", { class: "chip" }, String(capability)))),
        member.nodeId === self ? null
          : el("button", { type: "button", class: "quiet small", "aria-label": `direct message to ${member.name}`, onclick: () => direct(member) }, "Direct"));
    }));
    const picked = target.value;
    fill(target, el("option", { value: "" }, "Everyone"),
      list.filter((member) => member.nodeId !== self).map((member) => el("option", { value: member.nodeId }, `${member.name}`)));
    if (list.some((member) => member.nodeId === picked)) target.value = picked;
    text.disabled = send.disabled = room.closed || session.state !== "connected";
  };
  const resize = () => session.rooms.get(name)?.stream.toEnd();
  return { node, update, resize, focus: () => text.focus() };
}
