"""Migration 0003 over a ledger that already holds money, on both backends, both ways."""

from __future__ import annotations

import asyncio

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import text

from flotilla_accounts.bootstrap import MIGRATIONS
from flotilla_kit.db import CheckViolation, Database, Query


def _alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def _run(url: str, *statements: str) -> list[list[tuple[object, ...]]]:
    database = Database(url)
    try:
        async with database.transaction(write=False) as tx:
            return [list(map(tuple, await tx.all(Query(text(s))))) for s in statements]
    finally:
        await database.dispose()


async def _write(url: str, *statements: str) -> None:
    database = Database(url)
    try:
        async with database.transaction() as tx:
            for statement in statements:
                await tx.execute(Query(text(statement)))
            await tx.commit()
    finally:
        await database.dispose()


SEED = [
    "INSERT INTO accounts VALUES ('acc_0_a', 'alice', 'A', 'EUR', 70, 'customer', '2026-01-01 00:00:00+00:00')",
    "INSERT INTO accounts VALUES ('sys_0_cash_eur', 'bank', 'cash', 'EUR', -70, 'system', '2026-01-01 00:00:00+00:00')",
    "INSERT INTO postings VALUES ('pst_1', 'deposit', 'r', '2026-01-01 00:00:00+00:00')",
    "INSERT INTO entries (posting_id, account_id, amount_minor, currency) VALUES ('pst_1', 'acc_0_a', 70, 'EUR')",
    "INSERT INTO entries (posting_id, account_id, amount_minor, currency) VALUES ('pst_1', 'sys_0_cash_eur', -70, 'EUR')",
]


async def test_holds_and_branches_arrive_without_losing_a_cent(database_url: str) -> None:
    await asyncio.to_thread(command.upgrade, _alembic(database_url), "0002")
    await _write(database_url, *SEED)
    await asyncio.to_thread(command.upgrade, _alembic(database_url), "head")

    [balances, branches] = await _run(
        database_url,
        "SELECT id, balance_minor, held_minor FROM accounts ORDER BY id",
        "SELECT COUNT(*) FROM branches",
    )
    assert balances == [("acc_0_a", 70, 0), ("sys_0_cash_eur", -70, 0)]
    assert branches == [(0,)]
    if database_url.startswith("sqlite"):
        # The accounts table was rebuilt: the entries still point at it.
        [broken] = await _run(database_url, "PRAGMA foreign_key_check")
        assert broken == []
    await _write(database_url, "UPDATE accounts SET held_minor = 70 WHERE id = 'acc_0_a'")
    for refused in (
        "UPDATE accounts SET held_minor = 71 WHERE id = 'acc_0_a'",
        "UPDATE accounts SET balance_minor = -1, held_minor = 0 WHERE id = 'acc_0_a'",
        "INSERT INTO branches (transfer_id, branch_id, status, reference, created_at, updated_at)"
        " VALUES ('t', 'debit', 'prepared', '', '2026-01-01 00:00:00+00:00', '2026-01-01 00:00:00+00:00')",
    ):
        with pytest.raises(CheckViolation):
            await _write(database_url, refused)

    await asyncio.to_thread(command.downgrade, _alembic(database_url), "0002")
    [after] = await _run(database_url, "SELECT id, balance_minor FROM accounts ORDER BY id")
    assert after == [("acc_0_a", 70), ("sys_0_cash_eur", -70)]
    await asyncio.to_thread(command.upgrade, _alembic(database_url), "head")
    [again] = await _run(database_url, "SELECT id, held_minor FROM accounts ORDER BY id")
    assert again == [("acc_0_a", 0), ("sys_0_cash_eur", 0)]
