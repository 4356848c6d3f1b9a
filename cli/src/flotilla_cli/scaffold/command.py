"""`flotilla new service NAME --framework fastapi|flask|django`."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flotilla_cli.scaffold.generator import ScaffoldError, generate_service
from flotilla_kit.manifest import ManifestError, find_manifest

__all__ = ["app"]

app = typer.Typer(
    help="Create things from templates: `flotilla new service NAME`.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)
_console = Console(highlight=False)
_errors = Console(stderr=True, highlight=False)


class FrameworkChoice(StrEnum):
    fastapi = "fastapi"
    flask = "flask"
    django = "django"


def _default_root() -> Path:
    try:
        return find_manifest().parent
    except ManifestError as exc:
        _errors.print(f"[red]error:[/] {exc}; or pass --root")
        raise typer.Exit(2) from None


@app.command("service")
def new_service(
    name: Annotated[
        str,
        typer.Argument(
            help="The service's name: lower-case letters and digits, a letter first (its "
            "package is flotilla_NAME, its folder services/NAME).",
            show_default=False,
        ),
    ],
    framework: Annotated[
        FrameworkChoice,
        typer.Option("--framework", "-f", help="The web framework of its HTTP API."),
    ] = FrameworkChoice.fastapi,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="The repository's root (default: the checkout this command runs from).",
            file_okay=False,
        ),
    ] = None,
) -> None:
    """Write a ready service from a template, and register it.

    It is written in services/NAME (package flotilla_NAME) with the layout of the others:
    domain, service_layer, adapters, entrypoints, settings, bootstrap, Alembic migrations
    for SQLite and PostgreSQL. It serves a small `items` API on the kit's chassis for the
    chosen framework and has unit and integration tests that pass. It is added to
    services.toml (before the gateway), its routes to the gateway's policy, its
    permissions `NAME:read` and `NAME:write` to the RBAC roles, its entry to the
    launcher's settings and its package to the root pyproject.toml's lists. Nothing is
    written when the name is invalid or taken or its folder exists. Then `make install`
    installs it and `flotilla up` runs it.
    """
    where = root if root is not None else _default_root()
    _console.print(f"Creating the {framework.value} service [bold]{name}[/] in {where}")
    try:
        service = generate_service(
            name,
            framework.value,
            where,
            progress=lambda step: _console.print(f"  {step}"),
        )
    except ScaffoldError as exc:
        _errors.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None
    except OSError as exc:
        _errors.print(f"[red]error:[/] {exc.filename or where}: {exc.strerror}")
        raise typer.Exit(1) from None
    folder = service.folder.relative_to(where.resolve())
    _console.print(
        f"[green]Done:[/] {folder} ({len(service.files)} files), "
        f"{len(service.changed)} files updated. Next:\n"
        f"  make install                     installs flotilla-{name}\n"
        f"  .venv/bin/pytest {folder}/tests  runs its tests\n"
        "  flotilla up                      runs it behind the gateway\n"
        "  .venv/bin/pytest tests/deploy/test_manifest.py\n"
        "                                   names the deployment files that must name it too"
    )
