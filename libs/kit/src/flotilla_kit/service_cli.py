"""A service's command line (`python -m flotilla_<service> ...`), built once.

`service_cli` makes the Typer app with the commands every service has: `serve` (one
instance until SIGTERM: a FastAPI app under `flotilla_kit.server.serve`, a WSGI app of the
kit's Flask or Django chassis under `flotilla_kit.wsgi_server.serve_wsgi`), `migrate`, and
where the service has them `relay` (its outbox to NATS JetStream) and `audit-verify` /
`audit-tail` (its hash-chained audit log). A service adds only its own commands (`seed`,
`rotate-keys`, `in-doubt`, ...) to the app it gets; a `seed` acts as `SEED_OPERATOR`.

Settings come from `FLOTILLA_*` variables; a bad one is named on stderr with exit status 2
(`settings.load_settings`). Commands whose stdout is their result (JSON a script reads)
log warnings and errors only, on stderr (`quiet_settings`); `serve` and `relay` log at the
configured level on stdout, where their logs are the output.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Protocol, TypeVar, cast

import typer
from fastapi import FastAPI
from sqlalchemy import Table

from flotilla_kit.audit import AuditLog
from flotilla_kit.db import Database
from flotilla_kit.logs import configure_logging
from flotilla_kit.rbac import permissions_of
from flotilla_kit.server import serve as run_server
from flotilla_kit.settings import ServiceSettings, load_settings
from flotilla_kit.tokens import Principal
from flotilla_kit.tracing import install_tracing

if TYPE_CHECKING:
    from flotilla_kit.wsgi_server import ServedWsgiApp

__all__ = ["SEED_OPERATOR", "Relay", "quiet_settings", "service_cli"]

_S = TypeVar("_S", bound=ServiceSettings)

# Who a `seed` command acts as: staff rights, as an operator at the counter would have.
SEED_OPERATOR = Principal(
    subject="flotilla-seed",
    roles=frozenset({"admin"}),
    token_id="seed",  # noqa: S106 - an id, not a secret
    expires_at=float("inf"),
    permissions=permissions_of(["admin"]),
)

_MIGRATE_HELP = "Upgrade the database to the newest schema."
_AUDIT_VERIFY_HELP = (
    "Check the audit log's hash chain; print a JSON report; exit 1 if it is broken."
)
_AUDIT_TAIL_HELP = "Print the newest audit records as JSON lines, oldest first."


@dataclass(frozen=True, slots=True)
class Relay:
    """The `relay` command of a service with a transactional outbox: `outbox` is its table,
    `service` names it in the relay's logs and metrics, `help` is the command's help."""

    outbox: Table
    service: str
    help: str


class _WithNats(Protocol):
    nats_url: str


def quiet_settings(settings_type: type[_S]) -> _S:
    """The settings of a command whose stdout is its result: logs (warnings and errors
    only) go to stderr."""
    settings = load_settings(settings_type)
    configure_logging(settings.service_name, settings.instance_id, "warning", sys.stderr)
    return settings


def _loud_settings(settings_type: type[_S]) -> _S:
    """The settings of a long-running command: logs at the configured level on stdout,
    and traces on."""
    settings = load_settings(settings_type)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    return settings


def run_wsgi_server(app: ServedWsgiApp, settings: ServiceSettings) -> None:
    """`serve_wsgi` for a WSGI service, imported here: a FastAPI service's image has no
    WSGI server (the extras `flotilla-kit[flask]` and `[django]` bring it)."""
    from flotilla_kit.wsgi_server import serve_wsgi  # noqa: PLC0415

    serve_wsgi(app, settings)


def service_cli(
    settings_type: type[_S],
    *,
    help: str,
    serve_help: str,
    build_app: Callable[[_S], FastAPI | ServedWsgiApp],
    migrate: Callable[[_S], None],
    relay: Relay | None = None,
    audit_log: AuditLog | None = None,
) -> typer.Typer:
    """The command line of a service whose settings are `settings_type`: `serve` runs
    `build_app(settings)` (a FastAPI app, or a WSGI app from `create_flask_app` or
    `create_django_app`; migrations are the app's start-up), `migrate` runs `migrate`;
    `relay` when the service has an outbox, `audit-verify` and `audit-tail` when it has an
    audit log. Help texts: `help` for the app, `serve_help` and `relay.help` for those."""
    if relay is not None and "nats_url" not in settings_type.model_fields:
        raise TypeError(f"{settings_type.__name__} has no nats_url, which a relay needs")
    app = typer.Typer(
        help=help,
        no_args_is_help=True,
        add_completion=False,
        # A traceback with its locals would print the settings, secrets included.
        pretty_exceptions_enable=False,
    )

    @app.command("serve", help=serve_help)
    def serve() -> None:
        settings = _loud_settings(settings_type)
        built = build_app(settings)
        if isinstance(built, FastAPI):
            run_server(built, settings)
        else:
            run_wsgi_server(built, settings)

    @app.command("migrate", help=_MIGRATE_HELP)
    def migrate_command() -> None:
        migrate(quiet_settings(settings_type))

    if relay is not None:
        outbox = relay

        @app.command("relay", help=outbox.help)
        def relay_command() -> None:
            # Here, not at the top: a service without an outbox never loads the NATS client.
            from flotilla_kit.events import run_relay  # noqa: PLC0415

            settings = _loud_settings(settings_type)
            migrate(settings)  # the outbox must exist before there is anything to publish
            run_relay(
                database=Database(settings.sqlalchemy_url),
                outbox=outbox.outbox,
                nats_url=cast(_WithNats, settings).nats_url,
                service=outbox.service,
            )

    if audit_log is not None:
        chain = audit_log

        @app.command("audit-verify", help=_AUDIT_VERIFY_HELP)
        def audit_verify() -> None:
            settings = quiet_settings(settings_type)
            report = asyncio.run(chain.report(settings.sqlalchemy_url, settings.service_name))
            sys.stdout.write(json.dumps(report) + "\n")
            if not report["intact"]:
                raise typer.Exit(1)

        @app.command("audit-tail", help=_AUDIT_TAIL_HELP)
        def audit_tail(
            limit: Annotated[
                int, typer.Option("--limit", min=1, max=10_000, help="How many records.")
            ] = 20,
        ) -> None:
            settings = quiet_settings(settings_type)
            for record in asyncio.run(chain.newest(settings.sqlalchemy_url, limit)):
                sys.stdout.write(json.dumps(record) + "\n")

    return app
