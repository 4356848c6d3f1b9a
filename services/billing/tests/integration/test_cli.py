"""`python -m flotilla_billing`: its help, `migrate` on a real database file, a bad
setting named on stderr (exit 2, no traceback), and `relay` publishing the outbox to a
real NATS as its own process (stopped by SIGTERM, exit 0)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

from nats.js.errors import NotFoundError

from flotilla_billing.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_billing.bootstrap import MIGRATIONS
from flotilla_billing.domain import ConfirmedOrder, OrderLine, VatRates
from flotilla_billing.service_layer import use_cases
from flotilla_kit.db import Database
from flotilla_kit.events import EVENTS_STREAM, connect
from flotilla_kit.migrations import upgrade_to_head


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    return subprocess.run(
        [sys.executable, "-m", "flotilla_billing", *args],
        env={**clean, **env}, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_help_names_every_command() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    for command in ("serve", "migrate", "relay"):
        assert command in result.stdout
    for command in ("serve", "migrate", "relay"):
        assert cli(command, "--help").returncode == 0


def test_migrate_builds_the_schema(tmp_path: Path) -> None:
    database = tmp_path / "billing.db"
    result = cli("migrate", FLOTILLA_DATABASE_URL=f"sqlite+aiosqlite:///{database}")
    assert result.returncode == 0, result.stderr
    with sqlite3.connect(database) as connection:
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert {"documents", "document_lines", "document_numbers", "outbox", "inbox"} <= tables


def test_a_bad_setting_is_named_without_a_traceback(tmp_path: Path) -> None:
    result = cli(
        "migrate",
        FLOTILLA_DATABASE_URL=f"sqlite+aiosqlite:///{tmp_path / 'b.db'}",
        FLOTILLA_VAT_OVERRIDES_BP='{"book": 20000}',
    )
    assert result.returncode == 2
    assert "FLOTILLA_VAT_OVERRIDES_BP" in result.stderr
    assert "'book' (20000) is outside 0..10000" in result.stderr
    assert "Traceback" not in result.stderr


async def test_relay_publishes_the_outbox_as_its_own_process(tmp_path: Path, nats_url: str) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'billing.db'}"
    await asyncio.to_thread(upgrade_to_head, url, MIGRATIONS)
    database = Database(url)
    try:
        async with SqlUnitOfWorkFactory(database)() as u:
            invoice = await use_cases.issue_invoice(
                documents=u.documents, events=u.events, rates=VatRates(default_bp=2000),
                now=dt.datetime.now(dt.UTC),
                order=ConfirmedOrder("o-1", "alice", "EUR", 300, (OrderLine("a", 2, 150),)),
            )  # fmt: skip
            await u.commit()
    finally:
        await database.dispose()
    assert invoice is not None
    clean = {k: v for k, v in os.environ.items() if not k.startswith("FLOTILLA_")}
    env = {**clean, "FLOTILLA_DATABASE_URL": url, "FLOTILLA_NATS_URL": nats_url,
           "FLOTILLA_TRACING_ENABLED": "false", "FLOTILLA_VAR_DIR": str(tmp_path)}  # fmt: skip
    relay = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_billing", "relay",
        env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    try:
        client = await connect(nats_url, name="test-reader", persistent=False)
        try:
            js = client.jetstream()
            async with asyncio.timeout(30):
                while True:  # another process publishes it: ask until it is there
                    try:
                        message = await js.get_last_msg(
                            EVENTS_STREAM, "flotilla.billing.invoice_issued"
                        )
                        break
                    except NotFoundError:
                        await asyncio.sleep(0.1)
        finally:
            await client.close()
        assert json.loads(message.data or b"{}")["data"]["number"] == invoice.number
    finally:
        relay.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            output, _ = await relay.communicate()
    assert relay.returncode == 0, output
