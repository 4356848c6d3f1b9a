"""Running a service's own command (`python -m flotilla_<service> ...`) with the settings
the plan gave its instances, for operator commands that act on a service's data."""

from __future__ import annotations

import os
import subprocess
import sys

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.state import Plan

__all__ = ["NoPlan", "read_plan", "run_service_command"]


class NoPlan(Exception):
    """No system was ever started with this var/ directory."""


def read_plan(layout: VarLayout) -> Plan:
    if not layout.plan_file.exists():
        raise NoPlan(f"no system was started with {layout.root} (flotilla up)")
    return Plan.model_validate_json(layout.plan_file.read_bytes())


def _env_of(layout: VarLayout, service: str, shard: int | None) -> dict[str, str]:
    plan = read_plan(layout)
    first = next(
        (i for i in plan.instances if i.service == service and shard in (None, i.shard)), None
    )
    if first is None:
        raise NoPlan(f"the system in {layout.root} has no {service} service (shard {shard})")
    return {**os.environ, **first.env}


def run_service_command(
    layout: VarLayout, service: str, *args: str, shard: int | None = None, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run `python -m flotilla_<service> ARGS` as an instance of it (of `shard`, for the
    ledger) would run."""
    return subprocess.run(  # noqa: S603 - our own module, our own arguments
        [sys.executable, "-m", f"flotilla_{service}", *args],
        env=_env_of(layout, service, shard),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
