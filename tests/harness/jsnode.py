"""A JavaScript node (wingman.js under Node 20) that a Python test drives line by line."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence

from harness.background import Background

ROOT = Path(__file__).resolve().parents[2]
CLIENT = ROOT / "wingman_gateway" / "web" / "static" / "wingman.js"
LISTENER = Path(__file__).parent / "js" / "listener.mjs"


class Listener(Background):
    """``listener.mjs`` under Node: one JavaScript node in ``room``, driven by lines.

    ``url`` is one gateway URL or a list of them (one cluster's gateways).
    """

    def __init__(self, url: str | Sequence[str], wire: str, room: str, **options: Any) -> None:
        target = url if isinstance(url, str) else json.dumps(list(url))
        super().__init__(["node", str(LISTENER), str(CLIENT), target, wire, room, json.dumps(options)], stdin=True)
        ready = self.wait_for(r"^READY (\S+) (\S+)$", 20)
        self.node_id, self.chosen = ready.group(1), ready.group(2)

    def ask(self, command: str, answer: str, timeout: float = 40.0) -> re.Match[str]:
        """Send ``command`` and wait for the line ``answer``."""
        start = len(self.lines)
        self.send_line(command)
        return self.wait_for(f"^{re.escape(answer)}$", timeout, start)

    def query(self, command: str, timeout: float = 20.0) -> Any:
        """Send ``command``; the JSON its answer line (``COMMAND JSON``) carries."""
        start = len(self.lines)
        self.send_line(command)
        found = self.wait_for(f"^{re.escape(command.split()[0])} (.*)$", timeout, start)
        return json.loads(found.group(1))

    def result(self) -> dict[str, Any]:
        start = len(self.lines)
        self.send_line("END")
        found = self.wait_for(r"^RESULT (.*)$", 20, start)
        assert self.wait_exit(15) == 0, self.output
        return json.loads(found.group(1))


def events(result: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """The details of every ``name`` state event in a listener's result."""
    return [details for event, details in result["states"] if event == name]
