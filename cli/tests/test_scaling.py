"""What `flotilla scale` accepts, how it talks to the supervisor, how a new instance is
planned, and the load the autoscaler reads from the gateways' metrics."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import build_plan, instance_index, plan_sibling, take_port
from flotilla_cli.launcher.state import AutoscaleSettings, InstanceState, ScalingEvent, SystemState
from flotilla_cli.ops.views import status_view
from flotilla_cli.scaling import gateway_metrics, requests
from flotilla_cli.scaling.gateway_metrics import InstanceLoad, LoadMeter
from flotilla_cli.scaling.requests import ScaleError, ScaleRequest, ScaleResult
from flotilla_kit import scale_requests


# -- requests ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("service", "shard", "instances", "message"),
    [
        ("nothing", None, 2, "unknown service 'nothing'"),
        ("payments-relay", None, 2, "relays are not scalable"),
        ("relay", None, 2, "relays are not scalable"),
        ("gateway", None, 2, "--gateways N"),
        ("inventory", None, 0, "between 1 and 16"),
        ("inventory", None, 17, "between 1 and 16"),
        ("inventory", 0, 2, "inventory has no shards"),
        ("accounts", 2, 2, "shard must be between 0 and 1"),
        ("accounts", -1, 2, "shard must be between 0 and 1"),
    ],
)
def test_bad_requests_say_what_is_wrong(
    service: str, shard: int | None, instances: int, message: str
) -> None:
    request = ScaleRequest(service=service, shard=shard, instances=instances)
    with pytest.raises(ScaleError, match=message):
        requests.validate_request(request, shards=2)


def test_a_request_names_the_groups_it_scales() -> None:
    def groups(service: str, shard: int | None = None) -> list[tuple[str, int | None]]:
        request = ScaleRequest(service=service, shard=shard, instances=3)
        return requests.validate_request(request, shards=2)

    assert groups("inventory") == [("inventory", None)]
    assert groups("accounts") == [("accounts", 0), ("accounts", 1)]
    assert groups("accounts", 1) == [("accounts", 1)]


def test_requests_and_answers_go_through_files(tmp_path: Path) -> None:
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    folder = requests.requests_dir(layout)
    assert scale_requests.pending_requests(folder) == []
    first = ScaleRequest(service="auth", instances=3)
    second = ScaleRequest(service="orders", instances=1)
    scale_requests.submit(folder, first)
    scale_requests.submit(folder, second)
    (folder / "broken.json").write_text("{not json")
    assert {r.id for r in scale_requests.pending_requests(folder)} == {first.id, second.id}
    refused = scale_requests.read_result(folder, "broken")
    assert refused is not None
    assert not refused.ok
    assert "bad request" in refused.detail

    scale_requests.answer(folder, ScaleResult(id=first.id, ok=True, detail="auth: 2 -> 3"))
    assert [r.id for r in scale_requests.pending_requests(folder)] == [second.id]
    assert scale_requests.read_result(folder, first.id) == ScaleResult(
        id=first.id, ok=True, detail="auth: 2 -> 3"
    )
    assert scale_requests.read_result(folder, second.id) is None


# -- planning ------------------------------------------------------------------------------
def test_a_new_instance_is_set_up_as_its_siblings(tmp_path: Path) -> None:
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    plan = build_plan(layout, instances=2, database="sqlite", profile="dev", gateway_port=9443)
    template = next(i for i in plan.instances if i.name == "accounts-s1-1")
    taken = {i.port for i in plan.instances} | {
        i.grpc_port for i in plan.instances if i.grpc_port is not None
    }
    port, grpc_port = take_port(taken), take_port(taken)
    assert port not in {i.port for i in plan.instances}
    assert {port, grpc_port} <= taken
    sibling = plan_sibling(template, index=2, port=port, grpc_port=grpc_port)
    assert (sibling.name, sibling.shard, sibling.port) == ("accounts-s1-2", 1, port)
    assert sibling.url == f"https://127.0.0.1:{port}"
    changed = {k for k in template.env if template.env[k] != sibling.env[k]}
    assert changed == {"FLOTILLA_INSTANCE_ID", "FLOTILLA_PORT", "FLOTILLA_GRPC_PORT"}
    assert sibling.env["FLOTILLA_INSTANCE_ID"] == "s1-2"
    assert sibling.env["FLOTILLA_SHARD"] == "1"
    assert instance_index(sibling.name) == 2
    assert instance_index("inventory-11") == 11


# -- load ----------------------------------------------------------------------------------
_METRICS = """\
# HELP flotilla_gateway_upstream_in_flight Requests sent to an upstream instance.
# TYPE flotilla_gateway_upstream_in_flight gauge
flotilla_gateway_upstream_in_flight{service="inventory",instance="inventory-0",shard=""} 2.0
flotilla_gateway_upstream_in_flight{service="inventory",instance="inventory-1",shard=""} 0.0
# HELP flotilla_gateway_upstream_healthy 1 when the instance gets traffic.
# TYPE flotilla_gateway_upstream_healthy gauge
flotilla_gateway_upstream_healthy{service="inventory",instance="inventory-0",shard=""} 1.0
flotilla_gateway_upstream_healthy{service="inventory",instance="inventory-1",shard=""} 0.0
# HELP flotilla_gateway_upstream_duration_seconds Time per attempt.
# TYPE flotilla_gateway_upstream_duration_seconds histogram
flotilla_gateway_upstream_duration_seconds_bucket{service="inventory",instance="inventory-0",shard="",le="+Inf"} 10.0
flotilla_gateway_upstream_duration_seconds_count{service="inventory",instance="inventory-0",shard=""} 10.0
flotilla_gateway_upstream_duration_seconds_sum{service="inventory",instance="inventory-0",shard=""} 4.5
flotilla_gateway_upstream_duration_seconds_bucket{service="inventory",instance="inventory-1",shard="",le="+Inf"} 0.0
flotilla_gateway_upstream_duration_seconds_count{service="inventory",instance="inventory-1",shard=""} 0.0
flotilla_gateway_upstream_duration_seconds_sum{service="inventory",instance="inventory-1",shard=""} 0.0
# HELP flotilla_gateway_requests Requests answered.
# TYPE flotilla_gateway_requests counter
flotilla_gateway_requests_total{route="GET /api/v1/products",status="200"} 10.0
"""


def test_the_gateways_metrics_give_load_and_health_per_instance() -> None:
    assert gateway_metrics.parse_gateway_load(_METRICS) == {
        "inventory-0": InstanceLoad(in_flight=2.0, duration_sum=4.5),
        "inventory-1": InstanceLoad(in_flight=0.0, duration_sum=0.0),
    }
    assert gateway_metrics.parse_gateway_health(_METRICS) == {
        "inventory-0": True,
        "inventory-1": False,
    }


def test_several_gateways_add_up() -> None:
    one = {"a": InstanceLoad(1.0, 2.0)}
    two = {"a": InstanceLoad(0.5, 1.0), "b": InstanceLoad(3.0, 4.0)}
    assert gateway_metrics.merge_loads([one, two]) == {
        "a": InstanceLoad(1.5, 3.0),
        "b": InstanceLoad(3.0, 4.0),
    }


def test_in_flight_is_averaged_over_the_interval_by_littles_law() -> None:
    meter = LoadMeter()
    # First sight: the gauge.
    assert meter.observe(100.0, {"a": InstanceLoad(2.0, 10.0)}) == {"a": 2.0}
    # 5 s later the attempts took 15 s more: 3 in flight on average, whatever the gauge.
    assert meter.observe(105.0, {"a": InstanceLoad(0.0, 25.0), "b": InstanceLoad(1.0, 0.0)}) == {
        "a": 3.0,
        "b": 1.0,
    }
    # A sum that went back (the gateway restarted): the gauge again.
    assert meter.observe(110.0, {"a": InstanceLoad(4.0, 1.0)}) == {"a": 4.0}


def test_a_groups_metric_is_the_mean_over_its_reported_instances() -> None:
    averages = {"inventory-0": 3.0, "inventory-1": 1.0, "auth-0": 9.0}
    assert (
        gateway_metrics.per_instance(averages, ["inventory-0", "inventory-1", "inventory-2"]) == 2.0
    )
    assert gateway_metrics.per_instance(averages, ["orders-0"]) is None


# -- the status view -----------------------------------------------------------------------
def _instance(name: str, service: str, shard: int | None = None) -> InstanceState:
    return InstanceState(service=service, name=name, port=1, url="u", shard=shard, ready=True)


def test_status_shows_counts_decisions_and_changes() -> None:
    state = SystemState(
        phase="running",
        supervisor_pid=1,
        gateway_url="https://127.0.0.1:1",
        database="sqlite",
        started_at=0.0,
        instances=[
            _instance("inventory-0", "inventory"),
            _instance("inventory-2", "inventory"),
            _instance("accounts-s1-0", "accounts", 1),
            _instance("gateway-0", "gateway"),
        ],
        autoscale=AutoscaleSettings(min_instances=1, max_instances=4, target_in_flight=2),
        autoscale_latest={
            "inventory": ScalingEvent(
                at=0.0,
                group="inventory",
                from_count=2,
                to_count=2,
                metric=2.05,
                reason="within tolerance",
                source="autoscale",
            )
        },
        scaling=[
            ScalingEvent(
                at=0.0,
                group="inventory",
                from_count=1,
                to_count=2,
                metric=4.0,
                reason="4.00 in flight per instance > target 2",
                source="autoscale",
            )
        ],
    )
    console = Console(width=200, record=True)
    console.print(status_view(state))
    text = console.export_text()
    assert "autoscale 1..4, target 2 in flight per instance" in text
    assert "2 -> 2: within tolerance" in text
    assert "4.00 in flight per instance > target 2" in text
    assert "1 -> 2" in text
    counts = {
        line.split("│")[1].strip(): line.split("│")[2].strip()
        for line in text.splitlines()
        if line.count("│") >= 4 and line.split("│")[1].strip() in {"inventory", "accounts-s1"}
    }
    assert counts == {"inventory": "2", "accounts-s1": "1"}
    assert requests.group_counts(state.instances) == {"inventory": 2, "accounts-s1": 1}
