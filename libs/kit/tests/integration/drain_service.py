"""A service with nothing but the kit, run as its own process by test_drain.py:
`python drain_service.py PORT` serves `GET /api/v1/ping` under `flotilla_kit.server.serve`."""

from __future__ import annotations

import sys

from fastapi import APIRouter

from flotilla_kit.app import create_service_app
from flotilla_kit.logs import configure_logging
from flotilla_kit.server import serve
from flotilla_kit.settings import ServiceSettings

router = APIRouter()


@router.get("/api/v1/ping")
async def ping() -> dict[str, str]:
    return {"pong": "yes"}


def main() -> None:
    settings = ServiceSettings(service_name="drainer", port=int(sys.argv[1]), drain_s=60.0)
    configure_logging(settings.service_name, settings.instance_id, "info")
    serve(create_service_app(settings, title="drainer", routers=[router], readiness={}), settings)


if __name__ == "__main__":
    main()
