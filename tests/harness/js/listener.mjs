// A JavaScript node in one room that a Python test drives line by line, to
// check resuming: it records every broadcast it delivers and every state
// event, and answers commands on stdin.
// Usage: node listener.mjs CLIENT_MODULE URL WIRE ROOM [OPTIONS_JSON]
// URL is one gateway URL, or a JSON list of them (one cluster's gateways).
// WIRE "ws" passes Debian's `ws` package as the WebSocket class; "bridge"
// passes none (Node 20 has no global WebSocket), so the HTTP bridge is used.
//
// Commands (one a line) and answers:
//   WAIT N        -> HAVE N, once N broadcasts were delivered
//   STATE EVENT   -> STATE EVENT, once that state event was seen
//   REPLAY EPOCH  -> REPLAYED, after asking the gateway again for the room's
//                    whole history (since offset 0 of EPOCH) on the same
//                    connection: every message a duplicate the client must drop
//   SEND KEY TEXT -> SENT N, once TEXT was broadcast to the room with the
//                    idempotency key KEY (N: the recipients the ack gives)
//   UNTIL N       -> SAW N, once a broadcast whose payload's `n` is N came
//   WHERE         -> WHERE {"nodeId", "url", "since", "opened"}: the node now,
//                    its gateway, the room's position (null: none offered) and
//                    every WebSocket URL opened so far (wire "ws")
//   MEMBERS       -> MEMBERS [names]: the room's members, as the gateway says
//   END           -> RESULT {...}, and the node closes
import { createInterface } from "node:readline";

const [clientPath, given, wire, room, optionsJson] = process.argv.slice(2);
const url = given.startsWith("[") ? JSON.parse(given) : given;
const { connect } = await import(clientPath);
const options = { minBackoff: 100, maxBackoff: 500, requestTimeout: 5000, ...JSON.parse(optionsJson || "{}") };
const opened = []; // every WebSocket URL the client opened, in order
if (wire === "ws") {
  const { WebSocket } = await import("/usr/share/nodejs/ws/wrapper.mjs");
  options.WebSocket = class extends WebSocket {
    constructor(address, ...rest) { super(address, ...rest); opened.push(String(address)); }
  };
}

const LIMIT_MS = 30000; // every wait is bounded
const delivered = [];
const states = [];
const node = await connect(url, { name: "listener", rooms: [room], ...options });
node.on("message", (message) => { if (message.type === "broadcast") delivered.push(message.payload); });
node.on("state", (event, details) => states.push([event, details ?? null]));

async function until(predicate, what) {
  const deadline = Date.now() + LIMIT_MS;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`no ${what} within ${LIMIT_MS} ms`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

console.log(`READY ${node.nodeId} ${node.chosen}`);
for await (const line of createInterface({ input: process.stdin })) {
  const [command, argument, ...rest] = line.trim().split(/\s+/);
  if (command === "WAIT") {
    await until(() => delivered.length >= Number(argument), `${argument} broadcasts`);
    console.log(`HAVE ${argument}`);
  } else if (command === "STATE") {
    await until(() => states.some(([event]) => event === argument), `${argument} event`);
    console.log(`STATE ${argument}`);
  } else if (command === "REPLAY") {
    await node.request("join_group", { groupName: room, since: { offset: 0, epoch: argument } });
    console.log("REPLAYED");
  } else if (command === "SEND") {
    console.log(`SENT ${await node.broadcast(room, rest.join(" "), { key: argument })}`);
  } else if (command === "UNTIL") {
    await until(() => delivered.some((payload) => payload?.n === Number(argument)), `broadcast ${argument}`);
    console.log(`SAW ${argument}`);
  } else if (command === "WHERE") {
    console.log("WHERE " + JSON.stringify({ nodeId: node.nodeId, url: node.url, since: node.positions.get(room), opened }));
  } else if (command === "MEMBERS") {
    console.log("MEMBERS " + JSON.stringify((await node.who(room)).map((member) => member.name).sort()));
  } else if (command === "END") {
    console.log("RESULT " + JSON.stringify({ delivered, states, chosen: node.chosen }));
    break;
  }
}
await node.close();
process.exit(0);
