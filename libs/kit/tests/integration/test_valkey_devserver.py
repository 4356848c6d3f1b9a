"""The embedded Valkey server: a real one, started from the wheel, answering, then gone."""

from __future__ import annotations

from pathlib import Path

import psutil
import redis

from flotilla_kit.devservers import EmbeddedValkey


def test_it_starts_answers_and_stops(tmp_path: Path) -> None:
    server = EmbeddedValkey(tmp_path / "valkey")
    server.start()
    pid = server.pid
    assert pid is not None
    try:
        client = redis.Redis.from_url(server.url)
        assert client.incr("hits") == 1
        assert client.incr("hits") == 2
        assert client.config_get("save") == {"save": ""}  # nothing kept on disk
        client.close()
    finally:
        server.stop()
    assert not psutil.pid_exists(pid)  # stopped and reaped
