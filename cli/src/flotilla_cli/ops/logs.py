"""Merging the JSON log files of every instance into one timeline."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.markup import escape

__all__ = ["LogRecord", "merge", "render"]

_LEVEL_STYLE = {
    "debug": "dim",
    "info": "cyan",
    "warning": "yellow",
    "error": "red",
    "critical": "red",
}


@dataclass(frozen=True, slots=True)
class LogRecord:
    timestamp: str
    instance: str
    fields: dict[str, Any]
    raw: str


def _get(fields: dict[str, Any], dotted: str) -> Any:
    """ECS lines nest dotted names (`trace.id` -> {"trace": {"id": ...}})."""
    node: Any = fields
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return fields.get(dotted)
        node = node[part]
    return node


def _read(path: Path) -> list[LogRecord]:
    instance = path.stem
    records: list[LogRecord] = []
    last_timestamp = ""
    for line in path.read_text(errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            if not isinstance(fields, dict):
                raise ValueError
        except ValueError:
            # Not JSON (e.g. a crash before logging was configured): keep it in place.
            fields = {"message": line, "log": {"level": "error"}}
        timestamp = str(fields.get("@timestamp") or last_timestamp)
        last_timestamp = timestamp
        records.append(LogRecord(timestamp, instance, fields, line))
    return records


_INSTANCE_NAME = re.compile(r"(?P<service>.+?)(?:-s\d+)?-\d+")


def _service_of(instance: str) -> str:
    """`accounts-s1-0` (a ledger shard's instance) and `auth-0` -> their service."""
    match = _INSTANCE_NAME.fullmatch(instance)
    return match["service"] if match else instance


def merge(
    directory: Path,
    *,
    service: str | None = None,
    trace_id: str | None = None,
    request_id: str | None = None,
) -> list[LogRecord]:
    records: list[LogRecord] = []
    for path in sorted(directory.glob("*.log")):
        if path.stem == "supervisor":
            continue
        records.extend(_read(path))
    if service:
        records = [r for r in records if _service_of(r.instance) == service]
    if trace_id:
        records = [r for r in records if _get(r.fields, "trace.id") == trace_id]
    if request_id:
        records = [r for r in records if _get(r.fields, "http.request.id") == request_id]
    records.sort(key=lambda r: r.timestamp)  # stable: lines of one file keep their order
    return records


def render(record: LogRecord) -> str:
    level = str(_get(record.fields, "log.level") or "info")
    style = _LEVEL_STYLE.get(level, "white")
    message = escape(str(record.fields.get("message", "")))
    extras = []
    for key in ("http.request.method", "url.path", "http.response.status_code", "trace.id"):
        value = _get(record.fields, key)
        if value is not None:
            extras.append(f"{key}={value}")
    time_of_day = record.timestamp[11:23] if len(record.timestamp) >= 23 else record.timestamp
    tail = escape(" ".join(extras))
    who = f"[bold]{record.instance:<12}[/]"
    return f"[dim]{time_of_day}[/] [{style}]{level:<7}[/] {who} {message} [dim]{tail}[/]"
