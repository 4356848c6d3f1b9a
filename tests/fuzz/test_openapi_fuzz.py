"""Every service's OpenAPI, fuzzed with schemathesis against the running service (over
mTLS, as the gateway reaches it), on SQLite and on PostgreSQL: no 5xx, and every answer
matches the documented status codes, content types and schemas. Three kinds of request
per operation: valid ones, invalid ones (schemathesis' negative mode: wrong types, out of
range, too long, breaking the documented text rule) and valid ones with one value made
hostile (`hostile.py`: NUL and other controls, bidi overrides, 70,000-character and astral
text, integers at 2^31, 2^63, 10^30), which must get a 4xx when the text rule refuses the
value. Bounded and derandomized, so each run sends the same requests."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Err
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.system import RunningSystem
from tests.fuzz.conftest import instance_url, load_schema, mtls
from tests.fuzz.hostile import Spoiled, spoiled_cases

pytestmark = pytest.mark.e2e

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
EXAMPLES_PER_OPERATION = 60
_REPORTED = 3_000  # characters of each failure (a reproduction can hold 70,000)


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
            drawn=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
                spoiled_cases(operation),
            )
        )
        def run(drawn: Any) -> None:
            spoiled = drawn if isinstance(drawn, Spoiled) else None
            case = spoiled.case if spoiled else drawn
            response = case.call(base_url=base_url, headers=headers, **tls)
            case.validate_response(response, checks=CHECKS)
            if spoiled is not None and spoiled.refused:
                assert 400 <= response.status_code < 500, (
                    f"{spoiled.where} = {spoiled.value!r} was accepted: {response.status_code}"
                )

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report all
            failures.append(f"{operation.label}: {str(exc)[:_REPORTED]}")
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
