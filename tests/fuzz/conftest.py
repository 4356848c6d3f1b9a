"""A running system for the fuzzers, on each database: the services' own OpenAPI documents
fetched over mTLS, and the gateway's merged one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from schemathesis.specs.openapi.schemas import OpenApiSchema

from tests.e2e.system import RunningSystem, start_system

# The fuzzers test what the services do with what they are sent, not the rate limits, which
# would otherwise answer most of a fast stateful run with 429.
_NO_RATE_LIMITS = {
    f"FLOTILLA_RATE_LIMIT_{kind}_{what}": "1000000000"
    for kind in ("IDENTITY", "IP")
    for what in ("RPS", "BURST")
}


@pytest.fixture(scope="session", params=["sqlite", "postgres"])
def fuzz_system(request: pytest.FixtureRequest) -> Iterator[RunningSystem]:
    yield from start_system(request.param, instances=1, env=_NO_RATE_LIMITS)


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


def load_gateway_schema(system: RunningSystem) -> OpenApiSchema:
    """The whole public API, as the gateway publishes it."""
    return schemathesis.openapi.from_url(f"{system.gateway_url}/openapi.json", verify=system.ca)
