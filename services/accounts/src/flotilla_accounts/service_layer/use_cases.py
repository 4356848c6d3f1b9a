"""What the accounts service does for people, one function per use case (the 2PC
participant's use cases are in `participant.py`).

Authorization that depends on data (ownership) is decided here, next to the data; the
HTTP layer only checks that a caller is authenticated.
"""

from __future__ import annotations

import uuid

from flotilla_accounts.domain import (
    Account,
    AccountKind,
    Entry,
    Money,
    Posting,
    StatementLine,
    cash_account_id,
    is_account_id_of,
    new_account_id,
)
from flotilla_accounts.service_layer.errors import (
    AccountNotFound,
    CurrencyMismatch,
    InvalidAccountId,
    InvalidAmount,
    NotAllowed,
    WrongShard,
)
from flotilla_accounts.service_layer.ports import LedgerUnitOfWork
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.sharding import home_shard, shard_of
from flotilla_kit.tokens import Principal

__all__ = ["account_entries", "deposit", "get_account", "list_accounts", "open_account"]


def _require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise NotAllowed(permission)


async def list_accounts(
    uow: LedgerUnitOfWork,
    *,
    principal: Principal,
    shard: int,
    shards: int,
    owner_id: str | None = None,
) -> list[Account]:
    """The caller's own accounts; staff (`accounts:read:any`) may name another owner. An
    owner's accounts all live on their home shard: asked elsewhere, we say where."""
    owner = owner_id or principal.subject
    _require(principal, "accounts:read" if owner == principal.subject else "accounts:read:any")
    home = home_shard(owner, shards)
    if home != shard:
        raise WrongShard(owner, home, shard)
    return await uow.ledger.list_for_owner(owner)


async def get_account(
    uow: LedgerUnitOfWork, *, principal: Principal, shard: int, account_id: str
) -> Account:
    may_read_any = principal.can("accounts:read:any")
    if not may_read_any:
        _require(principal, "accounts:read")
    # An id of another shard is as unknown here as an id nobody handed out.
    account = await uow.ledger.get(account_id) if shard_of(account_id) == shard else None
    if (
        account is None
        or account.kind is not AccountKind.CUSTOMER
        or (account.owner_id != principal.subject and not may_read_any)
    ):
        # Someone else's account looks exactly like a missing one: ids cannot be probed.
        raise AccountNotFound(account_id)
    return account


async def account_entries(
    uow: LedgerUnitOfWork,
    *,
    principal: Principal,
    shard: int,
    account_id: str,
    limit: int,
    after: int | None = None,
) -> tuple[list[StatementLine], int | None]:
    """A page of the account's statement, newest first, and where the next page starts
    (None on the last page). `after` is where the previous page ended."""
    await get_account(uow, principal=principal, shard=shard, account_id=account_id)
    lines = await uow.ledger.statement(account_id, limit=limit + 1, before=after)
    page = lines[:limit]
    return page, (page[-1].id if len(lines) > limit else None)


async def open_account(
    uow: LedgerUnitOfWork,
    *,
    principal: Principal,
    shard: int,
    shards: int,
    name: str,
    currency: str,
    owner_id: str | None = None,
    account_id: str | None = None,
    clock: Clock = utc_now,
) -> Account:
    """Open a customer account on this shard. `account_id` is for seeding only (an id the
    launcher fixed in advance, `acc_<this shard>_<32 hex>`); otherwise a new one is made."""
    _require(principal, "accounts:open")
    owner = owner_id or principal.subject
    if owner != principal.subject:
        _require(principal, "accounts:open:any")
    home = home_shard(owner, shards)
    if home != shard:
        raise WrongShard(owner, home, shard)
    Money(0, currency)  # validates the currency
    if account_id is not None and not is_account_id_of(account_id, shard):
        raise InvalidAccountId(account_id, shard)
    account = Account(
        id=account_id or new_account_id(shard),
        owner_id=owner,
        name=name,
        currency=currency,
        balance_minor=0,
        kind=AccountKind.CUSTOMER,
        created_at=clock(),
    )
    await uow.ledger.add_account(account)
    await uow.audit.record(
        actor=principal.subject,
        action="account.opened",
        target=account.id,
        details={"owner_id": owner, "currency": currency},
    )
    return account


async def deposit(
    uow: LedgerUnitOfWork,
    *,
    principal: Principal,
    shard: int,
    account_id: str,
    amount: Money,
    reference: str,
) -> tuple[str, Account]:
    """Cash in: credit the account, debit the bank's cash account (which may go negative)."""
    _require(principal, "accounts:deposit")
    if amount.amount_minor <= 0:
        raise InvalidAmount("a deposit must be positive")
    account = await uow.ledger.get(account_id) if shard_of(account_id) == shard else None
    if account is None or account.kind is not AccountKind.CUSTOMER:
        raise AccountNotFound(account_id)
    if account.currency != amount.currency:
        raise CurrencyMismatch(account.currency, amount.currency)
    cash = cash_account_id(shard, amount.currency)
    await uow.ledger.ensure_system_account(cash, amount.currency, f"cash {amount.currency}")
    posting = Posting(
        id=f"pst_{uuid.uuid4().hex}",
        kind="deposit",
        reference=reference,
        entries=(
            Entry(cash, -amount.amount_minor, amount.currency),
            Entry(account.id, amount.amount_minor, amount.currency),
        ),
    )
    await uow.ledger.post(posting)
    await uow.audit.record(
        actor=principal.subject,
        action="deposit",
        target=account.id,
        details={
            "posting_id": posting.id,
            "amount_minor": amount.amount_minor,
            "currency": amount.currency,
            "reference": reference,
        },
    )
    updated = await uow.ledger.get(account.id)
    assert updated is not None
    return posting.id, updated
