"""This gateway as a member of the cluster: its registry entry and liveness.

Every ``BEAT`` seconds the gateway sets its entry (name, URLs, load) with
an expiry of ``TTL`` seconds and reads the others' entries: a gateway
whose entry has expired died without a goodbye (kill -9, host lost) and
its nodes leave their rooms with reason ``gateway lost``, so a dead
gateway is gone everywhere within TTL + BEAT seconds. When Redis comes
back after an outage the gateway writes its whole state again, announces
it (``sync``) and reads every other gateway's state.
"""

from __future__ import annotations

import json
import secrets
import socket
from typing import Any, Callable

from twisted.application.service import Service
from twisted.internet import defer, task

from wingman_gateway import __version__
from wingman_gateway.cluster import wire
from wingman_gateway.cluster.link import LONGEST_RETRY, RedisLink
from wingman_gateway.cluster.mirror import RemoteConnection, peer_of
from wingman_gateway.cluster.rooms import ClusterRooms
from wingman_gateway.cluster.settings import ClusterSettings
from wingman_gateway.discovery.records import gateway_urls
from wingman_gateway.logs import get_logger
from wingman_gateway.offer import Offer

log = get_logger("wingman_gateway.cluster.registry")

# How long a stopping gateway waits for its goodbye to reach Redis.
GOODBYE_WAIT = 1.0
# After Redis comes back, how long a known gateway may take to reconnect
# and register again before it is taken for lost.
REJOIN_GRACE = wire.TTL + LONGEST_RETRY + wire.BEAT
WILDCARDS = ("0.0.0.0", "::", "")


def new_gateway_id() -> str:
    return secrets.token_hex(6)


def offered_urls(offer: Offer) -> list[str]:
    """The WebSocket URLs of the bound listeners (a wildcard bind: the host name)."""
    urls: list[str] = []
    for bound in offer.network:
        host = socket.gethostname() if bound.host in WILDCARDS else str(bound.host)
        urls += gateway_urls([host], int(bound.port or 0), bound.tls)
    return urls


