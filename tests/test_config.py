"""Settings refused before anything starts: ``tap.Options`` and ``makeService``
driven directly, each refusal with the exact message naming the setting.

(One real process shows the same refusal stops ``twistd``:
``test_service.test_a_bad_option_value_stops_the_process_before_listening``.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from harness.startup import refusal
from wingman_gateway.tap import Options

LOOPBACK = "tcp:0:interface=127.0.0.1"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--listen", "nonsense:foo"], "listen: bad endpoint 'nonsense:foo': Unknown endpoint type"),
        (["--listen", "tcp:notaport"], "listen: bad endpoint 'tcp:notaport': invalid literal for int()"),
        (["--max-nodes", "abc"], "--max-nodes: expected a whole number, got 'abc'"),
        (["--max-nodes", "0"], "--max-nodes: must be at least 1, got 0"),
        (["--log-level", "loud"], "--log-level: expected one of debug, info, warn, error"),
        (["--port", "70000"], "--port: must be a TCP port (0-65535), got 70000"),
        (["--ping-interval", "500", "--ping-timeout", "400"], "pingTimeout: must be longer than pingInterval"),
        (["--listen", LOOPBACK, "--listen", LOOPBACK], "is given more than once"),
        (["--ssh", "tcp:0"], "sshAuthorizedKeys: the SSH server needs --ssh-authorized-keys FILE"),
        (["--auth"], "requireAuth: auth is on but neither a token nor a keyring is given"),
        (["--history-size", "-1"], "--history-size: must be at least 0, got -1"),
        (["--history-ttl", "0"], "--history-ttl: must be at least 1, got 0"),
        (["--history-room-bytes", "10"], "--history-room-bytes: must be at least 1024, got 10"),
        (["--history-bytes", "many"], "--history-bytes: expected a whole number, got 'many'"),
    ],
)
def test_bad_option_is_refused_naming_it(args: list[str], message: str) -> None:
    listen = [] if "--listen" in args else ["--listen", LOOPBACK]
    assert message in refusal(listen + args)


@pytest.mark.parametrize(
    "values, message",
    [
        ({"port": 3000, "colour": "blue"}, "colour: unknown config key"),
        ({"maxNodes": "many"}, "maxNodes: expected a whole number, got 'many'"),
        ({"requireAuth": "yes"}, "requireAuth: expected true or false, got 'yes'"),
        ({"pingInterval": -5}, "pingInterval: must be at least 10, got -5"),
        ({"logLevel": "loud"}, "logLevel: expected one of"),
        ({"port": 70000}, "port: must be a TCP port (0-65535), got 70000"),
        ({"requireAuth": True}, "requireAuth: auth is on but neither a token nor a keyring"),
        ({"listen": []}, "listen: expected a list of endpoint strings"),
        ({"corsOrigins": ["ftp://x"]}, "corsOrigins: expected an origin like"),
        ({"historySize": -1}, "historySize: must be at least 0, got -1"),
        ('{"port": 3000,', "is not valid JSON"),
        ("[1, 2]", "must hold a JSON object"),
    ],
)
def test_bad_config_file_is_refused_naming_the_key(tmp_path: Path, values: Any, message: str) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(values if isinstance(values, str) else json.dumps(values))
    assert message in refusal(["--config", str(config), "--listen", LOOPBACK])


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "absent.json"
    assert f"cannot read config file {missing}" in refusal(["--config", str(missing)])


def test_the_command_line_overrides_the_file_and_defaults_fill_the_rest(tmp_path: Path) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"maxNodes": 1, "name": "from-file", "pingInterval": 1000, "pingTimeout": 3000}))
    options = Options()
    options.parseOptions(["--config", str(config), "--max-nodes", "2", "--listen", LOOPBACK])
    limits = options.config.limits
    assert (limits.max_nodes, options.config.name) == (2, "from-file")
    assert (limits.ping_interval, limits.ping_timeout) == (1.0, 3.0)
    assert limits.max_payload == 1024 * 1024 and options.config.listen == (LOOPBACK,)
