// The JavaScript client's behaviour, the same in Node and in Chromium: the
// caller passes `connect` (from wingman.js) and the options that pick a wire.
// Returns what happened, for the Python test to check.

const quick = { minBackoff: 100, maxBackoff: 500, requestTimeout: 5000 };

async function codeOf(promise) {
  try { await promise; return "no error"; } catch (error) { return error.code; }
}

async function nextOf(iterator, type) {
  for (let i = 0; i < 50; i++) {
    const { value, done } = await iterator.next();
    if (done) return null;
    if (value.type === type) return value;
  }
  return null;
}

export async function basics(connect, url, options = {}) {
  const alice = await connect(url, { name: "alice", rooms: ["alpha"], capabilities: ["chat"], ...quick, ...options });
  const bob = await connect(url, { name: "bob", rooms: ["alpha"], ...quick, ...options });
  const out = { chosen: [alice.chosen, bob.chosen], distinct: alice.nodeId !== bob.nodeId };
  const bobMessages = bob[Symbol.asyncIterator]();
  out.recipients = await alice.broadcast("alpha", { text: "héllo", n: [1, 2.5, null, true] });
  const heard = await nextOf(bobMessages, "broadcast");
  out.heard = { payload: heard.payload, fromName: heard.fromName, groupName: heard.groupName,
                fromIsAlice: heard.fromNodeId === alice.nodeId, timestamp: typeof heard.timestamp };
  const direct = new Promise((resolve) => alice.on("message", (m) => m.type === "direct" && resolve(m)));
  await bob.direct(alice.nodeId, "psst");
  const got = await direct;
  out.direct = { payload: got.payload, fromName: got.fromName };
  const order = [];
  for (let n = 0; n < 5; n++) await alice.broadcast("alpha", { seq: n });
  for (let n = 0; n < 5; n++) order.push((await nextOf(bobMessages, "broadcast")).payload.seq);
  out.order = order;
  await bob.join("beta");
  out.errors = {
    notMember: await codeOf(alice.broadcast("beta", "hi")),
    noRoom: await codeOf(alice.join("gamma", { create: false })),
    noNode: await codeOf(alice.direct("0123456789abcdef", "x")),
    noLeave: await codeOf(alice.leave("nowhere")),
  };
  out.members = (await alice.who("alpha")).map((m) => m.name).sort();
  out.ping = typeof (await alice.ping());
  const states = [];
  bob.on("state", (event) => states.push(event));
  const aliceMessages = alice[Symbol.asyncIterator]();
  await bob.close();
  out.afterClose = { iteration: (await bobMessages.next()).done, ping: await codeOf(bob.ping()), states };
  const left = await nextOf(aliceMessages, "presence");
  await alice.close();
  out.leftSeen = left === null ? "none" : left.payload.event;
  return out;
}

export async function refusals(connect, url, badUrl, options = {}) {
  const out = {};
  try {
    await connect(url, { name: "mallory", token: "wrong", ...quick, ...options });
    out.auth = "no error";
  } catch (error) {
    out.auth = error.code;
    out.authIsWingmanError = error.name === "WingmanError" && error instanceof Error;
  }
  out.unreachable = await codeOf(connect(badUrl, { name: "nobody", ...quick, ...options }));
  return out;
}

// Connects two nodes, calls `restart()` (which restarts the gateway), and
// checks that both come back in their rooms and can talk again.
export async function reconnects(connect, url, restart, options = {}) {
  const alice = await connect(url, { name: "alice", rooms: ["alpha", "second"], ...quick, ...options });
  const bob = await connect(url, { name: "bob", rooms: ["alpha"], ...quick, ...options });
  const before = { alice: alice.nodeId, alpha: alice.rooms.get("alpha") };
  const states = { alice: [], bob: [] };
  const gaps = { alice: [], bob: [] };
  const back = (node, name) => new Promise((resolve) => node.on("state", (event, details) => {
    states[name].push(event);
    if (event === "gap") gaps[name].push({ room: details.room, reason: details.reason });
    if (event === "reconnected") resolve(details);
  }));
  const aliceBack = back(alice, "alice");
  const bobBack = back(bob, "bob");
  await restart();
  const details = await aliceBack;
  await bobBack;
  const bobMessages = bob[Symbol.asyncIterator]();
  const out = {
    states: { alice: [...states.alice], bob: [...states.bob] },
    gaps,
    newId: alice.nodeId !== before.alice && details.nodeId === alice.nodeId,
    rooms: [...alice.rooms.keys()].sort(),
    sameRoom: alice.rooms.get("alpha") === bob.rooms.get("alpha") && alice.rooms.get("alpha") !== before.alpha,
    recipients: await alice.broadcast("alpha", "after restart"),
  };
  out.heard = (await nextOf(bobMessages, "broadcast")).payload;
  await alice.close();
  await bob.close();
  return out;
}
