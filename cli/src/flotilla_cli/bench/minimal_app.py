"""The two upstreams `flotilla bench gateway` measures, each run by uvicorn (uvloop and
httptools, one worker):

- `fastapi_app`: a FastAPI app with the benchmarked GET route and `/readyz`;
- `minimal_app`: a raw ASGI callable that answers every request with the same small JSON
  body (so `/readyz` too), the least a Python upstream can do per request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import FastAPI

__all__ = ["BENCH_PATH", "fastapi_app", "minimal_app"]

# An AUTHENTICATED route of the gateway's policy whose service (auth) is unsharded.
BENCH_PATH = "/api/v1/auth/me"

_BODY = b'{"sub":"bench","roles":["customer"]}'
_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(_BODY)).encode())]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def minimal_app(
    scope: Scope,
    receive: Callable[[], Awaitable[Message]],
    send: Callable[[Message], Awaitable[None]],
) -> None:
    if scope["type"] != "http":  # lifespan: nothing to set up
        return
    await send({"type": "http.response.start", "status": 200, "headers": _HEADERS})
    await send({"type": "http.response.body", "body": _BODY})


fastapi_app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


@fastapi_app.get("/readyz")
async def readyz() -> dict[str, str]:
    return {"status": "ready"}


@fastapi_app.get(BENCH_PATH)
async def me() -> dict[str, Any]:
    return {"sub": "bench", "roles": ["customer"]}
