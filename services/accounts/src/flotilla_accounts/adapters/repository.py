"""The ledger repository over SQLAlchemy Core; works on SQLite and PostgreSQL alike."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Row
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_accounts.adapters.tables import accounts, entries, postings
from flotilla_accounts.domain import Account, AccountKind, Posting

__all__ = ["BalanceWouldGoNegative", "SqlLedger"]


class BalanceWouldGoNegative(Exception):
    """The database refused an entry: a customer balance would drop below zero."""


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
    )


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

    async def ensure_system_account(self, account_id: str, currency: str) -> None:
        # Two first deposits in a currency may race to create its cash account: the
        # loser's insert does nothing instead of failing.
        dialect = self.session.get_bind().dialect.name
        insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
        await self.session.execute(
            insert(accounts)
            .values(
                id=account_id,
                owner_id="bank",
                name=f"cash {currency}",
                currency=currency,
                balance_minor=0,
                kind=AccountKind.SYSTEM.value,
                created_at=dt.datetime.now(dt.UTC),
            )
            .on_conflict_do_nothing(index_elements=[accounts.c.id])
        )

    async def post(self, posting: Posting) -> None:
        """Write the posting and move the balances, or raise and leave the transaction to
        be rolled back by the unit of work."""
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
        for entry in posting.entries:
            try:
                await self.session.execute(
                    update(accounts)
                    .where(accounts.c.id == entry.account_id)
                    .values(balance_minor=accounts.c.balance_minor + entry.amount_minor)
                )
            except IntegrityError as exc:
                raise BalanceWouldGoNegative(entry.account_id) from exc

    async def entry_total(self) -> int:
        """Sum of every entry ever written; zero in a balanced ledger."""
        total = (
            await self.session.execute(select(func.coalesce(func.sum(entries.c.amount_minor), 0)))
        ).scalar_one()
        return int(total)
