"""Background tasks and closers on the app factory: tasks start once the service's start-up
is done and are cancelled and awaited before it ends; a crash is logged; closers run last,
newest first, even when one fails; and a route reads `app.state` through `app_state`."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

import httpx
import pytest
from fastapi import APIRouter, Depends, FastAPI
from structlog.testing import capture_logs

from flotilla_kit.app import Background, app_state, create_service_app
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter


def _app(
    tokens: TokenMinter,
    background: Background,
    events: list[str],
    *,
    fail_start: bool = False,
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        events.append("start-up")
        if fail_start:
            raise RuntimeError("migration failed")
        try:
            yield
        finally:
            events.append("lifespan ends")

    return create_service_app(
        ServiceSettings(service_name="demo"),
        title="demo",
        routers=[],
        readiness={},
        lifespan=lifespan,
        verifier=tokens.verifier(),
        background=background,
    )


async def test_tasks_run_between_start_up_and_its_end_then_closers_newest_first(
    tokens: TokenMinter,
) -> None:
    events: list[str] = []
    started = asyncio.Event()

    async def loop() -> None:
        events.append("task starts")
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            events.append("task cancelled")

    async def close(name: str) -> None:
        events.append(f"close {name}")

    background = Background()
    background.closer(lambda: close("database"))
    background.task(loop, name="demo-loop")
    background.closer(lambda: close("client"))
    app = _app(tokens, background, events)

    async with app.router.lifespan_context(app):
        await started.wait()
        [task] = background.tasks
        assert task.get_name() == "demo-loop"
        assert events == ["start-up", "task starts"]
    assert task.cancelled()
    assert background.tasks == ()
    assert events == [
        "start-up", "task starts", "task cancelled", "lifespan ends",
        "close client", "close database",
    ]  # fmt: skip


async def test_a_crashed_task_is_logged_at_once_and_the_others_go_on(
    tokens: TokenMinter,
) -> None:
    beats: list[int] = []
    beat = asyncio.Event()

    async def broken() -> None:
        raise ValueError("bad row")

    async def steady() -> None:
        while True:
            beats.append(1)
            beat.set()
            await asyncio.sleep(0)

    background = Background()
    background.task(broken, name="demo-broken")
    background.task(steady, name="demo-steady")
    app = _app(tokens, background, [])
    with capture_logs() as logs:
        async with app.router.lifespan_context(app):
            [broken_task] = [t for t in background.tasks if t.get_name() == "demo-broken"]
            # The log's done callback was added first, so it has run when this returns.
            await asyncio.wait({broken_task})
            failures = [entry for entry in logs if entry["event"] == "background task failed"]
            assert [entry["task"] for entry in failures] == ["demo-broken"]
            assert isinstance(failures[0]["exc_info"], ValueError)
            beat.clear()
            await beat.wait()  # the other task still runs
    assert beats


async def test_closers_all_run_even_when_one_fails_and_when_start_up_fails(
    tokens: TokenMinter,
) -> None:
    events: list[str] = []

    async def close(name: str) -> None:
        events.append(f"close {name}")

    async def broken_close() -> None:
        raise OSError("socket gone")

    background = Background()
    background.closer(lambda: close("database"))
    background.closer(broken_close)
    app = _app(tokens, background, events, fail_start=True)
    with capture_logs() as logs, pytest.raises(RuntimeError, match="migration failed"):
        async with app.router.lifespan_context(app):
            pass
    assert events == ["start-up", "close database"]
    [failed] = [entry for entry in logs if entry["event"] == "closing failed"]
    assert isinstance(failed["exc_info"], OSError)


async def test_what_start_up_registers_belongs_to_that_run_and_enter_exits_as_a_closer(
    tokens: TokenMinter,
) -> None:
    events: list[str] = []
    background = Background()

    async def dispose() -> None:
        events.append("dispose")

    @asynccontextmanager
    async def client() -> AsyncIterator[str]:
        events.append("client opened")
        yield "client"
        events.append("client closed")

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        assert await background.enter(client()) == "client"
        yield

    background.closer(dispose)
    app = create_service_app(
        ServiceSettings(service_name="demo"),
        title="demo",
        routers=[],
        readiness={},
        lifespan=lifespan,
        verifier=tokens.verifier(),
        background=background,
    )
    for _ in range(2):  # a test may start the same app twice
        async with app.router.lifespan_context(app):
            pass
    assert events == ["client opened", "client closed", "dispose"] * 2


greeting_router = APIRouter()
greeting_dependency = app_state("greeting")


@greeting_router.get("/hello")
async def hello(greeting: Annotated[str, Depends(greeting_dependency)]) -> str:
    return greeting


async def test_app_state_hands_a_route_what_the_wiring_put_there(tokens: TokenMinter) -> None:
    app = create_service_app(
        ServiceSettings(service_name="demo"),
        title="demo",
        routers=[greeting_router],
        readiness={},
        verifier=tokens.verifier(),
    )
    app.state.greeting = "hello"
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get("/hello")).json() == "hello"
    # FastAPI would run a plain function in its thread pool.
    assert inspect.iscoroutinefunction(greeting_dependency)
