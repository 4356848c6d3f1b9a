"""`flotilla`: run, inspect and exercise a whole Flotilla system on one machine.

This module only assembles the command groups; each package owns its commands:
`launcher` (up, down), `ops` (status, logs, trace, demo, audit, auth, transfers, events),
`scaling` (scale), `chaos`, `bench` and `scaffold` (new).
"""

from __future__ import annotations

import typer

from flotilla_cli.bench.commands import bench_app
from flotilla_cli.chaos.commands import chaos_app
from flotilla_cli.launcher.commands import app as launcher_app
from flotilla_cli.ops.commands import app as ops_app
from flotilla_cli.scaffold.command import app as scaffold_app
from flotilla_cli.scaling.command import app as scaling_app

__all__ = ["app"]

app = typer.Typer(
    help="Run, inspect and exercise a whole Flotilla system on this machine.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Markdown: a docstring's hard-wrapped lines are joined (other modes keep its breaks).
    rich_markup_mode="markdown",
)
# Without a name, a group's commands are `flotilla`'s own (listed in this order).
app.add_typer(launcher_app)
app.add_typer(ops_app)
app.add_typer(scaling_app)
app.add_typer(chaos_app, name="chaos")
app.add_typer(bench_app, name="bench")
app.add_typer(scaffold_app, name="new")
