// Runs a scenario of scenario.mjs under Node and prints its result as one
// JSON line. Usage: node run.mjs CLIENT_MODULE SCENARIO URL [ws] [BAD_URL]
// "ws" passes Debian's `ws` package as the WebSocket class.
import { basics, reconnects, refusals } from "./scenario.mjs";

const [clientPath, which, url, wire, badUrl] = process.argv.slice(2);
const { connect } = await import(clientPath);
const options = {};
if (wire === "ws") options.WebSocket = (await import("/usr/share/nodejs/ws/wrapper.mjs")).WebSocket;

const stdinLine = () => new Promise((resolve) => process.stdin.once("data", resolve));
let result;
if (which === "basics") result = await basics(connect, url, options);
else if (which === "refusals") result = await refusals(connect, url, badUrl, options);
else if (which === "reconnects") {
  result = await reconnects(connect, url, async () => { console.log("RESTART"); await stdinLine(); }, options);
  process.stdin.destroy();
}
console.log("RESULT " + JSON.stringify(result));
