"""How fast the web console draws an agent's streamed answer.

Usage: python benchmarks/console_stream.py [--runs 3] [--tokens 2000]

One room, three members: a WebSocket sender, a plain Python receiver (the
baseline: the same messages, nothing drawn) and the web console in
headless Chromium. The sender sends agent-start, ``--tokens``
agent-stream events as fast as it can, then agent-complete; each receiver
notes when it has the agent-complete (the console: when its bubble is
marked complete, seen by a MutationObserver in the page, on the same clock).
Prints, per run and as the median of the runs, the tokens per second each
receiver took in and the console's time over the baseline's. A fresh
gateway per run; loopback only; bounded in count and time.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from playwright.sync_api import sync_playwright  # noqa: E402
from procs import Server, environment, start_gateway  # noqa: E402
from websockets.sync.client import connect  # noqa: E402

ROOM = "bench"
CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking", "--no-proxy-server"]
WATCH = """() => { window.benchDone = new Promise((resolve) => {
  const seen = () => document.querySelector('.answer.complete');
  const observer = new MutationObserver(() => {
    const done = seen();
    if (done) { observer.disconnect(); resolve({at: Date.now(), length: done.querySelector('.text').textContent.length}); }
  });
  observer.observe(document.querySelector('.stream'), {subtree: true, attributes: true, childList: true});
}); }"""
WAIT = """() => Promise.race([window.benchDone, new Promise((resolve) => setTimeout(() => resolve(null), 120000))])"""


def member(port: int, name: str):  # type: ignore[no-untyped-def]
    socket = connect(f"ws://127.0.0.1:{port}/ws", open_timeout=10, max_size=None).__enter__()
    socket.send(json.dumps({"type": "register", "messageId": "r", "payload": {"name": name}}))
    socket.send(json.dumps({"type": "join_group", "messageId": "j",
                            "payload": {"groupName": ROOM, "createIfNotExists": True}}))
    for _ in range(10):
        if json.loads(socket.recv(10)).get("messageId") == "j":
            return socket
    raise AssertionError("no join ack")


def one_run(server: Server, browser, tokens: int) -> dict[str, float]:  # type: ignore[no-untyped-def]
    port = server.port
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{port}/console/#/rooms/{ROOM}")
        page.wait_for_selector('#connection-toggle[data-state="connected"]', timeout=20000)
        page.wait_for_selector(".room .stream", timeout=20000)
        receiver = member(port, "baseline")
        sender = member(port, "sender")
        page.wait_for_selector('.members li[data-name="sender"]', timeout=20000)
        page.evaluate(WATCH)
        words = [f"w{i} " for i in range(tokens)]
        started = time.time()
        sender.send(json.dumps({"type": "broadcast", "payload": {"groupId": ROOM, "message": {
            "type": "agent-start", "agent": "bench", "prompt": "count"}}}))
        for word in words:
            sender.send(json.dumps({"type": "broadcast", "payload": {"groupId": ROOM, "message": {
                "type": "agent-stream", "chunk": word}}}))
        sender.send(json.dumps({"type": "broadcast", "payload": {"groupId": ROOM, "message": {
            "type": "agent-complete", "result": None}}}))
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            message = json.loads(receiver.recv(max(deadline - time.monotonic(), 0.01)))
            if message.get("payload", {}).get("type") == "agent-complete":
                break
        baseline = time.time() - started
        shown = page.evaluate(WAIT)
        assert shown is not None, "the console never marked the answer complete"
        console = shown["at"] / 1000 - started
        assert shown["length"] == len("".join(words)), shown
        sender.close()
        receiver.close()
        return {"baseline_tps": tokens / baseline, "console_tps": tokens / console, "ratio": console / baseline}
    finally:
        page.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Tokens per second the web console draws")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--tokens", type=int, default=2000)
    args = parser.parse_args(argv)
    if not (1 <= args.runs <= 20 and 1 <= args.tokens <= 20000):
        parser.error("bounds: 1 <= --runs <= 20, 1 <= --tokens <= 20000")
    for line in environment():
        print(line)
    print(f"\n== console stream: {args.tokens} agent-stream tokens into one bubble ==")
    results = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            for run in range(1, args.runs + 1):
                server = start_gateway()
                try:
                    figures = one_run(server, browser, args.tokens)
                finally:
                    server.stop()
                results.append(figures)
                print(f"  run {run}: baseline {figures['baseline_tps']:8.0f} tokens/s   console "
                      f"{figures['console_tps']:8.0f} tokens/s   console/baseline time {figures['ratio']:.2f}",
                      flush=True)
        finally:
            browser.close()
    median = {key: statistics.median(run[key] for run in results) for key in results[0]}
    print(f"  median: baseline {median['baseline_tps']:8.0f} tokens/s   console {median['console_tps']:8.0f} "
          f"tokens/s   console/baseline time {median['ratio']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
