"""This shard as a participant in two-phase commit, and its same-shard transfers.

The rules are dtm's branch barrier, made durable in the shard's database:

| call    | branch missing      | PREPARED        | COMMITTED       | ABORTED            |
|---------|---------------------|-----------------|-----------------|--------------------|
| Prepare | vote (DEBIT: hold)  | YES (held once) | YES             | NO (1)             |
| Commit  | coordinator bug     | apply           | COMMITTED       | coordinator bug    |
| Abort   | tombstone (ABORTED) | release         | coordinator bug | ABORTED            |

(1) with the branch's own refusal when it voted NO, else ALREADY_ABORTED (a tombstone, or
a branch the coordinator aborted). A coordinator bug is a call no correct coordinator
makes: refused (FAILED_PRECONDITION over gRPC) and logged as an error.

Each call is one transaction. Concurrent calls for one branch are ordered by the branch
row: the first insert wins and a second one waits for it, then finds the branch; Commit
and Abort lock the row before they decide. The database, not this code, has the last word
on money: a hold or a posting that would take a customer's available balance below zero
is refused by a CHECK constraint, whatever this code read before.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, replace

from flotilla_accounts.domain import (
    CURRENCIES,
    MAX_AMOUNT_MINOR,
    Account,
    AccountKind,
    AvailableWouldGoNegative,
    Branch,
    BranchStatus,
    BranchTerms,
    Direction,
    Entry,
    LocalTransfer,
    Posting,
    Refusal,
    Vote,
    settlement_account_id,
)
from flotilla_accounts.service_layer.errors import (
    BranchConflict,
    BranchNotAbortable,
    BranchNotCommittable,
    InvalidBranchRef,
    TransferConflict,
)
from flotilla_accounts.service_layer.ports import (
    ParticipantMetrics,
    ParticipantUnitOfWork,
    UnitOfWorkFactory,
)
from flotilla_kit.clock import Clock, utc_now
from flotilla_kit.logs import get_logger
from flotilla_kit.sharding import shard_of

__all__ = ["Participant", "PrepareCall", "TransferCall"]

_log = get_logger("flotilla.accounts.participant")

_TRANSFER_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")
_BRANCH_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,31}")
_ID_LENGTH = 64
_REFERENCE_LENGTH = 140


@dataclass(frozen=True, slots=True)
class PrepareCall:
    transfer_id: str
    branch_id: str
    account_id: str
    direction: Direction | None  # None: the caller sent none (or one we do not know)
    amount_minor: int
    currency: str
    required_owner: str | None = None
    reference: str = ""


@dataclass(frozen=True, slots=True)
class TransferCall:
    transfer_id: str
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    required_owner: str | None = None
    reference: str = ""


def _ref_problem(transfer_id: str, branch_id: str) -> str | None:
    if not _TRANSFER_ID.fullmatch(transfer_id):
        return "transfer_id must be 1 to 64 letters, digits or . _ : -"
    if not _BRANCH_ID.fullmatch(branch_id):
        return "branch_id must be 1 to 32 letters, digits or . _ : -"
    return None


def _terms_problem(
    *, account_ids: tuple[str, ...], amount_minor: int, currency: str, reference: str, owner: str
) -> str | None:
    if any(not 1 <= len(account_id) <= _ID_LENGTH for account_id in account_ids):
        return "account ids must be 1 to 64 characters"
    if not 0 < amount_minor <= MAX_AMOUNT_MINOR:
        return f"amount_minor must be between 1 and {MAX_AMOUNT_MINOR}"
    if currency not in CURRENCIES:
        return f"unknown currency {currency!r}"
    if len(reference) > _REFERENCE_LENGTH:
        return f"reference must be at most {_REFERENCE_LENGTH} characters"
    if len(owner) > _ID_LENGTH:
        return "required_owner must be at most 64 characters"
    return None


def _posting_id() -> str:
    return f"pst_{uuid.uuid4().hex}"


def _usable(account: Account | None, required_owner: str | None) -> Account | None:
    """The account if a transfer may touch it; someone else's looks like a missing one."""
    if account is None or account.kind is not AccountKind.CUSTOMER:
        return None
    if required_owner and account.owner_id != required_owner:
        return None
    return account


