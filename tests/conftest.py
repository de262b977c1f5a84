"""Shared fixtures; helpers live in the ``harness`` package beside this file.

``gateway`` is the one real-gateway fixture. A test or module configures
it with a marker: ``@pytest.mark.gateway("--max-payload", "4096")`` gives
the options; ``shared=True`` keeps one such gateway for the whole module
(each test then leaves it empty again, as the ``nodes`` fixture checks);
``twistd=[...]`` gives options of twistd itself (``--logger``); an option
written ``FromFixture("name")`` is that fixture's value (a file the test made).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.clusterkit import RedisServer  # noqa: E402
from harness.gatewaymark import FromFixture  # noqa: E402
from harness.opskit import OpsSite  # noqa: E402
from harness.sdkkit import FLAVOURS, Flavour  # noqa: E402
from harness.support import GatewayProcess, NodePool, start_gateway, wait_totals  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gateway(*options, shared=False, twistd=()): options of the `gateway` fixture's process"
    )


@pytest.fixture(scope="module")
def _module_gateways() -> Iterator[dict[tuple[str, ...], GatewayProcess]]:
    """The gateways a module shares, by options; stopped when the module is done."""
    shared: dict[tuple[str, ...], GatewayProcess] = {}
    yield shared
    for process in shared.values():
        process.stop()
from harness.podmankit import gateway_image, podman  # noqa: E402,F401  (session fixtures)
from hypothesis import HealthCheck, settings  # noqa: E402

# Property suites: bounded example counts so CI stays fast; HYPOTHESIS_PROFILE=thorough for more.
settings.register_profile(
    "ci", max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000, stateful_step_count=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def gateway(
    request: pytest.FixtureRequest, _module_gateways: dict[tuple[str, ...], GatewayProcess]
) -> Iterator[GatewayProcess]:
    """A real gateway process, configured by the closest ``gateway`` marker."""
    marker = request.node.get_closest_marker("gateway")
    options = tuple(
        str(request.getfixturevalue(arg.name)) if isinstance(arg, FromFixture) else str(arg)
        for arg in (marker.args if marker else ())
    )
    twistd = tuple(str(arg) for arg in marker.kwargs.get("twistd", ())) if marker else ()
    if marker is not None and marker.kwargs.get("shared"):
        key = (*twistd, "wingman-gateway", *options)
        if key not in _module_gateways:
            _module_gateways[key] = start_gateway(*options, twistd=twistd)
        yield _module_gateways[key]
        return
    gateway = start_gateway(*options, twistd=twistd)
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def nodes(gateway: GatewayProcess) -> Iterator[NodePool]:
    """Nodes for one test; afterwards the gateway is back to no nodes and no rooms."""
    pool = NodePool(gateway)
    try:
        yield pool
    finally:
        pool.close_all()
        wait_totals(gateway, 0, 0)


@pytest.fixture
def launch() -> Iterator[Callable[..., GatewayProcess]]:
    """Starts gateways (waiting for them to listen unless told not to) and stops them all."""
    started: list[GatewayProcess] = []

    def start(*args: str, wait: bool = True) -> GatewayProcess:
        gateway = start_gateway(*args, wait=wait)
        started.append(gateway)
        return gateway

    yield start
    for gateway in started:
        gateway.stop()


@pytest.fixture
def pool(gateway: GatewayProcess) -> Iterator[NodePool]:
    """Nodes for one test, closed afterwards (the gateway may keep other state)."""
    nodes = NodePool(gateway)
    yield nodes
    nodes.close_all()


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    """A WINGMAN_HOME of its own; any gateway the test's ``wingman`` left running is stopped by pid."""
    yield tmp_path
    pid_file = tmp_path / "gateway.pid"
    if pid_file.exists():
        try:
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A real redis-server the module's clustered gateways share."""
    server = RedisServer()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def redis(redis_server: RedisServer) -> RedisServer:
    """The module's redis-server, by the short name the cluster tests use."""
    return redis_server


@pytest.fixture
def pools(gateways: list[GatewayProcess]) -> Iterator[list[NodePool]]:
    """A node pool on each of the module's ``gateways`` (a cluster), closed after the test."""
    made = [NodePool(gateway) for gateway in gateways]
    try:
        yield made
    finally:
        for pool in made:
            pool.close_all()


@pytest.fixture(scope="module")
def ops_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OpsSite]:
    """A gateway with auth, SSH, metrics, the server API and the audit log, one per module."""
    yield from OpsSite.running(tmp_path_factory.mktemp("ops"))


@pytest.fixture
def ops_nodes(ops_site: OpsSite) -> Iterator[NodePool]:
    """WebSocket nodes of the module's ``ops_site``, closed after each test."""
    yield from ops_site.crowd()


@pytest.fixture(params=sorted(FLAVOURS))
def flavour(request: pytest.FixtureRequest) -> Flavour:
    """Each Python client library in turn: the Twisted one and the asyncio one."""
    return FLAVOURS[request.param]()
