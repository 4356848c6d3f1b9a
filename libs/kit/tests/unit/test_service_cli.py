"""The service command line built by `service_cli`: the standard commands, their options,
output and exit statuses, and the service's own commands beside them. The audit commands
run against a real SQLite audit log; `serve` and the logging set-up are recorded instead of
run (they would take over the test process)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import typer
from fastapi import FastAPI
from pydantic import Field
from sqlalchemy import MetaData, text
from typer.testing import CliRunner

from flotilla_kit import service_cli as module
from flotilla_kit.audit import AuditLog, audit_table
from flotilla_kit.db import Database, Query, UnitOfWork
from flotilla_kit.flask import create_flask_app
from flotilla_kit.rbac import permissions_of
from flotilla_kit.service_cli import SEED_OPERATOR, Relay, quiet_settings, service_cli
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter, create_tables

metadata = MetaData()
audit = AuditLog(audit_table(metadata))
outbox_table = audit_table(MetaData())  # any table: the relay is not run here


class DemoSettings(ServiceSettings):
    nats_url: str = Field(default="nats://127.0.0.1:4222")


class NoNatsSettings(ServiceSettings):
    pass


class Recorded:
    def __init__(self) -> None:
        self.migrated: list[DemoSettings] = []
        self.served: list[tuple[FastAPI, ServiceSettings]] = []
        self.served_wsgi: list[tuple[object, ServiceSettings]] = []
        self.logging: list[tuple[Any, ...]] = []


@pytest.fixture
def recorded(monkeypatch: pytest.MonkeyPatch) -> Recorded:
    seen = Recorded()

    def configure_logging(*args: Any, **kwargs: Any) -> None:
        seen.logging.append((*args, *kwargs.values()))

    monkeypatch.setattr(module, "configure_logging", configure_logging)
    monkeypatch.setattr(module, "install_tracing", lambda settings: None)
    monkeypatch.setattr(
        module, "run_server", lambda app, settings: seen.served.append((app, settings))
    )
    monkeypatch.setattr(
        module, "run_wsgi_server", lambda app, settings: seen.served_wsgi.append((app, settings))
    )
    return seen


def _cli(recorded: Recorded) -> typer.Typer:
    app = service_cli(
        DemoSettings,
        help="The demo service.",
        serve_help="Run one instance until SIGTERM.",
        build_app=lambda settings: FastAPI(title=settings.service_name),
        migrate=recorded.migrated.append,
        relay=Relay(outbox_table, "demo", help="Publish the outbox until SIGTERM."),
        audit_log=audit,
    )

    @app.command("greet")
    def greet() -> None:
        """The service's own command."""
        settings = quiet_settings(DemoSettings)
        typer.echo(f"hello from {settings.service_name}")

    return app


def _run(app: typer.Typer, *args: str, **env: str) -> Any:
    return CliRunner().invoke(
        app, list(args), env={"FLOTILLA_SERVICE_NAME": "demo", **env}, catch_exceptions=False
    )


def test_help_lists_the_standard_commands_and_the_services_own(recorded: Recorded) -> None:
    result = _run(_cli(recorded), "--help")
    assert result.exit_code == 0
    for command, summary in {
        "serve": "Run one instance until SIGTERM.",
        "migrate": "Upgrade the database to the newest schema.",
        "relay": "Publish the outbox until SIGTERM.",
        "audit-verify": "Check the audit log's hash chain",
        "audit-tail": "Print the newest audit records",
        "greet": "The service's own command.",
    }.items():
        assert command in result.stdout
        assert summary in result.stdout
    limit = _run(_cli(recorded), "audit-tail", "--help")
    assert "--limit" in limit.stdout


def test_without_an_outbox_or_an_audit_log_there_is_no_relay_or_audit_command(
    recorded: Recorded,
) -> None:
    app = service_cli(
        NoNatsSettings,
        help="Plain.",
        serve_help="Serve.",
        build_app=lambda settings: FastAPI(),
        migrate=lambda settings: None,
    )
    listing = _run(app, "--help").stdout
    assert "serve" in listing
    assert "migrate" in listing
    for absent in ("relay", "audit-verify", "audit-tail"):
        assert absent not in listing
        assert _run(app, absent).exit_code == 2  # Typer: no such command


def test_a_relay_needs_settings_with_a_nats_url() -> None:
    with pytest.raises(TypeError, match="NoNatsSettings has no nats_url"):
        service_cli(
            NoNatsSettings,
            help="Plain.",
            serve_help="Serve.",
            build_app=lambda settings: FastAPI(),
            migrate=lambda settings: None,
            relay=Relay(outbox_table, "plain", help="Relay."),
        )