class ClusterMember(Service):
    """Keeps the link to Redis, the registry entry and the mirror up to date."""

    name = "cluster"

    def __init__(
        self,
        settings: ClusterSettings,
        rooms: ClusterRooms,
        gateway_name: str,
        auth_required: bool,
        offered: Callable[[], defer.Deferred[Offer]],
        reactor: Any,
    ) -> None:
        self.settings = settings
        self.rooms = rooms
        self.names = rooms.names
        self.gateway_id = rooms.gateway_id
        self.gateway_name = gateway_name
        self.auth_required = auth_required
        self.offered = offered
        self.reactor = reactor
        self.urls: list[str] = list(settings.advertise)
        self.started_at = int(reactor.seconds() * 1000)
        self.link = RedisLink(
            settings,
            [self.names.directory, self.names.inbox(self.gateway_id)],
            rooms.received,
            self._up,
            self._down,
            reactor,
        )
        rooms.link = self.link
        self._beat = task.LoopingCall(self.beat)
        self._beat.clock = reactor
        self._loading: set[str] = set()
        self.registered = False
        self._connected_at = 0.0

    # -- lifecycle ----------------------------------------------------------

    def startService(self) -> None:
        super().startService()
        self.rooms.events.emit("backplane_state", state="connecting")
        if not self.urls:
            self.offered().addCallback(self._offer)
        self.link.start()
        self._beat.start(wire.BEAT, now=False)

    def _offer(self, offer: Offer) -> None:
        self.urls = offered_urls(offer)

    def stopService(self) -> defer.Deferred[Any]:
        super().stopService()
        if self._beat.running:
            self._beat.stop()
        goodbye = [
            self.link.execute("PUBLISH", self.names.directory, wire.dumps({"gw": self.gateway_id, "bye": True})),
            self.link.execute("DEL", self.names.entry(self.gateway_id), self.names.state(self.gateway_id)),
            self.link.execute("SREM", self.names.gateways, self.gateway_id),
        ]
        sent = defer.gatherResults([d for d in goodbye if d is not None], consumeErrors=True)
        sent.addTimeout(GOODBYE_WAIT, self.reactor)
        sent.addErrback(lambda failure: log.warn("cluster: goodbye not confirmed: {why}", why=failure.getErrorMessage()))
        return sent.addCallback(lambda _: self.link.stop())

    # -- the link -------------------------------------------------------------

    def _up(self) -> None:
        """Connected (again): write our whole state, register, read everyone's."""
        link = self.link
        temporary = self.names.state(self.gateway_id) + ":new"
        self._send("DEL", temporary)
        self._send("HSET", temporary, *self.rooms.state_fields())
        self._send("RENAME", temporary, self.names.state(self.gateway_id))
        self._refresh()
        self._send("PUBLISH", self.names.directory, wire.dumps(
            {"gw": self.gateway_id, "seq": self.rooms.seq, "sync": True, "name": self.gateway_name}
        ))
        if self._connected_at or self.rooms.peers:
            self._connected_at = self.reactor.seconds()  # a reconnection: see REJOIN_GRACE
        self.registered = True
        for peer in self.rooms.peers.values():
            peer.stale = True
        assert link.up
        self.rooms.fill_holes()
        self.rooms.events.emit("backplane_state", state="connected")
        self.check()

    def _down(self) -> None:
        self.registered = False
        self.rooms.events.emit("backplane_state", state="disconnected")

    def _send(self, *args: Any) -> defer.Deferred[Any] | None:
        sent = self.link.execute(*args)
        if sent is not None:
            sent.addErrback(self._failed)
        return sent

    def _failed(self, failure: Any) -> None:
        log.warn("cluster: a Redis command failed: {why}", why=failure.getErrorMessage())

    # -- the beat -------------------------------------------------------------

    def entry(self) -> dict[str, Any]:
        return {
            "id": self.gateway_id,
            "name": self.gateway_name,
            "version": __version__,
            "auth": "required" if self.auth_required else "optional",
            "urls": self.urls,
            "nodes": self.rooms.node_count(),
            "rooms": self.rooms.room_count(),
            "startedAt": self.started_at,
        }

    def _refresh(self) -> defer.Deferred[Any] | None:
        self._send("SADD", self.names.gateways, self.gateway_id)
        self._send("PEXPIRE", self.names.state(self.gateway_id), int(wire.TTL * 1000))
        return self._send(
            "SET", self.names.entry(self.gateway_id), wire.dumps(self.entry()),
            "PX", int(wire.TTL * 1000), "GET",
        )

    def beat(self) -> None:
        lost = self.rooms.outage_losses()
        if lost:
            log.warn("cluster: {count} messages for other gateways were not forwarded (Redis unreachable)", count=lost)
        if not self.link.up:
            return
        refreshed = self._refresh()
        if refreshed is not None:
            refreshed.addCallback(self._refreshed)
        self.check()

    def _refreshed(self, previous: Any) -> None:
        if previous is None and self.registered and self.link.up:
            # Our entry had expired (a stall longer than TTL): the others
            # took us for dead and cleared our state; announce it again.
            log.warn("cluster: our registry entry had expired; announcing our state again")
            self._up()

    def check(self) -> None:
        """Read the registry: notice new, changed and dead gateways."""
        listed = self._send("SMEMBERS", self.names.gateways)
        if listed is not None:
            listed.addCallback(self._listed)

    def _listed(self, members: Any) -> None:
        others = sorted(str(m) for m in members or () if str(m) != self.gateway_id)
        if not others:
            self._seen(others, [])
            return
        read = self._send("MGET", *[self.names.entry(gid) for gid in others])
        if read is not None:
            read.addCallback(lambda entries: self._seen(others, list(entries)))

    def _seen(self, others: list[str], entries: list[Any]) -> None:
        alive: set[str] = set()
        for gateway_id, text in zip(others, entries):
            if text is None:
                if gateway_id not in self.rooms.peers:
                    self._lost(gateway_id)  # never known here: just clear its keys
                continue  # a known one is lost below
            alive.add(gateway_id)
            peer = self.rooms.peer(gateway_id)
            try:
                peer.entry = json.loads(text)
                peer.name = str(peer.entry.get("name") or peer.name)
            except ValueError:
                peer.entry = {}
            if peer.stale:
                self.load(gateway_id)
        if self.reactor.seconds() - self._connected_at < REJOIN_GRACE:
            return  # Redis just came back: the others may not have registered again yet
        for gateway_id in list(self.rooms.peers):
            if gateway_id not in alive:
                self._lost(gateway_id)

    def _lost(self, gateway_id: str) -> None:
        self.rooms.forget(gateway_id, "gateway lost")
        self._send("SREM", self.names.gateways, gateway_id)
        self._send("DEL", self.names.state(gateway_id))

    def load(self, gateway_id: str) -> None:
        """Read a gateway's whole state and make the mirror agree with it."""
        if gateway_id in self._loading:
            return
        read = self._send("HGETALL", self.names.state(gateway_id))
        if read is None:
            return
        self._loading.add(gateway_id)

        def loaded(fields: Any) -> None:
            self._loading.discard(gateway_id)
            if gateway_id in self.rooms.peers and isinstance(fields, dict):
                self.rooms.reconcile(gateway_id, {str(k): str(v) for k, v in fields.items()})

        def done(result: Any) -> Any:
            self._loading.discard(gateway_id)
            return result

        read.addBoth(done)
        read.addCallback(loaded)

    # -- reports ----------------------------------------------------------------

    def degraded(self) -> str | None:
        """Why the gateway is cut off from the cluster, or None when it is not."""
        link = self.link
        return None if link.state == "ok" else (link.reason or link.state)

    def report(self) -> dict[str, Any]:
        """The ``cluster`` section of ``/health``."""
        link = self.link
        gateways = [dict(self.entry(), self=True)]
        for peer in self.rooms.peers.values():
            entry = dict(peer.entry) or {"id": peer.id, "name": peer.name}
            entry["nodes"] = len(peer.nodes)
            gateways.append(entry)
        report: dict[str, Any] = {
            "state": link.state,
            "redis": self.settings.url,
            "gatewayId": self.gateway_id,
            "gateways": gateways,
            "forwarded": self.rooms.forwarded,
            "notForwarded": self.rooms.not_forwarded,
            "unreceived": self.rooms.unreceived,
            "deadAfterMs": int((wire.TTL + wire.BEAT) * 1000),
        }
        if link.reason:
            report["reason"] = link.reason
        return report

    def stats(self) -> dict[str, Any]:
        """``/stats?scope=cluster``: every node of every gateway, and the rooms."""
        nodes = []
        for node in self.rooms.nodes():
            nodes.append(dict(node.report(), gateway=self.gateway_name, gatewayId=self.gateway_id))
        for node in self.rooms.remote_nodes():
            peer = peer_of(node)
            nodes.append(dict(node.report(), gateway=peer.name, gatewayId=peer.id))
        rooms = []
        for room in self.rooms.rooms():
            where: dict[str, int] = {}
            for member in room.recipients:
                remote = isinstance(member.conn, RemoteConnection)
                name = peer_of(member).name if remote else self.gateway_name
                where[name] = where.get(name, 0) + 1
            rooms.append(dict(room.describe(), gateways=where))
        return {
            "cluster": self.report(),
            "nodes": {"totalNodes": len(nodes), "nodes": nodes},
            "groups": {"totalGroups": len(rooms), "groups": rooms},
        }
