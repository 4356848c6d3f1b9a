from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from flotilla_gateway.openapi import merge_documents
from flotilla_gateway.routes import PUBLIC, RoutePolicy, operation_owner

owner = operation_owner(
    [
        RoutePolicy("GET", "/api/v1/auth/token", "auth", PUBLIC),
        RoutePolicy("GET", "/api/v1/auth/status", "auth", PUBLIC),
        RoutePolicy("GET", "/api/v1/auth/a", "auth", PUBLIC),
        RoutePolicy("GET", "/api/v1/accounts", "accounts", "accounts:read"),
        RoutePolicy("GET", "/api/v1/accounts/{id}", "accounts", "accounts:read"),
        RoutePolicy("DELETE", "/api/v1/accounts/{id}", "accounts", "accounts:read"),
        RoutePolicy("GET", "/api/v1/accounts/shadow/x", "accounts", "accounts:read"),
        RoutePolicy("GET", "/api/v1/accounts/b", "accounts", "accounts:read"),
    ]
)


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


PROBLEM = {"type": "object", "properties": {"title": {"type": "string"}}}


def document(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {"title": "x", "version": "1"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def operation(schema: str) -> dict[str, Any]:
    return {
        "get": {"responses": {"200": {"content": {"application/json": {"schema": ref(schema)}}}}}
    }


AUTH = document(
    {
        "/api/v1/auth/token": operation("Token"),
        "/api/v1/auth/status": operation("Status"),
        "/internal/debug": operation("Token"),
        "/api/v1/accounts/shadow/x": operation("Token"),  # routed to accounts, not auth
        "/api/v1/auth/unlisted": operation("Token"),
    },
    {
        "Token": {"type": "object", "properties": {"status": ref("Status")}},
        "Status": {"type": "string", "enum": ["active", "locked"]},
        "Problem": PROBLEM,
    },
)
ACCOUNTS = document(
    {
        "/api/v1/accounts": operation("Account"),
        "/api/v1/accounts/{account_id}": operation("Status"),
    },
    {
        "Account": {"type": "object", "properties": {"status": ref("Status")}},
        "Status": {"type": "string", "enum": ["open", "closed"]},
        "Problem": PROBLEM,
    },
)


def test_only_operations_in_the_policy_are_kept() -> None:
    accounts = document(
        {
            # Parameter names may differ from the policy's; GET and DELETE are listed.
            "/api/v1/accounts/{account_id}": {
                "parameters": [{"name": "account_id", "in": "path"}],
                **operation("Account"),
                "delete": {"responses": {"204": {"description": "gone"}}},
                "put": {"responses": {"200": {"description": "not in the policy"}}},
            },
            # Only POST is documented, and the policy lists only GET: the path goes.
            "/api/v1/accounts": {"post": {"responses": {"201": {"description": "x"}}}},
            "/api/v1/accounts/{account_id}/close": operation("Account"),
        },
        ACCOUNTS["components"]["schemas"],
    )
    paths = merge_documents({"accounts": accounts}, owner)["paths"]
    assert list(paths) == ["/api/v1/accounts/{account_id}"]
    item = paths["/api/v1/accounts/{account_id}"]
    assert set(item) == {"parameters", "get", "delete"}


def test_paths_are_those_routed_to_the_service_documenting_them() -> None:
    merged = merge_documents({"auth": AUTH, "accounts": ACCOUNTS}, owner)
    assert list(merged["paths"]) == [
        "/api/v1/accounts",
        "/api/v1/accounts/{account_id}",
        "/api/v1/auth/status",
        "/api/v1/auth/token",
    ]
    assert merged["info"]["title"] == "Flotilla API"
    assert merged["servers"] == [{"url": "/"}]


def test_identical_schemas_are_shared_and_different_ones_prefixed() -> None:
    merged = merge_documents({"auth": AUTH, "accounts": ACCOUNTS}, owner)
    schemas = merged["components"]["schemas"]
    assert set(schemas) == {"Problem", "Token", "Account", "auth_Status", "accounts_Status"}
    assert schemas["Problem"] == PROBLEM
    assert schemas["auth_Status"]["enum"] == ["active", "locked"]
    assert schemas["accounts_Status"]["enum"] == ["open", "closed"]
    # References follow the rename, in schemas and in paths, per service.
    assert schemas["Token"]["properties"]["status"] == ref("auth_Status")
    assert schemas["Account"]["properties"]["status"] == ref("accounts_Status")
    status_op = merged["paths"]["/api/v1/auth/status"]["get"]
    assert status_op["responses"]["200"]["content"]["application/json"]["schema"] == ref(
        "auth_Status"
    )
    account_op = merged["paths"]["/api/v1/accounts/{account_id}"]["get"]
    assert account_op["responses"]["200"]["content"]["application/json"]["schema"] == ref(
        "accounts_Status"
    )


def test_a_schema_identical_in_text_but_referring_to_a_conflict_is_prefixed() -> None:
    wrapper = {"type": "object", "properties": {"status": ref("Status")}}
    auth = document(
        {"/api/v1/auth/a": operation("Wrapper")},
        {**AUTH["components"]["schemas"], "Wrapper": wrapper},
    )
    accounts = document(
        {"/api/v1/accounts/b": operation("Wrapper")},
        {**ACCOUNTS["components"]["schemas"], "Wrapper": wrapper},
    )
    schemas = merge_documents({"auth": auth, "accounts": accounts}, owner)["components"]["schemas"]
    assert schemas["auth_Wrapper"]["properties"]["status"] == ref("auth_Status")
    assert schemas["accounts_Wrapper"]["properties"]["status"] == ref("accounts_Status")
    assert "Wrapper" not in schemas


def test_the_inputs_are_not_modified() -> None:
    before = repr(AUTH)
    merge_documents({"auth": AUTH, "accounts": ACCOUNTS}, owner)
    assert repr(AUTH) == before


def test_no_documents_give_an_empty_but_valid_description() -> None:
    merged = merge_documents({}, owner)
    assert merged["paths"] == {}
    assert merged["components"] == {"schemas": {}}
    assert merged["openapi"] == "3.1.0"


class Page(BaseModel):
    items: list[str]


def test_a_wsgi_services_document_merges_with_a_fastapi_services() -> None:
    """The kit writes the document of a Flask or Django service (`flotilla_kit.wsgi`);
    its `Problem` is FastAPI's, so the merge shares it rather than prefixing two."""
    from fastapi import APIRouter  # noqa: PLC0415 - only this test builds services

    from flotilla_kit.app import PROBLEM_RESPONSES, create_service_app  # noqa: PLC0415
    from flotilla_kit.settings import ServiceSettings  # noqa: PLC0415
    from flotilla_kit.testing import TokenMinter  # noqa: PLC0415
    from flotilla_kit.wsgi import Declared, Operation, openapi_document  # noqa: PLC0415

    router = APIRouter(responses=PROBLEM_RESPONSES)

    @router.get("/api/v1/accounts")
    async def accounts() -> Page:
        return Page(items=[])

    fastapi_document = create_service_app(
        ServiceSettings(service_name="accounts"), title="accounts", routers=[router],
        readiness={}, verifier=TokenMinter().verifier(),
    ).openapi()  # fmt: skip
    wsgi_document = openapi_document(
        "billing",
        [
            Operation("get", "/api/v1/invoices", "InvoiceList", "List.", ("invoices:read",),
                      Declared(response=Page)),
            Operation("get", "/api/v1/invoices/{invoice_id}", "InvoiceDetail", None,
                      ("invoices:read",)),
        ],
    )  # fmt: skip
    policy = operation_owner(
        [
            RoutePolicy("GET", "/api/v1/accounts", "accounts", "accounts:read"),
            RoutePolicy("GET", "/api/v1/invoices", "billing", "invoices:read"),
            RoutePolicy("GET", "/api/v1/invoices/{invoice_id}", "billing", "invoices:read"),
        ]
    )
    merged = merge_documents({"accounts": fastapi_document, "billing": wsgi_document}, policy)
    assert list(merged["paths"]) == [
        "/api/v1/accounts",
        "/api/v1/invoices",
        "/api/v1/invoices/{invoice_id}",
    ]
    schemas = merged["components"]["schemas"]
    assert "Problem" in schemas
    assert not any(name.endswith("_Problem") for name in schemas)
    assert schemas["Page"] == wsgi_document["components"]["schemas"]["Page"]
    detail = merged["paths"]["/api/v1/invoices/{invoice_id}"]["get"]
    assert detail["responses"]["404"]["content"]["application/problem+json"]["schema"] == ref(
        "Problem"
    )
    # The bearer scheme its operations name in `security` is defined in the merge too.
    (requirement,) = detail["security"]
    (scheme,) = requirement
    assert (
        merged["components"]["securitySchemes"][scheme]
        == (wsgi_document["components"]["securitySchemes"][scheme])
    )
