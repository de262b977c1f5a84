"""The real log of a real gateway (text, the wingman text observer, and
--log-format json): client-supplied text is escaped and every event is
written; session secrets in query strings are redacted however the
parameter is spelled."""

from __future__ import annotations

import json
import re
import pytest

from harness import rawhttp
from harness.bridgekit import BridgeNode
from harness.support import GatewayProcess, Node, wait_totals, wait_until

# A lone surrogate (cannot be encoded), ESC sequences, and a line break that
# would forge a log line of its own.
NAME = "evil\ud800\x1b[31mred\x1b]0;title\x07\nforged: admin logged in"
ESCAPED = "evil\\ud800\\x1b[31mred\\x1b]0;title\\x07\\nforged: admin logged in"
LOGGERS = {
    "twistd": [],
    "text": ["--logger", "wingman_gateway.logs.text_observer"],
    "json": ["--logger", "wingman_gateway.logs.json_observer"],
}


# Every test runs once per log format, on a gateway logging through it.
each_logger = pytest.mark.parametrize(
    "log_format", [pytest.param(name, marks=pytest.mark.gateway(twistd=LOGGERS[name])) for name in sorted(LOGGERS)]
)


def lines_about(gateway: GatewayProcess, what: str) -> list[str]:
    return [line for line in gateway.lines if what in line]


@each_logger
def test_untrusted_names_are_escaped_and_every_event_is_written(gateway: GatewayProcess, log_format: str) -> None:
    node = Node(gateway.url)
    reply = node.register(NAME)
    assert reply["type"] == "ack" and reply["payload"]["name"] == NAME
    node.close()
    wait_totals(gateway, 0, 0)
    gateway.wait_for(r"left: ")
    registered = lines_about(gateway, "registered over websocket")
    left = lines_about(gateway, "left: ")
    assert len(registered) == 1 and len(left) == 1, gateway.log
    for line in registered + left:
        if log_format == "json":
            record = json.loads(line)
            assert record["name"] == ESCAPED and ESCAPED in record["message"]
        else:
            assert ESCAPED in line
    assert "\x1b" not in gateway.log and "\x07" not in gateway.log
    assert not any(line.startswith("forged") for line in gateway.lines)
    assert "Temporarily disabling observer" not in gateway.log
    assert "UnicodeEncodeError" not in gateway.log


@each_logger
def test_session_secrets_in_query_strings_are_redacted(gateway: GatewayProcess, log_format: str) -> None:
    node = BridgeNode(gateway.port)
    assert node.register("reader").status == 200
    secret = node.secret
    assert secret is not None
    spellings = [
        f"?session={secret}", f"?%73ession={secret}", f"?%73%65ssion={secret}", f"?Session={secret}",
        f"?SESSION={secret}", f"?after=0&session=x&session={secret}", f"?timeout=0;session={secret}",
        f"?%2573ession={secret}", f"?session={secret}&timeout=0",
    ]
    statuses = []
    for query in spellings:
        status, _, _ = rawhttp.get(gateway.port, "/bridge/poll" + query + "&timeout=0",
                                   {"Referer": f"http://page.example/app?session={secret}".encode()})
        statuses.append(status)
    # The percent-encoded name is the same parameter to the bridge: it authenticates.
    assert statuses[1] == 200 and statuses[2] == 200
    wait_until(lambda: len(lines_about(gateway, "GET /bridge/poll")) >= len(spellings), 10,
               "every request in the access log")
    assert secret not in gateway.log
    assert len(re.findall(r"\[redacted\]", gateway.log)) >= 2 * len(spellings)
