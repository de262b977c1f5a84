"""Gateway URLs: which transport a URL names, and the same gateway's other URLs.

Either kind of URL names the gateway: ``ws://h:3000/ws`` and ``http://h:3000``
are one gateway, reached over WebSocket or over the HTTP bridge.
"""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from wingman_gateway.protocol.errors import CONNECTION_FAILED, ClientError

TRANSPORTS = ("websocket", "http", "auto")
_SCHEMES = {"ws": "websocket", "wss": "websocket", "http": "http", "https": "http"}
# The transport a URL's scheme gets when none is named.
_DEFAULTS = {"websocket": "auto", "http": "http"}


def transport_kind(url: str, kind: str | None) -> str:
    """``kind`` if given (and known), else the default for ``url``'s scheme.

    A ``ws://`` or ``wss://`` URL means ``auto`` (WebSocket, else the HTTP
    bridge, as the JavaScript client does); ``http://`` or ``https://`` the bridge.
    """
    if kind is None:
        scheme = urlsplit(url).scheme.lower()
        if scheme not in _SCHEMES:
            raise ClientError(CONNECTION_FAILED, f"unsupported URL scheme {scheme!r} in {url!r}")
        return _DEFAULTS[_SCHEMES[scheme]]
    if kind not in TRANSPORTS:
        raise ClientError(
            CONNECTION_FAILED, f"unknown transport {kind!r} (expected one of {', '.join(TRANSPORTS)})"
        )
    return kind


def _gateway_path(path: str) -> str:
    """The gateway's base path: ``/ws`` or ``/bridge`` at the end dropped."""
    base = path.rstrip("/")
    for suffix in ("/ws", "/bridge"):
        if base.endswith(suffix):
            base = base[: -len(suffix)]
    return base


def _swap_scheme(url: str, plain: str, secure: str, path: str) -> str:
    """``url`` as is if its scheme is ``plain`` or ``secure``, else converted."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ClientError(CONNECTION_FAILED, f"unsupported URL scheme {scheme!r} in {url!r}")
    if scheme in (plain, secure):
        return url
    tls = scheme in ("wss", "https")
    return urlunsplit((secure if tls else plain, parts.netloc, _gateway_path(parts.path) + path, parts.query, ""))


def as_websocket_url(url: str) -> str:
    """A WebSocket URL as given; an HTTP one becomes the gateway's ``/ws``."""
    return _swap_scheme(url, "ws", "wss", "/ws")


def as_http_url(url: str) -> str:
    """An HTTP URL as given; a WebSocket one becomes the gateway's root (``/ws`` dropped)."""
    return _swap_scheme(url, "http", "https", "")


def beside(url: str, path: str) -> str:
    """``path`` on the gateway ``url`` names, over http(s): ``ws(s)://host:port[/prefix]/ws``
    or ``http(s)://host:port[/prefix][/bridge]`` gives ``http(s)://host:port[/prefix]PATH``."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme.lower(), parts.scheme.lower())
    return urlunsplit((scheme, parts.netloc, _gateway_path(parts.path) + path, "", ""))


def bridge_base(url: str) -> str:
    """``http(s)://host:port[/prefix]/bridge`` for a gateway URL (``/ws`` or ``/bridge`` ending dropped)."""
    return beside(url, "/bridge")
