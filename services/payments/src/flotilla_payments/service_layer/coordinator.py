"""The two-phase-commit coordinator: takes a transfer request, writes it durably, and
drives it to COMMITTED or ABORTED.

Rules that make it safe to crash anywhere and to run on several instances at once:

- PREPARING is durable before any participant hears of the transfer.
- Every state change is a compare-and-set on the stored state, committed before anyone
  is told of it; whoever loses a compare-and-set follows the state that won.
- Presumed abort: a cross-shard transfer still undecided after `prepare_timeout_s` is
  aborted; a participant asking about a transfer we never heard of is told "abort".
- Phase two is retried (exponential backoff, full jitter) until both participants have
  acknowledged; every participant call is idempotent, so repeating one is harmless.
- One driver at a time, by lease: the instance that wrote the transfer holds it while it
  drives; recovery (`recovery.py`) takes over transfers whose lease has expired.
"""

from __future__ import annotations

import asyncio
import enum
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from flotilla_kit.clock import Clock, Sleep
from flotilla_kit.logs import get_logger
from flotilla_kit.recovery import Drives, Leases
from flotilla_kit.resource_keys import DuplicateIdempotencyKey
from flotilla_kit.sharding import shard_of
from flotilla_kit.tokens import Principal
from flotilla_payments.domain import (
    CURRENCIES,
    MAX_AMOUNT_MINOR,
    Branch,
    Decision,
    Refusal,
    Transfer,
    TransferPath,
    TransferState,
    Vote,
    decide,
    new_transfer,
)
from flotilla_payments.domain.events import committed_route, transfer_committed
from flotilla_payments.service_layer.errors import (
    AccountNotFound,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidTransfer,
    NotAllowed,
    SameAccount,
)
from flotilla_payments.service_layer.faults import FaultPoint
from flotilla_payments.service_layer.ports import (
    BranchCall,
    Faults,
    LedgerClient,
    LocalTransferCall,
    ParticipantUnavailable,
    PaymentsUnitOfWork,
    PrepareCall,
    ProtocolViolation,
    TransferMetrics,
    UnitOfWorkFactory,
)

__all__ = [
    "OUTCOME_READ",
    "TRANSFER",
    "TRANSFER_ANY",
    "Coordinator",
    "CoordinatorConfig",
    "Outcome",
    "Submission",
    "TransferRequest",
    "outcome_label",
]

TRANSFER = "payments:transfer"
# Move money out of accounts that are not the caller's own (no role has it today).
TRANSFER_ANY = "payments:transfer:any"
TRANSFER_ON_BEHALF = "payments:transfer:on-behalf"
OUTCOME_READ = "payments:outcome:read"

_log = get_logger("flotilla.payments.coordinator")


@dataclass(frozen=True, slots=True)
class CoordinatorConfig:
    instance_id: str  # the lease owner
    shards: frozenset[int]  # the ledger shards we can reach
    answer_within_s: float = 5.0
    prepare_timeout_s: float = 10.0
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0
    lease_s: float = 10.0


@dataclass(frozen=True, slots=True)
class TransferRequest:
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    reference: str
    # A service (the checkout saga) moving the money of the customer named here: the
    # source account must be theirs, and the transfer is theirs to read.
    on_behalf_of: str | None = None


@dataclass(frozen=True, slots=True)
class Submission:
    transfer: Transfer  # as it stands when the caller is answered
    replayed: bool  # an earlier request with the same Idempotency-Key created it


class Outcome(enum.StrEnum):
    """What a participant in doubt is told about a transfer."""

    COMMIT = "commit"
    ABORT = "abort"
    PENDING = "pending"


def outcome_label(transfer: Transfer) -> str:
    """committed, refused (a participant said no about the money) or aborted (technical)."""
    if transfer.state is TransferState.COMMITTED:
        return "committed"
    if transfer.refusal is not None and transfer.refusal.is_business:
        return "refused"
    return "aborted"


_MAX_ACCOUNT_ID = 64  # as the ledger stores them


