// An echo agent in JavaScript (Node >= 20, Bun): every text said in the room
// comes back as "echo: TEXT".
//   WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... node examples/js/echo.mjs
import { connect } from "../../wingman_gateway/web/static/wingman.js";

const url = process.env.WINGMAN_URL || "ws://127.0.0.1:3000/ws";
const room = process.env.WINGMAN_ROOM || "lobby";
const node = await connect(url, { name: "echo", token: process.env.WINGMAN_TOKEN, rooms: [room] });
console.log(`echo ready as ${node.nodeId} in ${room}`);
for await (const message of node) {
  const text = message.payload;
  if (typeof text !== "string" || text.startsWith("echo: ")) continue;
  if (message.type === "broadcast") await node.broadcast(message.groupName || room, `echo: ${text}`);
  else if (message.type === "direct") await node.direct(message.fromNodeId, `echo: ${text}`);
}
