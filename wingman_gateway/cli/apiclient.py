"""Calls to a gateway's server API (``/api/*``) with the admin credential."""

from __future__ import annotations

import argparse
import json
import os
from io import BytesIO
from pathlib import Path
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from wingman_gateway.cli.health import health_url
from wingman_gateway.cli.home import Home

TOKEN_ENV = "WINGMAN_ADMIN_TOKEN"


class ApiError(Exception):
    """The call failed: unreachable, refused, or answered with an error."""


def admin_token(path: str | None) -> str:
    """The admin token: ``--admin-token-file``, else ``$WINGMAN_ADMIN_TOKEN``,
    else ``$WINGMAN_HOME/admin-token``."""
    if path is None and os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV].strip()
    file = Path(path) if path is not None else Home.from_environment().root / "admin-token"
    try:
        token = file.read_text(encoding="utf-8").split("\n", 1)[0].strip()
    except OSError as error:
        raise ApiError(f"cannot read the admin token file {file}: {error.strerror}") from None
    if not token:
        raise ApiError(f"the admin token file {file} holds no token")
    return token


def segment(name: str) -> str:
    """A room name or node id as one path segment."""
    return quote(name, safe="")


async def call(reactor: Any, args: argparse.Namespace, method: str, path: str,
               body: Any = None) -> Any:
    """``METHOD /api/PATH`` with the admin credential; the JSON answer, or ApiError."""
    token = admin_token(args.admin_token_file)
    url = health_url(args.url)[: -len("/health")] + "/api/" + path
    headers = Headers({b"authorization": [f"Bearer {token}".encode("utf-8")],
                       b"content-type": [b"application/json"]})
    producer = None
    if body is not None:
        producer = FileBodyProducer(BytesIO(json.dumps(body).encode("utf-8")))
    agent = Agent(reactor, connectTimeout=args.timeout)
    request: Deferred[Any] = agent.request(method.encode(), url.encode("ascii"), headers, producer)
    request.addTimeout(args.timeout, reactor)
    try:
        response = await request
        data = await readBody(response)
    except Exception as error:  # refused, timed out, TLS ...
        raise ApiError(f"{url}: {error.__class__.__name__}: {error}") from None
    try:
        answer = json.loads(data)
    except ValueError:
        raise ApiError(f"{url}: HTTP {response.code}, not a JSON answer") from None
    if response.code != 200:
        refusal = answer.get("error", {}) if isinstance(answer, dict) else {}
        raise ApiError(f"HTTP {response.code} {refusal.get('code')}: {refusal.get('message')}")
    return answer


def add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--url", default="127.0.0.1:3000",
                        help="the gateway: host:port or http(s):// URL")
    parser.add_argument("--admin-token-file", metavar="PATH",
                        help=f"file holding the admin token [${TOKEN_ENV}, else "
                             "$WINGMAN_HOME/admin-token]")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    parser.add_argument("--json", action="store_true", help="print the API's JSON answer")
