"""The endpoints the gateway answers itself: probes, metrics, the policy, the merged API,
and (behind a token and a permission, like any route) the system as this gateway sees it."""

from __future__ import annotations

import importlib.util
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from itertools import accumulate
from pathlib import Path
from typing import Any

from flotilla_gateway.balancer import LATENCY_BUCKETS, Candidates, Instance, Registry
from flotilla_gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from flotilla_gateway.metrics import GatewayMetrics
from flotilla_gateway.openapi import OpenApiAggregator
from flotilla_gateway.problems import problem_reply
from flotilla_gateway.reply import Reply, bytes_reply, json_reply
from flotilla_gateway.request import Request
from flotilla_gateway.routes import RoutePolicy
from flotilla_kit.health import Drain

__all__ = ["SYSTEM_INSTANCES", "LocalEndpoints", "LocalHandler"]

LocalHandler = Callable[[Request, str], Awaitable[Reply]]

_JSON = b"application/json"
_ALIVE = b'{"status":"alive"}'
_NO_STORE = b"cache-control: no-store\r\n"
# Swagger UI 5 (OpenAPI 3.1) from the swagger-ui-py wheel, served here: no CDN, works
# offline, under the page CSP (the gateway's own scripts and styles, nothing inline).
_SWAGGER_UI = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Flotilla API</title>
  <link rel="icon" href="/docs/favicon-32x32.png">
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/start.js"></script>
</body>
</html>
"""
_SWAGGER_START = b'window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});\n'
_DOCS_FILES = {  # path -> (file in the wheel's static folder, content type)
    "/docs/favicon-32x32.png": ("favicon-32x32.png", b"image/png"),
    "/docs/swagger-ui.css": ("swagger-ui.css", b"text/css; charset=utf-8"),
    "/docs/swagger-ui-bundle.js": ("swagger-ui-bundle.js", b"text/javascript; charset=utf-8"),
}


def _swagger_ui_folder() -> Path:
    """swagger-ui-py's static folder, found without importing the package (which would
    load Jinja2 and PyYAML into the gateway for nothing)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


_CACHE_A_DAY = b"cache-control: public, max-age=86400\r\n"
# The operator console's picture of the system (`routes.POLICY`, permission system:read).
SYSTEM_INSTANCES = "/api/v1/system/instances"


def _instance_json(instance: Instance) -> dict[str, Any]:
    """Cumulative since this gateway started: a reader diffs two snapshots for rates."""
    # As /metrics counts them; the last (+Inf) bucket is left out: it is `requests`.
    cumulative = accumulate(instance.latency_buckets)
    buckets = [[bound, count] for bound, count in zip(LATENCY_BUCKETS, cumulative, strict=False)]
    return {
        "name": instance.name,
        "shard": instance.shard,
        "url": instance.endpoint.url,
        "healthy": instance.available,
        "in_flight": instance.in_flight,
        "requests": instance.answered + instance.failed,
        "errors": instance.server_errors + instance.failed,
        "buckets": buckets,
        "duration_sum_s": round(instance.latency_sum, 6),
    }


def _counts(group: Candidates | None) -> dict[str, Any]:
    if group is None:  # a shard number the topology lists no instance of
        return {"healthy": 0, "instances": 0}
    return {"healthy": len(group.healthy), "instances": len(group.instances)}


