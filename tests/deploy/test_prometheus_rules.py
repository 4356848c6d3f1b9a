"""The Prometheus and Grafana artifacts in deploy/, checked without a running system:
promtool on the rules, the scrape config and the rules' unit tests; the dashboards' JSON,
datasource and queries."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from flotilla_cli.launcher.planning import BACKEND_SERVICES
from tests.deploy.promql import (
    DASHBOARDS,
    PROMETHEUS,
    ROOT,
    alert_rules,
    dashboard_exprs,
    metric_names,
    promtool,
    recorded_names,
    rule_exprs,
)

GRAFANA = ROOT / "deploy" / "grafana"


@pytest.fixture(scope="module")
def tool() -> str:
    found = promtool()
    if found is None:
        pytest.skip("promtool is missing (Debian package `prometheus`; apt-get not usable here)")
    return found


def run(tool: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [tool, *args], capture_output=True, text=True, check=False, cwd=cwd, timeout=60
    )


def test_the_rule_files_pass_promtool_check_rules(tool: str) -> None:
    files = sorted(str(p) for p in (PROMETHEUS / "rules").glob("*.yml"))
    assert len(files) == 2
    result = run(tool, "check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_rule_is_caught(tool: str, tmp_path: Path) -> None:
    # The check above could pass vacuously; prove promtool bites on a bad expression.
    broken = tmp_path / "broken.yml"
    broken.write_text("groups:\n- name: x\n  rules:\n  - alert: X\n    expr: sum(rate(x[5m])\n")
    assert run(tool, "check", "rules", str(broken)).returncode != 0


def test_the_compose_scrape_config_passes_promtool_check_config(tool: str, tmp_path: Path) -> None:
    # A full check reads the rule files and the TLS files the config names: run it on a
    # copy whose TLS paths (mounted in the container) point at stand-in files.
    shutil.copytree(PROMETHEUS / "rules", tmp_path / "rules")
    for name in ("ca.pem", "prometheus.pem", "prometheus-key.pem"):
        (tmp_path / name).write_text("stand-in\n")
    text = (PROMETHEUS / "prometheus.yml").read_text()
    assert text.count("/etc/prometheus/tls/") >= 3
    (tmp_path / "prometheus.yml").write_text(text.replace("/etc/prometheus/tls/", f"{tmp_path}/"))
    result = run(tool, "check", "config", "prometheus.yml", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 2 rule files found" in result.stdout


def test_the_compose_config_scrapes_every_service_over_mtls() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(BACKEND_SERVICES) | {"gateway"} <= set(jobs)
    for service in [*BACKEND_SERVICES, "gateway"]:
        job = jobs[service]
        assert job["scheme"] == "https"
        assert {"ca_file", "cert_file", "key_file"} <= set(job["tls_config"])
        # Targets are addresses: the certificate is checked against this name
        # (tests/deploy/test_compose.py checks it is one the service's certificate holds).
        assert job["tls_config"]["server_name"]
    assert config["rule_files"] == ["rules/recording.yml", "rules/alerts.yml"]


def test_the_alerts_pass_their_promtool_unit_tests(tool: str) -> None:
    tests = sorted(str(p) for p in (PROMETHEUS / "tests").glob("*.yml"))
    assert tests
    result = run(tool, "test", "rules", *tests)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_is_documented_labelled_and_unit_tested() -> None:
    tests = "\n".join(p.read_text() for p in (PROMETHEUS / "tests").glob("*.yml"))
    readme = (PROMETHEUS / "README.md").read_text()
    alerts = alert_rules()
    names = [a["alert"] for a in alerts]
    assert len(names) == len(set(names))
    expected = {
        "FlotillaInstanceDown", "FlotillaHighErrorRate", "FlotillaLatencyBudgetBurnFast",
        "FlotillaLatencyBudgetBurnSlow", "FlotillaTransferInDoubt", "FlotillaOutboxBacklog",
        "FlotillaRateLimitSpike", "FlotillaDeadLetters", "FlotillaSagasStuck",
        "FlotillaInvoicingBehind",
    }  # fmt: skip
    assert expected <= set(names)
    for alert in alerts:
        assert alert["labels"]["severity"] in {"page", "ticket"}, alert["alert"]
        assert {"summary", "description"} <= set(alert["annotations"]), alert["alert"]
        assert f"alertname: {alert['alert']}" in tests, f"no promtool test for {alert['alert']}"
        assert f"`{alert['alert']}`" in readme, f"{alert['alert']} is not in the README"


def test_rules_and_dashboards_only_use_recorded_names_that_are_recorded() -> None:
    recorded = recorded_names()
    used = {n for e in _all_exprs() for n in metric_names(e) if ":" in n}
    assert used, "no recording rule is used"
    assert used <= recorded, used - recorded


def _all_exprs() -> list[str]:
    return rule_exprs() + [e for exprs in dashboard_exprs().values() for e in exprs]


def test_the_name_parser_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.99, sum by (route, le) (rate(a_seconds_bucket{service="x:y", '
        'route=~"/api/.*"}[5m] offset 1h))) / on () group_left (b) b:c:rate5m '
        "and ignoring (le) up == 0 or vector(1e3)"
    )
    assert metric_names(expr) == {"a_seconds_bucket", "b:c:rate5m"}


def provisioned_datasource_uid() -> str:
    config = yaml.safe_load(
        (GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )
    (datasource,) = config["datasources"]
    assert datasource["type"] == "prometheus"
    uid: str = datasource["uid"]
    return uid


def test_the_dashboards_are_valid_json_on_the_provisioned_datasource() -> None:
    uid = provisioned_datasource_uid()
    dashboards = sorted(DASHBOARDS.glob("*.json"))
    assert {p.stem for p in dashboards} >= {
        "overview", "service-red", "gateway-upstreams", "transactions", "billing"
    }  # fmt: skip
    uids = set()
    for path in dashboards:
        board = json.loads(path.read_text())
        uids.add(board["uid"])
        assert board["panels"], path.name
        ids = [p["id"] for p in board["panels"]]
        assert len(ids) == len(set(ids)), path.name
        for panel in board["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": uid}, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == uid
                assert target["expr"].strip()
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid
    assert len(uids) == len(dashboards)


def test_the_dashboard_provider_loads_the_folder_compose_mounts() -> None:
    config = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "flotilla.yml").read_text())
    (provider,) = config["providers"]
    assert provider["type"] == "file"
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    mounts = dict(v.split(":")[:2] for v in compose["services"]["grafana"]["volumes"])
    assert provider["options"]["path"] == mounts["../grafana/dashboards"]


def test_every_dashboard_query_is_valid_promql(tool: str, tmp_path: Path) -> None:
    # promtool has no expression checker of its own: check every query as a recording rule.
    rules = [
        {"record": f"dashboard:query:{n}", "expr": expr.replace("$service", "orders")}
        for n, expr in enumerate(e for exprs in dashboard_exprs().values() for e in exprs)
    ]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    result = run(tool, "check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout
