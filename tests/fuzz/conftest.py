"""A running system for the fuzzer: the services' own OpenAPI documents, fetched over mTLS."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.e2e.system import RunningSystem, start_system


@pytest.fixture(scope="session")
def fuzz_system() -> Iterator[RunningSystem]:
    yield from start_system("sqlite", instances=1)


def instance_url(system: RunningSystem, service: str) -> str:
    status = system.status()
    url: str = next(
        i["url"] for i in status["instances"] if i["service"] == service and i["command"] == "serve"
    )
    return url


def mtls(system: RunningSystem) -> dict[str, Any]:
    """requests' TLS arguments: our CA, and the operator's client certificate."""
    tls = system.var_dir / "tls"
    return {
        "verify": str(tls / "ca.pem"),
        "cert": (str(tls / "flotilla-cli.pem"), str(tls / "flotilla-cli-key.pem")),
    }


def load_schema(system: RunningSystem, service: str) -> OpenApiSchema:
    url = instance_url(system, service)
    return schemathesis.openapi.from_url(f"{url}/openapi.json", **mtls(system))
