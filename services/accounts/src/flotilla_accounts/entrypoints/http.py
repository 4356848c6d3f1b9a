"""The accounts REST API. Authentication and error mapping happen here; decisions happen
in the use cases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel

from flotilla_accounts.adapters.tables import idempotency_keys
from flotilla_accounts.domain import Money, UnknownCurrency
from flotilla_accounts.entrypoints.schemas import (
    AccountList,
    AccountOut,
    DepositIn,
    DepositOut,
    OpenAccountIn,
)
from flotilla_accounts.service_layer import use_cases
from flotilla_accounts.service_layer.errors import (
    AccountNotFound,
    AccountsError,
    CurrencyMismatch,
    InvalidAmount,
    NotAllowed,
)
from flotilla_accounts.service_layer.unit_of_work import AccountsUnitOfWork
from flotilla_kit.app import PROBLEM_RESPONSES
from flotilla_kit.content_types import require_json
from flotilla_kit.db import Database
from flotilla_kit.idempotency import (
    IdempotentResult,
    request_fingerprint,
    run_idempotently,
    valid_idempotency_key,
)
from flotilla_kit.problems import Problem
from flotilla_kit.security import Authenticated
from flotilla_kit.tokens import Principal

__all__ = ["install_error_mapping", "router"]

router = APIRouter(prefix="/api/v1/accounts", tags=["accounts"], responses=PROBLEM_RESPONSES)

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Repeat the request with the same key to get the same answer, once.",
    ),
]


def _database(request: Request) -> Database:
    database: Database = request.app.state.database
    return database


def _shard(request: Request) -> int:
    shard: int = request.app.state.settings.shard
    return shard


DatabaseDep = Annotated[Database, Depends(_database)]
ShardDep = Annotated[int, Depends(_shard)]


async def _once_per_key(
    request: Request,
    principal: Principal,
    database: Database,
    operation: str,
    body: BaseModel,
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
        fingerprint=request_fingerprint("POST", request.url.path, body.model_dump(mode="json")),
        action=action,
    )


def _answer(result: IdempotentResult, location: str | None = None) -> Response:
    headers = {"Location": location} if location else {}
    if result.replayed:
        headers["Idempotency-Replayed"] = "true"
    return JSONResponse(result.body, status_code=result.status, headers=headers)


@router.get("", response_model=AccountList, summary="The caller's own accounts")
async def list_accounts(principal: Authenticated, database: DatabaseDep) -> AccountList:
    async with AccountsUnitOfWork(database, write=False) as uow:
        found = await use_cases.list_accounts(uow, principal=principal)
    return AccountList(items=[AccountOut.of(a) for a in found])


@router.post(
    "",
    status_code=201,
    response_model=AccountOut,
    summary="Open an account",
    dependencies=[Depends(require_json)],
)
async def open_account(
    body: OpenAccountIn,
    request: Request,
    principal: Authenticated,
    database: DatabaseDep,
    shard: ShardDep,
    idempotency_key: IdempotencyKey = None,
) -> Response:
    async def action(uow: AccountsUnitOfWork) -> tuple[int, Any]:
        account = await use_cases.open_account(
            uow,
            principal=principal,
            shard=shard,
            name=body.name,
            currency=body.currency,
            owner_id=body.owner_id,
        )
        return 201, AccountOut.of(account).model_dump(mode="json")

    result = await _once_per_key(
        request, principal, database, "open-account", body, idempotency_key, action
    )
    return _answer(result, location=f"{router.prefix}/{result.body['id']}")


@router.get("/{account_id}", response_model=AccountOut, summary="One account (owner or staff)")
async def get_account(
    account_id: str, principal: Authenticated, database: DatabaseDep
) -> AccountOut:
    async with AccountsUnitOfWork(database, write=False) as uow:
        account = await use_cases.get_account(uow, principal=principal, account_id=account_id)
    return AccountOut.of(account)


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
        request, principal, database, "deposit", body, idempotency_key, action
    )
    return _answer(result)


def _problem_for(exc: AccountsError | UnknownCurrency) -> Problem:
    match exc:
        case AccountNotFound():
            return Problem(404, "account-not-found", "Account not found", str(exc))
        case NotAllowed():
            return Problem(403, "forbidden", "Forbidden", str(exc))
        case CurrencyMismatch():
            return Problem(422, "currency-mismatch", "Currency mismatch", str(exc))
        case InvalidAmount():
            return Problem(422, "invalid-amount", "Invalid amount", str(exc))
        case UnknownCurrency():
            return Problem(422, "unknown-currency", "Unknown currency", str(exc))
    return Problem(400, "bad-request", "Bad request", str(exc))


def install_error_mapping(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, AccountsError | UnknownCurrency)
        return _problem_for(exc).to_response(instance=request.url.path)

    app.add_exception_handler(AccountsError, handle)
    app.add_exception_handler(UnknownCurrency, handle)