class LocalEndpoints:
    def __init__(
        self,
        *,
        registry: Registry,
        routed_services: tuple[str, ...],
        metrics: GatewayMetrics,
        openapi: OpenApiAggregator,
        policy: Sequence[RoutePolicy],
        drain: Drain | None = None,
        name: str = "gateway",
    ) -> None:
        self._name = name
        self._registry = registry
        self._drain = drain or Drain()
        self._routed_services = routed_services
        self._metrics = metrics
        self._openapi = openapi
        self._docs_files: dict[str, bytes] = {}
        self._policy = json.dumps(
            [entry.as_json() for entry in policy], separators=(",", ":")
        ).encode()

    def public_handlers(self) -> dict[str, LocalHandler]:
        """What clients may read: liveness, the merged API and its docs."""
        return {
            "/livez": self.livez,
            "/openapi.json": self.openapi,
            "/docs": self.docs,
            "/docs/start.js": self.docs_start,
            **dict.fromkeys(_DOCS_FILES, self.docs_file),
        }

    def operational_handlers(self) -> dict[str, LocalHandler]:
        """For probes, Prometheus and operators: on the admin listener when there is one."""
        return {
            "/livez": self.livez,
            "/readyz": self.readyz,
            "/metrics": self.metrics,
            "/policy.json": self.policy,
        }

    def authorized_handlers(self) -> dict[str, LocalHandler]:
        """The gateway's own operations in `routes.POLICY` (service `GATEWAY`), by path."""
        return {SYSTEM_INSTANCES: self.system_instances}

    async def system_instances(self, request: Request, request_id: str) -> Reply:
        """Every service this gateway routes to and its instances, with this gateway's
        counts of their requests (see `_instance_json`)."""
        services = []
        for name in self._routed_services:
            service = self._registry.service(name)
            instances = sorted(service.instances.values(), key=lambda i: (i.shard or 0, i.name))
            services.append(
                {
                    "name": name,
                    "sharded": bool(service.shard_count),
                    "instances": [_instance_json(instance) for instance in instances],
                }
            )
        body = {"gateway": self._name, "at": round(time.time(), 3), "services": services}
        return json_reply(200, body, request_id, extra_head=_NO_STORE)

    async def livez(self, request: Request, request_id: str) -> Reply:
        return bytes_reply(200, _ALIVE, request_id, content_type=_JSON, extra_head=_NO_STORE)

    async def readyz(self, request: Request, request_id: str) -> Reply:
        """Ready unless draining (shutting down). What the upstreams lack is reported, not
        a reason to be unready: every gateway sees the same upstreams, so taking gateways
        out of rotation for a dead service would take the whole API down with it, where a
        ready gateway still serves every other route and answers 503 for that service's."""
        if self._drain.draining:
            return problem_reply(
                503,
                "draining",
                "Draining",
                "The gateway is shutting down; send no more.",
                request_id,
            )
        report: dict[str, Any] = {}
        unavailable: list[str] = []
        unavailable_shards: dict[str, list[int]] = {}
        for name in self._routed_services:
            service = self._registry.service(name)
            entry: dict[str, Any] = _counts(service.everyone)
            if service.sharded:
                shards = {str(n): _counts(group) for n, group in enumerate(service.shards)}
                entry["shards"] = shards
                lacking = [int(n) for n, counts in shards.items() if not counts["healthy"]]
                if lacking:
                    unavailable.append(name)
                    unavailable_shards[name] = lacking
            elif not service.healthy:
                unavailable.append(name)
            report[name] = entry
        body: dict[str, Any] = {"status": "ready", "services": report}
        if unavailable:
            body["unavailable"] = {"services": unavailable, "shards": unavailable_shards}
        return json_reply(200, body, request_id, extra_head=_NO_STORE)

    async def metrics(self, request: Request, request_id: str) -> Reply:
        return bytes_reply(
            200, self._metrics.render(), request_id, content_type=METRICS_CONTENT_TYPE
        )

    async def policy(self, request: Request, request_id: str) -> Reply:
        """The access policy as data: `[{method, path, service, access, shard_by}, ...]`."""
        return bytes_reply(200, self._policy, request_id, content_type=_JSON)

    async def openapi(self, request: Request, request_id: str) -> Reply:
        return bytes_reply(200, await self._openapi.document(), request_id, content_type=_JSON)

    async def docs(self, request: Request, request_id: str) -> Reply:
        # A page: the page CSP, which runs the gateway's own scripts and nothing inline.
        return bytes_reply(
            200, _SWAGGER_UI, request_id, content_type=b"text/html; charset=utf-8", page=True
        )

    async def docs_start(self, request: Request, request_id: str) -> Reply:
        return bytes_reply(
            200, _SWAGGER_START, request_id, content_type=b"text/javascript; charset=utf-8"
        )

    async def docs_file(self, request: Request, request_id: str) -> Reply:
        name, content_type = _DOCS_FILES[request.path]
        body = self._docs_files.get(name)
        if body is None:  # read on first use: 1.2 MB no gateway holds until someone asks
            body = self._docs_files[name] = (_swagger_ui_folder() / name).read_bytes()
        return bytes_reply(
            200, body, request_id, content_type=content_type, extra_head=_CACHE_A_DAY
        )
