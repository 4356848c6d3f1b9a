"""Options that commands of several groups share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from flotilla_cli.launcher.planning import Database

__all__ = ["DatabaseOption", "VarDir"]

VarDir = Annotated[
    Path,
    typer.Option("--var-dir", envvar="FLOTILLA_VAR_DIR", help="Where run-time state lives."),
]
DatabaseOption = Annotated[Database, typer.Option("--db", help="Database backend.")]
