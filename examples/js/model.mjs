// A streaming "model" agent in JavaScript: answers every prompt in the room
// token by token (simulated tokens, no network).
//   WINGMAN_URL=ws://127.0.0.1:3000/ws WINGMAN_TOKEN=... node examples/js/model.mjs
import { answer, connect } from "../../wingman_gateway/web/static/wingman.js";

const url = process.env.WINGMAN_URL || "ws://127.0.0.1:3000/ws";
const room = process.env.WINGMAN_ROOM || "lobby";

async function* model(prompt) { // stands in for a model SDK's token stream
  for (const word of `You asked: ${prompt}. Here is my answer.`.split(" ")) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    yield word + " ";
  }
}

const node = await connect(url, { name: "model", token: process.env.WINGMAN_TOKEN, rooms: [room] });
console.log(`model ready as ${node.nodeId} in ${room}`);
for await (const message of node) {
  const prompt = message.payload;
  if (message.type !== "broadcast" || typeof prompt !== "string" || prompt.startsWith("echo: ")) continue;
  const reply = await answer(node, message.groupName || room, { prompt, agent: "model" });
  await reply.tool("word_count", { text: prompt }, async () => prompt.split(/\s+/).length);
  for await (const token of model(prompt)) await reply.send(token);
  await reply.complete();
}
