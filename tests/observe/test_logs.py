"""Real log lines of a running system against deploy/logging: every field of every line is
mapped by the Elasticsearch index template (explicitly, or by one of its dynamic templates
under an object that allows new fields) with a type its values fit, no field is an object
in one place and a value in another, and a gateway access line carries the ECS fields
dashboards search by. Also: the Filebeat and Logstash files agree with the template."""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.e2e.system import RunningSystem

ROOT = Path(__file__).resolve().parents[2]
LOGGING = ROOT / "deploy" / "logging"
TEMPLATE = json.loads((LOGGING / "elasticsearch" / "index-template.json").read_text())
MAPPINGS: dict[str, Any] = TEMPLATE["template"]["mappings"]
# Dynamic templates by the JSON type they catch (match_mapping_type).
_JSON_TYPES = {"string": str, "long": int, "double": float, "boolean": bool}
_STRINGS = {"keyword", "wildcard", "match_only_text", "text", "constant_keyword"}


def _is_ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


def _is_date(value: Any) -> bool:
    try:
        dt.datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _is_long(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_double(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


_CHECKS: dict[str, Callable[[Any], bool]] = {
    "long": _is_long,
    "double": _is_double,
    "boolean": _is_bool,
    "ip": _is_ip,
    "date": _is_date,
    **dict.fromkeys(_STRINGS, _is_str),
}


def _fits(value: Any, es_type: str) -> bool:
    if value is None:
        return True
    if isinstance(value, list):
        return all(_fits(v, es_type) for v in value)
    assert es_type in _CHECKS, f"no rule for mapping type {es_type}"
    return _CHECKS[es_type](value)


def _mapping(path: list[str]) -> tuple[dict[str, Any] | None, bool]:
    """The template's mapping of a field (None if not mapped), and whether the nearest
    mapped object above it takes new fields."""
    node: dict[str, Any] = MAPPINGS
    dynamic = MAPPINGS.get("dynamic", True) is True
    for part in path:
        child = node.get("properties", {}).get(part)
        if child is None:
            return None, dynamic
        if "properties" in child or child.get("type") == "object":
            dynamic = child.get("dynamic", dynamic) is True
        node = child
    return node, dynamic


def _dynamic_type(value: Any) -> str | None:
    """The ES type a dynamic template gives a new field with this value."""
    sample = value[0] if isinstance(value, list) and value else value
    for template in MAPPINGS["dynamic_templates"]:
        (rule,) = template.values()
        json_type = _JSON_TYPES[rule["match_mapping_type"]]
        if isinstance(sample, json_type) and not (json_type is int and isinstance(sample, bool)):
            es_type: str = rule["mapping"]["type"]
            return es_type
    return None


def _leaves(prefix: list[str], value: Any) -> list[tuple[list[str], Any]]:
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in _leaves([*prefix, k], v)]
    return [(prefix, value)]


def _problems(lines: list[dict[str, Any]]) -> list[str]:
    problems: list[str] = []
    seen_types: dict[str, set[str]] = defaultdict(set)
    for line in lines:
        for path, value in _leaves([], line):
            name = ".".join(path)
            mapping, dynamic = _mapping(path)
            if mapping is not None and ("properties" in mapping or mapping.get("type") == "object"):
                if value is not None:
                    problems.append(f"{name}: a value where the template has an object")
                continue
            if mapping is not None:
                if not _fits(value, mapping["type"]):
                    problems.append(f"{name}: {value!r} does not fit {mapping['type']}")
                continue
            # A field the template does not name: refused if a parent is mapped as a value.
            for depth in range(1, len(path)):
                parent, _ = _mapping(path[:depth])
                if parent is not None and "type" in parent and parent["type"] != "object":
                    problems.append(f"{name}: under {'.'.join(path[:depth])}, mapped as a value")
            if not dynamic:
                problems.append(f"{name}: not mapped, and its object takes no new fields")
            elif value is not None and _dynamic_type(value) is None:
                problems.append(f"{name}: no dynamic template takes {value!r}")
            elif value is not None:
                seen_types[name].add(str(_dynamic_type(value)))
    problems += [f"{n}: both {sorted(t)} in one index" for n, t in seen_types.items() if len(t) > 1]
    return sorted(set(problems))


def _lines(log_dir: Path) -> list[dict[str, Any]]:
    lines: list[dict[str, Any]] = []
    for path in sorted(log_dir.glob("*.log")):
        if path.name == "supervisor.log":
            continue
        for raw in path.read_text().splitlines():
            if raw.startswith("{"):
                lines.append(json.loads(raw))
    return lines


def test_the_checks_catch_what_elasticsearch_would_refuse() -> None:
    good = {"@timestamp": "2026-01-01T00:00:00.000Z", "log.level": "info", "message": "m",
            "service": {"name": "auth"}, "something_new": "x",
            "error": {"message": "E()"}}  # fmt: skip
    assert _problems([good]) == []
    assert _problems([{**good, "error": "E()"}]) == [
        "error: a value where the template has an object"
    ]
    assert _problems([{**good, "@timestamp": "yesterday"}]) == [
        "@timestamp: 'yesterday' does not fit date"
    ]
    assert _problems([{**good, "service": "auth"}]) == [
        "service: a value where the template has an object"
    ]
    assert _problems([{"http": {"response": {"status_code": "200"}}}]) == [
        "http.response.status_code: '200' does not fit long"
    ]
    assert _problems([{"client": {"ip": "not an ip"}}]) == [
        "client.ip: 'not an ip' does not fit ip"
    ]
    assert _problems([{"port": {"number": 1}}]) == ["port.number: under port, mapped as a value"]
    assert _problems([{"fresh": 1}, {"fresh": "one"}]) == [
        "fresh: both ['keyword', 'long'] in one index"
    ]


def test_the_template_is_a_composable_template_for_the_pipelines_indices() -> None:
    assert set(TEMPLATE) >= {"index_patterns", "template", "priority"}
    pipeline = (LOGGING / "logstash" / "pipeline" / "flotilla.conf").read_text()
    index = re.search(r'index => "([^"%]+)%', pipeline)
    assert index is not None
    assert any(re.fullmatch(p.replace("*", ".*"), index.group(1) + "2026.01.01")
               for p in TEMPLATE["index_patterns"])  # fmt: skip
    assert 'template_api => "composable"' in pipeline
    assert "port => 5044" in pipeline


def test_filebeat_parses_our_lines_and_ships_them_to_logstash() -> None:
    config = yaml.safe_load((LOGGING / "filebeat" / "filebeat.yml").read_text())
    inputs = {i["id"]: i for i in config["filebeat.inputs"]}
    assert set(inputs) == {"flotilla-containers", "flotilla-files"}
    for item in inputs.values():
        ndjson = next(p["ndjson"] for p in item["parsers"] if "ndjson" in p)
        assert ndjson["target"] == ""  # the ECS fields at the root, as they are
        assert ndjson["expand_keys"] is True  # "log.level" and log: {...} end up as one
    assert inputs["flotilla-files"]["paths"] == ["${FLOTILLA_LOG_GLOB:var/log/*.log}"]
    assert "output.logstash" in config
    drop = inputs["flotilla-containers"]["processors"][1]["drop_event"]
    assert drop["when"]["not"]["has_fields"] == ["container.labels.flotilla_service"]


@pytest.mark.e2e
def test_real_log_lines_fit_the_index_template(observed_system: RunningSystem) -> None:
    # Some traffic first, so the lines include the gateway's access log and the services'.
    with observed_system.client() as client:
        assert client.get("/readyz").status_code == 200
        token = observed_system.token("alice")
        headers = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/v1/accounts", headers=headers).status_code == 200
        assert client.get("/api/v1/nowhere", headers=headers).status_code == 404
    lines = _lines(observed_system.var_dir / "log")
    assert len(lines) > 50
    assert {line["service"]["name"] for line in lines} >= {
        "gateway",
        "auth",
        "accounts",
        "payments",
        "inventory",
        "orders",
    }
    assert _problems(lines) == []


def _access_line(log_dir: Path, request_id: str) -> dict[str, Any] | None:
    for line in _lines(log_dir):
        http = line.get("http", {})
        if (
            line["service"]["name"] == "gateway"
            and http.get("request", {}).get("id") == request_id
            and "response" in http
        ):
            return line
    return None


@pytest.mark.e2e
def test_a_gateway_access_line_has_the_ecs_fields(observed_system: RunningSystem) -> None:
    token = observed_system.token("alice")
    with observed_system.client() as client:
        response = client.get("/api/v1/accounts", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    # The gateway writes the line as it answers; its log file may show it a moment later.
    deadline = time.monotonic() + 10
    while (line := _access_line(observed_system.var_dir / "log", request_id)) is None:
        assert time.monotonic() < deadline, f"no access line for request {request_id}"
        time.sleep(0.1)
    assert line["http"]["request"]["method"] == "GET"
    assert line["http"]["response"]["status_code"] == 200
    assert line["url"]["path"] == "/api/v1/accounts"
    assert isinstance(line["event"]["duration"], int)  # nanoseconds, as ECS has it
    assert re.fullmatch(r"[0-9a-f]{32}", line["trace"]["id"])
    assert line["service"]["name"] == "gateway"
    assert _problems([line]) == []
