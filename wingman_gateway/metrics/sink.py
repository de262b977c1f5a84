"""The metrics sink: counters and histograms kept from the gateway's events.

Label values come from fixed sets (transports, envelope types, error codes,
refusal reasons), never from what a client names, so every series exists
from the start, at zero. Children are resolved once, so an event costs a
dictionary lookup and an increment.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from zope.interface import implementer

from wingman_gateway import errors
from wingman_gateway.connection import SLOW_CONSUMER
from wingman_gateway.events import ISink

PREFIX = "wingman_gateway_"
TRANSPORTS = ("websocket", "http", "ssh")
ENVELOPE_TYPES = (
    "register", "unregister", "join_group", "leave_group", "broadcast", "direct", "ping", "pong",
    "invalid", "unknown",
)
AUTH_REASONS = (
    "token required", "token not accepted", "token malformed", "unknown signing key",
    "token expired", "token signature invalid",
)
CREDENTIALS = ("none", "shared", "signed", "ssh-key")
BACKPLANE_STATES = ("off", "connecting", "connected", "disconnected")
HANDLING_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1,
)
OTHER = "other"


def _label(value: str) -> str:
    return value.replace(" ", "_").replace("-", "_")


class _Children:
    """A labelled metric's children by label value; unknown values share ``other``."""

    def __init__(self, metric: Any, values: Iterable[str], label: Callable[[str], str] = str) -> None:
        self._metric = metric
        self._children = {value: metric.labels(label(value)) for value in values}
        self._other: Any = None

    def __getitem__(self, value: str) -> Any:
        child = self._children.get(value)
        if child is None:
            if self._other is None:  # made only if ever needed
                self._other = self._metric.labels(OTHER)
            child = self._other
        return child


@implementer(ISink)
class MetricsSink:
    """Counts what the gateway's events report."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        self.received = _Children(
            counter("messages_received_total", "Envelopes received, by type", ("type",)),
            ENVELOPE_TYPES,
        )
        self.received_bytes = counter("received_bytes_total", "Envelope bytes received")
        self.sent_bytes = counter(
            "sent_bytes_total", "Envelope bytes handed to connections (deliveries and replies)"
        )
        self.deliveries = _Children(
            counter(
                "deliveries_total",
                "Envelopes handed to one node by the rooms seam (broadcast, direct, presence, "
                "published), by the node's transport",
                ("transport",),
            ),
            TRANSPORTS,
        )
        self.errors = _Children(
            counter("errors_sent_total", "Error envelopes sent, by code", ("code",)),
            errors.ALL_CODES,
        )
        self.rate_limited = counter("rate_limited_total", "Messages dropped by the rate limit")
        self.slow_consumers = _Children(
            counter("slow_consumers_total", "Clients cut off for not reading", ("transport",)),
            TRANSPORTS,
        )
        self.heartbeat_timeouts = _Children(
            counter("heartbeat_timeouts_total", "Connections dropped for silence", ("transport",)),
            TRANSPORTS,
        )
        self.auth_failures = _Children(
            counter("auth_failures_total", "Register credentials refused, by reason", ("reason",)),
            AUTH_REASONS, _label,
        )
        self.registrations = _Children(
            counter("registrations_total", "Nodes registered, by credential kind", ("credential",)),
            CREDENTIALS, _label,
        )
        self.bridge_sessions = counter("bridge_sessions_opened_total", "HTTP bridge sessions opened")
        logins = counter("ssh_logins_total", "SSH public-key logins, by result", ("result",))
        self.ssh_accepted = logins.labels("accepted")
        self.ssh_refused = logins.labels("refused")
        self.forwards_refused = counter("ssh_forwards_refused_total", "SSH forwards refused")
        self.keyring_reloads = counter("keyring_reloads_total", "Key ring reloads", ("result",))
        for result in ("ok", "refused"):
            self.keyring_reloads.labels(result)
        self.api_calls = counter(
            "api_requests_total", "Server API requests, by HTTP status class", ("status",)
        )
        for status in ("2xx", "4xx", "5xx"):
            self.api_calls.labels(status)
        self.handling = Histogram(
            PREFIX + "envelope_handling_seconds", "Time to handle one incoming envelope",
            buckets=HANDLING_BUCKETS, registry=registry,
        )
        self.backplane_state = Gauge(
            PREFIX + "backplane_state",
            "The backplane's link: 1 for the current state (off when not clustered)", ("state",),
            registry=registry,
        )
        self._set_backplane("off")
        self.backplane_forwarded = counter(
            "backplane_forwarded_total", "Messages forwarded to other gateways over the backplane"
        )
        self.backplane_lost = counter(
            "backplane_lost_total", "Messages the backplane failed to forward"
        )

    def handlers(self) -> Mapping[str, Callable[..., None]]:
        return {
            "received": self._received,
            "delivered": self._delivered,
            "replied": self._replied,
            "refused": self._refused,
            "registered": self._registered,
            "register_refused": self._register_refused,
            "dropped": self._dropped,
            "bridge_session": self.bridge_sessions.inc,
            "ssh_login": self._ssh_login,
            "ssh_refused": self._ssh_refused,
            "forward_refused": self._forward_refused,
            "keyring_reload": self._keyring_reload,
            "api_call": self._api_call,
            "backplane_state": self._backplane_state,
            "backplane_forwarded": self._backplane_forwarded,
            "backplane_lost": self._backplane_lost,
        }

    # -- the hot path -------------------------------------------------------

    def _received(self, type: str, size: int, seconds: float) -> None:
        self.received[type].inc()
        self.received_bytes.inc(size)
        self.handling.observe(seconds)

    def _delivered(self, transports: Mapping[str, int], excluded: str | None, size: int) -> None:
        total = 0
        deliveries = self.deliveries
        for name, count in transports.items():
            if name == excluded:
                count -= 1
            if count:
                deliveries[name].inc(count)
                total += count
        if total:
            self.sent_bytes.inc(total * size)

    def _replied(self, size: int) -> None:
        self.sent_bytes.inc(size)

    # -- the rest -------------------------------------------------------------

    def _refused(self, code: str) -> None:
        self.errors[code].inc()
        if code == errors.RATE_LIMITED:
            self.rate_limited.inc()

    def _registered(self, credential: str, **_: Any) -> None:
        self.registrations[credential].inc()

    def _register_refused(self, reason: str, **_: Any) -> None:
        self.auth_failures[reason].inc()

    def _dropped(self, transport: str, reason: str) -> None:
        kind = self.slow_consumers if reason == SLOW_CONSUMER else self.heartbeat_timeouts
        kind[transport].inc()

    def _ssh_login(self, **_: Any) -> None:
        self.ssh_accepted.inc()

    def _ssh_refused(self, **_: Any) -> None:
        self.ssh_refused.inc()

    def _forward_refused(self, **_: Any) -> None:
        self.forwards_refused.inc()

    def _keyring_reload(self, ok: bool, **_: Any) -> None:
        self.keyring_reloads.labels("ok" if ok else "refused").inc()

    def _api_call(self, status: int, **_: Any) -> None:
        self.api_calls.labels(f"{status // 100}xx").inc()

    def _set_backplane(self, state: str) -> None:
        for known in BACKPLANE_STATES:
            self.backplane_state.labels(known).set(1 if known == state else 0)

    def _backplane_state(self, state: str) -> None:
        self._set_backplane(state if state in BACKPLANE_STATES else "disconnected")

    def _backplane_forwarded(self, count: int = 1) -> None:
        self.backplane_forwarded.inc(count)

    def _backplane_lost(self, count: int = 1) -> None:
        self.backplane_lost.inc(count)
