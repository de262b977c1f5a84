"""Gateway options from WINGMAN_* environment variables (wingman_gateway.environment)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.support import GatewayProcess, health
from wingman_gateway import environment
from wingman_gateway.config import SETTINGS
from wingman_gateway.tap import Options

LOOPBACK = "tcp:0:interface=127.0.0.1"


def parsed(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> Options:
    for name in environment.variables(Options()):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    options = Options()
    options.parseOptions(list(argv))
    return options


def refused(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], *argv: str) -> str:
    """The one line the gateway stops with (``twistd`` prints it; no usage text)."""
    with pytest.raises(SystemExit) as stopped:
        parsed(monkeypatch, env, *argv)
    return str(stopped.value.code).removeprefix("wingman-gateway: ")


def test_every_option_has_a_variable_named_after_its_flag() -> None:
    names = environment.variables(Options())
    assert {environment.variable(s.flag) for s in SETTINGS} <= set(names)
    assert names["WINGMAN_MAX_NODES"] == "max-nodes"
    for name, flag in [("WINGMAN_LISTEN", "listen"), ("WINGMAN_CONFIG", "config"), ("WINGMAN_AUTH", "auth"),
                       ("WINGMAN_NO_BRIDGE", "no-bridge"), ("WINGMAN_CORS_ORIGIN", "cors-origin")]:
        assert names[name] == flag
    assert "WINGMAN_HELP" not in names and "WINGMAN_VERSION" not in names


def test_an_option_added_later_gets_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    class Later(Options):
        optParameters = Options.optParameters + [["backplane", None, None, "a later option"]]

    monkeypatch.setenv("WINGMAN_BACKPLANE", "redis://127.0.0.1:6379")
    options = Later()
    assert environment.variables(options)["WINGMAN_BACKPLANE"] == "backplane"
    options.parseOptions([])
    assert options["backplane"] == "redis://127.0.0.1:6379"


def test_values_switches_and_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    options = parsed(monkeypatch, {
        "WINGMAN_MAX_NODES": "7", "WINGMAN_NAME": "boxed", "WINGMAN_LISTEN": "tcp:4001  tcp6:4002\n",
        "WINGMAN_AUTH": "Yes", "WINGMAN_TOKEN": "s3cret", "WINGMAN_NO_BRIDGE": "true",
        "WINGMAN_CORS_ORIGIN": "https://a.example https://b.example",
    })
    config = options.config
    assert (config.limits.max_nodes, config.name, config.listen) == (7, "boxed", ("tcp:4001", "tcp6:4002"))
    assert (config.require_auth, config.auth_token, config.bridge) == (True, "s3cret", None)
    assert options["cors-origin"] == ["https://a.example", "https://b.example"]


def test_switch_set_false_or_empty_variables_change_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parsed(monkeypatch, {"WINGMAN_AUTH": "off", "WINGMAN_NO_BRIDGE": "0", "WINGMAN_NAME": "",
                                  "WINGMAN_LISTEN": " ", "WINGMAN_MAX_NODES": ""}).config
    assert (config.require_auth, config.bridge is not None) == (False, True)
    assert config.listen == ("tcp6:3000:interface=\\:\\:",)
    assert config.limits.max_nodes == 1000


def test_command_line_wins_over_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {"WINGMAN_MAX_NODES": "7", "WINGMAN_LISTEN": "tcp:4001", "WINGMAN_AUTH": "false", "WINGMAN_TOKEN": "t"}
    config = parsed(monkeypatch, env, "--max-nodes", "9", "--listen", "tcp:5001", "--auth").config
    assert (config.limits.max_nodes, config.listen, config.require_auth) == (9, ("tcp:5001",), True)


def test_environment_wins_over_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "gateway.json"
    path.write_text(json.dumps({"maxNodes": 5, "name": "file", "listen": ["tcp:4005"]}))
    config = parsed(monkeypatch, {"WINGMAN_CONFIG": str(path), "WINGMAN_MAX_NODES": "7"}).config
    assert (config.limits.max_nodes, config.name, config.listen) == (7, "file", ("tcp:4005",))
    config = parsed(monkeypatch, {"WINGMAN_CONFIG": str(path), "WINGMAN_LISTEN": "tcp:4006"}).config
    assert config.listen == ("tcp:4006",)


@pytest.mark.parametrize("env, message", [
    ({"WINGMAN_MAX_NODES": "lots"}, "WINGMAN_MAX_NODES: expected a whole number, got 'lots'"),
    ({"WINGMAN_MAX_NODES": "0"}, "WINGMAN_MAX_NODES: must be at least 1, got 0"),
    ({"WINGMAN_PORT": "70000"}, "WINGMAN_PORT: must be a TCP port (0-65535), got 70000"),
    ({"WINGMAN_LOG_LEVEL": "loud"},
     "WINGMAN_LOG_LEVEL: expected one of debug, info, warn, error, critical, got 'loud'"),
    ({"WINGMAN_AUTH": "maybe"}, "WINGMAN_AUTH: expected true or false, got 'maybe'"),
    ({"WINGMAN_AUTH": "true"}, "requireAuth: auth is on but neither a token nor a keyring is given"),
    ({"WINGMAN_LISTEN": LOOPBACK, "WINGMAN_RATE_WINDOW": "soon"},
     "WINGMAN_RATE_WINDOW: expected a whole number, got 'soon'"),
])
def test_bad_values_are_refused_naming_the_variable(monkeypatch: pytest.MonkeyPatch, env: dict[str, str],
                                                    message: str) -> None:
    assert refused(monkeypatch, env) == message


def test_twistd_takes_its_options_from_the_environment() -> None:
    gateway = GatewayProcess([], env={"WINGMAN_LISTEN": LOOPBACK, "WINGMAN_NAME": "from-environment"})
    try:
        gateway.wait_listening()
        assert health(gateway)["name"] == "from-environment"
    finally:
        gateway.stop()


def test_a_variable_naming_no_option_is_logged_as_ignored() -> None:
    env = {"WINGMAN_LISTEN": LOOPBACK, "WINGMAN_MAX_NODE": "5", "WINGMAN_HOME": "/nonexistent"}
    gateway = GatewayProcess([], env=env)
    try:
        gateway.wait_listening()
        assert "ignoring the environment variable WINGMAN_MAX_NODE: no such option" in gateway.log
        assert "WINGMAN_HOME" not in gateway.log
    finally:
        gateway.stop()
