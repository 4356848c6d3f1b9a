"""After the storm: read every ledger shard and the coordinator, read-only, and check the
invariants of a bank (Jepsen's bank test, plus what two-phase commit promises).

This is a reconciliation job, as a bank runs one: it reads the databases directly
instead of asking the services, so that a bug in a service cannot hide itself.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import text

from flotilla_kit.db import Database, Query

__all__ = [
    "CoordinatorFacts",
    "LedgerFacts",
    "check_invariants",
    "query_rows",
    "read_ledger",
    "read_transfers",
]


@dataclass
class LedgerFacts:
    """What the shards say, merged."""

    balances: dict[str, int] = field(default_factory=dict)  # customer accounts
    settlement_total: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    held_total: int = 0
    prepared_branches: int = 0
    negative_available: int = 0
    unbalanced_shards: list[int] = field(default_factory=list)
    balance_mismatches: int = 0
    applied: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))


async def query_rows(url: str, sql: str) -> list[Any]:
    """Every row `sql` reads from the database at `url`, in a read-only transaction."""
    database = Database(url)
    try:
        async with database.transaction(write=False) as transaction:
            return await transaction.all(Query(text(sql)))
    finally:
        await database.dispose()


async def read_ledger(shard_urls: dict[int, str]) -> LedgerFacts:
    facts = LedgerFacts()
    for shard, url in sorted(shard_urls.items()):
        for account_id, kind, balance, held in await query_rows(
            url, "SELECT id, kind, balance_minor, held_minor FROM accounts"
        ):
            facts.held_total += held
            if kind == "customer":
                facts.balances[account_id] = balance
                facts.negative_available += int(balance - held < 0)
            elif "_settlement_" in account_id:
                facts.settlement_total[account_id.rsplit("_", 1)[1]] += balance
        [(prepared,)] = await query_rows(
            url, "SELECT COUNT(*) FROM branches WHERE status = 'prepared'"
        )
        facts.prepared_branches += prepared
        [(total,)] = await query_rows(url, "SELECT COALESCE(SUM(amount_minor), 0) FROM entries")
        if total != 0:
            facts.unbalanced_shards.append(shard)
        [(mismatches,)] = await query_rows(
            url,
            "SELECT COUNT(*) FROM accounts a LEFT JOIN (SELECT account_id, SUM(amount_minor) AS s"
            " FROM entries GROUP BY account_id) e ON e.account_id = a.id"
            " WHERE a.balance_minor <> COALESCE(e.s, 0)",
        )
        facts.balance_mismatches += mismatches
        for transfer_id, branch_id in await query_rows(
            url, "SELECT transfer_id, branch_id FROM branches WHERE status = 'committed'"
        ):
            facts.applied[transfer_id].add(branch_id)
        for (transfer_id,) in await query_rows(
            url, "SELECT transfer_id FROM local_transfers WHERE posting_id IS NOT NULL"
        ):
            facts.applied[transfer_id].add("local")
    return facts


@dataclass
class CoordinatorFacts:
    """What the payments database says."""

    transfers: dict[str, tuple[str, str]]  # id -> (state, path)
    retried: int  # transfers that needed more than one attempt (backoff or recovery)
    recoveries: int  # times a recovery loop took a transfer over (its audit records)
    recovered: int  # transfers that recovery took over at least once


async def read_transfers(payments_url: str) -> CoordinatorFacts:
    rows = await query_rows(payments_url, "SELECT id, state, path, attempts FROM transfers")
    [(recoveries, recovered)] = await query_rows(
        payments_url,
        "SELECT COUNT(*), COUNT(DISTINCT target) FROM audit_events"
        " WHERE action = 'transfer.recovered'",
    )
    # A raw query sees the stored form of a UUID (SQLite: 32 hex digits); the shards and
    # the clients use the canonical one.
    return CoordinatorFacts(
        transfers={
            str(uuid.UUID(str(transfer_id))): (str(state).lower(), str(path))
            for transfer_id, state, path, _ in rows
        },
        retried=sum(1 for *_, attempts in rows if attempts > 0),
        recoveries=recoveries,
        recovered=recovered,
    )


def _fully_applied(parts: set[str], path: str) -> bool:
    return parts == ({"local"} if path == "local" else {"debit", "credit"})


def check_invariants(
    *,
    ledger: LedgerFacts,
    coordinator: dict[str, tuple[str, str]],
    scenario_accounts: Iterable[str],
    deposited_minor: int,
    answered: Mapping[str, str],
) -> dict[str, Any]:
    """Every invariant by name -> (holds, detail). `answered`: transfer id -> what the
    client was told (committed / rejected / unknown)."""
    accounts = list(scenario_accounts)
    total = sum(ledger.balances.get(a, 0) for a in accounts)
    committed = {t for t, (state, _) in coordinator.items() if state == "committed"}
    aborted = {t for t, (state, _) in coordinator.items() if state == "aborted"}
    unfinished = {
        t for t, (state, _) in coordinator.items() if state not in ("committed", "aborted")
    }
    half_applied = [
        t for t in committed if not _fully_applied(ledger.applied.get(t, set()), coordinator[t][1])
    ]
    applied_but_aborted = [t for t in aborted if ledger.applied.get(t)]
    told_committed_not_applied = [
        t for t, said in answered.items() if said == "committed" and t not in committed
    ]
    told_rejected_but_applied = [
        t
        for t, said in answered.items()
        if said in ("rejected", "aborted") and ledger.applied.get(t)
    ]
    strays = [t for t in ledger.applied if t not in coordinator]
    checks: dict[str, tuple[bool, str]] = {
        "total_unchanged": (total == deposited_minor, f"{total} vs {deposited_minor} deposited"),
        "no_negative_balance": (ledger.negative_available == 0, f"{ledger.negative_available}"),
        "no_branch_prepared": (ledger.prepared_branches == 0, f"{ledger.prepared_branches}"),
        "no_hold_left": (ledger.held_total == 0, f"{ledger.held_total} minor units held"),
        "settlement_nets_to_zero": (
            all(v == 0 for v in ledger.settlement_total.values()),
            str(dict(ledger.settlement_total)),
        ),
        "double_entry_per_shard": (not ledger.unbalanced_shards, str(ledger.unbalanced_shards)),
        "balances_match_entries": (ledger.balance_mismatches == 0, f"{ledger.balance_mismatches}"),
        "every_transfer_finished": (not unfinished, f"{len(unfinished)} unfinished"),
        "committed_applied_exactly_once": (not half_applied, f"{half_applied[:5]}"),
        "aborted_not_applied": (not applied_but_aborted, f"{applied_but_aborted[:5]}"),
        "answered_committed_is_committed": (
            not told_committed_not_applied,
            f"{told_committed_not_applied[:5]}",
        ),
        "answered_refused_not_applied": (
            not told_rejected_but_applied,
            f"{told_rejected_but_applied[:5]}",
        ),
        "no_ledger_change_without_a_transfer": (not strays, f"{strays[:5]}"),
    }
    return {name: {"holds": ok, "detail": detail} for name, (ok, detail) in checks.items()}
