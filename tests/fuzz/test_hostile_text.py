"""A NUL in every string a request can carry, on SQLite and on PostgreSQL (whose `text`
cannot hold one: before the kit's text rule, each of these was a 500).

Walks every operation of every service's OpenAPI document: each path parameter, each
query parameter and each string field of a JSON or form body (nested in objects and
arrays too) in turn gets `a\\x00b`, and the answer must be 422 problem+json naming that
field. Headers are left out: HTTP/1.1 cannot carry a NUL in one (the client refuses to
send it, the gateway to read it). The issue's three requests are sent as a user would,
through the gateway."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from flotilla_kit.service_identity import ServiceTokenProvider
from tests.e2e.system import RunningSystem
from tests.fuzz.conftest import instance_url

pytestmark = pytest.mark.e2e

SERVICES = ["auth", "accounts", "payments", "inventory", "orders"]
NUL = "a\x00b"
_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"


@dataclass(frozen=True)
class Probe:
    """One operation with a NUL in one place."""

    method: str
    path: str
    where: tuple[Any, ...]  # ("path", name), ("query", name), ("body", field, 0, field...)
    path_params: dict[str, str]
    query: dict[str, str]
    body: Any
    media_type: str | None

    @property
    def label(self) -> str:
        return f"{self.method.upper()} {self.path} {'.'.join(map(str, self.where))}"


def _resolve(document: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        node: Any = document
        for part in schema["$ref"].removeprefix("#/").split("/"):
            node = node[part]
        schema = node
    return schema


def _types(document: dict[str, Any], schema: dict[str, Any]) -> list[dict[str, Any]]:
    """The schema, or its non-null alternatives."""
    schema = _resolve(document, schema)
    alternatives = schema.get("anyOf") or schema.get("oneOf")
    if alternatives:
        return [s for a in alternatives if (s := _resolve(document, a)).get("type") != "null"]
    return [schema]


def _sample(document: dict[str, Any], schema: dict[str, Any]) -> Any:
    """A plausible value: its example, its first enum value, or a small one of its type."""
    options = _types(document, schema)
    schema = options[0] if options else {}
    for key in ("examples", "enum"):
        if schema.get(key):
            return schema[key][0]
    kind = schema.get("type")
    if kind == "object":
        return {
            name: _sample(document, sub)
            for name, sub in schema.get("properties", {}).items()
            if name in schema.get("required", [])
        }
    if kind == "array":
        return [_sample(document, schema.get("items", {}))]
    if kind == "integer":
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return "x1"


def _string_fields(document: dict[str, Any], schema: dict[str, Any]) -> Iterator[tuple[Any, ...]]:
    """The path (field names and list indices) of every string field, optional ones too."""
    for option in _types(document, schema):
        kind = option.get("type")
        if kind == "string":
            yield ()
        elif kind == "object":
            for name, sub in option.get("properties", {}).items():
                for rest in _string_fields(document, sub):
                    yield (name, *rest)
        elif kind == "array":
            for rest in _string_fields(document, option.get("items", {})):
                yield (0, *rest)


def _with_nul(
    value: Any, document: dict[str, Any], schema: dict[str, Any], path: tuple[Any, ...]
) -> Any:
    """`value` with a NUL at `path`, building what is missing on the way."""
    if not path:
        return NUL
    head, rest = path[0], path[1:]
    option = next(o for o in _types(document, schema) if o.get("type") in ("object", "array"))
    if isinstance(head, int):
        item_schema = option.get("items", {})
        items = (
            list(value) if isinstance(value, list) and value else [_sample(document, item_schema)]
        )
        items[0] = _with_nul(items[0], document, item_schema, rest)
        return items
    sub = option["properties"][head]
    current = dict(value) if isinstance(value, dict) else {}
    current[head] = _with_nul(current.get(head, _sample(document, sub)), document, sub, rest)
    return current


def probes(document: dict[str, Any]) -> Iterator[Probe]:
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            parameters = operation.get("parameters", [])
            path_params = {p["name"]: "x1" for p in parameters if p["in"] == "path"}
            body, media_type, body_schema = None, None, None
            content = operation.get("requestBody", {}).get("content", {})
            for candidate in (_JSON, _FORM):
                if candidate in content:
                    media_type, body_schema = candidate, content[candidate]["schema"]
                    body = _sample(document, body_schema)
                    break
            for parameter in parameters:
                if parameter["in"] not in ("path", "query"):
                    continue
                if not any(
                    t.get("type") == "string" for t in _types(document, parameter["schema"])
                ):
                    continue
                where = (parameter["in"], parameter["name"])
                yield Probe(
                    method, path, where,
                    {**path_params, parameter["name"]: NUL} if parameter["in"] == "path" else path_params,
                    {parameter["name"]: NUL} if parameter["in"] == "query" else {},
                    body, media_type,
                )  # fmt: skip
            if body_schema is not None:
                for field in _string_fields(document, body_schema):
                    spoiled = _with_nul(body, document, body_schema, field)
                    yield Probe(
                        method, path, ("body", *field), path_params, {}, spoiled, media_type
                    )


def _send(client: httpx.Client, probe: Probe, token: str) -> httpx.Response:
    url = probe.path.format(**{k: quote(v, safe="") for k, v in probe.path_params.items()})
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "nul-probe"}
    arguments: dict[str, Any] = {}
    if probe.media_type == _JSON:
        arguments["json"] = probe.body
    elif probe.media_type == _FORM:
        arguments["data"] = probe.body
    return client.request(probe.method, url, params=probe.query, headers=headers, **arguments)


def service_token(system: RunningSystem, service: str) -> str:
    tls = system.var_dir / "tls"
    provider = ServiceTokenProvider(
        service,
        [f"{instance_url(system, 'auth')}/api/v1/auth/token"],
        cert_file=tls / f"{service}.pem",
        key_file=tls / f"{service}-key.pem",
        ssl_context=system.operator_tls(),
    )
    return asyncio.run(provider.token())


@functools.cache
def callers(system: RunningSystem) -> list[str]:
    """Who may call each operation: staff, a customer, the services that call others."""
    return [system.token("ada"), system.token("alice")] + [
        service_token(system, caller) for caller in ("orders", "payments")
    ]


def _names_the_nul(response: httpx.Response, probe: Probe) -> bool:
    """The problem names where the NUL was: the path (the kit reads it before a route is
    chosen), the query parameter, or the body field (list indices aside)."""
    kind, *field = probe.where
    expected = ["path"] if kind == "path" else [kind, *(f for f in field if not isinstance(f, int))]
    return any(
        "U+0000" in error["message"]
        and [p for p in error["location"] if not (isinstance(p, int) or str(p).isdigit())]
        == expected
        for error in response.json().get("errors", [])
    )


@pytest.mark.parametrize("service", SERVICES)
def test_a_nul_in_any_string_of_any_operation_is_a_422_naming_it(
    fuzz_system: RunningSystem, service: str
) -> None:
    tokens = callers(fuzz_system)
    with httpx.Client(
        base_url=instance_url(fuzz_system, service), verify=fuzz_system.operator_tls(), timeout=10
    ) as client:
        document = client.get("/openapi.json").json()
        wrong: list[str] = []
        sent = 0
        for probe in probes(document):
            for token in tokens:
                response = _send(client, probe, token)
                if response.status_code not in (401, 403):
                    break
            sent += 1
            print(probe.label, response.status_code)  # pytest shows it with a failure
            if response.status_code != 422 or not _names_the_nul(response, probe):
                wrong.append(f"{probe.label}: {response.status_code} {response.text[:300]}")
    assert sent >= 3
    assert not wrong, "\n".join(wrong)


def test_the_requests_of_the_issue_get_a_422_through_the_gateway(
    fuzz_system: RunningSystem,
) -> None:
    customer = {"Authorization": f"Bearer {fuzz_system.token('alice')}"}
    with fuzz_system.client() as client:
        accounts = client.get("/api/v1/accounts", headers=customer).json()["items"]
        answers = {
            "name": client.post(
                "/api/v1/accounts",
                json={"name": "\u202e\u0000evil", "currency": "EUR"},
                headers=customer,
            ),
            "reference": client.post(
                "/api/v1/transfers",
                json={
                    "from_account": accounts[0]["id"],
                    "to_account": accounts[-1]["id"],
                    "amount_minor": 1,
                    "currency": accounts[0]["currency"],
                    "reference": "a\u0000b",
                },
                headers={**customer, "Idempotency-Key": "nul-in-reference"},
            ),
            "username": client.post(
                "/api/v1/auth/token",
                data={"grant_type": "password", "username": "ali\u0000ce", "password": "x"},
            ),
            "path": client.get("/api/v1/accounts/acc_0_a%00b", headers=customer),
        }
    for field, response in answers.items():
        assert response.status_code == 422, (field, response.text)
        assert response.headers["content-type"] == "application/problem+json", field
        assert response.json()["type"].endswith("/validation-error"), field
