"""`flotilla-auth` / `python -m flotilla_auth`: serve, migrate, seed, rotate-keys,
audit-verify, audit-tail.

stdout carries only a command's result (JSON a script can read); logs go to stderr, except
under `serve`, where they are the output.
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
from flotilla_auth.adapters.common_passwords import default_password_policy
from flotilla_auth.adapters.tables import audit_log
from flotilla_auth.service_layer.errors import AuthError
from flotilla_auth.service_layer.signing_keys import promote_staged_key, stage_signing_key
from flotilla_auth.service_layer.users import UserSpec, ensure_users, validated_specs
from flotilla_auth.settings import AuthSettings
from flotilla_kit.logs import configure_logging
from flotilla_kit.service_cli import service_cli
from flotilla_kit.settings import load_settings

__all__ = [
    "app",
    "main",
    "read_seed_file",
    "rotate_keys",
    "seed_users",
]

_CLI_ACTOR = "cli"

app = service_cli(
    AuthSettings,
    help=(
        "Flotilla identity service: users, credentials, access and refresh tokens, JWKS, "
        "key rotation, audit log."
    ),
    serve_help="Run the HTTP API (migrates and ensures a signing key at start).",
    build_app=bootstrap.create_app,
    migrate=bootstrap.migrate,
    audit_log=audit_log,
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
    return load_settings(AuthSettings)


def _log_to_stderr(settings: AuthSettings) -> None:
    configure_logging(
        settings.service_name, settings.instance_id, settings.log_level, stream=sys.stderr
    )


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
        ],
        policy=default_password_policy(),
    )


async def seed_users(settings: AuthSettings, specs: list[UserSpec]) -> dict[str, Any]:
    """Ensure a signing key and the users (the database must be migrated); the result is
    what `seed` prints."""
    runtime = bootstrap.build_runtime(settings)
    try:
        await bootstrap.open_signing_key(runtime, actor=_CLI_ACTOR)
        components = runtime.components
        users = await ensure_users(
            uow=components.uow,
            passwords=components.passwords,
            policy=components.password_policy,
            now=components.clock(),
            users=specs,
            actor="cli:seed",
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


async def rotate_keys(settings: AuthSettings, *, now: bool) -> dict[str, Any]:
    """Stage a successor key (unless one is staged), and with `now` make it active at once;
    the result is what `rotate-keys` prints. The database must be migrated."""
    runtime = bootstrap.build_runtime(settings)
    try:
        await bootstrap.open_signing_key(runtime, actor=_CLI_ACTOR)
        parts = runtime.components
        staged = await stage_signing_key(
            uow=parts.uow, keys=parts.keys, now=parts.clock(), actor=_CLI_ACTOR
        )
        result: dict[str, Any] = {
            "staged": staged.kid,
            "activates_after": staged.activates_after(parts.key_schedule).isoformat(),
        }
        if now:
            moment = parts.clock()
            activated = await promote_staged_key(
                uow=parts.uow, now=moment, schedule=None, actor=_CLI_ACTOR
            )
            result["activates_after"] = moment.isoformat()
            result["activated"] = activated.kid if activated is not None else None
    finally:
        await runtime.database.dispose()
    return result


@app.command("rotate-keys")
def rotate_keys_command(
    now: Annotated[
        bool,
        typer.Option(
            "--now",
            help=(
                "Emergency only (a leaked key): also make the staged key active at once and "
                "retire the current one. Verifiers that have not fetched the JWKS since may "
                "refuse tokens of the new key until they do (up to their refetch interval)."
            ),
        ),
    ] = False,
) -> None:
    """Stage a new signing key (if none is staged). It is published at once and signs after
    key_publish_delay_s, when a running instance's timer promotes it.

    Prints {"staged": kid, "activates_after": iso} (with --now also "activated": kid).
    """
    settings = _settings()
    _log_to_stderr(settings)
    bootstrap.migrate(settings)
    try:
        result = asyncio.run(rotate_keys(settings, now=now))
    except AuthError as exc:
        _fail(str(exc))
    typer.echo(json.dumps(result))


def main() -> None:
    app()
