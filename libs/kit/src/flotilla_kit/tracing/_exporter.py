"""The JSON lines exporter: one JSON object per finished span, appended to
`<traces_dir>/<instance>.jsonl` (what `flotilla trace` reads), the file bounded in size."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from flotilla_kit.tracing._propagation import hex_id

__all__ = ["SPAN_FILE_SUFFIX", "JsonLinesSpanExporter", "span_record"]

SPAN_FILE_SUFFIX = ".jsonl"


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One finished span as the JSON object written to the traces directory."""
    context = span.context
    parent = span.parent
    resource = span.resource.attributes
    return {
        "trace_id": hex_id(context.trace_id, 32) if context else None,
        "span_id": hex_id(context.span_id, 16) if context else None,
        "parent_span_id": hex_id(parent.span_id, 16) if parent else None,
        "name": span.name,
        "kind": span.kind.name,
        "service": resource.get("service.name"),
        "instance": resource.get("service.instance.id"),
        "start_unix_nano": span.start_time,
        "end_unix_nano": span.end_time,
        "status": span.status.status_code.name,
        "status_message": span.status.description,
        "attributes": dict(span.attributes or {}),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Appends each exported span as one JSON line to `path` (created with its folder).
    Lines are whole: a batch is written with one `write` and flushed, under a lock.

    The file is bounded: once it holds `max_bytes`, it becomes `<name>.old.jsonl` (the
    previous one is dropped) and a new one starts, so an instance keeps at most twice
    `max_bytes` of spans (a pod's small emptyDir survives a week of traffic). A file that
    cannot be written (a read-only filesystem) is said once in the log, not dropped
    silently."""

    def __init__(self, path: Path, *, max_bytes: int = 8 * 2**20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._file: IO[str] | None = None
        self._failing = False

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(s), default=str) + "\n" for s in spans)
        with self._lock:
            try:
                if self._file is None:
                    self.path.parent.mkdir(parents=True, exist_ok=True)
                    self._file = self.path.open("a", encoding="utf-8")
                self._file.write(text)
                self._file.flush()
                if self._file.tell() >= self.max_bytes:
                    self._rotate()
            except OSError as error:
                if not self._failing:
                    logging.getLogger("flotilla.tracing").warning(
                        "spans cannot be written to %s, so they are dropped (set "
                        "FLOTILLA_OTLP_ENDPOINT, or FLOTILLA_TRACES_DIR to a writable folder): %s",
                        self.path,
                        error,
                    )
                self._failing = True
                return SpanExportResult.FAILURE
        self._failing = False
        return SpanExportResult.SUCCESS

    def _rotate(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        self.path.replace(self.path.with_name(self.path.name.replace(".jsonl", ".old.jsonl")))

    def shutdown(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def force_flush(self, timeout_millis: int = 30_000) -> bool:
        return True