class Participant:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        shard: int,
        metrics: ParticipantMetrics,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self.shard = shard
        self._metrics = metrics
        self._clock = clock
        # Settlement accounts known to exist (never deleted): not inserted-if-absent again.
        self._settlement_accounts: set[str] = set()

    # Phase one ----------------------------------------------------------------------

    async def prepare(self, call: PrepareCall) -> Vote:
        vote = await self._prepare(call)
        self._metrics.prepared(vote)
        return vote

    async def _prepare(self, call: PrepareCall) -> Vote:
        problem = _ref_problem(call.transfer_id, call.branch_id) or _terms_problem(
            account_ids=(call.account_id,),
            amount_minor=call.amount_minor,
            currency=call.currency,
            reference=call.reference,
            owner=call.required_owner or "",
        )
        if problem is None and call.direction is None:
            problem = "direction must be DEBIT or CREDIT"
        # Malformed or misrouted calls are answered without writing anything: the answer
        # depends on the request alone, so asking again gets it again.
        if problem is not None or call.direction is None:
            return Vote(Refusal.INVALID, problem or "")
        if shard_of(call.account_id) != self.shard:
            return Vote(Refusal.WRONG_SHARD, f"the account does not live on shard {self.shard}")
        terms = BranchTerms(
            account_id=call.account_id,
            direction=call.direction,
            amount_minor=call.amount_minor,
            currency=call.currency,
            reference=call.reference,
        )
        now = self._clock()
        fresh = Branch(call.transfer_id, call.branch_id, BranchStatus.PREPARED, terms, now, now)
        async with self._uow() as uow:
            if not await uow.branches.add(fresh):
                known = await uow.branches.get(call.transfer_id, call.branch_id)
                assert known is not None  # an insert conflicted with it
                if known.terms is not None and not known.terms.same_as(terms):
                    raise self._bug(BranchConflict(call.transfer_id, call.branch_id))
                return known.vote()
            vote = await self._vote(uow, terms, call.required_owner)
            if not vote.yes:
                # A NO is this participant aborting its branch on its own (allowed in 2PC):
                # kept, so the coordinator asking again hears the same NO.
                await uow.branches.save(
                    replace(fresh, status=BranchStatus.ABORTED, refusal=vote.refusal)
                )
            await uow.commit()
            return vote

    async def _vote(
        self, uow: ParticipantUnitOfWork, terms: BranchTerms, required_owner: str | None
    ) -> Vote:
        account = _usable(await uow.ledger.get(terms.account_id), required_owner)
        if account is None:
            return Vote(Refusal.ACCOUNT_NOT_FOUND, "no such account")
        if account.currency != terms.currency:
            return Vote(Refusal.CURRENCY_MISMATCH, f"the account holds {account.currency}")
        if terms.direction is Direction.DEBIT and (
            # The read may be stale under concurrency; the hold itself is what decides.
            account.available_minor < terms.amount_minor
            or not await uow.ledger.hold(account.id, terms.amount_minor)
        ):
            return Vote(Refusal.INSUFFICIENT_FUNDS, "the available balance is too low")
        return Vote()

    # Phase two ----------------------------------------------------------------------

    async def commit(self, *, transfer_id: str, branch_id: str, actor: str) -> BranchStatus:
        self._check_ref(transfer_id, branch_id)
        async with self._uow() as uow:
            branch = await uow.branches.get(transfer_id, branch_id, lock=True)
            if branch is None or branch.status is BranchStatus.ABORTED:
                self._metrics.committed("refused")
                state = "unknown" if branch is None else "aborted"
                raise self._bug(BranchNotCommittable(transfer_id, branch_id, state))
            if branch.status is BranchStatus.COMMITTED:
                self._metrics.committed("repeated")
                return BranchStatus.COMMITTED
            settlement = await self._apply(uow, branch, actor)
            await uow.commit()
        self._settlement_accounts.add(settlement)
        self._metrics.committed("applied")
        return BranchStatus.COMMITTED

    async def _apply(self, uow: ParticipantUnitOfWork, branch: Branch, actor: str) -> str:
        """Apply a prepared branch; the settlement account it posted against."""
        terms = branch.terms
        assert terms is not None  # only a tombstone has none, and it is ABORTED
        amount, currency = terms.amount_minor, terms.currency
        settlement = settlement_account_id(self.shard, currency)
        if settlement not in self._settlement_accounts:
            await uow.ledger.ensure_system_account(settlement, currency, f"settlement {currency}")
        if terms.direction is Direction.DEBIT:
            # Release first: the posting then takes the money the hold kept available.
            await uow.ledger.release(terms.account_id, amount)
            entries = (
                Entry(terms.account_id, -amount, currency),
                Entry(settlement, amount, currency),
            )
        else:
            entries = (
                Entry(settlement, -amount, currency),
                Entry(terms.account_id, amount, currency),
            )
        posting = Posting(
            id=_posting_id(),
            kind=f"transfer.{terms.direction.value}",
            reference=terms.reference,
            entries=entries,
        )
        # The hold made sure of the money: a refusal here is a bug, and the commit fails.
        await uow.ledger.post(posting, then_go_on=False)
        now = self._clock()
        await uow.branches.save(
            replace(branch, status=BranchStatus.COMMITTED, posting_id=posting.id, updated_at=now)
        )
        await uow.audit.record(
            actor=actor,
            action="branch.committed",
            target=terms.account_id,
            details={
                "transfer_id": branch.transfer_id,
                "branch_id": branch.branch_id,
                "direction": terms.direction.value,
                "amount_minor": amount,
                "currency": currency,
                "posting_id": posting.id,
            },
        )
        return settlement

    async def abort(self, *, transfer_id: str, branch_id: str, actor: str) -> BranchStatus:
        self._check_ref(transfer_id, branch_id)
        async with self._uow() as uow:
            branch = await uow.branches.get(transfer_id, branch_id, lock=True)
            if branch is None:
                now = self._clock()
                tombstone = Branch(transfer_id, branch_id, BranchStatus.ABORTED, None, now, now)
                if await uow.branches.add(tombstone):
                    await self._audit_abort(uow, tombstone, actor)
                    await uow.commit()
                    self._metrics.aborted("tombstone")
                    return BranchStatus.ABORTED
                # A Prepare inserted it meanwhile (and has committed): decide on that.
                branch = await uow.branches.get(transfer_id, branch_id, lock=True)
                assert branch is not None
            if branch.status is BranchStatus.COMMITTED:
                self._metrics.aborted("refused")
                raise self._bug(BranchNotAbortable(transfer_id, branch_id))
            if branch.status is BranchStatus.ABORTED:
                self._metrics.aborted("repeated")
                return BranchStatus.ABORTED
            terms = branch.terms
            assert terms is not None
            if terms.direction is Direction.DEBIT:
                await uow.ledger.release(terms.account_id, terms.amount_minor)
            aborted = replace(branch, status=BranchStatus.ABORTED, updated_at=self._clock())
            await uow.branches.save(aborted)
            await self._audit_abort(uow, aborted, actor)
            await uow.commit()
        self._metrics.aborted("released")
        return BranchStatus.ABORTED

    @staticmethod
    async def _audit_abort(uow: ParticipantUnitOfWork, branch: Branch, actor: str) -> None:
        terms = branch.terms
        details: dict[str, object] = {
            "transfer_id": branch.transfer_id,
            "branch_id": branch.branch_id,
            "tombstone": terms is None,
        }
        if terms is not None:
            details |= {
                "direction": terms.direction.value,
                "amount_minor": terms.amount_minor,
                "currency": terms.currency,
            }
        await uow.audit.record(
            actor=actor,
            action="branch.aborted",
            target=terms.account_id if terms else f"{branch.transfer_id}/{branch.branch_id}",
            details=details,
        )

    async def branch(self, *, transfer_id: str, branch_id: str) -> Branch | None:
        self._check_ref(transfer_id, branch_id)
        async with self._uow(write=False) as uow:
            return await uow.branches.get(transfer_id, branch_id)

    # Recovery -----------------------------------------------------------------------

    async def in_doubt(self, older_than: dt.timedelta, *, limit: int) -> list[Branch]:
        """Branches PREPARED for longer than `older_than`, oldest first."""
        async with self._uow(write=False) as uow:
            return await uow.branches.prepared_before(self._clock() - older_than, limit=limit)

    async def count_in_doubt(self, older_than: dt.timedelta) -> int:
        async with self._uow(write=False) as uow:
            return await uow.branches.count_prepared_before(self._clock() - older_than)

    # Both sides on this shard -------------------------------------------------------

    async def transfer(self, call: TransferCall, *, actor: str) -> LocalTransfer:
        outcome, repeated = await self._transfer(call, actor)
        self._metrics.transferred(Vote(outcome.refusal, outcome.detail), repeated=repeated)
        return outcome

    async def _transfer(self, call: TransferCall, actor: str) -> tuple[LocalTransfer, bool]:
        now = self._clock()
        wanted = LocalTransfer(
            transfer_id=call.transfer_id,
            from_account=call.from_account,
            to_account=call.to_account,
            amount_minor=call.amount_minor,
            currency=call.currency,
            reference=call.reference,
            created_at=now,
        )
        problem = _ref_problem(call.transfer_id, "local") or _terms_problem(
            account_ids=(call.from_account, call.to_account),
            amount_minor=call.amount_minor,
            currency=call.currency,
            reference=call.reference,
            owner=call.required_owner or "",
        )
        if problem is None and call.from_account == call.to_account:
            problem = "from_account and to_account are the same"
        if problem is not None:
            return replace(wanted, refusal=Refusal.INVALID, detail=problem), False
        if {shard_of(call.from_account), shard_of(call.to_account)} != {self.shard}:
            detail = f"both accounts must live on shard {self.shard}"
            return replace(wanted, refusal=Refusal.WRONG_SHARD, detail=detail), False
        async with self._uow() as uow:
            if not await uow.local_transfers.add(wanted):
                known = await uow.local_transfers.get(call.transfer_id)
                assert known is not None
                if not known.same_as(wanted):
                    raise self._bug(TransferConflict(call.transfer_id))
                return known, True
            outcome = await self._move(uow, wanted, call.required_owner)
            await uow.local_transfers.save(outcome)
            details: dict[str, object] = {
                "transfer_id": outcome.transfer_id,
                "to_account": outcome.to_account,
                "amount_minor": outcome.amount_minor,
                "currency": outcome.currency,
                "on_behalf_of": call.required_owner or None,
            }
            if outcome.applied:
                details["posting_id"] = outcome.posting_id
            else:
                details["refusal"] = str(outcome.refusal)
            await uow.audit.record(
                actor=actor,
                action="transfer.applied" if outcome.applied else "transfer.refused",
                target=outcome.from_account,
                details=details,
            )
            await uow.commit()
        return outcome, False

    async def _move(
        self, uow: ParticipantUnitOfWork, wanted: LocalTransfer, required_owner: str | None
    ) -> LocalTransfer:
        source, target = await uow.ledger.get_both(wanted.from_account, wanted.to_account)
        source, target = _usable(source, required_owner), _usable(target, None)
        refusal: Refusal | None = None
        if source is None or target is None:
            refusal = Refusal.ACCOUNT_NOT_FOUND
            detail = "no such source account" if source is None else "no such target account"
        elif wanted.currency != source.currency or wanted.currency != target.currency:
            refusal, detail = Refusal.CURRENCY_MISMATCH, "both accounts must hold the currency"
        elif source.available_minor < wanted.amount_minor:
            refusal, detail = Refusal.INSUFFICIENT_FUNDS, "the available balance is too low"
        if refusal is not None:
            return replace(wanted, refusal=refusal, detail=detail)
        posting = Posting(
            id=_posting_id(),
            kind="transfer",
            reference=wanted.reference,
            entries=(
                Entry(wanted.from_account, -wanted.amount_minor, wanted.currency),
                Entry(wanted.to_account, wanted.amount_minor, wanted.currency),
            ),
        )
        try:
            await uow.ledger.post(posting)
        except AvailableWouldGoNegative:
            detail = "the available balance is too low"
            return replace(wanted, refusal=Refusal.INSUFFICIENT_FUNDS, detail=detail)
        return replace(wanted, posting_id=posting.id)

    # ---------------------------------------------------------------------------------

    @staticmethod
    def _check_ref(transfer_id: str, branch_id: str) -> None:
        problem = _ref_problem(transfer_id, branch_id)
        if problem is not None:
            raise InvalidBranchRef(problem)

    @staticmethod
    def _bug(error: Exception) -> Exception:
        # A correct coordinator never gets here; say so where an operator will look.
        _log.error("coordinator bug: call refused", error=str(error))
        return error