def test_serve_logs_at_the_configured_level_and_runs_the_built_app(recorded: Recorded) -> None:
    result = _run(_cli(recorded), "serve", FLOTILLA_LOG_LEVEL="debug", FLOTILLA_INSTANCE_ID="3")
    assert result.exit_code == 0, result.output
    [(app, settings)] = recorded.served
    assert app.title == "demo"
    assert isinstance(settings, DemoSettings)
    assert recorded.logging == [("demo", "3", "debug")]  # on stdout: the logs are the output


def test_serve_runs_a_wsgi_app_under_the_wsgi_server(recorded: Recorded) -> None:
    wsgi_app = create_flask_app(
        ServiceSettings(service_name="demo"), name="demo", blueprints=[], readiness={},
        verifier=TokenMinter().verifier(),
    )  # fmt: skip
    cli = service_cli(
        DemoSettings, help="A WSGI service.", serve_help="Serve.",
        build_app=lambda settings: wsgi_app, migrate=recorded.migrated.append,
    )  # fmt: skip
    result = _run(cli, "serve")
    assert result.exit_code == 0, result.output
    assert recorded.served == []  # not under the ASGI server
    [(app, settings)] = recorded.served_wsgi
    assert app is wsgi_app
    assert isinstance(settings, DemoSettings)


def test_migrate_logs_only_warnings_on_stderr(recorded: Recorded) -> None:
    result = _run(_cli(recorded), "migrate", FLOTILLA_INSTANCE_ID="1")
    assert result.exit_code == 0, result.output
    assert [s.service_name for s in recorded.migrated] == ["demo"]
    [(service, instance, level, stream)] = recorded.logging
    assert (service, instance, level) == ("demo", "1", "warning")
    assert stream is not None  # stderr, so stdout stays the command's result


def test_a_bad_setting_is_named_with_exit_status_2_and_no_traceback(recorded: Recorded) -> None:
    result = CliRunner().invoke(_cli(recorded), ["migrate"], env={"FLOTILLA_PORT": "eighty"})
    assert result.exit_code == 2
    assert "FLOTILLA_PORT" in result.output
    assert "Traceback" not in result.output
    assert recorded.migrated == []


async def _audited(url: str, n: int) -> None:
    await create_tables(url, metadata)
    database = Database(url)
    try:
        for i in range(n):
            async with UnitOfWork(database) as uow:
                await audit.append(
                    uow.transaction, actor=f"user-{i}", action="login", target="x", details={}
                )
                await uow.commit()
    finally:
        await database.dispose()


async def _tamper(url: str) -> None:
    database = Database(url)
    try:
        async with database.transaction() as transaction:
            await transaction.execute(
                Query(text("UPDATE audit_events SET actor = 'mallory' WHERE seq = 2"))
            )
            await transaction.commit()
    finally:
        await database.dispose()


def test_audit_verify_prints_the_report_and_exits_1_once_the_chain_is_broken(
    recorded: Recorded, sqlite_url: str
) -> None:
    asyncio.run(_audited(sqlite_url, 3))
    intact = _run(_cli(recorded), "audit-verify", FLOTILLA_DATABASE_URL=sqlite_url)
    assert intact.exit_code == 0
    report = json.loads(intact.stdout)
    assert (report["service"], report["records"], report["intact"]) == ("demo", 3, True)

    asyncio.run(_tamper(sqlite_url))
    broken = _run(_cli(recorded), "audit-verify", FLOTILLA_DATABASE_URL=sqlite_url)
    assert broken.exit_code == 1
    assert (json.loads(broken.stdout)["first_broken_seq"]) == 2


def test_audit_tail_prints_the_newest_records_as_json_lines_oldest_first(
    recorded: Recorded, sqlite_url: str
) -> None:
    asyncio.run(_audited(sqlite_url, 3))
    result = _run(_cli(recorded), "audit-tail", "--limit", "2", FLOTILLA_DATABASE_URL=sqlite_url)
    assert result.exit_code == 0
    assert [json.loads(line)["seq"] for line in result.stdout.splitlines()] == [2, 3]
    refused = _run(_cli(recorded), "audit-tail", "--limit", "0", FLOTILLA_DATABASE_URL=sqlite_url)
    assert refused.exit_code == 2


def test_the_services_own_command_shares_the_quiet_settings(recorded: Recorded) -> None:
    result = _run(_cli(recorded), "greet")
    assert result.exit_code == 0
    assert result.stdout == "hello from demo\n"
    assert recorded.logging[0][2] == "warning"


def test_a_seed_acts_as_staff_that_never_expires() -> None:
    assert SEED_OPERATOR.roles == frozenset({"admin"})
    assert SEED_OPERATOR.permissions == permissions_of(["admin"])
    assert SEED_OPERATOR.expires_at == float("inf")
