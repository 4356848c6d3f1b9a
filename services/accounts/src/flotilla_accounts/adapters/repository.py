"""The ledger's repositories over SQLAlchemy Core; they work on SQLite and PostgreSQL alike.

Lock order, to keep concurrent transactions from deadlocking on PostgreSQL: a branch or
local-transfer row first, then account rows in id order (customer `acc_` ids sort before
the shard's `sys_` accounts), then the audit log's lock, last.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Table, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_accounts.adapters.tables import (
    accounts,
    branches,
    entries,
    local_transfers,
    postings,
)
from flotilla_accounts.domain import (
    Account,
    AccountKind,
    AvailableWouldGoNegative,
    Branch,
    BranchStatus,
    BranchTerms,
    Direction,
    LocalTransfer,
    Posting,
    Refusal,
    StatementLine,
)

__all__ = ["SqlBranches", "SqlLedger", "SqlLocalTransfers"]


def _account(row: Row[tuple[object, ...]]) -> Account:
    m = row._mapping
    return Account(
        id=m["id"],
        owner_id=m["owner_id"],
        name=m["name"],
        currency=m["currency"],
        balance_minor=int(m["balance_minor"]),
        kind=AccountKind(m["kind"]),
        created_at=m["created_at"],
        held_minor=int(m["held_minor"]),
    )


async def _insert_if_absent(session: AsyncSession, table: Table, values: dict[str, Any]) -> bool:
    """INSERT ... ON CONFLICT DO NOTHING on the primary key; whether a row went in. On
    PostgreSQL a conflicting insert that is not committed yet makes this one wait."""
    dialect = session.get_bind().dialect.name
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    statement = (
        insert(table)
        .values(**values)
        .on_conflict_do_nothing(index_elements=list(table.primary_key.columns))
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount == 1


class SqlLedger:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_account(self, account: Account) -> None:
        await self.session.execute(
            accounts.insert().values(
                id=account.id,
                owner_id=account.owner_id,
                name=account.name,
                currency=account.currency,
                balance_minor=account.balance_minor,
                held_minor=account.held_minor,
                kind=account.kind.value,
                created_at=account.created_at,
            )
        )

    async def get(self, account_id: str) -> Account | None:
        row = (
            await self.session.execute(select(accounts).where(accounts.c.id == account_id))
        ).first()
        return _account(row) if row else None

    async def list_for_owner(self, owner_id: str) -> list[Account]:
        rows = await self.session.execute(
            select(accounts)
            .where(accounts.c.owner_id == owner_id, accounts.c.kind == AccountKind.CUSTOMER.value)
            .order_by(accounts.c.created_at, accounts.c.id)
        )
        return [_account(row) for row in rows]

    async def find_by_owner_and_name(self, owner_id: str, name: str) -> Account | None:
        row = (
            await self.session.execute(
                select(accounts).where(accounts.c.owner_id == owner_id, accounts.c.name == name)
            )
        ).first()
        return _account(row) if row else None

    async def ensure_system_account(self, account_id: str, currency: str, name: str) -> None:
        # Two first postings in a currency may race to create the account: the loser's
        # insert does nothing instead of failing.
        await _insert_if_absent(
            self.session,
            accounts,
            {
                "id": account_id,
                "owner_id": "bank",
                "name": name,
                "currency": currency,
                "balance_minor": 0,
                "held_minor": 0,
                "kind": AccountKind.SYSTEM.value,
                "created_at": dt.datetime.now(dt.UTC),
            },
        )

    async def post(self, posting: Posting) -> None:
        """Write the posting and move the balances, or write nothing and raise
        `AvailableWouldGoNegative`. A savepoint keeps the rest of the transaction usable
        (PostgreSQL would otherwise refuse every later statement)."""
        async with self.session.begin_nested():
            await self._post(posting)

    async def _post(self, posting: Posting) -> None:
        await self.session.execute(
            postings.insert().values(
                id=posting.id,
                kind=posting.kind,
                reference=posting.reference,
                created_at=dt.datetime.now(dt.UTC),
            )
        )
        await self.session.execute(
            entries.insert(),
            [
                {
                    "posting_id": posting.id,
                    "account_id": e.account_id,
                    "amount_minor": e.amount_minor,
                    "currency": e.currency,
                }
                for e in posting.entries
            ],
        )
        for entry in sorted(posting.entries, key=lambda e: e.account_id):
            try:
                await self.session.execute(
                    update(accounts)
                    .where(accounts.c.id == entry.account_id)
                    .values(balance_minor=accounts.c.balance_minor + entry.amount_minor)
                )
            except IntegrityError as exc:
                raise AvailableWouldGoNegative(entry.account_id) from exc

    async def hold(self, account_id: str, amount_minor: int) -> bool:
        try:
            async with self.session.begin_nested():
                await self.session.execute(
                    update(accounts)
                    .where(accounts.c.id == account_id)
                    .values(held_minor=accounts.c.held_minor + amount_minor)
                )
        except IntegrityError:
            return False  # the CHECK: the available balance would go below zero
        return True

    async def release(self, account_id: str, amount_minor: int) -> None:
        await self.session.execute(
            update(accounts)
            .where(accounts.c.id == account_id)
            .values(held_minor=accounts.c.held_minor - amount_minor)
        )

    async def statement(
        self, account_id: str, *, limit: int, before: int | None
    ) -> list[StatementLine]:
        query = (
            select(
                entries.c.id,
                entries.c.posting_id,
                postings.c.kind,
                entries.c.amount_minor,
                entries.c.currency,
                postings.c.reference,
                postings.c.created_at,
            )
            .join(postings, postings.c.id == entries.c.posting_id)
            .where(entries.c.account_id == account_id)
            .order_by(entries.c.id.desc())
            .limit(limit)
        )
        if before is not None:
            query = query.where(entries.c.id < before)
        rows = await self.session.execute(query)
        return [
            StatementLine(
                id=int(r.id),
                posting_id=r.posting_id,
                kind=r.kind,
                amount_minor=int(r.amount_minor),
                currency=r.currency,
                reference=r.reference,
                created_at=r.created_at,
            )
            for r in rows
        ]

    async def entry_total(self) -> int:
        """Sum of every entry ever written; zero in a balanced ledger."""
        total = (
            await self.session.execute(select(func.coalesce(func.sum(entries.c.amount_minor), 0)))
        ).scalar_one()
        return int(total)


def _branch(row: Row[tuple[object, ...]]) -> Branch:
    m = row._mapping
    terms = None
    if m["account_id"] is not None:
        terms = BranchTerms(
            account_id=m["account_id"],
            direction=Direction(m["direction"]),
            amount_minor=int(m["amount_minor"]),
            currency=m["currency"],
            reference=m["reference"],
        )
    return Branch(
        transfer_id=m["transfer_id"],
        branch_id=m["branch_id"],
        status=BranchStatus(m["status"]),
        terms=terms,
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        refusal=Refusal(m["refusal"]) if m["refusal"] is not None else None,
        posting_id=m["posting_id"],
    )


class SqlBranches:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, transfer_id: str, branch_id: str, *, lock: bool = False) -> Branch | None:
        query = select(branches).where(
            branches.c.transfer_id == transfer_id, branches.c.branch_id == branch_id
        )
        if lock:
            # PostgreSQL: Commit and Abort of one branch take turns. SQLite has no row
            # locks and needs none: a writing transaction holds the database's write lock.
            query = query.with_for_update()
        row = (await self.session.execute(query)).first()
        return _branch(row) if row else None

    async def add(self, branch: Branch) -> bool:
        terms = branch.terms
        return await _insert_if_absent(
            self.session,
            branches,
            {
                "transfer_id": branch.transfer_id,
                "branch_id": branch.branch_id,
                "account_id": terms.account_id if terms else None,
                "direction": terms.direction.value if terms else None,
                "amount_minor": terms.amount_minor if terms else None,
                "currency": terms.currency if terms else None,
                "reference": terms.reference if terms else "",
                "status": branch.status.value,
                "refusal": branch.refusal.value if branch.refusal else None,
                "posting_id": branch.posting_id,
                "created_at": branch.created_at,
                "updated_at": branch.updated_at,
            },
        )

    async def save(self, branch: Branch) -> None:
        await self.session.execute(
            update(branches)
            .where(
                branches.c.transfer_id == branch.transfer_id,
                branches.c.branch_id == branch.branch_id,
            )
            .values(
                status=branch.status.value,
                refusal=branch.refusal.value if branch.refusal else None,
                posting_id=branch.posting_id,
                updated_at=branch.updated_at,
            )
        )

    async def prepared_before(self, cutoff: dt.datetime, *, limit: int) -> list[Branch]:
        rows = await self.session.execute(
            select(branches)
            .where(branches.c.status == BranchStatus.PREPARED.value, branches.c.created_at < cutoff)
            .order_by(branches.c.created_at, branches.c.transfer_id, branches.c.branch_id)
            .limit(limit)
        )
        return [_branch(row) for row in rows]

    async def count_prepared_before(self, cutoff: dt.datetime) -> int:
        count = (
            await self.session.execute(
                select(func.count())
                .select_from(branches)
                .where(
                    branches.c.status == BranchStatus.PREPARED.value,
                    branches.c.created_at < cutoff,
                )
            )
        ).scalar_one()
        return int(count)


def _local_transfer(row: Row[tuple[object, ...]]) -> LocalTransfer:
    m = row._mapping
    return LocalTransfer(
        transfer_id=m["transfer_id"],
        from_account=m["from_account"],
        to_account=m["to_account"],
        amount_minor=int(m["amount_minor"]),
        currency=m["currency"],
        reference=m["reference"],
        created_at=m["created_at"],
        refusal=Refusal(m["refusal"]) if m["refusal"] is not None else None,
        detail=m["detail"],
        posting_id=m["posting_id"],
    )


class SqlLocalTransfers:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, transfer_id: str) -> LocalTransfer | None:
        row = (
            await self.session.execute(
                select(local_transfers).where(local_transfers.c.transfer_id == transfer_id)
            )
        ).first()
        return _local_transfer(row) if row else None

    async def add(self, transfer: LocalTransfer) -> bool:
        return await _insert_if_absent(
            self.session,
            local_transfers,
            {
                "transfer_id": transfer.transfer_id,
                "from_account": transfer.from_account,
                "to_account": transfer.to_account,
                "amount_minor": transfer.amount_minor,
                "currency": transfer.currency,
                "reference": transfer.reference,
                "refusal": transfer.refusal.value if transfer.refusal else None,
                "detail": transfer.detail[:200],
                "posting_id": transfer.posting_id,
                "created_at": transfer.created_at,
            },
        )

    async def save(self, transfer: LocalTransfer) -> None:
        await self.session.execute(
            update(local_transfers)
            .where(local_transfers.c.transfer_id == transfer.transfer_id)
            .values(
                refusal=transfer.refusal.value if transfer.refusal else None,
                detail=transfer.detail[:200],
                posting_id=transfer.posting_id,
            )
        )
