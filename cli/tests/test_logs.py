from __future__ import annotations

import json
from pathlib import Path

from flotilla_cli.ops.logs import merge, render


def _write(path: Path, *lines: object) -> None:
    path.write_text(
        "\n".join(line if isinstance(line, str) else json.dumps(line) for line in lines) + "\n"
    )


def test_lines_of_every_instance_are_merged_by_time_and_filtered(tmp_path: Path) -> None:
    _write(
        tmp_path / "accounts-s1-0.log",
        {"@timestamp": "2026-01-01T00:00:02.000Z", "message": "b", "trace": {"id": "t1"}},
        {
            "@timestamp": "2026-01-01T00:00:04.000Z",
            "message": "d",
            "http": {"request": {"id": "r9"}},
        },
    )
    _write(
        tmp_path / "gateway-0.log",
        {"@timestamp": "2026-01-01T00:00:01.000Z", "message": "a", "trace.id": "t1"},
        "Traceback (most recent call last): not JSON",
        {"@timestamp": "2026-01-01T00:00:03.000Z", "message": "c"},
    )
    _write(tmp_path / "supervisor.log", "ignored")
    assert [r.fields["message"][:1] for r in merge(tmp_path)] == ["a", "T", "b", "c", "d"]
    assert [r.fields["message"] for r in merge(tmp_path, trace_id="t1")] == ["a", "b"]
    assert [r.fields["message"] for r in merge(tmp_path, request_id="r9")] == ["d"]
    assert [r.instance for r in merge(tmp_path, service="gateway")] == ["gateway-0"] * 3
    # A ledger shard's instances belong to the accounts service.
    assert [r.instance for r in merge(tmp_path, service="accounts")] == ["accounts-s1-0"] * 2
    assert merge(tmp_path, service="account") == []
    assert "accounts-s1-0" in render(merge(tmp_path)[2])
