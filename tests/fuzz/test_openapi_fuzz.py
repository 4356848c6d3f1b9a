"""Every service's OpenAPI, fuzzed with schemathesis against the running service (over
mTLS, as the gateway reaches it): no 5xx, and every answer matches the documented status
codes, content types and schemas. Bounded and derandomized, so each run of `make test`
sends the same few hundred requests, positive and negative."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.system import RunningSystem
from tests.fuzz.conftest import instance_url, load_schema, mtls

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_OPERATION = 60


def fuzz(system: RunningSystem, service: str, headers: dict[str, str]) -> tuple[int, list[str]]:
    """Run every operation of the service's schema; return (operations, failures)."""
    schema = load_schema(system, service)
    base_url = instance_url(system, service)
    tls = mtls(system)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        if isinstance(result, Err):
            failures.append(f"invalid operation in the schema: {result.err()}")
            continue
        operation = result.ok()
        operations += 1

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        def run(case: Case[Any]) -> None:
            response = case.call(base_url=base_url, headers=headers, **tls)
            case.validate_response(response, checks=CHECKS)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {exc}")
    return operations, failures


@pytest.mark.parametrize(
    ("service", "user"),
    [
        ("auth", "ada"),
        ("accounts", "ada"),
        ("payments", "ada"),
        ("inventory", "ada"),  # the admin may write the catalogue
        ("orders", "alice"),  # a customer may order (the admin may only read orders)
    ],
)
def test_service_api_survives_fuzzing(fuzz_system: RunningSystem, service: str, user: str) -> None:
    headers = {"Authorization": f"Bearer {fuzz_system.token(user)}"}
    operations, failures = fuzz(fuzz_system, service, headers)
    assert operations >= 3
    assert not failures, "\n\n".join(failures)
