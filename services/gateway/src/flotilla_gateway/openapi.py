"""One OpenAPI document for the whole API, merged from the services' own.

Only operations in the gateway's policy, owned by the service that documents them, are
kept; a path left with no operation is dropped. Component
schemas are shared when every service that defines a name defines it the same way (the
kit's `Problem`, FastAPI's validation errors); otherwise each service's version is renamed
`<service>_<name>` and that service's references follow it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Mapping
from typing import Any

from flotilla_gateway.balancer import Registry
from flotilla_gateway.errors import UpstreamError
from flotilla_kit.logs import get_logger

__all__ = ["OpenApiAggregator", "merge_documents"]

_log = get_logger("flotilla.gateway.openapi")
_SCHEMA_REF = "#/components/schemas/"
_FETCH_LINE = b"GET /openapi.json HTTP/1.1\r\n"
_FETCH_FIELDS = b"user-agent: flotilla-gateway\r\naccept: application/json\r\n\r\n"
# The keys of a path item that are operations (OpenAPI 3.1, 4.8.9).
_OPERATIONS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})

Document = dict[str, Any]


def _references(node: Any, found: set[str]) -> set[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            found.add(ref[len(_SCHEMA_REF) :])
        for value in node.values():
            _references(value, found)
    elif isinstance(node, list):
        for value in node:
            _references(value, found)
    return found


def _rename_refs(node: Any, renames: Mapping[str, str]) -> Any:
    if not renames:
        return node
    if isinstance(node, dict):
        copied = {key: _rename_refs(value, renames) for key, value in node.items()}
        ref = copied.get("$ref")
        if isinstance(ref, str) and ref.startswith(_SCHEMA_REF):
            name = ref[len(_SCHEMA_REF) :]
            if name in renames:
                copied["$ref"] = _SCHEMA_REF + renames[name]
        return copied
    if isinstance(node, list):
        return [_rename_refs(value, renames) for value in node]
    return node


def _conflicting(by_name: Mapping[str, Mapping[str, Any]]) -> set[str]:
    """Names whose definitions differ between services, directly or through a reference."""
    conflicts = {
        name
        for name, versions in by_name.items()
        if any(schema != next(iter(versions.values())) for schema in versions.values())
    }
    # A schema identical in text but referring to a conflicting one means different things.
    references = {
        name: set().union(*(_references(schema, set()) for schema in versions.values()))
        for name, versions in by_name.items()
        if len(versions) > 1
    }
    changed = True
    while changed:
        changed = False
        for name, refs in references.items():
            if name not in conflicts and refs & conflicts:
                conflicts.add(name)
                changed = True
    return conflicts


Owner = Callable[[str, str], str | None]


def _routed_operations(service: str, path: str, item: Any, owner: Owner) -> dict[str, Any]:
    """The part of a path item the gateway routes to `service`; empty when none is."""
    if not isinstance(item, dict):
        return {}
    kept = {
        key: value
        for key, value in item.items()
        if key in _OPERATIONS and owner(key.upper(), path) == service
    }
    if not kept:
        return {}
    # Path-level fields (parameters, summary, ...) belong to the operations that remain.
    shared = {key: value for key, value in item.items() if key not in _OPERATIONS}
    return {**shared, **kept}


def _security_schemes(documents: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """`{"securitySchemes": ...}` with the schemes operations name in `security` (the WSGI
    chassis's `bearer`), so every scheme referred to is defined; `{}` when none is."""
    schemes: dict[str, Any] = {}
    for _, document in sorted(documents.items()):
        for name, scheme in document.get("components", {}).get("securitySchemes", {}).items():
            schemes.setdefault(name, scheme)
    return {"securitySchemes": schemes} if schemes else {}


def merge_documents(documents: Mapping[str, Mapping[str, Any]], owner: Owner) -> Document:
    """Merge each service's document; `owner(method, path)` names the service the policy
    sends that operation to, or None when the policy does not list it."""
    by_name: dict[str, dict[str, Any]] = {}
    for service, document in sorted(documents.items()):
        schemas = document.get("components", {}).get("schemas", {})
        for name, schema in schemas.items():
            by_name.setdefault(name, {})[service] = schema

    conflicts = _conflicting(by_name)
    renames: dict[str, dict[str, str]] = {service: {} for service in documents}
    for name in conflicts:
        for service in by_name[name]:
            renames[service][name] = f"{service}_{name}"

    merged_schemas: dict[str, Any] = {}
    for name, versions in sorted(by_name.items()):
        for service, schema in versions.items():
            merged_name = renames[service].get(name, name)
            merged_schemas[merged_name] = _rename_refs(schema, renames[service])

    paths: dict[str, Any] = {}
    tags: dict[str, Any] = {}
    for service, document in sorted(documents.items()):
        for path, item in document.get("paths", {}).items():
            routed = _routed_operations(service, path, item, owner)
            if routed:
                paths[path] = _rename_refs(routed, renames[service])
        for tag in document.get("tags", []):
            if isinstance(tag, dict) and "name" in tag:
                tags.setdefault(tag["name"], tag)

    openapi_versions = sorted({str(d.get("openapi", "3.1.0")) for d in documents.values()})
    merged: Document = {
        "openapi": openapi_versions[-1] if openapi_versions else "3.1.0",
        "info": {"title": "Flotilla API", "version": "1.0.0"},
        "servers": [{"url": "/"}],
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": merged_schemas, **_security_schemes(documents)},
    }
    if tags:
        merged["tags"] = list(tags.values())
    return merged


class OpenApiAggregator:
    """Fetches each routed service's `/openapi.json` from a healthy instance, merges them,
    and keeps the result until instances change (join, leave, health)."""

    def __init__(
        self,
        registry: Registry,
        *,
        services: tuple[str, ...],
        owner: Owner,
        timeout_s: float,
    ) -> None:
        self._registry = registry
        self._services = services
        self._owner = owner
        self._timeout_s = timeout_s
        self._lock = asyncio.Lock()
        self._cached: bytes | None = None
        self._cached_generation = -1

    async def document(self) -> bytes:
        if self._cached is not None and self._cached_generation == self._registry.generation:
            return self._cached
        async with self._lock:
            generation = self._registry.generation
            if self._cached is not None and self._cached_generation == generation:
                return self._cached
            fetched = await asyncio.gather(*(self._fetch(s) for s in self._services))
            documents = {s: d for s, d in zip(self._services, fetched, strict=True) if d}
            merged = merge_documents(documents, self._owner)
            body = json.dumps(merged, separators=(",", ":")).encode()
            # A service that has a healthy instance but did not answer is retried next time.
            complete = all(
                document is not None or not self._registry.service(service).healthy
                for service, document in zip(self._services, fetched, strict=True)
            )
            self._cached = body
            self._cached_generation = generation if complete else -1
            return body

    async def _fetch(self, service_name: str) -> Document | None:
        service = self._registry.service(service_name)
        for instance in list(service.healthy):
            instance.in_flight += 1
            try:
                response = await instance.pool.request(
                    _FETCH_LINE, _FETCH_FIELDS, timeout_s=self._timeout_s
                )
            except UpstreamError as error:
                _log.warning(
                    "cannot fetch OpenAPI document",
                    **{"upstream.instance": instance.name},
                    error=str(error),
                )
                continue
            finally:
                instance.in_flight -= 1
            if response.status != 200:
                continue
            try:
                document = json.loads(response.body)
            except ValueError:
                continue
            if isinstance(document, dict):
                return document
        return None
