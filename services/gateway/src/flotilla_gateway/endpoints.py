"""The endpoints the gateway answers itself: probes, metrics, the policy, the merged API."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from flotilla_gateway.balancer import Candidates, Registry
from flotilla_gateway.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from flotilla_gateway.metrics import GatewayMetrics
from flotilla_gateway.openapi import OpenApiAggregator
from flotilla_gateway.problems import problem_reply
from flotilla_gateway.reply import Reply, bytes_reply, json_reply
from flotilla_gateway.request import Request
from flotilla_gateway.routes import RoutePolicy
from flotilla_kit.health import Drain

__all__ = ["LocalEndpoints", "LocalHandler"]

LocalHandler = Callable[[Request, str], Awaitable[Reply]]

_JSON = b"application/json"
_ALIVE = b'{"status":"alive"}'
_NO_STORE = b"cache-control: no-store\r\n"
_SWAGGER_UI = b"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Flotilla API</title>
  <link rel="stylesheet" href="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="https://cdn.jsdelivr.net/npm/swagger-ui-dist@5/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({url: "/openapi.json", dom_id: "#swagger-ui"});
  </script>
</body>
</html>
"""


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
    ) -> None:
        self._registry = registry
        self._drain = drain or Drain()
        self._routed_services = routed_services
        self._metrics = metrics
        self._openapi = openapi
        self._policy = json.dumps(
            [entry.as_json() for entry in policy], separators=(",", ":")
        ).encode()

    def public_handlers(self) -> dict[str, LocalHandler]:
        """What clients may read: liveness, the merged API and its docs."""
        return {"/livez": self.livez, "/openapi.json": self.openapi, "/docs": self.docs}

    def operational_handlers(self) -> dict[str, LocalHandler]:
        """For probes, Prometheus and operators: on the admin listener when there is one."""
        return {
            "/livez": self.livez,
            "/readyz": self.readyz,
            "/metrics": self.metrics,
            "/policy.json": self.policy,
        }

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
        # The one page without the CSP: it loads Swagger UI's scripts and styles.
        return bytes_reply(
            200, _SWAGGER_UI, request_id, content_type=b"text/html; charset=utf-8", csp=False
        )
