"""The ledger's gRPC API (`flotilla.ledger.v1.Ledger`): the 2PC participant spoken to by the
payments coordinator. Thin: translate messages, call the participant, translate back.

Every call arrives over mutual TLS and has passed `TokenAuthInterceptor` (a valid token
granting `ledger:post`) before a handler runs.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from grpc import aio

from flotilla_accounts.domain import BranchStatus, Direction, LocalTransfer, Refusal, Vote
from flotilla_accounts.service_layer.errors import CoordinatorBug, InvalidBranchRef
from flotilla_accounts.service_layer.participant import Participant, PrepareCall, TransferCall
from flotilla_kit.logs import get_logger
from flotilla_kit.rpc import TokenAuthInterceptor, server_credentials, text_refusal
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tokens import TokenError, TokenVerifier
from flotilla_kit.tracing import TracingServerInterceptor
from flotilla_proto.ledger.v1 import ledger_pb2 as pb
from flotilla_proto.ledger.v1 import ledger_pb2_grpc as pb_grpc

__all__ = ["LEDGER_PERMISSION", "LedgerService", "start_ledger_server"]

_log = get_logger("flotilla.accounts.grpc")

LEDGER_PERMISSION = "ledger:post"

Context = aio.ServicerContext[Any, Any]

_DIRECTIONS = {pb.DEBIT: Direction.DEBIT, pb.CREDIT: Direction.CREDIT}
_REFUSALS = {
    Refusal.INSUFFICIENT_FUNDS: pb.INSUFFICIENT_FUNDS,
    Refusal.ACCOUNT_NOT_FOUND: pb.ACCOUNT_NOT_FOUND,
    Refusal.CURRENCY_MISMATCH: pb.CURRENCY_MISMATCH,
    Refusal.ALREADY_ABORTED: pb.ALREADY_ABORTED,
    Refusal.WRONG_SHARD: pb.WRONG_SHARD,
    Refusal.INVALID: pb.INVALID,
}
_STATUSES = {
    BranchStatus.PREPARED: pb.PREPARED,
    BranchStatus.COMMITTED: pb.COMMITTED,
    BranchStatus.ABORTED: pb.ABORTED,
}


def _vote(vote: Vote) -> pb.PrepareResponse:
    if vote.refusal is None:
        return pb.PrepareResponse(vote=pb.YES)
    return pb.PrepareResponse(vote=pb.NO, refusal=_REFUSALS[vote.refusal], detail=vote.detail)


def _transfer(outcome: LocalTransfer) -> pb.LocalTransferResponse:
    if outcome.refusal is None:
        return pb.LocalTransferResponse(applied=True)
    return pb.LocalTransferResponse(
        applied=False, refusal=_REFUSALS[outcome.refusal], detail=outcome.detail
    )


_T = TypeVar("_T")


async def _answer(context: Context, call: Awaitable[_T]) -> _T:
    """Run the use case; turn the errors a caller can cause into status codes, and
    anything else into INTERNAL without its message (logged here, never sent)."""
    try:
        return await call
    except InvalidBranchRef as exc:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
    except CoordinatorBug as exc:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
    except Exception:
        _log.exception("ledger call failed")
        await context.abort(grpc.StatusCode.INTERNAL, "internal error")


async def _refuse_bad_text(request: Message, context: Context) -> None:
    """INVALID_ARGUMENT when a string of `request` breaks the kit's text rule."""
    problem = text_refusal(request)
    if problem is not None:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)


class LedgerService(pb_grpc.LedgerServicer):
    def __init__(self, participant: Participant, verifier: TokenVerifier) -> None:
        self._participant = participant
        self._verifier = verifier

    async def _actor(self, context: Context) -> str:
        """The caller, for the audit log: the subject of the token the interceptor checked
        (cached by the verifier, so this costs a dictionary lookup)."""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization":
                _, _, token = str(value).partition(" ")
                try:
                    return (await self._verifier.verify(token)).subject
                except TokenError:
                    break
        return "unknown"

    async def Prepare(self, request: pb.PrepareRequest, context: Context) -> pb.PrepareResponse:  # noqa: N802 - generated name
        await _refuse_bad_text(request, context)
        call = PrepareCall(
            transfer_id=request.transfer_id,
            branch_id=request.branch_id,
            account_id=request.account_id,
            direction=_DIRECTIONS.get(request.direction),
            amount_minor=request.amount_minor,
            currency=request.currency,
            required_owner=request.required_owner or None,
            reference=request.reference,
        )
        return _vote(await _answer(context, self._participant.prepare(call)))

    async def Commit(self, request: pb.BranchRef, context: Context) -> pb.BranchState:  # noqa: N802 - generated name
        await _refuse_bad_text(request, context)
        actor = await self._actor(context)
        status = await _answer(
            context,
            self._participant.commit(
                transfer_id=request.transfer_id, branch_id=request.branch_id, actor=actor
            ),
        )
        return pb.BranchState(status=_STATUSES[status])

    async def Abort(self, request: pb.BranchRef, context: Context) -> pb.BranchState:  # noqa: N802 - generated name
        await _refuse_bad_text(request, context)
        actor = await self._actor(context)
        status = await _answer(
            context,
            self._participant.abort(
                transfer_id=request.transfer_id, branch_id=request.branch_id, actor=actor
            ),
        )
        return pb.BranchState(status=_STATUSES[status])

    async def GetBranch(self, request: pb.BranchRef, context: Context) -> pb.BranchState:  # noqa: N802 - generated name
        await _refuse_bad_text(request, context)
        branch = await _answer(
            context,
            self._participant.branch(transfer_id=request.transfer_id, branch_id=request.branch_id),
        )
        return pb.BranchState(status=_STATUSES[branch.status] if branch else pb.UNKNOWN)

    async def Transfer(  # noqa: N802 - generated name
        self, request: pb.LocalTransferRequest, context: Context
    ) -> pb.LocalTransferResponse:
        await _refuse_bad_text(request, context)
        call = TransferCall(
            transfer_id=request.transfer_id,
            from_account=request.from_account,
            to_account=request.to_account,
            amount_minor=request.amount_minor,
            currency=request.currency,
            required_owner=request.required_owner or None,
            reference=request.reference,
        )
        actor = await self._actor(context)
        return _transfer(await _answer(context, self._participant.transfer(call, actor=actor)))


async def start_ledger_server(
    service: LedgerService, *, tls: TlsSettings, verifier: TokenVerifier, address: str
) -> tuple[aio.Server, int]:
    """Serve the ledger on `address` (`host:port`) over mutual TLS, in the running event
    loop; returns the server and the port it listens on."""
    # Tracing first: a refused call is traced too.
    server = aio.server(
        interceptors=[TracingServerInterceptor(), TokenAuthInterceptor(verifier, LEDGER_PERMISSION)]
    )
    pb_grpc.add_LedgerServicer_to_server(service, server)
    port = server.add_secure_port(address, server_credentials(tls))
    await server.start()
    _log.info("ledger gRPC API listening", address=address, port=port)
    return server, port
