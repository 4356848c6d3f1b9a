"""The metrics the rules and dashboards in deploy/ read are the metrics the services
export: scrape `/metrics` of every instance of a running system (after a login, a transfer
and an order, so that labelled series exist) and look every name up. And a real Prometheus
started the way `flotilla up --with-prometheus` starts it scrapes every instance."""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.state import SystemState
from flotilla_cli.ops import prometheus
from flotilla_kit.devservers import free_port
from tests.deploy.promql import (
    ROOT,
    dashboard_exprs,
    exported_family,
    metric_names,
    recorded_names,
    rule_exprs,
)
from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e

# Gauges set by a periodic tick, not by traffic, that alerts read: each must have a sample.
TICKED_GAUGES = {
    "flotilla_payments_in_doubt_transfers",
    "flotilla_payments_oldest_in_doubt_transfer_age_seconds",
    "flotilla_ledger_branches_in_doubt",
    "flotilla_orders_unfinished_orders",
    "flotilla_outbox_backlog",
}
# Series the traffic below must have made.
DRIVEN = {
    "flotilla_http_requests_total",
    "flotilla_gateway_requests_total",
    "flotilla_gateway_upstream_requests_total",
    "flotilla_payments_transfers_total",
    "flotilla_ledger_local_transfers_total",
    "flotilla_orders_sagas_total",
    "flotilla_inventory_reservations_total",
}
STATE_WITHIN_S = 30.0


class Scrape:
    """What every instance's /metrics declares (`# TYPE`) and which samples it has."""

    def __init__(self) -> None:
        self.declared: set[str] = set()
        self.histograms: set[str] = set()
        self.sampled: set[str] = set()

    def add(self, text: str) -> None:
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split()
                self.declared.add(name)
                if kind == "histogram":
                    self.histograms.add(name)
            elif line and not line.startswith("#"):
                self.sampled.add(line.split("{", 1)[0].split(" ", 1)[0])

    def exports(self, name: str) -> bool:
        family = exported_family(name)
        return name in self.declared or (family != name and family in self.histograms)


def drive_traffic(system: RunningSystem) -> None:
    """A login, a transfer between two customers, a product and an order of it."""
    tokens = {user: system.token(user) for user in ("alice", "bob", "ada")}

    def auth(user: str, **more: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[user]}", **more}

    def everyday(client: httpx.Client, user: str) -> str:
        listed = client.get("/api/v1/accounts", headers=auth(user))
        assert listed.status_code == 200, listed.text
        account: str = next(a["id"] for a in listed.json()["items"] if a["name"] == "Everyday")
        return account

    with system.client() as client:
        alice, bob = everyday(client, "alice"), everyday(client, "bob")
        sent = client.post(
            "/api/v1/transfers",
            json={"from_account": alice, "to_account": bob, "amount_minor": 100,
                  "currency": "EUR", "reference": "metrics"},
            headers=auth("alice", **{"Idempotency-Key": str(uuid.uuid4())}),
        )  # fmt: skip
        assert sent.status_code == 201, sent.text
        sku = f"MET-{uuid.uuid4().hex[:10].upper()}"
        product = client.post(
            "/api/v1/products",
            json={"sku": sku, "name": f"Metrics {sku}", "price_minor": 100,
                  "currency": "EUR", "on_hand": 5},
            headers=auth("ada", **{"Idempotency-Key": str(uuid.uuid4())}),
        )  # fmt: skip
        assert product.status_code == 201, product.text
        placed = client.post(
            "/api/v1/orders",
            json={"lines": [{"product_id": product.json()["id"], "quantity": 1}],
                  "payment_account": alice},
            headers=auth("alice", **{"Idempotency-Key": str(uuid.uuid4())}),
        )  # fmt: skip
        assert placed.status_code == 202, placed.text
        order = placed.json()
        deadline = time.monotonic() + STATE_WITHIN_S
        while order["state"] == "PENDING":
            assert time.monotonic() < deadline, f"order {order['id']} still PENDING"
            time.sleep(0.05)  # the saga runs in another process: there is no event to await
            read = client.get(f"/api/v1/orders/{order['id']}", headers=auth("alice"))
            assert read.status_code == 200, read.text
            order = read.json()
        assert order["state"] == "CONFIRMED", order


