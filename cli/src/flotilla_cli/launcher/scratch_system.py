"""A throw-away system for a chaos run or a benchmark: `flotilla up --detach` in a fresh
var/ (a temporary one unless told), the demo admin's password, and `flotilla down` (and
the removal of the temporary var/) whatever happens."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.state import SystemState
from flotilla_kit.devservers import free_port

__all__ = ["ScratchSystem", "flotilla", "scratch_system"]


def flotilla(var_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run a `flotilla` command against `var_dir`; its output, or RuntimeError."""
    result = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "flotilla_cli", *args, "--var-dir", str(var_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    if result.returncode != 0:
        raise RuntimeError(f"flotilla {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result.stdout


# Generous: a chaos run or a benchmark on a busy machine should not fail before it begins.
START_WITHIN_S = 180


@dataclass(frozen=True)
class ScratchSystem:
    layout: VarLayout
    state: SystemState

    def password(self, username: str) -> str:
        credentials = json.loads(self.layout.credentials_file.read_text())
        return str(next(u["password"] for u in credentials["users"] if u["username"] == username))


@contextmanager
def scratch_system(
    *,
    database: str,
    shards: int,
    instances: int,
    var_dir: Path | None = None,
    keep: bool = False,
    env: dict[str, str] | None = None,
    console: Console | None = None,
) -> Iterator[ScratchSystem]:
    """`var_dir` None: a temporary directory, removed afterwards unless `keep`."""
    root = var_dir or Path(tempfile.mkdtemp(prefix="flotilla-scratch-"))
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)  # the embedded PostgreSQL, when used, runs as another user
    layout = VarLayout.at(root)
    try:
        with (console or Console(stderr=True)).status(f"starting a fresh system in {root}"):
            flotilla(
                root, "up", "--detach", "--profile", "dev", "--db", database,
                "--shards", str(shards), "--instances", str(instances),
                "--gateway-port", str(free_port()), "--timeout", str(START_WITHIN_S), env=env,
            )  # fmt: skip
        state = SystemState.read(layout.state_file)
        if state is None:
            raise RuntimeError(f"flotilla up left no state in {layout.state_file}")
        yield ScratchSystem(layout, state)
    finally:
        try:
            flotilla(root, "down")
        finally:
            if var_dir is None and not keep:
                shutil.rmtree(root, ignore_errors=True)
