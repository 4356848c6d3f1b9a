"""The OpenAPI 3.1 document of a WSGI app of the kit (Flask, Django REST framework), shaped
like the one FastAPI serves for a `create_service_app` service, so the gateway merges
both alike (`GET /openapi.json`, public; the kit's `/livez`, `/readyz`, `/metrics` and
the document itself are left out, as FastAPI leaves them out).

Each adapter walks its own routes into `Operation`s (method, route template as the
metrics label it, the view's name and docstring, its access rule, what it declared with
`documented(...)`); `openapi_document` writes the document: `summary` (the docstring's
first line), `operationId`, path and query parameters (strings carrying the kit's text
rule as a `pattern`, as FastAPI's do), `security` (bearer) unless public, the access
rule in the description, the `requestBody` and the answer's schema from the declared
pydantic models (`model_json_schema`, under `components/schemas`), and the kit's
`Problem` (the very schema `create_service_app` documents, so the gateway's merge shares
it) for the errors the chassis answers.

Written here rather than taken from a library: none documents both frameworks from
pydantic models without bringing its own request handling. flask-smorest (and apispec,
under it) is Flask-only and built on marshmallow schemas; spectree knows pydantic but
not Django, and its decorators validate requests themselves (the kit's `request_model`
and `validated_body` do, with the kit's problems); drf-spectacular is REST
framework-only and documents DRF serializers, not the kit's pydantic models. What the
kit needs (route templates, access rules, pydantic schemas, the kit's `Problem`) is this
module (no new dependency) and a small route walker in each adapter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel

from flotilla_kit.problems import PROBLEM_SCHEMA, problem_response
from flotilla_kit.text import state_the_rule

__all__ = [
    "DOCUMENT_PATH",
    "OPENAPI_KEY",
    "Declared",
    "Operation",
    "documented",
    "openapi_document",
    "path_types",
    "placeholders_as_template",
]

_F = TypeVar("_F", bound=Callable[..., Any])
# A path parameter in a Flask rule or a Django route: `<item_id>` or `<int:item_id>`.
_ROUTE_PARAMETER = re.compile(r"<(?:([^:<>]+):)?([^<>]+)>")
_TYPES = {"int": "integer", "float": "number"}


def placeholders_as_template(route: str) -> str:
    """Flask's and Django's `/items/<int:item_id>` as the FastAPI services write it (their
    route label and OpenAPI path): `/items/{item_id}`."""
    return _ROUTE_PARAMETER.sub(r"{\2}", route)


def path_types(route: str) -> dict[str, str]:
    """The JSON type of each path parameter whose converter gives one (`int`: integer)."""
    return {name: _TYPES[kind] for kind, name in _ROUTE_PARAMETER.findall(route) if kind in _TYPES}


# Where `documented` leaves its declaration on a view (a function, a DRF view class or
# one of its methods).
OPENAPI_KEY = "__flotilla_openapi__"
DOCUMENT_PATH = "/openapi.json"
BEARER = "bearer"
_VERSION = "1.0.0"
_SCHEMAS = "#/components/schemas/{model}"
_NOT_WORD = re.compile(r"\W")
_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


@dataclass(frozen=True)
class Declared:
    """What a view declares for its documentation (`documented(...)`)."""

    body: type[BaseModel] | None = None
    response: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    status: int = 200
    # Other media types of the success answer: media type -> its description.
    alternatives: Mapping[str, str] = field(default_factory=dict)


def documented(
    *,
    body: type[BaseModel] | None = None,
    response: type[BaseModel] | None = None,
    query: type[BaseModel] | None = None,
    status: int = 200,
    alternatives: Mapping[str, str] | None = None,
) -> Callable[[_F], _F]:
    """Declare what a view takes and answers, for the app's `/openapi.json`: its JSON
    `body` model (the one `request_model`/`validated_body` reads), its `response` model,
    a `query` model whose fields are its query parameters, the success `status`, and
    other media types of the success answer (`{"application/pdf": "The invoice as a
    PDF."}`). Documentation only: nothing is validated from it."""
    declared = Declared(body, response, query, status, dict(alternatives or {}))

    def declare(view: _F) -> _F:
        setattr(view, OPENAPI_KEY, declared)
        return view

    return declare


@dataclass(frozen=True)
class Operation:
    """One method of one route, as an adapter found it."""

    method: str  # lower case: "get"
    path: str  # the route template: /api/v1/items/{item_id}
    name: str  # the view's name (operationId)
    doc: str | None  # the view's docstring
    # "public", "authenticated" or the permission needed ("orders:read")
    access: tuple[str, ...]
    declared: Declared = Declared()
    # path parameter -> its JSON schema type, when not a string (Flask's `<int:...>`)
    path_types: Mapping[str, str] = field(default_factory=dict)


def _schema_ref(model: type[BaseModel], mode: str, schemas: dict[str, Any]) -> dict[str, str]:
    schema = model.model_json_schema(ref_template=_SCHEMAS, mode=mode)  # type: ignore[arg-type]
    schemas.update(schema.pop("$defs", {}))
    schemas[model.__name__] = schema
    return {"$ref": _SCHEMAS.format(model=model.__name__)}


def _words(name: str) -> str:
    """FastAPI's summary for a view without a docstring: `add_item` -> `Add Item`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name).replace("_", " ")
    return spaced.title()