@pytest.fixture(scope="module")
def scrape(observed_system: RunningSystem) -> Scrape:
    drive_traffic(observed_system)
    status = observed_system.status()
    urls = [i["url"] for i in status["instances"] if i["command"] == "serve" and i["url"]]
    assert observed_system.gateway_url in urls
    assert len(urls) >= 13  # 2 per service (per shard for the ledger), and the gateway
    found = Scrape()
    with httpx.Client(verify=observed_system.operator_tls(), timeout=10) as client:
        for url in urls:
            response = client.get(f"{url}/metrics")
            assert response.status_code == 200, (url, response.text)
            found.add(response.text)
    return found


def used_names() -> dict[str, set[str]]:
    """Every metric name a rule or a dashboard query reads, and where from."""
    recorded = recorded_names()
    used: dict[str, set[str]] = {}
    sources = [("rules", e) for e in rule_exprs()] + [
        (board, e) for board, exprs in dashboard_exprs().items() for e in exprs
    ]
    for source, expr in sources:
        for name in metric_names(expr) - recorded:
            used.setdefault(name, set()).add(source)
    return used


def test_every_metric_a_rule_or_dashboard_reads_is_exported(scrape: Scrape) -> None:
    used = used_names()
    assert len(used) > 30  # the parser found the names
    missing = {name: sorted(where) for name, where in used.items() if not scrape.exports(name)}
    assert not missing, missing


def test_the_gauges_alerts_read_are_set_and_traffic_made_its_series(scrape: Scrape) -> None:
    assert set(used_names()) >= TICKED_GAUGES
    assert not TICKED_GAUGES - scrape.sampled
    assert not DRIVEN - scrape.sampled


def test_a_metric_no_service_exports_is_caught(scrape: Scrape) -> None:
    # The check above could pass vacuously; a misspelt name must be reported.
    assert not scrape.exports("flotilla_http_request_duration_second_bucket")
    assert scrape.exports("flotilla_http_request_duration_seconds_bucket")


@pytest.fixture
def local_prometheus(observed_system: RunningSystem, tmp_path: Path) -> Iterator[str]:
    binary = prometheus.find_binary(None)
    if binary is None:
        pytest.skip("the prometheus binary is missing (Debian package `prometheus`)")
    layout = VarLayout.at(observed_system.var_dir)
    state = SystemState.read(layout.state_file)
    assert state is not None
    run = prometheus.start(
        binary, state, layout, port=free_port(), rules=ROOT / "deploy" / "prometheus" / "rules"
    )
    try:
        yield run.url
    finally:
        assert prometheus.stop(layout)
        assert run.process.wait(timeout=10) is not None  # reaped


def _get(url: str) -> dict[str, object]:
    with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - our loopback URL
        body: dict[str, object] = json.loads(response.read())
        return body


def test_prometheus_started_like_up_does_scrapes_every_instance_and_loads_the_rules(
    observed_system: RunningSystem, local_prometheus: str
) -> None:
    serving = {i["name"] for i in observed_system.status()["instances"] if i["command"] == "serve"}
    deadline = time.monotonic() + 60
    health: dict[str, str] = {}
    while time.monotonic() < deadline:
        try:
            targets = _get(f"{local_prometheus}/api/v1/targets")
        except OSError:
            targets = {}  # not listening yet
        data = targets.get("data")
        if isinstance(data, dict):
            health = {t["labels"]["instance_name"]: t["health"] for t in data["activeTargets"]}
            if set(health) == serving and set(health.values()) == {"up"}:
                break
        time.sleep(0.5)  # Prometheus scrapes on its own schedule: nothing to await
    assert health == dict.fromkeys(serving, "up")
    rules = _get(f"{local_prometheus}/api/v1/rules")["data"]
    assert isinstance(rules, dict)
    loaded = [r for g in rules["groups"] for r in g["rules"]]
    assert len(loaded) == len(rule_exprs())
    assert {r["health"] for r in loaded} <= {"ok", "unknown"}
