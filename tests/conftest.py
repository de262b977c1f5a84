"""Shared fixtures; test helpers (support.py, memory.py, …) import as plain modules."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from support import GatewayProcess, NodePool, running_gateway, wait_totals  # noqa: E402
from podmankit import gateway_image, podman  # noqa: E402,F401  (session fixtures)


@pytest.fixture
def gateway() -> Iterator[GatewayProcess]:
    """A real gateway of the test's own; a module may override it (e.g. module scope, flags)."""
    with running_gateway() as process:
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