def _shard_of_customer_account(account_id: str) -> int | None:
    # Only customer accounts take part in transfers; the bank's own (`sys_...`) never do.
    if not account_id.startswith("acc_") or len(account_id) > _MAX_ACCOUNT_ID:
        return None
    return shard_of(account_id)


class Coordinator:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        ledger: LedgerClient,
        clock: Clock,
        faults: Faults,
        metrics: TransferMetrics,
        config: CoordinatorConfig,
        draw: Callable[[], float] = random.random,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._uow = uow
        self._ledger = ledger
        self._clock = clock
        self._faults = faults
        self._metrics = metrics
        self._config = config
        self._leases: Leases[PaymentsUnitOfWork, uuid.UUID, Transfer] = Leases(
            uow=uow, rows=lambda uow: uow.transfers, attempts=lambda t: t.attempts,
            id_field="transfer_id", terms=config, clock=clock, sleep=sleep, draw=draw,
        )  # fmt: skip
        self._drives: Drives[Transfer] = Drives()

    @property
    def config(self) -> CoordinatorConfig:
        return self._config

    @property
    def leases(self) -> Leases[PaymentsUnitOfWork, uuid.UUID, Transfer]:
        return self._leases

    # -- the client's request ------------------------------------------------------------

    async def submit(
        self,
        *,
        principal: Principal,
        request: TransferRequest,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> Submission:
        """Write the transfer as PREPARING (once per Idempotency-Key), start driving it, and
        wait up to `answer_within_s` for an outcome the caller can be told."""
        if not principal.can(TRANSFER):
            raise NotAllowed(TRANSFER)
        if request.on_behalf_of is not None and not principal.can(TRANSFER_ON_BEHALF):
            raise NotAllowed(TRANSFER_ON_BEHALF)
        if idempotency_key is None:
            raise IdempotencyKeyRequired()
        self._validate(request)
        from_shard, to_shard = self._route(request)
        owner = request.on_behalf_of or principal.subject
        transfer = new_transfer(
            from_account=request.from_account,
            to_account=request.to_account,
            amount_minor=request.amount_minor,
            currency=request.currency,
            reference=request.reference,
            initiator=owner,
            required_owner=(
                None if principal.can(TRANSFER_ANY) and request.on_behalf_of is None else owner
            ),
            requested_by=principal.subject if request.on_behalf_of is not None else None,
            same_shard=from_shard == to_shard,
            now=self._clock(),
            lease_owner=self._config.instance_id,
            lease_s=self._config.lease_s,
        )
        earlier = await self._record(
            transfer, requester=principal.subject, scope=f"{principal.subject}:transfer",
            key=idempotency_key, fingerprint=fingerprint,
        )  # fmt: skip
        if earlier is not None:
            return Submission(earlier, replayed=True)
        self._faults.hit(FaultPoint.AFTER_PREPARING_RECORD)
        answer: asyncio.Future[Transfer] = asyncio.get_running_loop().create_future()
        task = self._launch(transfer, answer)
        return Submission(await self._await_answer(transfer, task, answer), replayed=False)

    def _validate(self, request: TransferRequest) -> None:
        amount = request.amount_minor
        if isinstance(amount, bool) or not 0 < amount <= MAX_AMOUNT_MINOR:
            raise InvalidTransfer(f"the amount must be between 1 and {MAX_AMOUNT_MINOR}")
        if request.currency not in CURRENCIES:
            raise InvalidTransfer(f"unknown currency {request.currency!r}")
        if len(request.reference) > 140:
            raise InvalidTransfer("the reference is longer than 140 characters")

    def _route(self, request: TransferRequest) -> tuple[int, int]:
        if request.from_account == request.to_account:
            raise SameAccount()
        shards: list[int] = []
        for account_id in (request.from_account, request.to_account):
            shard = _shard_of_customer_account(account_id)
            if shard is None or shard not in self._config.shards:
                raise AccountNotFound(account_id)
            shards.append(shard)
        return shards[0], shards[1]

    async def _record(
        self, transfer: Transfer, *, requester: str, scope: str, key: str, fingerprint: str
    ) -> Transfer | None:
        """Store PREPARING, its Idempotency-Key and the audit record in one transaction;
        or return the transfer an earlier request with this key created."""
        for attempt in range(2):
            try:
                async with self._uow() as uow:
                    stored = await uow.idempotency.find(scope, key)
                    if stored is not None:
                        if stored.fingerprint != fingerprint:
                            raise IdempotencyKeyReused()
                        earlier = await uow.transfers.get(stored.resource_id)
                        if earlier is None:  # pragma: no cover - written together
                            raise RuntimeError(f"key {key!r} names a missing transfer")
                        return earlier
                    await uow.transfers.add(transfer)
                    await uow.idempotency.remember(
                        scope, key, fingerprint=fingerprint, resource_id=transfer.id,
                        at=transfer.created_at,
                    )  # fmt: skip
                    await uow.audit.record(
                        actor=requester,
                        action="transfer.requested",
                        target=str(transfer.id),
                        details={
                            **(
                                {"on_behalf_of": transfer.initiator}
                                if requester != transfer.initiator
                                else {}
                            ),
                            "from_account": transfer.from_account,
                            "to_account": transfer.to_account,
                            "amount_minor": transfer.amount_minor,
                            "currency": transfer.currency,
                            "reference": transfer.reference,
                            "path": transfer.path.value,
                        },
                    )
                    await uow.commit()
                    return None
            except DuplicateIdempotencyKey:
                # A concurrent request with the same key won; the next round replays it.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(
        self, transfer: Transfer, answer: asyncio.Future[Transfer] | None = None
    ) -> asyncio.Task[Transfer | None]:
        return self._drives.start(self._drive(transfer, answer), name=f"transfer-{transfer.id}")

    async def _await_answer(
        self,
        transfer: Transfer,
        task: asyncio.Task[Transfer | None],
        answer: asyncio.Future[Transfer],
    ) -> Transfer:
        # Not cancelled on timeout, nor when the client goes away: the drive goes on.
        waiting: list[asyncio.Future[Any]] = [task, answer]
        done, _ = await asyncio.wait(
            waiting,
            timeout=self._config.answer_within_s,
            return_when=asyncio.FIRST_COMPLETED,
        )
        if answer in done:
            return answer.result()
        if task in done:
            task.result()  # a drive that died unexpectedly has logged why
        return await self._reload(transfer)

    async def settle(self) -> None:
        """Wait until every transfer this process drives has stopped (tests, shutdown)."""
        await self._drives.settle()

    async def close(self) -> None:
        """Stop driving; recovery (here after a restart, or on another instance) resumes."""
        await self._drives.close()

    # -- driving a transfer to its end ---------------------------------------------------

    async def _drive(
        self, transfer: Transfer, answer: asyncio.Future[Transfer] | None
    ) -> Transfer | None:
        """Hold the lease and retry until the transfer is final (or the lease is lost),
        answering the caller as soon as it can be told."""
        acked: set[Branch] = set()

        async def step(transfer: Transfer) -> Transfer:
            return await self.step(transfer, acked)

        def stepped(transfer: Transfer) -> None:
            # A decided abort is an answer: no money will move, whatever phase two does.
            decided = transfer.is_final or transfer.state is TransferState.ABORTING
            if answer is not None and decided and not answer.done():
                answer.set_result(transfer)

        return await self._leases.drive(
            transfer, step, log=_log, failed="driving a transfer failed", stepped=stepped
        )

    async def step(self, transfer: Transfer, acked: set[Branch] | None = None) -> Transfer:
        """Advance as far as possible now, without waiting to retry. Returns the transfer
        final, or where it stopped because a participant did not answer."""
        acked = set() if acked is None else acked
        while not transfer.is_final:
            if transfer.state is TransferState.PREPARING:
                if transfer.path is TransferPath.LOCAL:
                    settled = await self._transfer_locally(transfer)
                    if settled is None:
                        return transfer
                    transfer = settled
                elif transfer.prepare_expired(self._clock(), self._config.prepare_timeout_s):
                    transfer, _ = await self._decide(
                        transfer, Decision(commit=False, refusal=Refusal.PREPARE_TIMEOUT)
                    )
                else:
                    decision = await self._phase_one(transfer)
                    self._faults.hit(FaultPoint.AFTER_PREPARE)
                    transfer, stored = await self._decide(transfer, decision)
                    if stored:
                        self._faults.hit(FaultPoint.AFTER_DECISION)
                continue
            if not await self._phase_two(transfer, acked):
                return transfer
            self._faults.hit(FaultPoint.BEFORE_DONE)
            transfer = await self._finish(transfer)
        return transfer

    def _shard(self, transfer: Transfer, branch: Branch) -> int:
        account = transfer.from_account if branch is Branch.DEBIT else transfer.to_account
        shard = shard_of(account)
        if shard is None:  # pragma: no cover - checked before the transfer was written
            raise ValueError(f"account {account!r} names no shard")
        return shard

    async def _transfer_locally(self, transfer: Transfer) -> Transfer | None:
        call = LocalTransferCall(
            shard=self._shard(transfer, Branch.DEBIT),
            transfer_id=str(transfer.id),
            from_account=transfer.from_account,
            to_account=transfer.to_account,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            required_owner=transfer.required_owner or "",
            reference=transfer.reference,
        )
        try:
            result = await self._ledger.transfer(call)
        except ParticipantUnavailable:
            return None  # applied or not, we cannot tell: ask again (idempotent) later
        except ProtocolViolation as exc:
            _log.error("ledger protocol violation", transfer_id=call.transfer_id, error=str(exc))
            return None
        self._faults.hit(FaultPoint.BEFORE_DONE)
        now = self._clock()
        settled = transfer.settle(applied=result.applied, refusal=result.refusal, at=now)
        final, _ = await self._store_final(transfer, settled)
        return final

    async def _phase_one(self, transfer: Transfer) -> Decision:
        started = self._clock()
        debit = PrepareCall(
            shard=self._shard(transfer, Branch.DEBIT),
            transfer_id=str(transfer.id),
            branch=Branch.DEBIT,
            account_id=transfer.from_account,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            required_owner=transfer.required_owner or "",
            reference=transfer.reference,
        )
        credit = replace(
            debit,
            shard=self._shard(transfer, Branch.CREDIT),
            branch=Branch.CREDIT,
            account_id=transfer.to_account,
            required_owner="",  # anyone may receive money
        )
        debit_vote, credit_vote = await asyncio.gather(self._vote(debit), self._vote(credit))
        self._metrics.prepare_took((self._clock() - started).total_seconds())
        return decide(debit_vote, credit_vote)

    async def _vote(self, call: PrepareCall) -> Vote:
        try:
            return await self._ledger.prepare(call)
        except ParticipantUnavailable:
            return Vote.unknown()
        except ProtocolViolation as exc:
            _log.error(
                "ledger protocol violation in prepare",
                transfer_id=call.transfer_id, branch=call.branch.value, error=str(exc),
            )  # fmt: skip
            return Vote.no(Refusal.PROTOCOL_VIOLATION)

    async def _decide(self, transfer: Transfer, decision: Decision) -> tuple[Transfer, bool]:
        """Compare-and-set PREPARING -> COMMITTING | ABORTING. Returns the transfer as it
        now stands and whether our decision is the one stored."""
        now = self._clock()
        decided = transfer.decide(decision, at=now)
        async with self._uow() as uow:
            stored = await uow.transfers.save_transition(decided, expected=transfer.state)
            if stored:
                await uow.commit()
        if not stored:
            return await self._reload(transfer), False
        self._metrics.decision_took(transfer.path, (now - transfer.created_at).total_seconds())
        return decided, True

    async def _phase_two(self, transfer: Transfer, acked: set[Branch]) -> bool:
        """Tell both participants the decision, in parallel; True once both acknowledged.
        `acked` remembers who already did, across retries."""
        commit = transfer.state is TransferState.COMMITTING

        async def tell(branch: Branch) -> tuple[Branch, bool]:
            call = BranchCall(
                shard=self._shard(transfer, branch), transfer_id=str(transfer.id), branch=branch
            )
            try:
                if commit:
                    await self._ledger.commit(call)
                else:
                    await self._ledger.abort(call)
            except ParticipantUnavailable:
                return branch, False
            except ProtocolViolation as exc:
                _log.error(
                    "ledger protocol violation in phase two",
                    transfer_id=call.transfer_id, branch=branch.value, error=str(exc),
                )  # fmt: skip
                return branch, False
            return branch, True

        tasks = [asyncio.create_task(tell(b)) for b in Branch if b not in acked]
        try:
            for next_answer in asyncio.as_completed(tasks):
                branch, acknowledged = await next_answer
                if acknowledged:
                    acked.add(branch)
                    if commit and len(acked) == 1:
                        self._faults.hit(FaultPoint.AFTER_FIRST_COMMIT)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        return len(acked) == len(Branch)

    async def _finish(self, transfer: Transfer) -> Transfer:
        finished = transfer.finish(at=self._clock())
        final, stored = await self._store_final(transfer, finished)
        if stored and transfer.decided_at is not None and final.completed_at is not None:
            self._metrics.phase_two_took((final.completed_at - transfer.decided_at).total_seconds())
        return final

    async def _store_final(self, transfer: Transfer, final: Transfer) -> tuple[Transfer, bool]:
        """Compare-and-set to COMMITTED / ABORTED, with its audit record and, when
        committed, the `transfer_committed` event: one per transfer, since only the
        winner of the compare-and-set writes it."""
        async with self._uow() as uow:
            stored = await uow.transfers.save_transition(final, expected=transfer.state)
            if stored:
                committed = final.state is TransferState.COMMITTED
                if committed:
                    event, data = transfer_committed(final)
                    await uow.outbox.add(
                        event, subject=str(final.id), data=data, route=committed_route(final)
                    )
                await uow.audit.record(
                    actor=f"system:payments-{self._config.instance_id}",
                    action="transfer.committed" if committed else "transfer.aborted",
                    target=str(final.id),
                    details={
                        "initiator": final.initiator,
                        "path": final.path.value,
                        "amount_minor": final.amount_minor,
                        "currency": final.currency,
                        "refusal": final.refusal.value if final.refusal else None,
                    },
                    outcome="success" if committed else "failure",
                )
                await uow.commit()
        if not stored:
            return await self._reload(transfer), False
        self._metrics.transfer_finished(final.path, outcome_label(final))
        if final.path is TransferPath.LOCAL:
            self._metrics.decision_took(
                final.path, (self._clock() - final.created_at).total_seconds()
            )
        return final, True

    async def _reload(self, transfer: Transfer) -> Transfer:
        async with self._uow(write=False) as uow:
            current = await uow.transfers.get(transfer.id)
        if current is None:  # pragma: no cover - transfers are never deleted
            raise RuntimeError(f"transfer {transfer.id} disappeared")
        return current

    # -- a participant in doubt asks -----------------------------------------------------

    async def outcome(self, *, principal: Principal, transfer_id: str) -> Outcome:
        if not principal.can(OUTCOME_READ):
            raise NotAllowed(OUTCOME_READ)
        try:
            key = uuid.UUID(transfer_id)
        except ValueError:
            return Outcome.ABORT  # never ours: presumed abort
        async with self._uow(write=False) as uow:
            transfer = await uow.transfers.get(key)
        if transfer is None:
            return Outcome.ABORT
        for _ in range(2):
            match transfer.state:
                case TransferState.COMMITTING | TransferState.COMMITTED:
                    return Outcome.COMMIT
                case TransferState.ABORTING | TransferState.ABORTED:
                    return Outcome.ABORT
            # PREPARING. A local transfer has no branch anyone could be in doubt about, and
            # only the shard's own answer settles it: never presume its abort.
            if transfer.path is TransferPath.LOCAL or not transfer.prepare_expired(
                self._clock(), self._config.prepare_timeout_s
            ):
                return Outcome.PENDING
            transfer, stored = await self._decide(
                transfer, Decision(commit=False, refusal=Refusal.PREPARE_TIMEOUT)
            )
            if stored:
                self._metrics.recovery_action("outcome_presumed_abort")
        return Outcome.PENDING  # pragma: no cover - the second round always answers
