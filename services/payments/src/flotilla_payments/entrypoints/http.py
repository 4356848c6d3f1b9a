"""The payments REST API. Authentication and error mapping happen here; decisions happen
in the coordinator and the use cases.

`/api/v1/in-doubt-transfers` is for operators (`payments:read:any`): the transfers the
`in-doubt` command prints. `/internal/v1/...` is for ledger shards in doubt about a
transfer (service token over mutual TLS); it is left out of the public OpenAPI.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from flotilla_kit.app import PROBLEM_RESPONSES, app_state
from flotilla_kit.clock import Clock
from flotilla_kit.content_types import require_json
from flotilla_kit.idempotency import request_fingerprint, valid_idempotency_key
from flotilla_kit.problems import Problem, ProblemTable, problem_response
from flotilla_kit.security import Authenticated, require_permission
from flotilla_payments.domain import Refusal, Transfer, TransferState
from flotilla_payments.entrypoints.schemas import (
    InDoubtList,
    InDoubtTransferOut,
    OutcomeOut,
    TransferIn,
    TransferList,
    TransferOut,
)
from flotilla_payments.service_layer import use_cases
from flotilla_payments.service_layer.coordinator import Coordinator, Submission, TransferRequest
from flotilla_payments.service_layer.errors import (
    AccountNotFound,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidTransfer,
    NotAllowed,
    PaymentsError,
    SameAccount,
    TransferNotFound,
)
from flotilla_payments.service_layer.ports import UnitOfWorkFactory

__all__ = ["PROBLEMS", "in_doubt", "install_error_mapping", "internal", "router"]

router = APIRouter(prefix="/api/v1/transfers", tags=["transfers"], responses=PROBLEM_RESPONSES)
in_doubt = APIRouter(
    prefix="/api/v1/in-doubt-transfers", tags=["operations"], responses=PROBLEM_RESPONSES
)
internal = APIRouter(prefix="/internal/v1/transfers", include_in_schema=False)

# A technical abort moved no money; a new attempt (with a new Idempotency-Key) may work.
RETRY_AFTER_S = 1

_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    202: {"model": TransferOut, "description": "Accepted, not final yet: poll `Location`."},
    503: problem_response("Aborted for a technical reason (`transfer-aborted`)."),
}

# Required (documented so); a request without one gets the kit's 400
# idempotency-key-required, not a 422.
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description="Repeat the request with the same key to get its current "
        "state; the transfer happens at most once.",
    ),
]


CoordinatorDep = Annotated[Coordinator, Depends(app_state("coordinator"))]
UowDep = Annotated[UnitOfWorkFactory, Depends(app_state("uow"))]
ClockDep = Annotated[Clock, Depends(app_state("clock"))]


def _location(transfer: Transfer) -> str:
    return f"{router.prefix}/{transfer.id}"


def _refusal_problem(transfer: Transfer) -> Problem:
    refusal = transfer.refusal or Refusal.PROTOCOL_VIOLATION
    extensions: dict[str, Any] = {"transfer_id": str(transfer.id), "refusal": refusal.value}
    match refusal:
        case Refusal.INSUFFICIENT_FUNDS:
            return Problem(
                422, "insufficient-funds", "Insufficient funds",
                "The source account's available balance is below the amount.", **extensions,
            )  # fmt: skip
        case Refusal.ACCOUNT_NOT_FOUND:
            return Problem(
                404, "account-not-found", "Account not found",
                "An account does not exist, or the source is not yours.", **extensions,
            )  # fmt: skip
        case Refusal.CURRENCY_MISMATCH:
            return Problem(
                422, "currency-mismatch", "Currency mismatch",
                "An account holds another currency than the transfer's.", **extensions,
            )  # fmt: skip
        case Refusal.INVALID:
            return Problem(
                422, "transfer-refused", "Transfer refused",
                "The ledger refused the transfer as invalid.", **extensions,
            )  # fmt: skip
    return Problem(
        503, "transfer-aborted", "Transfer aborted",
        "The transfer was aborted for a technical reason; no money moved. "
        "Try again later with a new Idempotency-Key.",
        headers={"Retry-After": str(RETRY_AFTER_S)}, **extensions,
    )  # fmt: skip


def _answer(submission: Submission, instance: str) -> Response:
    transfer = submission.transfer
    headers = {"Idempotency-Replayed": "true"} if submission.replayed else {}
    if transfer.state in (TransferState.ABORTING, TransferState.ABORTED):
        # The abort is decided: no money moves, whatever phase two still has to do.
        problem = _refusal_problem(transfer)
        problem.headers.update(headers)
        return problem.to_response(instance=instance)
    headers["Location"] = _location(transfer)
    status = 201 if transfer.state is TransferState.COMMITTED else 202
    body = TransferOut.of(transfer).model_dump(mode="json")
    return JSONResponse(body, status_code=status, headers=headers)


@router.post(
    "",
    status_code=201,
    response_model=TransferOut,
    summary="Move money from one of your accounts to another account",
    responses=_POST_RESPONSES,
    dependencies=[Depends(require_json)],
)
async def create_transfer(
    body: TransferIn,
    request: Request,
    principal: Authenticated,
    coordinator: CoordinatorDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """201 when committed; 202 (poll `Location`) when not final within a few seconds;
    a problem when refused (422/404, nothing moved) or aborted for a technical reason (503)."""
    submission = await coordinator.submit(
        principal=principal,
        request=TransferRequest(
            from_account=body.from_account,
            to_account=body.to_account,
            amount_minor=body.amount_minor,
            currency=body.currency,
            reference=body.reference,
            on_behalf_of=body.on_behalf_of,
        ),
        idempotency_key=valid_idempotency_key(idempotency_key),
        fingerprint=request_fingerprint("POST", request.url.path, body.model_dump(mode="json")),
    )
    return _answer(submission, request.url.path)


@router.get("", response_model=TransferList, summary="Your own transfers, newest first")
async def list_transfers(
    principal: Authenticated,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    after: Annotated[
        str | None, Query(max_length=64, description="`next_after` of the previous page.")
    ] = None,
) -> TransferList:
    async with uow(write=False) as u:
        page = await use_cases.list_transfers(u, principal=principal, limit=limit, after=after)
    return TransferList(items=[TransferOut.of(t) for t in page.items], next_after=page.next_after)


@router.get(
    "/{transfer_id}", response_model=TransferOut, summary="One transfer (its initiator or staff)"
)
async def get_transfer(transfer_id: str, principal: Authenticated, uow: UowDep) -> TransferOut:
    async with uow(write=False) as u:
        transfer = await use_cases.get_transfer(u, principal=principal, transfer_id=transfer_id)
    return TransferOut.of(transfer)


@in_doubt.get(
    "",
    response_model=InDoubtList,
    summary="Transfers not final yet, oldest first (operators)",
    dependencies=[Depends(require_permission(use_cases.READ_ANY))],
)
async def list_in_doubt(
    uow: UowDep,
    clock: ClockDep,
    older_than: Annotated[
        float,
        Query(
            ge=0,
            le=use_cases.MAX_OLDER_THAN_S,
            allow_inf_nan=False,
            description="Only those asked for at least this many seconds ago.",
        ),
    ] = 0.0,
) -> InDoubtList:
    """PREPARING, COMMITTING or ABORTING: what recovery is still driving, with its
    attempts and lease (as `python -m flotilla_payments in-doubt` prints them)."""
    now = clock()
    async with uow(write=False) as u:
        found = await use_cases.unfinished_transfers(u, now=now, older_than_s=older_than)
    return InDoubtList(transfers=[InDoubtTransferOut.of_unfinished(t, now) for t in found])


@internal.get("/{transfer_id}/outcome", response_model=OutcomeOut)
async def transfer_outcome(
    transfer_id: str, principal: Authenticated, coordinator: CoordinatorDep
) -> OutcomeOut:
    """For a ledger shard holding a prepared branch: commit, abort (also for a transfer
    never heard of: presumed abort), or pending (ask again later)."""
    outcome = await coordinator.outcome(principal=principal, transfer_id=transfer_id)
    return OutcomeOut(outcome=outcome.value)


PROBLEMS = ProblemTable(
    {
        NotAllowed: (403, "forbidden", "Forbidden"),
        AccountNotFound: (404, "account-not-found", "Account not found"),
        SameAccount: (422, "same-account", "Same account"),
        InvalidTransfer: (422, "invalid-transfer", "Invalid transfer"),
        IdempotencyKeyRequired: (400, "idempotency-key-required", "Idempotency-Key required"),
        IdempotencyKeyReused: (422, "idempotency-key-reused", "Idempotency-Key reused"),
        TransferNotFound: (404, "transfer-not-found", "Transfer not found"),
        InvalidCursor: (400, "invalid-cursor", "Invalid cursor"),
    }
)


def install_error_mapping(app: FastAPI) -> None:
    PROBLEMS.install(app, PaymentsError)
