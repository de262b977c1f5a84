"""Gateway options and what the ``wingman`` command reads from them, tested on
the functions themselves (``tap.Options``, ``config.build``, the ports file,
the JSON log observer, ``GET /``) rather than through a process."""

from __future__ import annotations

import json
import os
import re
import stat
from pathlib import Path

import pytest
import twisted
from twisted.logger import globalLogPublisher
from twisted.python import log as legacy_log
from twisted.web.resource import Resource
from twisted.web.test.requesthelper import DummyRequest

from wingman_gateway import __version__, portsfile
from wingman_gateway.cli import build_parser
from wingman_gateway.cli.local import health_places, place, websocket_place
from wingman_gateway.config import ConfigError, build
from wingman_gateway.web.index import IndexResource
from wingman_gateway.logs import LOG_FILE_ENV, json_observer
from wingman_gateway.tap import Options
from wingman_gateway.tokenfile import read_token_file

DUAL_STACK = r"tcp6:3000:interface=\:\:"


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


# --- the default listener is dual-stack ----------------------------------


def test_default_listener_is_dual_stack() -> None:
    assert build({}, {}, [], False).listen == (DUAL_STACK,)
    assert parse().config.listen == (DUAL_STACK,)


def test_port_alone_listens_dual_stack_and_an_ipv4_host_stays_ipv4() -> None:
    assert parse("--port", "4100").config.listen == (r"tcp6:4100:interface=\:\:",)
    assert parse("--port", "4100", "--host", "127.0.0.1").config.listen == ("tcp:4100:interface=127.0.0.1",)
    assert parse("--port", "4100", "--host", "::1").config.listen == (r"tcp6:4100:interface=\:\:1",)


# --- short, clear failures of the option parser --------------------------


def test_a_bad_config_key_is_one_line_naming_key_and_file(tmp_path: Path) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"port": 3000, "colour": "blue"}))
    with pytest.raises(SystemExit) as exited:
        parse("--config", str(config))
    message = str(exited.value.code)
    assert message.startswith(f"wingman-gateway: colour: unknown config key in {config} (known: ")
    assert "\n" not in message and "Usage" not in message


def test_token_and_token_file_together_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--token", "a", "--token-file", str(tmp_path / "t"))
    assert str(exited.value.code) == (
        "wingman-gateway: authTokenFile: give the shared token or a token file, not both")


