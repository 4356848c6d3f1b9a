"""`flotilla-auth` / `python -m flotilla_auth`: serve, migrate, seed.

stdout carries only a command's result (seed prints JSON a script can read); logs go to
stderr, except under `serve`, where they are the output.
"""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from flotilla_auth import bootstrap
from flotilla_auth.service_layer.errors import AuthError
from flotilla_auth.service_layer.users import UserSpec, ensure_users, validated_specs
from flotilla_auth.settings import AuthSettings
from flotilla_kit import server
from flotilla_kit.logs import configure_logging

__all__ = ["app", "main", "read_seed_file", "seed_users"]

app = typer.Typer(
    help="Flotilla identity service: users, credentials, access and refresh tokens, JWKS.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


class _SeedUser(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str
    password: str
    roles: list[str]
    disabled: bool = False
    id: uuid.UUID | None = Field(
        default=None, description="Id for a user created now (fixtures); ignored otherwise."
    )


class _SeedFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    users: list[_SeedUser] = Field(default_factory=list)


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _settings() -> AuthSettings:
    try:
        return AuthSettings()
    except ValidationError as exc:
        _fail(f"invalid settings:\n{exc}")


def _log_to_stderr(settings: AuthSettings) -> None:
    configure_logging(
        settings.service_name, settings.instance_id, settings.log_level, stream=sys.stderr
    )


@app.command()
def serve() -> None:
    """Run the HTTP API (migrates and ensures a signing key at start)."""
    settings = _settings()
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    server.serve(bootstrap.create_app(settings), settings)


@app.command()
def migrate() -> None:
    """Upgrade the database to the newest schema."""
    settings = _settings()
    _log_to_stderr(settings)
    bootstrap.migrate(settings)


def read_seed_file(path: Path) -> list[UserSpec]:
    """The users a seed file declares, checked; raises `InvalidUserData` or
    pydantic's `ValidationError`."""
    document = _SeedFile.model_validate_json(path.read_bytes())
    return validated_specs(
        [
            UserSpec(
                username=user.username,
                password=user.password,
                roles=tuple(user.roles),
                disabled=user.disabled,
                id=str(user.id) if user.id else None,
            )
            for user in document.users
        ]
    )


async def seed_users(settings: AuthSettings, specs: list[UserSpec]) -> dict[str, Any]:
    """Ensure a signing key and the users (the database must be migrated); the result is
    what `seed` prints."""
    runtime = bootstrap.build_runtime(settings)
    try:
        await bootstrap.open_signing_key(runtime)
        components = runtime.components
        users = await ensure_users(
            uow=components.uow,
            passwords=components.passwords,
            now=components.clock(),
            users=specs,
        )
    finally:
        await runtime.database.dispose()
    return {"users": [{"username": u.username, "id": u.id, "roles": list(u.roles)} for u in users]}


@app.command()
def seed(
    file: Annotated[
        Path,
        typer.Option(
            "--file",
            exists=True,
            dir_okay=False,
            readable=True,
            help='JSON: {"users": [{"username", "password", "roles": [...], "id"?}]}',
        ),
    ],
) -> None:
    """Migrate, ensure a signing key, and make each listed user exist exactly as declared.

    Idempotent. Prints {"users": [{"username", "id", "roles"}]} on stdout.
    """
    settings = _settings()
    _log_to_stderr(settings)
    # Check the whole file before touching the database.
    try:
        specs = read_seed_file(file)
    except (ValidationError, AuthError) as exc:
        _fail(f"{file} is not a valid seed file:\n{exc}")
    bootstrap.migrate(settings)
    try:
        result = asyncio.run(seed_users(settings, specs))
    except AuthError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result))


def main() -> None:
    app()
