"""Shared fixtures; helpers live in the ``harness`` package beside this file.

``gateway`` is the one real-gateway fixture. A test or module configures
it with a marker: ``@pytest.mark.gateway("--max-payload", "4096")`` gives
the options; ``shared=True`` keeps one such gateway for the whole module
(each test then leaves it empty again, as the ``nodes`` fixture checks).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.support import GatewayProcess, NodePool, running_gateway, start_gateway, wait_totals  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gateway(*options, shared=False): options of the `gateway` fixture's process"
    )


@pytest.fixture(scope="module")
def _module_gateways() -> Iterator[dict[tuple[str, ...], GatewayProcess]]:
    """The gateways a module shares, by options; stopped when the module is done."""
    shared: dict[tuple[str, ...], GatewayProcess] = {}
    yield shared
    for process in shared.values():
        process.stop()


@pytest.fixture
def gateway(
    request: pytest.FixtureRequest, _module_gateways: dict[tuple[str, ...], GatewayProcess]
) -> Iterator[GatewayProcess]:
    """A real gateway process, configured by the closest ``gateway`` marker."""
    marker = request.node.get_closest_marker("gateway")
    options = tuple(str(arg) for arg in marker.args) if marker else ()
    if marker is not None and marker.kwargs.get("shared"):
        if options not in _module_gateways:
            _module_gateways[options] = start_gateway(*options)
        yield _module_gateways[options]
        return
    with running_gateway(*options) as process:
        yield process


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
