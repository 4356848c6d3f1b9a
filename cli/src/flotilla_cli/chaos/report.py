"""How every `flotilla chaos` command ends: the invariants as a table, the counts as JSON,
the whole report to a file when asked, and exit status 1 when an invariant does not hold."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

__all__ = ["finish_chaos_run"]


def finish_chaos_run(
    console: Console, report: dict[str, Any], *, title: str, json_file: Path | None
) -> None:
    table = Table(title=title)
    table.add_column("invariant")
    table.add_column("holds")
    table.add_column("detail")
    for name, result in report["invariants"].items():
        table.add_row(name, "[green]yes[/]" if result["holds"] else "[red]NO[/]", result["detail"])
    console.print(table)
    console.print_json(json.dumps({"counts": report["counts"], "seconds": report["seconds"]}))
    if json_file is not None:
        json_file.parent.mkdir(parents=True, exist_ok=True)
        json_file.write_text(json.dumps(report, indent=2) + "\n")
    if not report["invariants_hold"]:
        raise typer.Exit(1)
