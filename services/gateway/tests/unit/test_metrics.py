from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from flotilla_gateway.balancer import Registry
from flotilla_gateway.metrics import GatewayMetrics
from flotilla_gateway.upstream import ConnectionPool, Endpoint


def _pool(endpoint: Endpoint) -> ConnectionPool:
    return ConnectionPool(
        endpoint,
        ssl_context=None,
        connect_timeout_s=1,
        max_idle=1,
        idle_timeout_s=1,
        max_response_bytes=1,
    )


def samples(metrics: GatewayMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(metrics.render().decode()):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def test_requests_and_latency_by_route() -> None:
    metrics = GatewayMetrics(Registry(_pool, unhealthy_after=1))
    auth = metrics.route("/api/v1/auth/*")
    assert metrics.route("/api/v1/auth/*") is auth
    auth.observe(200, 0.0004)
    auth.observe(200, 0.001)  # on a bound: counted in that bucket
    auth.observe(503, 3.0)
    auth.observe(200, 60.0)  # beyond the last bound: +Inf only
    found = samples(metrics)
    route = ("route", "/api/v1/auth/*")
    assert found[("flotilla_gateway_requests_total", (route, ("status", "200")))] == 3
    assert found[("flotilla_gateway_requests_total", (route, ("status", "503")))] == 1
    bucket = "flotilla_gateway_request_duration_seconds_bucket"
    assert found[(bucket, (("le", "0.0005"), route))] == 1
    assert found[(bucket, (("le", "0.001"), route))] == 2
    assert found[(bucket, (("le", "5.0"), route))] == 3
    assert found[(bucket, (("le", "10.0"), route))] == 3
    assert found[(bucket, (("le", "+Inf"), route))] == 4
    assert found[("flotilla_gateway_request_duration_seconds_count", (route,))] == 4
    total = found[("flotilla_gateway_request_duration_seconds_sum", (route,))]
    assert abs(total - 63.0014) < 1e-9


def test_upstream_gauges_are_read_at_scrape_time() -> None:
    registry = Registry(_pool, unhealthy_after=1)
    metrics = GatewayMetrics(registry)
    instance = registry.add("accounts", "accounts-0", "http://127.0.0.1:1")
    labels = (("instance", "accounts-0"), ("service", "accounts"), ("shard", ""))
    assert samples(metrics)[("flotilla_gateway_upstream_healthy", labels)] == 0
    registry.record_check(instance, ok=True)
    instance.in_flight = 3
    found = samples(metrics)
    assert found[("flotilla_gateway_upstream_healthy", labels)] == 1
    assert found[("flotilla_gateway_upstream_in_flight", labels)] == 3


def test_upstream_gauges_carry_the_shard() -> None:
    registry = Registry(_pool, unhealthy_after=1)
    metrics = GatewayMetrics(registry)
    registry.add("accounts", "accounts-s0-0", "http://127.0.0.1:1", shard=0)
    registry.record_check(
        registry.add("accounts", "accounts-s1-0", "http://127.0.0.1:2", shard=1), ok=True
    )
    found = samples(metrics)
    assert (
        found[
            (
                "flotilla_gateway_upstream_healthy",
                (("instance", "accounts-s0-0"), ("service", "accounts"), ("shard", "0")),
            )
        ]
        == 0
    )
    assert (
        found[
            (
                "flotilla_gateway_upstream_healthy",
                (("instance", "accounts-s1-0"), ("service", "accounts"), ("shard", "1")),
            )
        ]
        == 1
    )


def test_each_shard_has_its_own_breaker_state() -> None:
    registry = Registry(_pool, unhealthy_after=1)
    metrics = GatewayMetrics(registry)
    for shard in (0, 1):
        registry.add("accounts", f"accounts-s{shard}-0", "http://127.0.0.1:1", shard)
    service = registry.service("accounts")
    shard_one = service.shard(1)
    assert shard_one is not None
    shard_one.breaker.state = 2
    found = samples(metrics)
    state = {
        dict(labels)["shard"]: value
        for (name, labels), value in found.items()
        if name == "flotilla_gateway_upstream_breaker_state"
    }
    assert state == {"": 0, "0": 0, "1": 2}


def test_per_instance_requests_latency_ejections_and_service_state() -> None:
    registry = Registry(_pool, unhealthy_after=1)
    metrics = GatewayMetrics(registry)
    instance = registry.add("accounts", "accounts-0", "http://127.0.0.1:1")
    instance.observe(0.002, answered=True)
    instance.observe(0.3, answered=False)
    instance.ejections = 2
    service = registry.service("accounts")
    service.breaker.state = 2
    service.retry_budget.exhausted = 4
    metrics.route("/r").retried()
    found = samples(metrics)
    labels = {"instance": "accounts-0", "service": "accounts", "shard": ""}

    def key(name: str, **more: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, tuple(sorted({**labels, **more}.items())))

    assert found[key("flotilla_gateway_upstream_requests_total", outcome="response")] == 1
    assert found[key("flotilla_gateway_upstream_requests_total", outcome="error")] == 1
    assert found[key("flotilla_gateway_upstream_duration_seconds_bucket", le="0.0025")] == 1
    assert found[key("flotilla_gateway_upstream_duration_seconds_count")] == 2
    assert found[key("flotilla_gateway_upstream_ejections_total")] == 2
    service_label = (("service", "accounts"),)
    whole = (("service", "accounts"), ("shard", ""))
    assert found[("flotilla_gateway_upstream_breaker_state", whole)] == 2
    assert found[("flotilla_gateway_retry_budget_exhausted_total", service_label)] == 4
    assert found[("flotilla_gateway_retries_total", (("route", "/r"),))] == 1
