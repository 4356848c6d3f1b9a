"""A fake ledger shard behind a real `grpc.aio` server: mutual TLS, the kit's token
interceptor (`ledger:post`), and the participant rules of `FakeShard`. `down` makes it
answer UNAVAILABLE, as a shard whose every instance is gone."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from grpc import aio

from flotilla_kit.rpc import TokenAuthInterceptor, server_credentials
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tokens import TokenVerifier
from flotilla_payments.domain import Branch, Refusal, VoteKind
from flotilla_payments.service_layer.ports import LocalTransferCall, PrepareCall, ProtocolViolation
from flotilla_proto.ledger.v1 import ledger_pb2 as pb
from flotilla_proto.ledger.v1 import ledger_pb2_grpc as pb_grpc
from services.payments.tests.fakes import FakeShard

Context = aio.ServicerContext[Any, Any]

_REFUSALS = {
    Refusal.INSUFFICIENT_FUNDS: pb.INSUFFICIENT_FUNDS,
    Refusal.ACCOUNT_NOT_FOUND: pb.ACCOUNT_NOT_FOUND,
    Refusal.CURRENCY_MISMATCH: pb.CURRENCY_MISMATCH,
    Refusal.ALREADY_ABORTED: pb.ALREADY_ABORTED,
    Refusal.WRONG_SHARD: pb.WRONG_SHARD,
    Refusal.INVALID: pb.INVALID,
}
_STATUSES = {"prepared": pb.PREPARED, "committed": pb.COMMITTED, "aborted": pb.ABORTED}


class FakeLedgerServicer(pb_grpc.LedgerServicer):
    def __init__(self, shard: FakeShard) -> None:
        self.shard = shard
        self.down = False
        self.stall: asyncio.Event | None = None  # when set: hold every call until it fires
        self.calls: list[tuple[str, str, str]] = []  # (method, transfer id, branch)

    async def _arrive(self, context: Context, method: str, transfer_id: str, branch: str) -> None:
        self.calls.append((method, transfer_id, branch))
        if self.stall is not None:
            await self.stall.wait()
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the shard is down")

    def calls_of(self, method: str) -> list[tuple[str, str]]:
        return [(t, b) for m, t, b in self.calls if m == method]

    async def Prepare(self, request: pb.PrepareRequest, context: Context) -> pb.PrepareResponse:  # noqa: N802 - generated name
        await self._arrive(context, "Prepare", request.transfer_id, request.branch_id)
        vote = self.shard.prepare(
            PrepareCall(
                shard=self.shard.number,
                transfer_id=request.transfer_id,
                branch=Branch(request.branch_id),
                account_id=request.account_id,
                amount_minor=request.amount_minor,
                currency=request.currency,
                required_owner=request.required_owner,
                reference=request.reference,
            )
        )
        if vote.kind is VoteKind.YES:
            return pb.PrepareResponse(vote=pb.YES)
        assert vote.refusal is not None
        return pb.PrepareResponse(vote=pb.NO, refusal=_REFUSALS[vote.refusal])

    async def Commit(self, request: pb.BranchRef, context: Context) -> pb.BranchState:  # noqa: N802 - generated name
        await self._arrive(context, "Commit", request.transfer_id, request.branch_id)
        try:
            self.shard.commit(request.transfer_id, request.branch_id)
        except ProtocolViolation as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.BranchState(status=pb.COMMITTED)

    async def Abort(self, request: pb.BranchRef, context: Context) -> pb.BranchState:  # noqa: N802 - generated name
        await self._arrive(context, "Abort", request.transfer_id, request.branch_id)
        try:
            self.shard.abort(request.transfer_id, request.branch_id)
        except ProtocolViolation as exc:
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        return pb.BranchState(status=pb.ABORTED)

    async def GetBranch(self, request: pb.BranchRef, context: Context) -> pb.BranchState:  # noqa: N802 - generated name
        await self._arrive(context, "GetBranch", request.transfer_id, request.branch_id)
        known = self.shard.branches.get((request.transfer_id, request.branch_id))
        return pb.BranchState(status=_STATUSES[known.status] if known else pb.UNKNOWN)

    async def Transfer(  # noqa: N802 - generated name
        self, request: pb.LocalTransferRequest, context: Context
    ) -> pb.LocalTransferResponse:
        await self._arrive(context, "Transfer", request.transfer_id, "local")
        outcome = self.shard.transfer(
            LocalTransferCall(
                shard=self.shard.number,
                transfer_id=request.transfer_id,
                from_account=request.from_account,
                to_account=request.to_account,
                amount_minor=request.amount_minor,
                currency=request.currency,
                required_owner=request.required_owner,
                reference=request.reference,
            )
        )
        if outcome.applied:
            return pb.LocalTransferResponse(applied=True)
        assert outcome.refusal is not None
        return pb.LocalTransferResponse(applied=False, refusal=_REFUSALS[outcome.refusal])


async def start_fake_shard(
    servicer: FakeLedgerServicer, *, tls: TlsSettings, verifier: TokenVerifier
) -> tuple[aio.Server, int]:
    server = aio.server(interceptors=[TokenAuthInterceptor(verifier, "ledger:post")])
    pb_grpc.add_LedgerServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    return server, port
