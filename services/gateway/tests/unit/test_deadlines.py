"""Upstream request timeouts: one ticker for every pool, armed only while requests run."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from flotilla_gateway.errors import UpstreamTimeout
from flotilla_gateway.upstream import ConnectionPool, Deadlines, Endpoint

_LINE = b"GET /slow HTTP/1.1\r\n"
_FIELDS = b"\r\n"


@pytest.fixture
async def silent_upstream() -> AsyncIterator[int]:
    """A real server that reads requests and never answers them."""
    held: list[asyncio.StreamWriter] = []

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        held.append(writer)
        await reader.read()  # until the gateway gives up and closes

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    yield server.sockets[0].getsockname()[1]
    for writer in held:
        writer.close()
    server.close()
    await server.wait_closed()


def _pool(port: int, deadlines: Deadlines) -> ConnectionPool:
    return ConnectionPool(
        Endpoint.parse(f"http://127.0.0.1:{port}"),
        ssl_context=None,
        connect_timeout_s=1,
        max_idle=4,
        idle_timeout_s=4,
        max_response_bytes=1024,
        deadlines=deadlines,
    )


async def test_requests_time_out_within_a_tick_and_the_ticker_then_rests(
    silent_upstream: int,
) -> None:
    deadlines = Deadlines(tick_s=0.02)
    first, second = _pool(silent_upstream, deadlines), _pool(silent_upstream, deadlines)
    assert deadlines.idle
    started = time.monotonic()
    results = await asyncio.gather(
        first.request(_LINE, _FIELDS, timeout_s=0.1),
        second.request(_LINE, _FIELDS, timeout_s=0.3),
        return_exceptions=True,
    )
    assert [type(result) for result in results] == [UpstreamTimeout, UpstreamTimeout]
    waited = time.monotonic() - started
    assert 0.3 <= waited < 0.3 + 0.5  # the later deadline, plus at most a tick (and slack)
    # Nothing in progress: the next tick found no request and did not schedule another.
    await asyncio.sleep(0.05)
    assert deadlines.idle
    first.close()
    second.close()


async def test_a_closed_pool_leaves_the_ticker(silent_upstream: int) -> None:
    deadlines = Deadlines(tick_s=0.02)
    pool = _pool(silent_upstream, deadlines)
    assert len(deadlines) == 1
    pool.close()
    # Nothing of it is left to check: a gateway whose topology churns does not keep
    # every pool it ever had.
    assert pool.expire(time.monotonic()) is False
    assert len(deadlines) == 0
