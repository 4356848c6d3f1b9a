"""The ledger's repositories; they work on SQLite and PostgreSQL alike.

Every statement is written once, below, as a `Query` (SQLAlchemy Core, compiled once per
dialect by the kit) and run in the unit of work's transaction.

Lock order, to keep concurrent transactions from deadlocking on PostgreSQL: a branch or
local-transfer row first, then account rows in id order (customer `acc_` ids sort before
the shard's `sys_` accounts), then the audit log's lock, last.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Table, bindparam, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.base import Executable

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
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.db import IntegrityViolation, Query, Row, Transaction

__all__ = ["SqlBranches", "SqlLedger", "SqlLocalTransfers"]


def _insert_if_absent(table: Table) -> Query:
    """INSERT ... ON CONFLICT DO NOTHING on the primary key, every column a parameter of
    its own name; its row count says whether a row went in. On PostgreSQL a conflicting
    insert that is not committed yet makes this one wait."""

    def build(dialect_name: str) -> Executable:
        insert = postgresql_insert if dialect_name == "postgresql" else sqlite_insert
        return (
            insert(table)
            .values({c.name: bindparam(c.name) for c in table.c})
            .on_conflict_do_nothing(index_elements=list(table.primary_key.columns))
        )

    return Query(build)


# -- accounts, postings, entries -------------------------------------------------------

_INSERT_ACCOUNT = Query(accounts.insert().values({c.name: bindparam(c.name) for c in accounts.c}))
_INSERT_ACCOUNT_IF_ABSENT = _insert_if_absent(accounts)
_ACCOUNT = Query(select(accounts).where(accounts.c.id == bindparam("account_id")))
# Both accounts of a local transfer in one statement (plain reads: no row is locked).
_TWO_ACCOUNTS = Query(
    select(accounts).where(
        or_(accounts.c.id == bindparam("first_id"), accounts.c.id == bindparam("second_id"))
    )
)
_OWNERS_ACCOUNTS = Query(
    select(accounts)
    .where(
        accounts.c.owner_id == bindparam("owner_id"),
        accounts.c.kind == AccountKind.CUSTOMER.value,
    )
    .order_by(accounts.c.created_at, accounts.c.id)
)
_ACCOUNT_BY_OWNER_AND_NAME = Query(
    select(accounts).where(
        accounts.c.owner_id == bindparam("owner_id"), accounts.c.name == bindparam("name")
    )
)
_MOVE_BALANCE = Query(
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(balance_minor=accounts.c.balance_minor + bindparam("amount_minor"))
)
_HOLD = Query(
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(held_minor=accounts.c.held_minor + bindparam("amount_minor"))
)
_RELEASE = Query(
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"))
    .values(held_minor=accounts.c.held_minor - bindparam("amount_minor"))
)
_INSERT_POSTING = Query(postings.insert().values({c.name: bindparam(c.name) for c in postings.c}))
# inline(): otherwise PostgreSQL's SQL asks for RETURNING entries.id, which nobody reads.
_INSERT_ENTRY = Query(
    entries.insert()
    .inline()
    .values(
        posting_id=bindparam("posting_id"),
        account_id=bindparam("account_id"),
        amount_minor=bindparam("amount_minor"),
        currency=bindparam("currency"),
    )
)
_STATEMENT_COLUMNS = (
    entries.c.id,
    entries.c.posting_id,
    postings.c.kind,
    entries.c.amount_minor,
    entries.c.currency,
    postings.c.reference,
    postings.c.created_at,
)
_NEWEST_ENTRIES = (
    select(*_STATEMENT_COLUMNS)
    .join(postings, postings.c.id == entries.c.posting_id)
    .where(entries.c.account_id == bindparam("account_id"))
    .order_by(entries.c.id.desc())
    .limit(bindparam("limit"))
)
_STATEMENT = Query(_NEWEST_ENTRIES)
_STATEMENT_BEFORE = Query(_NEWEST_ENTRIES.where(entries.c.id < bindparam("before")))
_ENTRY_TOTAL = Query(select(func.coalesce(func.sum(entries.c.amount_minor), 0).label("total")))


def _account(row: Row) -> Account:
    return Account(
        id=row.id,
        owner_id=row.owner_id,
        name=row.name,
        currency=row.currency,
        balance_minor=int(row.balance_minor),
        kind=AccountKind(row.kind),
        created_at=row.created_at,
        held_minor=int(row.held_minor),
    )


class SqlLedger:
    def __init__(self, transaction: Transaction, *, clock: Clock = utc_now) -> None:
        self.transaction = transaction
        self._clock = clock

    async def add_account(self, account: Account) -> None:
        await self.transaction.execute(
            _INSERT_ACCOUNT,
            id=account.id,
            owner_id=account.owner_id,
            name=account.name,
            currency=account.currency,
            balance_minor=account.balance_minor,
            held_minor=account.held_minor,
            kind=account.kind.value,
            created_at=account.created_at,
        )

    async def get(self, account_id: str) -> Account | None:
        row = await self.transaction.first(_ACCOUNT, account_id=account_id)
        return _account(row) if row else None

    async def get_both(
        self, first_id: str, second_id: str
    ) -> tuple[Account | None, Account | None]:
        found = {
            row.id: _account(row)
            for row in await self.transaction.all(
                _TWO_ACCOUNTS, first_id=first_id, second_id=second_id
            )
        }
        return found.get(first_id), found.get(second_id)

    async def list_for_owner(self, owner_id: str) -> list[Account]:
        rows = await self.transaction.all(_OWNERS_ACCOUNTS, owner_id=owner_id)
        return [_account(row) for row in rows]

    async def find_by_owner_and_name(self, owner_id: str, name: str) -> Account | None:
        row = await self.transaction.first(_ACCOUNT_BY_OWNER_AND_NAME, owner_id=owner_id, name=name)
        return _account(row) if row else None

    async def ensure_system_account(self, account_id: str, currency: str, name: str) -> None:
        # Two first postings in a currency may race to create the account: the loser's
        # insert does nothing instead of failing.
        await self.transaction.execute(
            _INSERT_ACCOUNT_IF_ABSENT,
            id=account_id,
            owner_id="bank",
            name=name,
            currency=currency,
            balance_minor=0,
            held_minor=0,
            kind=AccountKind.SYSTEM.value,
            created_at=self._clock(),
        )

    async def post(self, posting: Posting, *, then_go_on: bool = True) -> None:
        """Write the posting and move the balances, or write nothing and raise
        `AvailableWouldGoNegative`. A savepoint keeps the rest of the transaction usable
        (PostgreSQL would otherwise refuse every later statement); a caller that gives
        up its transaction on a refusal needs none."""
        if not then_go_on:
            await self._post(posting)
            return
        async with self.transaction.savepoint():
            await self._post(posting)

    async def _post(self, posting: Posting) -> None:
        transaction = self.transaction
        await transaction.execute(
            _INSERT_POSTING,
            id=posting.id,
            kind=posting.kind,
            reference=posting.reference,
            created_at=self._clock(),
        )
        await transaction.execute_many(
            _INSERT_ENTRY,
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
                await transaction.execute(
                    _MOVE_BALANCE, account_id=entry.account_id, amount_minor=entry.amount_minor
                )
            except IntegrityViolation as exc:
                raise AvailableWouldGoNegative(entry.account_id) from exc

    async def hold(self, account_id: str, amount_minor: int) -> bool:
        try:
            async with self.transaction.savepoint():
                await self.transaction.execute(
                    _HOLD, account_id=account_id, amount_minor=amount_minor
                )
        except IntegrityViolation:
            return False  # the CHECK: the available balance would go below zero
        return True

    async def release(self, account_id: str, amount_minor: int) -> None:
        await self.transaction.execute(_RELEASE, account_id=account_id, amount_minor=amount_minor)

    async def statement(
        self, account_id: str, *, limit: int, before: int | None
    ) -> list[StatementLine]:
        if before is None:
            rows = await self.transaction.all(_STATEMENT, account_id=account_id, limit=limit)
        else:
            rows = await self.transaction.all(
                _STATEMENT_BEFORE, account_id=account_id, limit=limit, before=before
            )
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
        return int(await self.transaction.scalar(_ENTRY_TOTAL))


# -- branches (two-phase commit) -------------------------------------------------------

_THE_BRANCH = (
    branches.c.transfer_id == bindparam("transfer_id"),
    branches.c.branch_id == bindparam("branch_id"),
)
_BRANCH = Query(select(branches).where(*_THE_BRANCH))
# PostgreSQL: Commit and Abort of one branch take turns. SQLite has no row locks and needs
# none (FOR UPDATE compiles to nothing): a writing transaction holds the database's lock.
_BRANCH_FOR_UPDATE = Query(select(branches).where(*_THE_BRANCH).with_for_update())
_INSERT_BRANCH_IF_ABSENT = _insert_if_absent(branches)
_SAVE_BRANCH = Query(
    update(branches)
    .where(*_THE_BRANCH)
    .values(
        status=bindparam("status"),
        refusal=bindparam("refusal"),
        posting_id=bindparam("posting_id"),
        updated_at=bindparam("updated_at"),
    )
)
_PREPARED_BEFORE = (
    branches.c.status == BranchStatus.PREPARED.value,
    branches.c.created_at < bindparam("cutoff"),
)
_OLDEST_PREPARED = Query(
    select(branches)
    .where(*_PREPARED_BEFORE)
    .order_by(branches.c.created_at, branches.c.transfer_id, branches.c.branch_id)
    .limit(bindparam("limit"))
)
_COUNT_PREPARED = Query(
    select(func.count().label("prepared")).select_from(branches).where(*_PREPARED_BEFORE)
)


def _branch(row: Row) -> Branch:
    terms = None
    if row.account_id is not None:
        terms = BranchTerms(
            account_id=row.account_id,
            direction=Direction(row.direction),
            amount_minor=int(row.amount_minor),
            currency=row.currency,
            reference=row.reference,
        )
    return Branch(
        transfer_id=row.transfer_id,
        branch_id=row.branch_id,
        status=BranchStatus(row.status),
        terms=terms,
        created_at=row.created_at,
        updated_at=row.updated_at,
        refusal=Refusal(row.refusal) if row.refusal is not None else None,
        posting_id=row.posting_id,
    )


class SqlBranches:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def get(self, transfer_id: str, branch_id: str, *, lock: bool = False) -> Branch | None:
        row = await self.transaction.first(
            _BRANCH_FOR_UPDATE if lock else _BRANCH, transfer_id=transfer_id, branch_id=branch_id
        )
        return _branch(row) if row else None

    async def add(self, branch: Branch) -> bool:
        terms = branch.terms
        added: int = await self.transaction.execute(
            _INSERT_BRANCH_IF_ABSENT,
            transfer_id=branch.transfer_id,
            branch_id=branch.branch_id,
            account_id=terms.account_id if terms else None,
            direction=terms.direction.value if terms else None,
            amount_minor=terms.amount_minor if terms else None,
            currency=terms.currency if terms else None,
            reference=terms.reference if terms else "",
            status=branch.status.value,
            refusal=branch.refusal.value if branch.refusal else None,
            posting_id=branch.posting_id,
            created_at=branch.created_at,
            updated_at=branch.updated_at,
        )
        return added == 1

    async def save(self, branch: Branch) -> None:
        await self.transaction.execute(
            _SAVE_BRANCH,
            transfer_id=branch.transfer_id,
            branch_id=branch.branch_id,
            status=branch.status.value,
            refusal=branch.refusal.value if branch.refusal else None,
            posting_id=branch.posting_id,
            updated_at=branch.updated_at,
        )

    async def prepared_before(self, cutoff: dt.datetime, *, limit: int) -> list[Branch]:
        rows = await self.transaction.all(_OLDEST_PREPARED, cutoff=cutoff, limit=limit)
        return [_branch(row) for row in rows]

    async def count_prepared_before(self, cutoff: dt.datetime) -> int:
        return int(await self.transaction.scalar(_COUNT_PREPARED, cutoff=cutoff))


# -- same-shard transfers --------------------------------------------------------------

_LOCAL_TRANSFER = Query(
    select(local_transfers).where(local_transfers.c.transfer_id == bindparam("transfer_id"))
)
_INSERT_LOCAL_TRANSFER_IF_ABSENT = _insert_if_absent(local_transfers)
_SAVE_LOCAL_TRANSFER = Query(
    update(local_transfers)
    .where(local_transfers.c.transfer_id == bindparam("transfer_id"))
    .values(
        refusal=bindparam("refusal"),
        detail=bindparam("detail"),
        posting_id=bindparam("posting_id"),
    )
)
_DETAIL_LENGTH = 200


def _local_transfer(row: Row) -> LocalTransfer:
    return LocalTransfer(
        transfer_id=row.transfer_id,
        from_account=row.from_account,
        to_account=row.to_account,
        amount_minor=int(row.amount_minor),
        currency=row.currency,
        reference=row.reference,
        created_at=row.created_at,
        refusal=Refusal(row.refusal) if row.refusal is not None else None,
        detail=row.detail,
        posting_id=row.posting_id,
    )


class SqlLocalTransfers:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def get(self, transfer_id: str) -> LocalTransfer | None:
        row = await self.transaction.first(_LOCAL_TRANSFER, transfer_id=transfer_id)
        return _local_transfer(row) if row else None

    async def add(self, transfer: LocalTransfer) -> bool:
        added: int = await self.transaction.execute(
            _INSERT_LOCAL_TRANSFER_IF_ABSENT,
            transfer_id=transfer.transfer_id,
            from_account=transfer.from_account,
            to_account=transfer.to_account,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            reference=transfer.reference,
            refusal=transfer.refusal.value if transfer.refusal else None,
            detail=transfer.detail[:_DETAIL_LENGTH],
            posting_id=transfer.posting_id,
            created_at=transfer.created_at,
        )
        return added == 1

    async def save(self, transfer: LocalTransfer) -> None:
        await self.transaction.execute(
            _SAVE_LOCAL_TRANSFER,
            transfer_id=transfer.transfer_id,
            refusal=transfer.refusal.value if transfer.refusal else None,
            detail=transfer.detail[:_DETAIL_LENGTH],
            posting_id=transfer.posting_id,
        )