def _access_text(access: tuple[str, ...]) -> str:
    if "public" in access:
        return "Public: no access token needed."
    permissions = [rule for rule in access if rule != "authenticated"]
    if permissions:
        return "Needs the permission " + " and ".join(f"`{p}`" for p in permissions) + "."
    return "Needs a valid access token (any caller)."


def _parameters(operation: Operation, schemas: dict[str, Any]) -> list[dict[str, Any]]:
    parameters = []
    for name in _PLACEHOLDER.findall(operation.path):
        schema = {"type": operation.path_types.get(name, "string"), "title": _words(name)}
        state_the_rule(schema)
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    query = operation.declared.query
    if query is not None:
        model = query.model_json_schema(ref_template=_SCHEMAS)
        schemas.update(model.pop("$defs", {}))
        required = set(model.get("required", ()))
        for name, schema in model.get("properties", {}).items():
            state_the_rule(schema)
            parameter = {"name": name, "in": "query", "required": name in required}
            if "description" in schema:
                parameter["description"] = schema["description"]
            parameters.append({**parameter, "schema": schema})
    return parameters


def _operation(operation: Operation, schemas: dict[str, Any], tag: str) -> dict[str, Any]:
    declared = operation.declared
    lines = (operation.doc or "").strip().splitlines()
    summary = lines[0].strip() if lines else _words(operation.name)
    rest = "\n".join(line.strip() for line in lines[1:]).strip()
    description = "\n\n".join(part for part in (rest, _access_text(operation.access)) if part)
    answer: dict[str, Any] = {}
    if declared.response is not None:
        answer["application/json"] = {
            "schema": _schema_ref(declared.response, "serialization", schemas)
        }
    else:
        answer["application/json"] = {"schema": {}}
    for media_type, about in declared.alternatives.items():
        answer[media_type] = {
            "schema": {"type": "string", "contentMediaType": media_type, "description": about}
        }
    responses: dict[str, Any] = {
        str(declared.status): {"description": "Successful Response", "content": answer}
    }
    public = "public" in operation.access
    errors = {422: "Validation failed"}
    if not public:
        errors |= {401: "Missing or invalid access token"}
        if set(operation.access) - {"authenticated"}:
            errors |= {403: "Not allowed"}
    if declared.body is not None:
        errors |= {400: "Malformed request", 413: "Body too large"}
    if "{" in operation.path:
        errors |= {404: "Not found"}
    if len(declared.alternatives) > 0:
        errors |= {406: "No acceptable media type"}
    for status, about in sorted(errors.items()):
        responses[str(status)] = problem_response(about)
    document: dict[str, Any] = {
        "tags": [tag],
        "summary": summary,
        "description": description,
        "operationId": _NOT_WORD.sub("_", f"{operation.name}{operation.path}")
        + f"_{operation.method}",
    }
    if parameters := _parameters(operation, schemas):
        document["parameters"] = parameters
    if declared.body is not None:
        document["requestBody"] = {
            "required": True,
            "content": {
                "application/json": {"schema": _schema_ref(declared.body, "validation", schemas)}
            },
        }
    document["responses"] = responses
    if not public:
        document["security"] = [{BEARER: []}]
    return document


def openapi_document(title: str, operations: Iterable[Operation]) -> dict[str, Any]:
    """The OpenAPI 3.1 document of an app named `title` serving `operations`."""
    schemas: dict[str, Any] = {}
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        paths.setdefault(operation.path, {})[operation.method] = _operation(
            operation, schemas, title
        )
    schemas["Problem"] = PROBLEM_SCHEMA
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": _VERSION},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                BEARER: {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
        "tags": [{"name": title}],
    }
