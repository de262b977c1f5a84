"""The metrics sink: counts kept from the gateway's events, collected at scrape.

Label values come from fixed sets (transports, envelope types, error codes,
refusal reasons), never from what a client names, so every series exists
from the start, at zero. An event costs a dictionary lookup and an
addition (``tally``); the library makes the families when Prometheus asks.
"""

from __future__ import annotations

from bisect import bisect_left
from typing import Any, Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from zope.interface import implementer

from wingman_gateway import errors
from wingman_gateway.connection import SLOW_CONSUMER
from wingman_gateway.events import ISink
from wingman_gateway.metrics.tally import Buckets, Tally

PREFIX = "wingman_gateway_"
TRANSPORTS = ("websocket", "http", "ssh")
ENVELOPE_TYPES = (
    "register", "unregister", "join_group", "leave_group", "broadcast", "direct", "ping", "pong",
    "invalid", "unknown",
)
AUTH_REASONS = (
    "token required", "token not accepted", "token malformed", "unknown signing key",
    "token expired", "token signature invalid", "token not valid yet", "token issued in the future",
)
CREDENTIALS = ("none", "shared", "signed", "ssh-key")
BACKPLANE_STATES = ("off", "connecting", "connected", "disconnected")
HANDLING_BUCKETS = (
    0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
    0.05, 0.1,
)


def _underscored(values: tuple[str, ...]) -> dict[str, str]:
    return {value: value.replace(" ", "_").replace("-", "_") for value in values}


