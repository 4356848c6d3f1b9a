"""What the Prometheus rules and Grafana dashboards in deploy/ refer to: their PromQL
expressions, the metric names in them, and promtool, for the checks in tests/deploy and
tests/observe."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "DASHBOARDS",
    "PROMETHEUS",
    "ROOT",
    "alert_rules",
    "dashboard_exprs",
    "metric_names",
    "promtool",
    "recorded_names",
    "rule_exprs",
]

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
DASHBOARDS = ROOT / "deploy" / "grafana" / "dashboards"

# Series Prometheus makes itself: never exported by a service.
_BUILTIN = {"up", "ALERTS", "ALERTS_FOR_STATE", "scrape_duration_seconds"}
_KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"}
_GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_IDENTIFIER = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")


def promtool() -> str | None:
    """The promtool binary, installing Debian's `prometheus` package when it is missing
    and we may (root with apt-get, as on CI and the dev machines)."""
    found = shutil.which("promtool")
    if found is None and shutil.which("apt-get") and _is_root():
        subprocess.run(
            ["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
            capture_output=True, check=False, timeout=600,
            env={"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        )  # fmt: skip
        found = shutil.which("promtool")
    return found


def _is_root() -> bool:
    return os.geteuid() == 0


def _rule_files() -> list[Path]:
    return sorted((PROMETHEUS / "rules").glob("*.yml"))


def _rules() -> Iterator[dict[str, Any]]:
    for path in _rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            yield from group["rules"]


def alert_rules() -> list[dict[str, Any]]:
    return [rule for rule in _rules() if "alert" in rule]


def recorded_names() -> set[str]:
    return {rule["record"] for rule in _rules() if "record" in rule}


def rule_exprs() -> list[str]:
    return [str(rule["expr"]) for rule in _rules()]


def dashboard_exprs() -> dict[str, list[str]]:
    """Every panel query of every dashboard, by file name."""
    found: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        panels = json.loads(path.read_text())["panels"]
        found[path.name] = [t["expr"] for p in panels for t in p.get("targets", [])]
    return found


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: not functions, keywords, label names
    (in matchers and grouping clauses), strings, numbers or durations."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # strings (label values, regexes)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = _GROUPING.sub("", text)
    text = re.sub(r"\boffset\s+\w+", "", text)
    text = re.sub(r"\$\w+", "", text)  # dashboard variables
    names = set()
    for match in _IDENTIFIER.finditer(text):
        rest = text[match.end() :].lstrip()
        if rest.startswith("("):
            continue  # a function (or an aggregation)
        name = match.group()
        if name.lower() in _KEYWORDS or (match.start() and text[match.start() - 1].isdigit()):
            continue  # a keyword, or the unit of a number such as 1e3
        names.add(name)
    return names - _BUILTIN


def exported_family(name: str) -> str:
    """The family a sample name belongs to (histograms' series, counters' `_total`)."""
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix):
            return name.removesuffix(suffix)
    return name
