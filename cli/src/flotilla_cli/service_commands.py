"""Running a service's own command (`python -m flotilla_<service> ...`) with the settings
the plan gave its instances, for operator commands that act on a service's data."""

from __future__ import annotations

import os
import subprocess
import sys

from flotilla_cli.layout import VarLayout
from flotilla_cli.state import Plan

__all__ = ["NoPlan", "run_service_command"]


class NoPlan(Exception):
    """No system was ever started with this var/ directory."""


def _env_of(layout: VarLayout, service: str) -> dict[str, str]:
    if not layout.plan_file.exists():
        raise NoPlan(f"no system was started with {layout.root} (flotilla up)")
    plan = Plan.model_validate_json(layout.plan_file.read_bytes())
    first = next((i for i in plan.instances if i.service == service), None)
    if first is None:
        raise NoPlan(f"the system in {layout.root} has no {service} service")
    return {**os.environ, **first.env}


def run_service_command(
    layout: VarLayout, service: str, *args: str, timeout_s: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own module, our own arguments
        [sys.executable, "-m", f"flotilla_{service}", *args],
        env=_env_of(layout, service),
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
