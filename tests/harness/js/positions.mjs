// Runs sequences of position operations through the JavaScript client's own
// bookkeeping (the `positions` of a Node that never connects) and prints what
// each operation answered, as one JSON line, for a Python test to compare with
// the Python core. Usage: node positions.mjs CLIENT_MODULE < sequences.json
// Each sequence is a list of [operation, room, ...arguments]; "resumed" takes
// the room's current position as its `since`, as a rejoin does.
import { readFileSync } from "node:fs";

const [clientPath] = process.argv.slice(2);
const { Node } = await import(clientPath);
const sequences = JSON.parse(readFileSync(0, "utf-8"));

const answers = sequences.map((operations) => {
  const positions = new Node("ws://127.0.0.1:9/ws", { name: "positions" }).positions;
  return operations.map(([operation, room, first, second]) => {
    if (operation === "get") return positions.get(room);
    if (operation === "joined") return positions.joined(room, first, second) ?? null;
    if (operation === "sent") return positions.sent(room, first) ?? null;
    if (operation === "delivered") return positions.delivered(room, first);
    if (operation === "resumed") return positions.resumed(room, positions.get(room), first, second);
    if (operation === "forget") return positions.forget(room) ?? null;
    if (operation === "keep") return positions.keep(first) ?? null;
    throw new Error(`unknown operation ${operation}`);
  });
});
console.log(JSON.stringify(answers));
