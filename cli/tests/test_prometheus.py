"""`flotilla up --with-prometheus`: the generated scrape config (checked by promtool), and
a clear message, not a failure, when there is no Prometheus."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from rich.console import Console

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.state import InstanceState, SystemState
from flotilla_cli.ops import prometheus

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "rules"


def a_state() -> SystemState:
    def serving(service: str, name: str, port: int, shard: int | None = None) -> InstanceState:
        return InstanceState(
            service=service, name=name, port=port, url=f"https://127.0.0.1:{port}", shard=shard
        )

    return SystemState(
        phase="running", supervisor_pid=1, gateway_url="https://127.0.0.1:8443",
        database="sqlite", started_at=0.0,
        instances=[
            serving("auth", "auth-0", 9001),
            serving("accounts", "accounts-s0-0", 9002, 0),
            serving("accounts", "accounts-s1-0", 9003, 1),
            InstanceState(service="orders", name="orders-relay", port=0, url="", command="relay"),
            serving("gateway", "gateway-0", 8443),
        ],
    )  # fmt: skip


def test_the_config_has_a_job_per_service_and_a_target_per_serving_instance(
    tmp_path: Path,
) -> None:
    layout = VarLayout.at(tmp_path)
    config = prometheus.scrape_config(a_state(), layout, rule_files=["rules/alerts.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == {"auth", "accounts", "gateway"}  # the relay serves no HTTP
    assert jobs["accounts"]["static_configs"] == [
        {"targets": ["127.0.0.1:9002"], "labels": {"instance_name": "accounts-s0-0"}},
        {"targets": ["127.0.0.1:9003"], "labels": {"instance_name": "accounts-s1-0"}},
    ]
    assert jobs["gateway"]["scheme"] == "https"
    assert jobs["gateway"]["tls_config"]["cert_file"] == str(layout.tls / "flotilla-cli.pem")


def test_the_generated_config_passes_promtool_check_config(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is missing (Debian package `prometheus`)")
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    for name in ("ca.pem", "flotilla-cli.pem", "flotilla-cli-key.pem"):
        (layout.tls / name).write_text("stand-in\n")
    config = prometheus.write_config(a_state(), layout, RULES)
    assert yaml.safe_load(config.read_text())["rule_files"] == [
        "rules/alerts.yml", "rules/recording.yml"
    ]  # fmt: skip
    result = subprocess.run(
        [promtool, "check", "config", str(config)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_without_a_binary_up_says_so_and_goes_on(tmp_path: Path) -> None:
    console = Console(record=True, width=200)
    run = prometheus.launch(
        console, a_state(), VarLayout.at(tmp_path),
        wanted=True, binary=str(tmp_path / "no-such-prometheus"), port=9090,
    )  # fmt: skip
    assert run is None
    said = console.export_text()
    assert "No Prometheus started" in said
    assert "FLOTILLA_PROMETHEUS_BIN" in said
    assert not (tmp_path / "prometheus").exists()


def test_stop_without_a_prometheus_is_a_no_op(tmp_path: Path) -> None:
    assert prometheus.stop(VarLayout.at(tmp_path)) is False


def test_the_rules_are_found_from_inside_a_checkout() -> None:
    assert prometheus.find_rules(Path(__file__).parent) == RULES
