"""Stand-ins shared by the unit and integration tests: a bank of ledger shards that behaves
like the 2PC participants (holds, tombstones, idempotency), the ledger port over that bank
with failures on demand, an in-memory unit of work (with an outbox that keeps events only
if the transaction commits; its leases are the kit's `InMemoryLeasedRows`), and faults
that stop a transfer at a chosen point. Time is the kit's `ManualClock`, started at `T0`."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from flotilla_kit.events import CloudEvent
from flotilla_kit.resource_keys import KeyedResource
from flotilla_kit.testing import InMemoryLeasedRows, InMemoryResourceKeys, InMemoryUnitOfWork
from flotilla_payments.domain import (
    Branch,
    Refusal,
    Transfer,
    TransferState,
    Vote,
)
from flotilla_payments.domain.events import SERVICE
from flotilla_payments.service_layer.faults import FaultPoint
from flotilla_payments.service_layer.ports import (
    BranchCall,
    LocalOutcome,
    LocalTransferCall,
    ParticipantUnavailable,
    PrepareCall,
    ProtocolViolation,
)

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


# -- the ledger shards -------------------------------------------------------------------


@dataclass
class FakeAccount:
    id: str
    owner: str
    currency: str
    balance: int
    held: int = 0  # debits prepared, not committed yet
    pending: int = 0  # credits prepared, not committed yet


@dataclass
class FakeBranch:
    status: str  # prepared, committed, aborted
    account_id: str | None = None
    branch: Branch | None = None
    amount: int = 0


class FakeShard:
    """One ledger shard as a participant: Prepare holds (debit) or records (credit);
    Commit applies; Abort releases, or leaves a tombstone for a branch it never saw;
    every call is idempotent per (transfer, branch), Transfer per transfer."""

    def __init__(self, number: int) -> None:
        self.number = number
        self.accounts: dict[str, FakeAccount] = {}
        self.branches: dict[tuple[str, str], FakeBranch] = {}
        self.transfers: dict[str, LocalOutcome] = {}

    def open(self, owner: str, balance: int = 0, currency: str = "EUR") -> str:
        account_id = f"acc_{self.number}_{uuid.uuid4().hex}"
        self.accounts[account_id] = FakeAccount(account_id, owner, currency, balance)
        return account_id

    def money(self) -> tuple[tuple[str, int, int, int], ...]:
        return tuple(
            (a.id, a.balance, a.held, a.pending)
            for a in sorted(self.accounts.values(), key=lambda a: a.id)
        )

    def balance(self, account_id: str) -> int:
        return self.accounts[account_id].balance

    def _usable(self, account_id: str, required_owner: str, currency: str) -> Refusal | None:
        account = self.accounts.get(account_id)
        if account is None or (required_owner and account.owner != required_owner):
            return Refusal.ACCOUNT_NOT_FOUND
        if account.currency != currency:
            return Refusal.CURRENCY_MISMATCH
        return None

    def prepare(self, call: PrepareCall) -> Vote:
        key = (call.transfer_id, call.branch.value)
        known = self.branches.get(key)
        if known is not None:
            return Vote.no(Refusal.ALREADY_ABORTED) if known.status == "aborted" else Vote.yes()
        refusal = self._usable(call.account_id, call.required_owner, call.currency)
        if refusal is not None:
            return Vote.no(refusal)
        account = self.accounts[call.account_id]
        if call.branch is Branch.DEBIT:
            if account.balance - account.held < call.amount_minor:
                return Vote.no(Refusal.INSUFFICIENT_FUNDS)
            account.held += call.amount_minor
        else:
            account.pending += call.amount_minor
        self.branches[key] = FakeBranch("prepared", call.account_id, call.branch, call.amount_minor)
        return Vote.yes()

    def commit(self, transfer_id: str, branch_id: str) -> None:
        known = self.branches.get((transfer_id, branch_id))
        if known is None or known.status == "aborted":
            raise ProtocolViolation(
                f"commit of a branch that is {known.status if known else 'unknown'}"
            )
        if known.status == "prepared":
            assert known.account_id is not None
            account = self.accounts[known.account_id]
            if known.branch is Branch.DEBIT:
                account.held -= known.amount
                account.balance -= known.amount
            else:
                account.pending -= known.amount
                account.balance += known.amount
            known.status = "committed"

    def abort(self, transfer_id: str, branch_id: str) -> None:
        key = (transfer_id, branch_id)
        known = self.branches.get(key)
        if known is None:
            self.branches[key] = FakeBranch("aborted")  # a tombstone: a late prepare is refused
            return
        if known.status == "committed":
            raise ProtocolViolation("abort of a committed branch")
        if known.status == "prepared":
            assert known.account_id is not None
            account = self.accounts[known.account_id]
            if known.branch is Branch.DEBIT:
                account.held -= known.amount
            else:
                account.pending -= known.amount
            known.status = "aborted"

    def transfer(self, call: LocalTransferCall) -> LocalOutcome:
        if call.transfer_id in self.transfers:
            return self.transfers[call.transfer_id]
        refusal = self._usable(call.from_account, call.required_owner, call.currency) or (
            self._usable(call.to_account, "", call.currency)
        )
        if refusal is None:
            source = self.accounts[call.from_account]
            if source.balance - source.held < call.amount_minor:
                refusal = Refusal.INSUFFICIENT_FUNDS
        if refusal is not None:
            return LocalOutcome(applied=False, refusal=refusal)  # nothing stored, as the ledger
        self.accounts[call.from_account].balance -= call.amount_minor
        self.accounts[call.to_account].balance += call.amount_minor
        outcome = self.transfers[call.transfer_id] = LocalOutcome(applied=True)
        return outcome

    def statuses(self, transfer_id: str) -> dict[str, str]:
        return {b: v.status for (t, b), v in self.branches.items() if t == transfer_id}


class FakeBank:
    def __init__(self, shards: int = 2) -> None:
        self.shards = {n: FakeShard(n) for n in range(shards)}

    def money(self) -> tuple[object, ...]:
        return tuple(shard.money() for shard in self.shards.values())

    def total(self) -> int:
        return sum(a.balance for s in self.shards.values() for a in s.accounts.values())

    def statuses(self, transfer_id: uuid.UUID | str) -> dict[str, str]:
        found: dict[str, str] = {}
        for shard in self.shards.values():
            found |= shard.statuses(str(transfer_id))
        return found


class FakeLedger:
    """The `LedgerClient` port over a FakeBank, with failures on demand:

    - `down`: shards that do not answer at all (nothing happens there);
    - `fail[(method, branch)] = n`: the next n such calls get no answer (nothing happens);
    - `lose[(method, branch)] = n`: the next n such calls happen, but the answer is lost;
    - `gates[(method, branch)]`: the call waits for the event before it happens;
    - `violate`: (method, branch) pairs answered with a protocol violation.
    `branch` is "debit", "credit", or "local" for Transfer."""

    def __init__(self, bank: FakeBank) -> None:
        self.bank = bank
        self.calls: list[tuple[str, str, str]] = []  # (method, transfer id, branch)
        self.down: set[int] = set()
        self.fail: dict[tuple[str, str], int] = {}
        self.lose: dict[tuple[str, str], int] = {}
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.violate: set[tuple[str, str]] = set()
        self._arrivals: dict[tuple[str, str], asyncio.Event] = {}

    def arrival(self, method: str, branch: str) -> asyncio.Event:
        """Set once a (method, branch) call has arrived (before any gate holds it)."""
        return self._arrivals.setdefault((method, branch), asyncio.Event())

    def calls_of(self, method: str, transfer_id: uuid.UUID | None = None) -> list[str]:
        return [
            b
            for m, t, b in self.calls
            if m == method and (transfer_id is None or t == str(transfer_id))
        ]

    async def _around(
        self, method: str, shard: int, transfer_id: str, branch: str, act: Callable[[], Any]
    ) -> Any:
        self.calls.append((method, transfer_id, branch))
        self.arrival(method, branch).set()
        key = (method, branch)
        gate = self.gates.get(key)
        if gate is not None:
            await gate.wait()
        if shard in self.down:
            raise ParticipantUnavailable(f"shard {shard} is down")
        if self.fail.get(key, 0) > 0:
            self.fail[key] -= 1
            raise ParticipantUnavailable(f"{method} {branch}: no answer")
        if key in self.violate:
            raise ProtocolViolation(f"{method} {branch}: FAILED_PRECONDITION")
        result = act()
        if self.lose.get(key, 0) > 0:
            self.lose[key] -= 1
            raise ParticipantUnavailable(f"{method} {branch}: the answer was lost")
        return result

    async def prepare(self, call: PrepareCall) -> Vote:
        shard = self.bank.shards[call.shard]
        vote: Vote = await self._around(
            "Prepare", call.shard, call.transfer_id, call.branch.value, lambda: shard.prepare(call)
        )
        return vote

    async def commit(self, call: BranchCall) -> None:
        shard = self.bank.shards[call.shard]
        await self._around(
            "Commit", call.shard, call.transfer_id, call.branch.value,
            lambda: shard.commit(call.transfer_id, call.branch.value),
        )  # fmt: skip

    async def abort(self, call: BranchCall) -> None:
        shard = self.bank.shards[call.shard]
        await self._around(
            "Abort", call.shard, call.transfer_id, call.branch.value,
            lambda: shard.abort(call.transfer_id, call.branch.value),
        )  # fmt: skip

    async def transfer(self, call: LocalTransferCall) -> LocalOutcome:
        shard = self.bank.shards[call.shard]
        outcome: LocalOutcome = await self._around(
            "Transfer", call.shard, call.transfer_id, "local", lambda: shard.transfer(call)
        )
        return outcome


# -- faults ------------------------------------------------------------------------------


class SimulatedCrash(BaseException):
    """The process 'dies' here: nothing after this point runs (not even `except Exception`)."""


class CrashAt:
    """Faults that 'kill' the process the first time it reaches `point` (a restarted
    process would not crash at the same place again)."""

    def __init__(self, point: FaultPoint) -> None:
        self.point: FaultPoint | None = point
        self.hits: list[FaultPoint] = []

    def hit(self, point: FaultPoint) -> None:
        self.hits.append(point)
        if point is self.point:
            self.point = None
            raise SimulatedCrash(point.value)


# -- storage -----------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditEntry:
    actor: str
    action: str
    target: str
    details: dict[str, Any]
    outcome: str


@dataclass
class FakeStore:
    transfers: dict[uuid.UUID, Transfer] = field(default_factory=dict)
    keys: dict[tuple[str, str], KeyedResource] = field(default_factory=dict)
    audit: list[AuditEntry] = field(default_factory=list)
    events: list[CloudEvent] = field(default_factory=list)  # the outbox, committed only
    routes: list[str | None] = field(default_factory=list)  # each event's routing token
    # Runs just before a key is stored: lets a test slip a competing request in between.
    before_remember: Callable[[], None] | None = None


Undo = list[Callable[[], object]]


class FakeTransfers(InMemoryLeasedRows[uuid.UUID, Transfer]):
    """Writes land in the store at once (no await in between: each is atomic, like a row
    update) and are undone if the unit of work is not committed."""

    def __init__(self, store: FakeStore, undo: Undo) -> None:
        super().__init__(store.transfers, undo, attempts="attempts", expected="state")
        self._store = store

    async def page_for_initiator(
        self, initiator: str, *, limit: int, after: Transfer | None
    ) -> list[Transfer]:
        mine = sorted(
            (t for t in self._store.transfers.values() if t.initiator == initiator),
            key=lambda t: (t.created_at, t.id),
            reverse=True,
        )
        if after is not None:
            mine = [t for t in mine if (t.created_at, t.id) < (after.created_at, after.id)]
        return mine[:limit]

    async def save_transition(self, transfer: Transfer, *, expected: TransferState) -> bool:
        current = self._store.transfers.get(transfer.id)
        if current is None or current.state is not expected:
            return False
        changed = replace(
            current,
            state=transfer.state,
            refusal=transfer.refusal,
            decided_at=transfer.decided_at,
            completed_at=transfer.completed_at,
        )
        if transfer.is_final:
            changed = replace(changed, lease_owner=None, lease_until=None)
        self._put(changed)
        return True

    async def oldest_unfinished(self) -> dt.datetime | None:
        return min((t.created_at for t in self._store.transfers.values() if not t.is_final),
                   default=None)  # fmt: skip

    async def unfinished(self, *, created_before: dt.datetime | None) -> list[Transfer]:
        found = [
            t
            for t in self._store.transfers.values()
            if not t.is_final and (created_before is None or t.created_at <= created_before)
        ]
        return sorted(found, key=lambda t: (t.created_at, t.id))


class FakeAudit:
    def __init__(self, store: FakeStore, undo: Undo) -> None:
        self._store = store
        self._undo = undo

    async def record(
        self,
        *,
        actor: str,
        action: str,
        target: str,
        details: Mapping[str, Any],
        outcome: str = "success",
    ) -> None:
        entries = self._store.audit
        entries.append(AuditEntry(actor, action, target, dict(details), outcome))
        last = len(entries) - 1
        self._undo.append(lambda: entries.pop(last))


class FakeOutbox:
    def __init__(self, store: FakeStore, undo: Undo) -> None:
        self._store = store
        self._undo = undo

    async def add(
        self, event: str, *, subject: str, data: dict[str, Any], route: str | None = None
    ) -> None:
        # The envelope as the SQL outbox adapter wraps it.
        events, routes = self._store.events, self._store.routes
        events.append(CloudEvent.new(SERVICE, event, data, subject=subject))
        routes.append(route)
        last = len(events) - 1
        self._undo.append(lambda: (events.pop(last), routes.pop(last)))


class FakeUnitOfWork(InMemoryUnitOfWork):
    def __init__(self, store: FakeStore, *, write: bool) -> None:
        super().__init__(write=write)
        self.transfers = FakeTransfers(store, self.undo)
        self.idempotency = InMemoryResourceKeys(store, self.undo)
        self.audit = FakeAudit(store, self.undo)
        self.outbox = FakeOutbox(store, self.undo)


class FakeUowFactory:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def __call__(self, *, write: bool = True) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, write=write)
