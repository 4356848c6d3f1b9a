"""`/livez` (the process answers) and `/readyz` (its dependencies answer too, and it is
not draining)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from flotilla_kit.logs import get_logger
from flotilla_kit.problems import Problem

__all__ = ["Drain", "ReadinessCheck", "check_readiness", "livez", "readyz_endpoint"]

# A check returns normally when its dependency is usable and raises otherwise.
ReadinessCheck = Callable[[], Awaitable[None]]

_log = get_logger("flotilla.health")


class Drain:
    """Whether the instance is draining: shutting down, still serving the requests it
    gets, while `/readyz` tells load balancers (the gateway, Kubernetes) to send no more."""

    def __init__(self) -> None:
        self.draining = False

    def start(self) -> None:
        self.draining = True


async def livez(_: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def check_readiness(
    checks: Mapping[str, ReadinessCheck], timeout_s: float = 2.0
) -> dict[str, str]:
    """Every check at once, each `ok` or `failing` (a failure is logged, not raised)."""

    async def run(name: str, check: ReadinessCheck) -> tuple[str, str]:
        try:
            await asyncio.wait_for(check(), timeout_s)
        except Exception as exc:  # a failing dependency is reported, not raised
            _log.warning("readiness check failed", check=name, error=repr(exc))
            return name, "failing"
        return name, "ok"

    return dict(await asyncio.gather(*(run(n, c) for n, c in checks.items())))


def readyz_endpoint(
    checks: Mapping[str, ReadinessCheck], drain: Drain | None = None, timeout_s: float = 2.0
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        if drain is not None and drain.draining:
            return Problem(
                503, "draining", "Draining", "The instance is shutting down; send no more."
            ).to_response(instance=request.url.path)
        results = await check_readiness(checks, timeout_s)
        if all(state == "ok" for state in results.values()):
            return JSONResponse({"status": "ready", "checks": results})
        return Problem(
            503, "not-ready", "Not ready", "A dependency is failing.", checks=results
        ).to_response(instance=request.url.path)

    return endpoint
