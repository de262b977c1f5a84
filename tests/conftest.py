"""Shared fixtures; helpers live in the ``harness`` package beside this file."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Iterator

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness.support import GatewayProcess, NodePool, running_gateway, wait_totals  # noqa: E402
from hypothesis import HealthCheck, settings  # noqa: E402

# Property suites: bounded example counts so CI stays fast; HYPOTHESIS_PROFILE=thorough for more.
settings.register_profile(
    "ci", max_examples=60, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=2000, stateful_step_count=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


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
