// The JavaScript client's side of js_failover.py. Usage:
//   node js_failover.mjs CLIENT_MODULE connect URLS_JSON ROUNDS
//     -> one JSON line: {"one": [ms...], "list": [ms...]}: connect() and
//        close() with the first URL alone, then with the whole list, alternating
//   node js_failover.mjs CLIENT_MODULE failover URLS_JSON
//     -> "CONNECTED url", then "RECONNECTED url" once it moved; ends when stdin closes
// WebSocket is Debian's `ws` package (Node 20 has no global one).
const [clientPath, mode, urlsJson, rounds] = process.argv.slice(2);
const { connect } = await import(clientPath);
const { WebSocket } = await import("/usr/share/nodejs/ws/wrapper.mjs");
const urls = JSON.parse(urlsJson);

async function timed(target, name) {
  const started = performance.now();
  const node = await connect(target, { name, WebSocket, reconnect: false });
  const took = performance.now() - started;
  await node.close();
  return took;
}

if (mode === "connect") {
  const figures = { one: [], list: [] };
  for (let round = 0; round < Number(rounds); round++) {
    figures.one.push(await timed(urls[0], "one"));
    figures.list.push(await timed(urls, "list"));
  }
  console.log(JSON.stringify(figures));
} else {
  const node = await connect(urls, { name: "js", WebSocket });
  node.on("state", (event, details) => { if (event === "reconnected") console.log(`RECONNECTED ${details.url}`); });
  console.log(`CONNECTED ${node.url}`);
  process.stdin.resume();
  await new Promise((resolve) => process.stdin.on("end", resolve));
  await node.close();
}
process.exit(0);
