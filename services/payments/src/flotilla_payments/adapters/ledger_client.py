"""The ledger shards over gRPC (`flotilla.ledger.v1.Ledger`), as the coordinator calls them.

Each shard's instances are called through the kit's `FailoverCaller` (the least busy
instance first; one that does not answer is skipped and asked last for a while), with this
service's own token and a deadline on every call. Every call is idempotent per (transfer,
branch), so asking another instance is safe.

Errors: no answer from any instance of the shard means the outcome of the call is unknown
(`ParticipantUnavailable`); an answer the protocol forbids (FAILED_PRECONDITION,
INVALID_ARGUMENT, an unset vote, ...) is a `ProtocolViolation`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol, TypeVar

from flotilla_kit.failover import FailoverCaller, NoInstanceAnswered, RpcViolation
from flotilla_kit.rpc import ChannelFactory, Channels, bearer, secure_channel
from flotilla_kit.settings import TlsSettings
from flotilla_payments.domain import Branch, Refusal, Vote
from flotilla_payments.service_layer.ports import (
    BranchCall,
    LocalOutcome,
    LocalTransferCall,
    ParticipantUnavailable,
    PrepareCall,
    ProtocolViolation,
)
from flotilla_proto.ledger.v1 import ledger_pb2 as pb
from flotilla_proto.ledger.v1 import ledger_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from flotilla_proto.ledger.v1.ledger_pb2_grpc import LedgerAsyncStub

__all__ = ["GrpcLedgerClient", "TokenSource"]

_R = TypeVar("_R")
Metadata = tuple[tuple[str, str], ...]

_REFUSALS: dict[int, Refusal] = {
    pb.INSUFFICIENT_FUNDS: Refusal.INSUFFICIENT_FUNDS,
    pb.ACCOUNT_NOT_FOUND: Refusal.ACCOUNT_NOT_FOUND,
    pb.CURRENCY_MISMATCH: Refusal.CURRENCY_MISMATCH,
    pb.ALREADY_ABORTED: Refusal.ALREADY_ABORTED,
    pb.WRONG_SHARD: Refusal.WRONG_SHARD,
    pb.INVALID: Refusal.INVALID,
}
_DIRECTIONS = {Branch.DEBIT: pb.DEBIT, Branch.CREDIT: pb.CREDIT}


class TokenSource(Protocol):
    """This service's own access token (the kit's `ServiceTokenProvider`)."""

    async def token(self) -> str: ...


CallObserver = Callable[[str, str], None]


class GrpcLedgerClient:
    def __init__(
        self,
        shards: Mapping[int, Sequence[str]],
        *,
        tls: TlsSettings,
        tokens: TokenSource,
        timeout_s: float,
        on_call: CallObserver | None = None,
        channel_factory: ChannelFactory = secure_channel,
    ) -> None:
        self._targets = {shard: list(targets) for shard, targets in shards.items()}
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._on_call = on_call or (lambda _method, _result: None)
        self._caller: FailoverCaller[LedgerAsyncStub] = FailoverCaller(
            Channels(tls, pb_grpc.LedgerStub, channel_factory=channel_factory)
        )

    async def close(self) -> None:
        await self._caller.close()

    async def _call(
        self,
        shard: int,
        method: str,
        invoke: Callable[[LedgerAsyncStub, Metadata], Awaitable[_R]],
    ) -> _R:
        targets = self._targets.get(shard)
        if not targets:
            self._on_call(method, "unavailable")
            raise ParticipantUnavailable(f"no instances are configured for shard {shard}")
        try:
            metadata = bearer(await self._tokens.token())
        except Exception as exc:  # the auth service is down: nothing was sent
            self._on_call(method, "unavailable")
            raise ParticipantUnavailable(f"no service token: {exc}") from exc
        try:
            response = await self._caller.call(targets, lambda stub: invoke(stub, metadata))
        except RpcViolation as exc:
            self._on_call(method, "protocol_violation")
            raise ProtocolViolation(f"{method} on {exc}") from exc
        except NoInstanceAnswered as exc:
            self._on_call(method, "unavailable")
            raise ParticipantUnavailable(f"{method} on shard {shard}: {exc}") from exc
        self._on_call(method, "ok")
        return response

    async def prepare(self, call: PrepareCall) -> Vote:
        request = pb.PrepareRequest(
            transfer_id=call.transfer_id,
            branch_id=call.branch.value,
            account_id=call.account_id,
            direction=_DIRECTIONS[call.branch],
            amount_minor=call.amount_minor,
            currency=call.currency,
            required_owner=call.required_owner,
            reference=call.reference,
        )
        response = await self._call(
            call.shard,
            "Prepare",
            lambda stub, md: stub.Prepare(request, timeout=self._timeout_s, metadata=md),
        )
        if response.vote == pb.YES:
            return Vote.yes()
        if response.vote == pb.NO:
            return Vote.no(_REFUSALS.get(response.refusal, Refusal.PROTOCOL_VIOLATION))
        raise ProtocolViolation(f"Prepare answered no vote ({response.vote})")

    async def commit(self, call: BranchCall) -> None:
        request = pb.BranchRef(transfer_id=call.transfer_id, branch_id=call.branch.value)
        state = await self._call(
            call.shard,
            "Commit",
            lambda stub, md: stub.Commit(request, timeout=self._timeout_s, metadata=md),
        )
        if state.status != pb.COMMITTED:
            raise ProtocolViolation(f"Commit answered {pb.BranchStatus.Name(state.status)}")

    async def abort(self, call: BranchCall) -> None:
        request = pb.BranchRef(transfer_id=call.transfer_id, branch_id=call.branch.value)
        state = await self._call(
            call.shard,
            "Abort",
            lambda stub, md: stub.Abort(request, timeout=self._timeout_s, metadata=md),
        )
        if state.status != pb.ABORTED:
            raise ProtocolViolation(f"Abort answered {pb.BranchStatus.Name(state.status)}")

    async def transfer(self, call: LocalTransferCall) -> LocalOutcome:
        request = pb.LocalTransferRequest(
            transfer_id=call.transfer_id,
            from_account=call.from_account,
            to_account=call.to_account,
            amount_minor=call.amount_minor,
            currency=call.currency,
            required_owner=call.required_owner,
            reference=call.reference,
        )
        response = await self._call(
            call.shard,
            "Transfer",
            lambda stub, md: stub.Transfer(request, timeout=self._timeout_s, metadata=md),
        )
        if response.applied:
            return LocalOutcome(applied=True)
        return LocalOutcome(
            applied=False, refusal=_REFUSALS.get(response.refusal, Refusal.PROTOCOL_VIOLATION)
        )
