"""The APIs the operator console calls, for the stand-in gateway (`gateway.py`): the
gateway's system picture, payments' in-doubt transfers, orders' PENDING list and the audit
logs, each with the permission the real gateway's policy asks (403 otherwise), and each
able to answer 404 or 503 when a test says so, in the shapes the services answer.

Also: span files as `JsonLinesSpanExporter` writes them, for the trace pages."""

from __future__ import annotations

import json
from bisect import bisect_left
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from flotilla_kit.rbac import permissions_of
from services.web.tests.integration.gateway import access_claims

BOUNDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass
class Instance:
    service: str
    name: str
    shard: int | None = None
    healthy: bool = True
    in_flight: int = 0
    requests: int = 0
    errors: int = 0
    counts: list[int] = field(default_factory=lambda: [0] * (len(BOUNDS) + 1))

    def serve(self, requests: int, *, seconds: float, errors: int = 0) -> None:
        """`requests` more answered in `seconds` each, `errors` of them 5xx."""
        self.requests += requests
        self.errors += errors
        self.counts[bisect_left(BOUNDS, seconds)] += requests

    def as_json(self) -> dict[str, Any]:
        cumulative, buckets = 0, []
        for bound, count in zip(BOUNDS, self.counts, strict=False):
            cumulative += count
            buckets.append([bound, cumulative])
        return {
            "name": self.name,
            "shard": self.shard,
            "url": f"https://127.0.0.1:9/{self.name}",
            "healthy": self.healthy,
            "in_flight": self.in_flight,
            "requests": self.requests,
            "errors": self.errors,
            "buckets": buckets,
            "duration_sum_s": 0.0,
        }


def default_instances() -> list[Instance]:
    return [
        Instance("auth", "auth-1"),
        Instance("accounts", "accounts-s0-1", shard=0),
        Instance("accounts", "accounts-s1-1", shard=1),
        Instance("payments", "payments-1"),
        Instance("inventory", "inventory-1"),
        Instance("orders", "orders-1"),
        Instance("orders", "orders-2", healthy=False),
        Instance("web", "web-1"),
    ]


def audit_log(name: str, records: list[dict[str, Any]], *, broken_at: int | None = None) -> Any:
    return {
        "log": name,
        "chain": {
            "intact": broken_at is None,
            "records": len(records) if broken_at is None else broken_at - 1,
            "first_broken": broken_at,
            "reason": "" if broken_at is None else "the hash does not match the record",
        },
        "records": records,
    }


def audit_record(seq: int, at: str, action: str, **details: Any) -> dict[str, Any]:
    return {
        "seq": seq,
        "at": at,
        "actor": "user-ada",
        "action": action,
        "target": f"target-{seq}",
        "outcome": "success",
        "details": details,
    }


@dataclass
class ConsoleWorld:
    """What the stand-in answers the console; tests change it."""

    gateway: str = "gateway-1"
    at: float = 1_800_000_000.0
    instances: list[Instance] = field(default_factory=default_instances)
    # status -> the answer of each API when it is not 200
    system_status: int = 200
    in_doubt_status: int = 200
    orders_status: int = 200
    in_doubt: list[dict[str, Any]] = field(default_factory=list)
    pending_orders: list[dict[str, Any]] = field(default_factory=list)
    audit: dict[str, Any] = field(default_factory=dict)  # "auth", "accounts-s0", ...
    audit_status: dict[str, int] = field(default_factory=dict)
    calls: list[str] = field(default_factory=list)

    def instance(self, name: str) -> Instance:
        return next(i for i in self.instances if i.name == name)

    def picture(self) -> dict[str, Any]:
        services: dict[str, list[Instance]] = {}
        for instance in self.instances:
            services.setdefault(instance.service, []).append(instance)
        return {
            "gateway": self.gateway,
            "at": self.at,
            "services": [
                {
                    "name": name,
                    "sharded": any(i.shard is not None for i in members),
                    "instances": [i.as_json() for i in members],
                }
                for name, members in services.items()
            ],
        }


def _problem(status: int, slug: str, detail: str) -> JSONResponse:
    return JSONResponse(
        {"type": f"https://flotilla.dev/problems/{slug}", "title": slug, "status": status,
         "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )  # fmt: skip


def _refused(request: Request, permission: str) -> Response | None:
    """The gateway's policy: 403 unless the caller's roles grant `permission`."""
    token = request.headers.get("authorization", "").removeprefix("Bearer ")
    if permission in permissions_of(access_claims(token).get("roles", [])):
        return None
    return _problem(403, "forbidden", f"The route needs {permission!r}.")


def _failing(status: int) -> Response | None:
    if status == 200:
        return None
    if status == 404:
        return _problem(404, "not-found", "No route for this path.")
    return _problem(status, "unavailable", "No instance of the service is ready.")


def console_routes(world: ConsoleWorld) -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/system/instances")
    async def system_instances(request: Request) -> Response:
        world.calls.append("system")
        return (
            _refused(request, "system:read")
            or _failing(world.system_status)
            or JSONResponse(world.picture())
        )

    @router.get("/api/v1/in-doubt-transfers")
    async def in_doubt(request: Request) -> Response:
        world.calls.append("in-doubt")
        return (
            _refused(request, "payments:read:any")
            or _failing(world.in_doubt_status)
            or JSONResponse({"transfers": world.in_doubt})
        )

    @router.get("/api/v1/orders")
    async def orders(request: Request, status: str | None = None) -> Response:
        world.calls.append("orders")
        if status != "PENDING":
            return _problem(400, "bad-request", "The stand-in lists PENDING orders only.")
        return (
            _refused(request, "orders:read:any")
            or _failing(world.orders_status)
            or JSONResponse({"items": world.pending_orders, "next_after": None})
        )

    async def audit(request: Request, log: str) -> Response:
        world.calls.append(f"audit:{log}:{request.query_params.get('limit')}")
        refused = _refused(request, "audit:read") or _failing(world.audit_status.get(log, 200))
        if refused is not None:
            return refused
        if log not in world.audit:
            return _problem(404, "audit-log-not-found", f"No audit log {log}.")
        return JSONResponse(world.audit[log])

    @router.get("/api/v1/audit/accounts/{shard}")
    async def shard_audit(request: Request, shard: int) -> Response:
        return await audit(request, f"accounts-s{shard}")

    @router.get("/api/v1/audit/{log}")
    async def service_audit(request: Request, log: str) -> Response:
        return await audit(request, log)

    return router


def span(
    trace_id: str,
    span_id: str,
    parent: str | None,
    name: str,
    service: str,
    start_ms: float,
    end_ms: float,
    *,
    status: str = "OK",
    origin_ns: int = 1_800_000_000_000_000_000,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A span record as `JsonLinesSpanExporter` writes it."""
    return {
        "trace_id": trace_id,
        "span_id": span_id,
        "parent_span_id": parent,
        "name": name,
        "kind": "SERVER" if parent is None else "CLIENT",
        "service": service,
        "instance": f"{service}-1",
        "start_unix_nano": origin_ns + int(start_ms * 1_000_000),
        "end_unix_nano": origin_ns + int(end_ms * 1_000_000),
        "status": status,
        "status_message": "boom" if status == "ERROR" else None,
        "attributes": attributes or {},
    }


def write_spans(directory: Path, spans: list[dict[str, Any]]) -> None:
    """Each span appended to `<directory>/<instance>.jsonl`, as the services do."""
    directory.mkdir(parents=True, exist_ok=True)
    for record in spans:
        with (directory / f"{record['instance']}.jsonl").open("a") as handle:
            handle.write(json.dumps(record) + "\n")
