"""Which web pages may use the gateway: the bridge's ``--cors-origin`` list, for ``/ws`` too.

A request without ``Origin`` is not from a page (programs, the CLI, agents)
and is allowed. A page is allowed when its origin is listed, or when it is
the gateway's own: the scheme, host and port the client addressed (its
``Host`` header), as a page the gateway served would send.

"The client addressed" is not proof of anything by itself: a page at
``http://evil.example:3000`` whose name is made to resolve to the gateway
(DNS rebinding) sends ``Origin`` and ``Host`` both ``evil.example:3000``.
So a page counts as the gateway's own only under a host it knows
(``PageHosts``): an IP literal, ``localhost``, the gateway's name, a name
it listens on, one given with ``--allowed-host``, or any host when auth is
required (the page then still needs a token).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Callable, Iterable
from urllib.parse import urlsplit

import attrs
from twisted.web.server import Request

from wingman_gateway.web.headers import header

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
# The interface of an endpoint string (colons in it are escaped with "\\").
_INTERFACE = re.compile(r"interface=((?:\\.|[^:])+)")


def _normal(scheme: str, netloc: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``scheme://netloc`` with the default port filled in."""
    try:
        parts = urlsplit(f"{scheme}://{netloc}")
        port = parts.port
    except ValueError:
        return None
    if parts.hostname is None or parts.path or parts.query or parts.username is not None:
        return None
    return scheme, parts.hostname.lower().rstrip("."), port or _DEFAULT_PORTS.get(scheme, 0)


@attrs.frozen
class PageHosts:
    """The host names under which a same-origin page is trusted as the gateway's own."""

    names: frozenset[str] = frozenset()
    any_host: bool = False  # auth is required: nothing is reached without a token

    def trusts(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        if self.any_host or host == "localhost" or host.endswith(".localhost") or host in self.names:
            return True
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return False
        return True


def page_hosts(names: Iterable[str], endpoints: Iterable[str], any_host: bool) -> PageHosts:
    """The trusted hosts: ``names``, and the interfaces ``endpoints`` listen on that are names."""
    trusted = {name.lower().rstrip(".") for name in names}
    for endpoint in endpoints:
        found = _INTERFACE.search(endpoint)
        if found:
            trusted.add(found.group(1).replace("\\", "").lower().rstrip("."))
    return PageHosts(frozenset(trusted), any_host)


def host_refusal(request: Request, hosts: PageHosts) -> str | None:
    """Why a same-origin page under this request's ``Host`` is refused, or None."""
    own = _normal("https" if request.isSecure() else "http", header(request, "host") or "")
    if own is None or hosts.trusts(own[1]):
        return None
    return (
        f"pages served as {own[1]!r} may not use this gateway: it does not know that name, "
        "so the page may belong to another site whose name was made to resolve here "
        f"(DNS rebinding); to allow it, start the gateway with --allowed-host {own[1]}"
    )


def same_origin(origin: str, request: Request) -> bool:
    """Whether ``origin`` is this gateway as the client addressed it."""
    host = header(request, "host")
    scheme, sep, rest = origin.partition("://")
    if not host or not sep or scheme.lower() not in ("http", "https"):
        return False
    own = "https" if request.isSecure() else "http"
    mine = _normal(own, host)
    theirs = _normal(scheme.lower(), rest)
    return mine is not None and mine == theirs


def origin_refusal(
    allows: Callable[[str], bool], request: Request, hosts: PageHosts = PageHosts()
) -> str | None:
    """None when the request may go on; else why its page may not use the gateway."""
    origin = header(request, "origin")
    if origin is None or allows(origin):
        return None
    if same_origin(origin, request):
        return host_refusal(request, hosts)
    return (
        f"origin {origin[:200]!r} is not allowed to use this gateway "
        "(pages from other origins need --cors-origin)"
    )
