"""The console's files as the gateway serves them: the page and its modules,
the Content-Security-Policy on every answer, nothing outside the console's
folder, the ``/console`` redirect, ``GET /`` naming it and ``--no-console``."""

from __future__ import annotations

import http.client
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.bridgekit import call
from harness.support import GatewayProcess, http_get, running_gateway, start_gateway
from wingman_gateway.web.console import CONSOLE_DIR

FILES = sorted(path.name for path in CONSOLE_DIR.iterdir() if path.is_file())


def policy(headers: dict[str, str]) -> dict[str, str]:
    """The Content-Security-Policy as {directive: sources}."""
    parts = (part.strip().split(" ", 1) for part in headers["Content-Security-Policy"].split(";"))
    return {part[0]: part[1] if len(part) > 1 else "" for part in parts}


@pytest.mark.gateway(shared=True)
def test_the_page_and_its_files_carry_the_policy(gateway: GatewayProcess) -> None:
    status, headers, body = http_get(gateway, "/console/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert body == (CONSOLE_DIR / "index.html").read_text(encoding="utf-8")
    for name in FILES:
        status, headers, body = http_get(gateway, f"/console/{name}")
        assert status == 200, name
        assert body == (CONSOLE_DIR / name).read_text(encoding="utf-8")
        assert policy(headers) == {
            "default-src": "'none'", "script-src": "'self'", "style-src": "'self'",
            "img-src": "'self' data:", "connect-src": "'self'", "base-uri": "'none'",
            "form-action": "'none'", "frame-ancestors": "'none'",
        }
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "no-referrer"
    assert http_get(gateway, "/console/app.js")[1]["Content-Type"] == "text/javascript; charset=utf-8"
    assert http_get(gateway, "/console/console.css")[1]["Content-Type"] == "text/css; charset=utf-8"


@pytest.mark.gateway(shared=True)
@pytest.mark.parametrize("path", [
    "/console/nothing.js", "/console/../health", "/console/%2e%2e/setup.cfg", "/console/..%2f..%2fsetup.cfg", "/console/.hidden",
    "/console/static/wingman.js", "/console/app.js/x", "/console/__init__.py", "/console/App.JS",
])
def test_nothing_else_is_served(gateway: GatewayProcess, path: str) -> None:
    status, headers, body = http_get(gateway, path)
    assert (status, body) == (404, "no such console file\n")
    assert "default-src 'none'" in headers["Content-Security-Policy"]


@pytest.mark.gateway(shared=True)
def test_console_without_slash_redirects_relative(gateway: GatewayProcess) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", gateway.port, timeout=5)
    try:
        connection.request("GET", "/console")
        response = connection.getresponse()
        response.read()
        assert response.status == 302 and response.getheader("Location") == "console/"
    finally:
        connection.close()


@pytest.mark.gateway(shared=True)
def test_the_index_names_the_console(gateway: GatewayProcess) -> None:
    status, _, body = http_get(gateway, "/")
    assert status == 200 and json.loads(body)["console"] == "/console/"


def test_no_console_turns_it_off() -> None:
    with running_gateway("--no-console") as gateway:
        assert http_get(gateway, "/console/")[0] == 404
        assert "console" not in json.loads(http_get(gateway, "/")[2])
        assert http_get(gateway, "/health")[0] == 200
    with running_gateway(env={"WINGMAN_NO_CONSOLE": "true"}) as gateway:
        assert http_get(gateway, "/console/")[0] == 404


def test_the_config_file_turns_it_off(tmp_path: Path) -> None:
    config = tmp_path / "gateway.json"
    config.write_text(json.dumps({"console": False}))
    with running_gateway("--listen", "tcp:0:interface=127.0.0.1", "--config", str(config)) as gateway:
        assert http_get(gateway, "/console/")[0] == 404
    config.write_text(json.dumps({"console": "maybe"}))
    process = start_gateway("--listen", "tcp:0:interface=127.0.0.1", "--config", str(config), wait=False)
    assert process.wait_exit() != 0
    assert "console" in process.log


class _Markup(HTMLParser):
    """What the page's markup holds that a strict policy would refuse."""

    def __init__(self) -> None:
        super().__init__()
        self.inline: list[str] = []
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = dict(attrs)
        if "style" in names or any(name.startswith("on") for name in names):
            self.inline.append(f"<{tag}> with {sorted(names)}")
        if tag == "style" or (tag == "script" and "src" not in names):
            self.inline.append(f"<{tag}> without src")
        for name in ("src", "href"):
            value = names.get(name) or ""
            if re.match(r"^[a-z]+:|^//", value):
                self.external.append(value)


def test_the_files_need_nothing_inline_or_from_elsewhere() -> None:
    markup = _Markup()
    markup.feed((CONSOLE_DIR / "index.html").read_text(encoding="utf-8"))
    assert markup.inline == [] and markup.external == []
    for name in FILES:
        if name.endswith(".svg"):
            continue  # an image: its xmlns is a name, not something loaded
        text = (CONSOLE_DIR / name).read_text(encoding="utf-8")
        # Text enters the page as text nodes only, and nothing is loaded from elsewhere.
        for forbidden in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "http://", "https://"):
            assert forbidden not in text, (name, forbidden)
        for module in re.findall(r'from "([^"]+)"', text):
            assert module.startswith("./") or module == "../client/wingman.js", (name, module)


@pytest.mark.gateway(shared=True)
def test_the_bridge_admits_the_gateways_own_pages(gateway: GatewayProcess) -> None:
    """The console's page posts with its Origin: the gateway's own host and port
    pass without ``--cors-origin``; any other origin is still refused."""
    ping = '{"type":"ping","messageId":"p1"}'
    own = call(gateway.port, "POST", "/bridge/send", ping,
               {"Origin": f"http://127.0.0.1:{gateway.port}", "Content-Type": "application/json"})
    assert own.status == 200 and own.body["type"] == "pong"
    assert "access-control-allow-origin" not in own.headers  # same origin: no CORS needed
    for other in (f"http://127.0.0.1:{gateway.port + 1}", f"http://localhost:{gateway.port}", "null"):
        refused = call(gateway.port, "POST", "/bridge/send", ping, {"Origin": other, "Content-Type": "application/json"})
        assert refused.status == 403 and refused.body["payload"]["code"] == "FORBIDDEN", other
