"""Ranking one cluster's gateways by load, on asyncio: every ``/health`` asked at once (``httpx``)."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

import httpx

from wingman_gateway.aio.reach import REQUEST_ERRORS, httpx_options
from wingman_gateway.protocol.errors import ClientError
from wingman_gateway.protocol.load import by_load, is_gateway_report
from wingman_gateway.protocol.urls import beside

# A gateway that cannot be reached or does not answer as one: no report.
_NO_REPORT: tuple[type[Exception], ...] = (*REQUEST_ERRORS, ClientError, TimeoutError, ValueError)


async def health_report(url: str, *, timeout: float, ca_file: str | None, socks: str | None) -> dict[str, Any] | None:
    """The ``/health`` report of the gateway ``url`` names, or None if it gave none."""
    address = beside(url, "/health")  # its own host, port and path prefix
    try:
        options = httpx_options(address, ca_file=ca_file, timeout=timeout, socks=socks)
        async with httpx.AsyncClient(**options) as http:
            response = await asyncio.wait_for(http.get(address), timeout)
        report = response.json() if response.status_code == 200 else None
    except _NO_REPORT:
        return None
    return dict(report) if is_gateway_report(report) else None


async def rank_by_load(
    urls: Sequence[str], *, timeout: float, ca_file: str | None = None, socks: str | None = None,
) -> list[str]:
    """``urls`` best first (``protocol.load.by_load``)."""
    reports = await asyncio.gather(
        *(health_report(url, timeout=timeout, ca_file=ca_file, socks=socks) for url in urls)
    )
    return by_load(urls, reports)
