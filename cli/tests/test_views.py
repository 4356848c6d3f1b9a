from __future__ import annotations

from rich.console import Console

from flotilla_cli.launcher.state import InstanceState, SystemState
from flotilla_cli.ops.views import status_table


def test_status_table_shows_every_instance_and_its_memory() -> None:
    state = SystemState(
        phase="running",
        supervisor_pid=1,
        gateway_url="https://127.0.0.1:8443",
        database="sqlite",
        started_at=0,
        instances=[
            InstanceState(service="auth", name="auth-0", port=4000, url="u", pid=42, ready=True,
                          rss_bytes=110 * 2**20, uss_bytes=77 * 2**20),
            InstanceState(service="accounts", name="accounts-s1-1", port=4001, url="u", pid=None,
                          restarts=3),
        ],
    )  # fmt: skip
    console = Console(width=80, record=True)  # what Rich assumes when not on a terminal
    console.print(status_table(state))
    text = console.export_text()
    for header in ("instance", "pid", "port", "ready", "restarts", "RSS", "USS"):
        assert header in text
    for cell in ("auth-0", "accounts-s1-1", "110 MiB", "77 MiB"):
        assert cell in text
    assert "restarting" in text  # no pid while the supervisor waits to restart it
