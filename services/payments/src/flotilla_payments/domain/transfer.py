"""A transfer between two accounts and the coordinator's state machine for it.

    2pc:    PREPARING -> COMMITTING -> COMMITTED      (both participants voted YES)
            PREPARING -> ABORTING   -> ABORTED        (a NO, no answer, or too late)
    local:  PREPARING -> COMMITTED | ABORTED          (one shard applies or refuses it whole)

Presumed abort: until COMMITTING is durable, the answer to "how did it end?" is abort.
The decision is taken here, as a pure function of the votes; storing it with a
compare-and-set is the service layer's job.
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from dataclasses import dataclass, replace

__all__ = [
    "UNFINISHED_STATES",
    "Branch",
    "Decision",
    "IllegalTransition",
    "Refusal",
    "Transfer",
    "TransferPath",
    "TransferState",
    "Vote",
    "VoteKind",
    "decide",
    "is_legal_transition",
    "new_transfer",
]


class TransferState(enum.StrEnum):
    PREPARING = "preparing"
    COMMITTING = "committing"
    ABORTING = "aborting"
    COMMITTED = "committed"
    ABORTED = "aborted"

    @property
    def is_final(self) -> bool:
        return self in (TransferState.COMMITTED, TransferState.ABORTED)


UNFINISHED_STATES = frozenset(s for s in TransferState if not s.is_final)


class TransferPath(enum.StrEnum):
    LOCAL = "local"  # both accounts on one shard: one ledger call, no two-phase commit
    TWO_PHASE = "2pc"


class Refusal(enum.StrEnum):
    """Why a transfer was aborted. The first four are the ledger's answer about the money
    (the client can fix them); the others are technical (retry later, with a new key)."""

    INSUFFICIENT_FUNDS = "insufficient-funds"
    ACCOUNT_NOT_FOUND = "account-not-found"
    CURRENCY_MISMATCH = "currency-mismatch"
    INVALID = "invalid"
    PARTICIPANT_UNAVAILABLE = "participant-unavailable"
    PREPARE_TIMEOUT = "prepare-timeout"
    ALREADY_ABORTED = "already-aborted"
    WRONG_SHARD = "wrong-shard"
    PROTOCOL_VIOLATION = "protocol-violation"

    @property
    def is_business(self) -> bool:
        return self in _BUSINESS_REFUSALS


_BUSINESS_REFUSALS = frozenset(
    {
        Refusal.INSUFFICIENT_FUNDS,
        Refusal.ACCOUNT_NOT_FOUND,
        Refusal.CURRENCY_MISMATCH,
        Refusal.INVALID,
    }
)


class Branch(enum.StrEnum):
    """The two branches of a cross-shard transfer, as the participants name them."""

    DEBIT = "debit"
    CREDIT = "credit"


_S = TransferState
_TRANSITIONS: dict[TransferPath, dict[TransferState, frozenset[TransferState]]] = {
    TransferPath.TWO_PHASE: {
        _S.PREPARING: frozenset({_S.COMMITTING, _S.ABORTING}),
        _S.COMMITTING: frozenset({_S.COMMITTED}),
        _S.ABORTING: frozenset({_S.ABORTED}),
    },
    TransferPath.LOCAL: {
        _S.PREPARING: frozenset({_S.COMMITTED, _S.ABORTED}),
    },
}


def is_legal_transition(path: TransferPath, current: TransferState, new: TransferState) -> bool:
    return new in _TRANSITIONS[path].get(current, frozenset())


class IllegalTransition(ValueError):
    def __init__(self, path: TransferPath, current: TransferState, new: TransferState) -> None:
        super().__init__(f"a {path} transfer cannot go from {current} to {new}")


class VoteKind(enum.StrEnum):
    YES = "yes"
    NO = "no"
    UNKNOWN = "unknown"  # no answer in time: the participant may or may not have prepared


@dataclass(frozen=True, slots=True)
class Vote:
    kind: VoteKind
    refusal: Refusal | None = None

    @classmethod
    def yes(cls) -> Vote:
        return cls(VoteKind.YES)

    @classmethod
    def no(cls, refusal: Refusal) -> Vote:
        return cls(VoteKind.NO, refusal)

    @classmethod
    def unknown(cls) -> Vote:
        return cls(VoteKind.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Decision:
    commit: bool
    refusal: Refusal | None = None


def decide(debit: Vote, credit: Vote) -> Decision:
    """Commit only on two YES votes. Otherwise abort, giving the debit side's refusal first
    (it is the one the customer can act on: their own account), then the credit side's;
    a participant that did not answer makes it a technical abort."""
    if debit.kind is VoteKind.YES and credit.kind is VoteKind.YES:
        return Decision(commit=True)
    for vote in (debit, credit):
        if vote.kind is VoteKind.NO:
            return Decision(commit=False, refusal=vote.refusal or Refusal.PROTOCOL_VIOLATION)
    return Decision(commit=False, refusal=Refusal.PARTICIPANT_UNAVAILABLE)


@dataclass(frozen=True, slots=True)
class Transfer:
    id: uuid.UUID
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    reference: str
    initiator: str  # whose transfer it is: the token subject who asked, or on whose behalf
    # The subject the source account must belong to (the initiator), or None when the
    # initiator may move money from any account (`payments:transfer:any`).
    required_owner: str | None
    path: TransferPath
    state: TransferState
    created_at: dt.datetime
    next_attempt_at: dt.datetime
    refusal: Refusal | None = None
    decided_at: dt.datetime | None = None
    completed_at: dt.datetime | None = None
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None
    attempts: int = 0
    # The token subject that asked on the initiator's behalf (`service:orders`), or None
    # when the initiator asked.
    requested_by: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.amount_minor, bool) or self.amount_minor <= 0:
            raise ValueError("a transfer moves a positive amount")
        if self.from_account == self.to_account:
            raise ValueError("a transfer needs two different accounts")

    @property
    def is_final(self) -> bool:
        return self.state.is_final

    def prepare_expired(self, now: dt.datetime, timeout_s: float) -> bool:
        """A cross-shard transfer undecided for this long is aborted (presumed abort)."""
        return (
            self.path is TransferPath.TWO_PHASE
            and self.state is TransferState.PREPARING
            and (now - self.created_at).total_seconds() >= timeout_s
        )

    def _move(
        self, new: TransferState, *, at: dt.datetime, refusal: Refusal | None = None
    ) -> Transfer:
        if not is_legal_transition(self.path, self.state, new):
            raise IllegalTransition(self.path, self.state, new)
        final = new.is_final
        return replace(
            self,
            state=new,
            refusal=refusal if refusal is not None else self.refusal,
            decided_at=self.decided_at or at,
            completed_at=at if final else None,
            # A finished transfer needs no one to drive it any more.
            lease_owner=None if final else self.lease_owner,
            lease_until=None if final else self.lease_until,
        )

    def decide(self, decision: Decision, *, at: dt.datetime) -> Transfer:
        """2pc phase one is over: COMMITTING, or ABORTING with the reason."""
        if decision.commit:
            return self._move(TransferState.COMMITTING, at=at)
        return self._move(
            TransferState.ABORTING, at=at, refusal=decision.refusal or Refusal.PROTOCOL_VIOLATION
        )

    def finish(self, *, at: dt.datetime) -> Transfer:
        """2pc phase two is acknowledged by both participants."""
        match self.state:
            case TransferState.COMMITTING:
                return self._move(TransferState.COMMITTED, at=at)
            case TransferState.ABORTING:
                return self._move(TransferState.ABORTED, at=at)
        raise IllegalTransition(self.path, self.state, TransferState.COMMITTED)

    def settle(self, *, applied: bool, refusal: Refusal | None, at: dt.datetime) -> Transfer:
        """A local transfer: the shard applied it, or refused it."""
        if applied:
            return self._move(TransferState.COMMITTED, at=at)
        return self._move(
            TransferState.ABORTED, at=at, refusal=refusal or Refusal.PROTOCOL_VIOLATION
        )


def new_transfer(
    *,
    from_account: str,
    to_account: str,
    amount_minor: int,
    currency: str,
    reference: str,
    initiator: str,
    required_owner: str | None,
    requested_by: str | None = None,
    same_shard: bool,
    now: dt.datetime,
    lease_owner: str,
    lease_s: float,
) -> Transfer:
    """A transfer about to be written as PREPARING, leased to whoever will drive it."""
    return Transfer(
        id=uuid.uuid4(),
        from_account=from_account,
        to_account=to_account,
        amount_minor=amount_minor,
        currency=currency,
        reference=reference,
        initiator=initiator,
        required_owner=required_owner,
        requested_by=requested_by,
        path=TransferPath.LOCAL if same_shard else TransferPath.TWO_PHASE,
        state=TransferState.PREPARING,
        created_at=now,
        next_attempt_at=now,
        lease_owner=lease_owner,
        lease_until=now + dt.timedelta(seconds=lease_s),
    )
