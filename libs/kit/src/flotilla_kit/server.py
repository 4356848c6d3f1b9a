"""Run a service's ASGI app under uvicorn (uvloop + httptools), with TLS when configured."""

from __future__ import annotations

import ssl

import uvicorn
from fastapi import FastAPI

from flotilla_kit.settings import ServiceSettings

__all__ = ["serve"]


def serve(app: FastAPI, settings: ServiceSettings) -> None:
    tls = settings.tls
    ssl_options: dict[str, object] = {}
    if tls.enabled:
        ssl_options = {
            "ssl_certfile": str(tls.cert_file),
            "ssl_keyfile": str(tls.key_file),
            "ssl_ca_certs": str(tls.ca_file) if tls.ca_file else None,
            "ssl_cert_reqs": ssl.CERT_REQUIRED if tls.require_client_cert else ssl.CERT_NONE,
        }
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=10,
        **ssl_options,  # type: ignore[arg-type]
    )
    uvicorn.Server(config).run()
