"""The aiohttp client of the candidates that forward with one (made once, on the running
loop)."""

from __future__ import annotations

import aiohttp

from flotilla_cli.bench.stacks.job import POOL_IDLE_S, UPSTREAM_TIMEOUT_S

__all__ = ["open_session"]


def open_session() -> aiohttp.ClientSession:
    """No limit on the pool's size (aiohttp's default is 100; no candidate should wait for
    a connection), idle connections kept for POOL_IDLE_S."""
    connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=POOL_IDLE_S)
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=UPSTREAM_TIMEOUT_S)
    )