def test_token_file_satisfies_auth_and_is_read_by_name(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    config = parse("--auth", "--token-file", str(token)).config
    assert config.auth_token is None and config.auth_token_file == str(token)
    assert read_token_file(str(token)) == "s3cret"


@pytest.mark.parametrize("content, reason", [
    (None, "cannot read {path}: No such file or directory"),
    ("  \n", "{path} is empty"),
    ("one\ntwo\n", "{path} must hold one line, the token"),
])
def test_unusable_token_files_are_named(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "token"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as refused:
        read_token_file(str(path))
    assert str(refused.value) == "authTokenFile: " + reason.format(path=path)


# --- help and version ------------------------------------------------------


def test_version_names_the_gateway_and_twisted(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        parse("--version")
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"wingman-gateway {__version__} (Twisted {twisted.__version__})\n"


def test_twistd_help_has_no_internal_wording() -> None:
    text = str(Options())
    assert "PRD" not in text and "ours" not in text
    assert "--token-file=" in text and "--ports-file=" in text


def _help_texts(parser: object) -> dict[str, str]:
    """Every (sub)command's --help text, by its command words."""
    import argparse

    texts: dict[str, str] = {}

    def walk(words: str, parser: argparse.ArgumentParser) -> None:
        texts[words] = parser.format_help()
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, child in action.choices.items():
                    walk(f"{words} {name}".strip(), child)

    walk("", parser)  # type: ignore[arg-type]
    return texts


def test_cli_help_shows_each_default_once() -> None:
    texts = _help_texts(build_parser())
    assert "gateway start" in texts and "gateway health" in texts
    for words, text in texts.items():
        flat = " ".join(text.split())
        assert "(default: None)" not in flat, words
        assert flat.count("(default: 3000)") <= 1, words
        assert not re.search(r"\(default:[^()]*\)\s*\(default:", flat), words  # no doubled default
    start = " ".join(texts["gateway start"].split())
    assert "TCP port (default: 3000)" in start and "(default: text)" in start
    assert "--ca-file" in texts["gateway health"] and "--ca-file" in texts["gateway status"]


# --- the ports file ----------------------------------------------------------


def test_certificate_file_of_an_ssl_endpoint() -> None:
    assert portsfile.certificate_file(r"ssl:0:privateKey=/k\:1.pem:certKey=/c\:1.pem") == "/c:1.pem"
    assert portsfile.certificate_file("ssl:0:privateKey=/both.pem") == "/both.pem"
    assert portsfile.certificate_file("tcp:0") is None


def test_ports_file_is_written_whole(tmp_path: Path) -> None:
    path = tmp_path / "ports.json"
    assert portsfile.read(str(path)) is None
    content = {"listeners": [{"endpoint": "unix:/s", "kind": "unix", "path": "/s"}], "ssh": None}
    portsfile.write(str(path), content)
    assert portsfile.read(str(path)) == content
    assert os.listdir(tmp_path) == ["ports.json"]  # no temporary file left behind
    path.write_text('{"listeners": [')  # half a file is not a ports file
    assert portsfile.read(str(path)) is None


def test_places_for_every_listener_kind() -> None:
    dual = place({"kind": "tcp", "host": "::", "port": 4100})
    assert (dual.health, dual.websocket) == ("http://127.0.0.1:4100/health", "ws://127.0.0.1:4100/ws")
    v6 = place({"kind": "tcp", "host": "::1", "port": 4100})
    assert v6.websocket == "ws://[::1]:4100/ws"
    tls = place({"kind": "ssl", "host": "127.0.0.1", "port": 4443, "certificate": "/c.pem"})
    assert (tls.health, tls.websocket, tls.certificate) == (
        "https://127.0.0.1:4443/health", "wss://127.0.0.1:4443/ws", "/c.pem")
    unix = place({"kind": "unix", "path": "/run/w.sock"})
    assert (unix.health, unix.websocket) == ("unix:/run/w.sock", None)


def test_without_a_started_gateway_commands_use_the_default() -> None:
    assert [p.health for p in health_places(None)] == ["http://127.0.0.1:3000/health"]
    state = {"listeners": [{"kind": "unix", "path": "/s"}, {"kind": "tcp", "host": "::", "port": 4101}]}
    assert websocket_place(state).websocket == "ws://127.0.0.1:4101/ws"  # type: ignore[union-attr]
    assert [p.kind for p in health_places(state)] == ["tcp", "unix"]


# --- JSON logs without the legacy bridge's leftovers ---------------------------


def test_json_log_of_a_legacy_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "log.jsonl"
    monkeypatch.setenv(LOG_FILE_ENV, str(path))
    observer = json_observer()
    globalLogPublisher.addObserver(observer)
    try:
        legacy_log.msg("GatewaySite starting on 4100")
    finally:
        globalLogPublisher.removeObserver(observer)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    record = next(r for r in records if r["message"] == "GatewaySite starting on 4100")
    assert set(record) == {"time", "level", "namespace", "message"}, record
    assert record["namespace"] == "twisted" and record["level"] == "info"


# --- GET / -----------------------------------------------------------------------


def _index(root: Resource) -> dict[str, object]:
    request = DummyRequest([b""])
    body = IndexResource(root).render_GET(request)  # type: ignore[arg-type]
    assert request.responseHeaders.getRawHeaders(b"content-type") == [b"application/json"]
    return json.loads(body)  # type: ignore[no-any-return]


def test_index_points_to_the_console_when_there_is_one() -> None:
    root = Resource()
    for child in (b"ws", b"health", b"console"):
        root.putChild(child, Resource())
    index = _index(root)
    assert index["console"] == "/console/"
    assert index["endpoints"] == {"ws": "/ws", "health": "/health"}
    assert "README" in str(index["documentation"]) or str(index["documentation"]).startswith("http")


def test_index_without_a_console() -> None:
    root = Resource()
    root.putChild(b"bridge", Resource())
    index = _index(root)
    assert "console" not in index and index["endpoints"] == {"bridge": "/bridge/"} and "admin" not in index
    assert index["service"] == "wingman-gateway" and index["version"] == __version__


def test_private_files_of_the_cli_are_0600(tmp_path: Path) -> None:
    from wingman_gateway.cli.home import Home

    home = Home(tmp_path)
    home.save_state({"args": ["--token-file", "x"]})
    home.write_private(home.token_file, "secret\n")
    for path in (home.state_file, home.token_file):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
