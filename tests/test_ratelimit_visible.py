"""A stream that is rate-limited anyway is said so, where the sender looks:
``wingman gateway join --json`` prints the refusal as an error record, and
the client library raises it with its code.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import pytest_twisted

from harness.cli_support import LineProcess
from harness.support import GatewayProcess
from wingman_gateway.client import ClientError, GatewayClient

# A bucket of 3 refilled at 1 a second: the fourth message of a burst is refused.
pytestmark = pytest.mark.gateway("--message-rate", "1", "--message-burst", "3")


def test_join_prints_the_refusal_of_a_rate_limited_line(gateway: GatewayProcess, tmp_path: Path) -> None:
    cli = LineProcess(tmp_path, "gateway", "join", gateway.url, "--json", "--name", "streamer", "--group", "talk")
    try:
        cli.read_until(lambda r: r.get("event") == "connected" and "room" in r)
        for n in range(6):
            cli.send({"type": "agent-stream", "chunk": f"token {n}"})
        refusal = cli.read_until(lambda r: r.get("type") == "error")
        assert refusal["payload"]["code"] == "RATE_LIMITED"
        assert "rate limit of 1 messages per second (bursts of 3) exceeded" in refusal["payload"]["message"]
    finally:
        cli.stop()


@pytest_twisted.ensureDeferred
async def test_the_client_library_raises_rate_limited(gateway: GatewayProcess) -> None:
    from twisted.internet import reactor

    client = GatewayClient(gateway.url, "streamer", reactor=reactor)
    await client.connect()
    try:
        await client.join("talk")  # register and join took two of the three
        await client.broadcast("talk", {"type": "agent-stream", "chunk": "a"})
        with pytest.raises(ClientError) as refused:
            for n in range(3):
                await client.broadcast("talk", {"type": "agent-stream", "chunk": str(n)})
        assert refused.value.code == "RATE_LIMITED"
    finally:
        await client.close()
