"""The accounts REST API. Authentication and error mapping happen here; decisions happen
in the use cases."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import Response

from flotilla_accounts.adapters.tables import idempotency_keys
from flotilla_accounts.adapters.unit_of_work import AccountsUnitOfWork
from flotilla_accounts.domain import Money, UnknownCurrency
from flotilla_accounts.entrypoints.schemas import (
    AccountList,
    AccountOut,
    DepositIn,
    DepositOut,
    OpenAccountIn,
    Statement,
    StatementItem,
)
from flotilla_accounts.service_layer import use_cases
from flotilla_accounts.service_layer.errors import (
    AccountNotFound,
    AccountsError,
    CurrencyMismatch,
    InvalidAmount,
    InvalidCursor,
    NotAllowed,
    WrongShard,
)
from flotilla_kit.app import PROBLEM_RESPONSES, app_state
from flotilla_kit.content_types import require_json
from flotilla_kit.db import Database
from flotilla_kit.idempotency import (
    IdempotentResult,
    request_fingerprint,
    run_idempotently,
    stored_answer,
    valid_idempotency_key,
)
from flotilla_kit.problems import Problem, ProblemRule, ProblemTable, problem_response
from flotilla_kit.security import Authenticated
from flotilla_kit.tokens import Principal

__all__ = ["PROBLEMS", "install_error_mapping", "router"]

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"], responses=PROBLEM_RESPONSES)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat the request with the same key to get the same answer, once.",
    ),
]


async def _shard(request: Request) -> int:
    shard: int = request.app.state.settings.shard
    return shard


async def _shards(request: Request) -> int:
    shards: int = request.app.state.settings.shards
    return shards


DatabaseDep = Annotated[Database, Depends(app_state("database"))]
ShardDep = Annotated[int, Depends(_shard)]
ShardsDep = Annotated[int, Depends(_shards)]

_WRONG_SHARD_RESPONSE: dict[int | str, dict[str, object]] = {
    421: problem_response("The owner's accounts live on another shard (`shard` names it)")
}


def _cursor(entry_id: int) -> str:
    return base64.urlsafe_b64encode(entry_id.to_bytes(8, "big")).decode().rstrip("=")


def _entry_id(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    except (binascii.Error, ValueError) as exc:
        raise InvalidCursor from exc
    entry_id = int.from_bytes(raw, "big")
    if len(raw) != 8 or entry_id <= 0 or _cursor(entry_id) != cursor:
        raise InvalidCursor
    return entry_id


async def _once_per_key(
    request: Request,
    principal: Principal,
    database: Database,
    operation: str,
    request_body: Any,
    key: str | None,
    action: Callable[[AccountsUnitOfWork], Awaitable[tuple[int, Any]]],
) -> IdempotentResult:
    """Run a write in one transaction; with an Idempotency-Key, store or replay its answer.
    Keys are per caller and operation, so one user's key never replays another's answer."""
    return await run_idempotently(
        database,
        AccountsUnitOfWork,
        idempotency_keys,
        scope=f"{principal.subject}:{operation}",
        key=valid_idempotency_key(key),
        fingerprint=request_fingerprint("POST", request.url.path, request_body),
        action=action,
    )


OwnerQuery = Annotated[
    str | None,
    Query(
        min_length=1,
        max_length=64,
        description="Another user (needs accounts:read:any, or accounts:open:any to open). "
        "A query parameter, so that the gateway can route by it to the owner's shard.",
    ),
]


def _single_owner(request: Request) -> None:
    if len(request.query_params.getlist("owner_id")) > 1:
        # Which one would count? The gateway routes by one of them; refuse the ambiguity.
        raise Problem(
            422, "validation-error", "Request validation failed", "owner_id given more than once"
        )


@router.get(
    "",
    response_model=AccountList,
    summary="The caller's own accounts (staff: another owner's, with owner_id)",
    responses=_WRONG_SHARD_RESPONSE,
)
async def list_accounts(
    request: Request,
    principal: Authenticated,
    database: DatabaseDep,
    shard: ShardDep,
    shards: ShardsDep,
    owner_id: OwnerQuery = None,
) -> AccountList:
    _single_owner(request)
    async with AccountsUnitOfWork(database, write=False) as uow:
        found = await use_cases.list_accounts(
            uow, principal=principal, shard=shard, shards=shards, owner_id=owner_id
        )
    return AccountList(items=[AccountOut.of(a) for a in found])


@router.post(
    "",
    status_code=201,
    response_model=AccountOut,
    summary="Open an account",
    dependencies=[Depends(require_json)],
    responses=_WRONG_SHARD_RESPONSE,
)
async def open_account(
    body: OpenAccountIn,
    request: Request,
    principal: Authenticated,
    database: DatabaseDep,
    shard: ShardDep,
    shards: ShardsDep,
    owner_id: OwnerQuery = None,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    _single_owner(request)

    async def action(uow: AccountsUnitOfWork) -> tuple[int, Any]:
        account = await use_cases.open_account(
            uow,
            principal=principal,
            shard=shard,
            shards=shards,
            name=body.name,
            currency=body.currency,
            owner_id=owner_id,
        )
        return 201, AccountOut.of(account).model_dump(mode="json")

    fingerprinted = {**body.model_dump(mode="json"), "owner_id": owner_id}
    result = await _once_per_key(
        request, principal, database, "open-account", fingerprinted, idempotency_key, action
    )
    return stored_answer(result, location=f"{router.prefix}/{result.body['id']}")


@router.get("/{account_id}", response_model=AccountOut, summary="One account (owner or staff)")
async def get_account(
    account_id: str, principal: Authenticated, database: DatabaseDep, shard: ShardDep
) -> AccountOut:
    async with AccountsUnitOfWork(database, write=False) as uow:
        account = await use_cases.get_account(
            uow, principal=principal, shard=shard, account_id=account_id
        )
    return AccountOut.of(account)


@router.get(
    "/{account_id}/entries",
    response_model=Statement,
    summary="The account's entries, newest first (owner or staff)",
)
async def account_entries(
    account_id: str,
    principal: Authenticated,
    database: DatabaseDep,
    shard: ShardDep,
    limit: Annotated[int, Query(ge=1, le=200, description="Entries per page.")] = 50,
    after: Annotated[
        str | None,
        Query(max_length=32, description="`next` of the previous page (opaque)."),
    ] = None,
) -> Statement:
    start = _entry_id(after) if after is not None else None
    async with AccountsUnitOfWork(database, write=False) as uow:
        lines, last = await use_cases.account_entries(
            uow, principal=principal, shard=shard, account_id=account_id, limit=limit, after=start
        )
    return Statement(
        items=[StatementItem.of(line) for line in lines],
        next=_cursor(last) if last is not None else None,
    )


@router.post(
    "/{account_id}/deposits",
    status_code=201,
    response_model=DepositOut,
    summary="Deposit cash into an account (staff)",
    dependencies=[Depends(require_json)],
)
async def deposit(
    account_id: str,
    body: DepositIn,
    request: Request,
    principal: Authenticated,
    database: DatabaseDep,
    shard: ShardDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def action(uow: AccountsUnitOfWork) -> tuple[int, Any]:
        posting_id, account = await use_cases.deposit(
            uow,
            principal=principal,
            shard=shard,
            account_id=account_id,
            amount=Money(body.amount_minor, body.currency),
            reference=body.reference,
        )
        out = DepositOut(posting_id=posting_id, account=AccountOut.of(account))
        return 201, out.model_dump(mode="json")

    result = await _once_per_key(
        request,
        principal,
        database,
        "deposit",
        body.model_dump(mode="json"),
        idempotency_key,
        action,
    )
    return stored_answer(result)


PROBLEMS = ProblemTable(
    {
        AccountNotFound: (404, "account-not-found", "Account not found"),
        NotAllowed: (403, "forbidden", "Forbidden"),
        CurrencyMismatch: (422, "currency-mismatch", "Currency mismatch"),
        InvalidAmount: (422, "invalid-amount", "Invalid amount"),
        UnknownCurrency: (422, "unknown-currency", "Unknown currency"),
        InvalidCursor: (422, "invalid-cursor", "Invalid cursor"),
        # 421 Misdirected Request: this instance cannot answer for that owner; the
        # extension names the shard that can.
        WrongShard: ProblemRule[WrongShard](
            421, "wrong-shard", "Wrong shard", extensions=lambda exc: {"shard": exc.home}
        ),
    }
)


def install_error_mapping(app: FastAPI) -> None:
    PROBLEMS.install(app, AccountsError, UnknownCurrency)