@implementer(ISink)
class MetricsSink(Collector):
    """Counts what the gateway's events report; a collector of the gateway's registry."""

    def __init__(self) -> None:
        def tally(name: str, doc: str, label: str, values: tuple[str, ...],
                  shown: dict[str, str] | None = None) -> Tally:
            return Tally(PREFIX + name, doc, label, values, shown)

        self.received = tally("messages_received_total", "Envelopes received, by type", "type",
                              ENVELOPE_TYPES)
        self.deliveries = tally(
            "deliveries_total",
            "Envelopes handed to one node by the rooms seam (broadcast, direct, presence, "
            "published), by the node's transport", "transport", TRANSPORTS,
        )
        self.errors = tally("errors_sent_total", "Error envelopes sent, by code", "code",
                            errors.ALL_CODES)
        self.slow_consumers = tally(
            "slow_consumers_total",
            "Clients cut off for not reading (on the bridge: event streams, the session stays)",
            "transport", TRANSPORTS,
        )
        self.heartbeat_timeouts = tally("heartbeat_timeouts_total",
                                        "Connections dropped for silence", "transport", TRANSPORTS)
        self.auth_failures = tally("auth_failures_total", "Register credentials refused, by reason",
                                   "reason", AUTH_REASONS, _underscored(AUTH_REASONS))
        self.registrations = tally("registrations_total", "Nodes registered, by credential kind",
                                   "credential", CREDENTIALS, _underscored(CREDENTIALS))
        self.ssh_logins = tally("ssh_logins_total", "SSH public-key logins, by result", "result",
                                ("accepted", "refused"))
        self.keyring_reloads = tally("keyring_reloads_total", "Key ring reloads, by result",
                                     "result", ("ok", "refused"))
        self.api_requests = tally("api_requests_total",
                                  "Server API requests, by HTTP status class", "status",
                                  ("2xx", "4xx", "5xx"))
        self.tallies = (
            self.received, self.deliveries, self.errors, self.slow_consumers,
            self.heartbeat_timeouts, self.auth_failures, self.registrations, self.ssh_logins,
            self.keyring_reloads, self.api_requests,
        )
        self.handling = Buckets(PREFIX + "envelope_handling_seconds",
                                "Time to handle one incoming envelope", HANDLING_BUCKETS)
        # Plain counters, by name (without the prefix).
        self.totals: dict[str, float] = {
            "received_bytes_total": 0, "sent_bytes_total": 0, "rate_limited_total": 0,
            "bridge_sessions_opened_total": 0, "bridge_messages_dropped_total": 0,
            "ssh_forwards_refused_total": 0,
            "backplane_forwarded_total": 0, "backplane_lost_total": 0,
        }
        self.backplane = "off"

    DOCS = {
        "received_bytes_total": "Envelope bytes received",
        "sent_bytes_total": "Envelope bytes handed to connections (deliveries and replies)",
        "rate_limited_total": "Messages dropped by the rate limit",
        "bridge_sessions_opened_total": "HTTP bridge sessions opened",
        "bridge_messages_dropped_total": "Messages dropped because a bridge session's queue was full",
        "ssh_forwards_refused_total": "SSH forwards refused",
        "backplane_forwarded_total": "Messages forwarded to other gateways over the backplane",
        "backplane_lost_total": "Messages the backplane failed to forward",
    }

    def handlers(self) -> Mapping[str, Callable[..., None]]:
        return {
            "received": self._received,
            "delivered": self._delivered,
            "replied": self._replied,
            "refused": self._refused,
            "registered": self._registered,
            "register_refused": self._register_refused,
            "dropped": self._dropped,
            "bridge_session": lambda: self._count("bridge_sessions_opened_total"),
            "bridge_dropped": lambda count=1: self._count("bridge_messages_dropped_total", count),
            "ssh_login": lambda **_: self.ssh_logins.add("accepted"),
            "ssh_refused": lambda **_: self.ssh_logins.add("refused"),
            "forward_refused": lambda **_: self._count("ssh_forwards_refused_total"),
            "keyring_reload": self._keyring_reload,
            "api_call": self._api_call,
            "backplane_state": self._backplane_state,
            "backplane_forwarded": lambda count=1: self._count("backplane_forwarded_total", count),
            "backplane_lost": lambda count=1: self._count("backplane_lost_total", count),
        }

    # -- the hot path -------------------------------------------------------

    # (Written out rather than through Tally.add and Buckets.observe: these
    # run for every envelope, and a call costs more than the work.)

    def _received(self, type: str, size: int, seconds: float) -> None:
        counts = self.received.counts
        if type in counts:
            counts[type] += 1
        else:
            self.received.add(type)
        totals = self.totals
        totals["received_bytes_total"] += size
        handling = self.handling
        handling.counts[bisect_left(handling.bounds, seconds)] += 1
        handling.sum += seconds

    def _delivered(self, transports: Mapping[str, int], excluded: str | None, size: int) -> None:
        total = 0
        counts = self.deliveries.counts
        for name, count in transports.items():
            if name == excluded:
                count -= 1
            if count:
                if name in counts:
                    counts[name] += count
                else:
                    self.deliveries.add(name, count)
                total += count
        self.totals["sent_bytes_total"] += total * size

    def _replied(self, size: int) -> None:
        self.totals["sent_bytes_total"] += size

    # -- the rest -------------------------------------------------------------

    def _count(self, name: str, amount: float = 1) -> None:
        self.totals[name] += amount

    def _refused(self, code: str) -> None:
        self.errors.add(code)
        if code == errors.RATE_LIMITED:
            self.totals["rate_limited_total"] += 1

    def _registered(self, credential: str, **_: Any) -> None:
        self.registrations.add(credential)

    def _register_refused(self, reason: str, **_: Any) -> None:
        self.auth_failures.add(reason)

    def _dropped(self, transport: str, reason: str) -> None:
        kind = self.slow_consumers if reason == SLOW_CONSUMER else self.heartbeat_timeouts
        kind.add(transport)

    def _keyring_reload(self, ok: bool, **_: Any) -> None:
        self.keyring_reloads.add("ok" if ok else "refused")

    def _api_call(self, status: int, **_: Any) -> None:
        self.api_requests.add(f"{status // 100}xx")

    def _backplane_state(self, state: str) -> None:
        self.backplane = state if state in BACKPLANE_STATES else "disconnected"

    # -- the scrape -------------------------------------------------------------

    def collect(self) -> Iterator[Any]:
        for tally in self.tallies:
            yield tally.family()
        for name, count in self.totals.items():
            yield CounterMetricFamily(PREFIX + name, self.DOCS[name], value=count)
        yield self.handling.family()
        state = GaugeMetricFamily(
            PREFIX + "backplane_state",
            "The backplane's link: 1 for the current state (off when not clustered)",
            labels=["state"],
        )
        for known in BACKPLANE_STATES:
            state.add_metric([known], 1 if known == self.backplane else 0)
        yield state
