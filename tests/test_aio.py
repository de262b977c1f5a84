"""What only the asyncio client has: it imports and runs with Twisted (and
Autobahn, zope, pyOpenSSL) unavailable, ``connect()`` both awaited and as
``async with``; and the protocol core's recovery positions."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from harness.support import GatewayProcess, free_tcp_port
from wingman_gateway.protocol.envelopes import Position, join_payload
from wingman_gateway.protocol.positions import Positions

ROOT = Path(__file__).resolve().parent.parent

WITHOUT_TWISTED = textwrap.dedent('''
    import asyncio, sys

    class Refuse:
        """No Twisted here: importing it (or its friends) fails as if not installed."""
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("twisted", "autobahn", "txaio", "zope", "OpenSSL"):
                raise ModuleNotFoundError(f"No module named {name!r} (refused by the test)")
            return None

    sys.meta_path.insert(0, Refuse())
    from wingman_gateway.aio import ClientError, answer, connect

    async def main(url, bad):
        async with connect(url, name="alice", rooms=["alpha"], request_timeout=5) as alice:
            bob = await connect(url, name="bob", rooms=["alpha"])
            try:
                heard = aiter(bob)
                async with answer(alice, "alpha", prompt="p", agent="a") as reply:
                    await reply.send("tok")
                kinds = [(await anext(heard)).payload["type"] for _ in range(3)]
                print("kinds", kinds)
                for transport in ("http", "auto"):
                    async with connect(url, name="carol", transport=transport) as carol:
                        print(transport, await carol.ping() < 5)
            finally:
                await bob.close()
        try:
            await connect(bad, name="nobody")
        except ClientError as error:
            print("refused", error.code)
        print("loaded", sorted({m.split(".")[0] for m in sys.modules} & {"twisted", "autobahn", "zope"}))

    asyncio.run(main(sys.argv[1], sys.argv[2]))
''')


def test_the_asyncio_client_needs_no_twisted(gateway: GatewayProcess) -> None:
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_TWISTED, gateway.url, f"ws://127.0.0.1:{free_tcp_port()}/ws"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.splitlines() == [
        "kinds ['agent-start', 'agent-stream', 'agent-complete']",
        "http True",
        "auto True",
        "refused CONNECTION_FAILED",
        "loaded []",
    ], done.stdout + done.stderr


def test_recovery_positions_are_carried_on_rejoin() -> None:
    """A rejoin asks ``since`` the last ``offset``/``epoch`` seen, once there is one."""
    positions = Positions()
    positions.joined("alpha", {"groupName": "alpha"}, {"type": "ack"})
    assert positions.get("alpha") is None
    assert "since" not in join_payload("alpha", True, None, positions.get("alpha"))

    positions.joined("alpha", {"offset": 4, "epoch": "e1"}, {"type": "ack"})
    positions.delivered("alpha", {"type": "broadcast", "offset": 7, "epoch": "e1"})
    positions.delivered("alpha", {"type": "broadcast", "offset": 6, "epoch": "e1"})  # older: ignored
    # A sender's payload is the sender's: never read as a position.
    positions.delivered("alpha", {"type": "broadcast", "payload": {"offset": 99, "epoch": "e1"}})
    assert positions.get("alpha") == Position(7, "e1")
    assert join_payload("alpha", True, "d", positions.get("alpha")) == {
        "groupName": "alpha", "createIfNotExists": True, "description": "d",
        "since": {"offset": 7, "epoch": "e1"},
    }
    positions.delivered("alpha", {"type": "broadcast", "offset": 1, "epoch": "e2"})  # a new epoch
    assert positions.get("alpha") == Position(1, "e2")
    positions.delivered("alpha", {"type": "broadcast", "offset": True, "epoch": "e2"})  # not a number
    assert positions.get("alpha") == Position(1, "e2")
    positions.keep(["beta"])
    assert positions.get("alpha") is None
