"""Stand-ins shared by the unit and integration tests.

- `FakeStock`: the inventory contract in memory (all-or-none holds, idempotent per
  reservation id, tombstones, expiry when the test says), behind the `Inventory` port
  (`FakeInventory`, with failures on demand) and, in the integration tests, behind a real
  gRPC server.
- `FakeBank`: accounts and the payments transfer API in memory (Idempotency-Keys per
  caller, `on_behalf_of`, the documented answers, failures on demand), behind the
  `Payments` / `Accounts` ports and, in the integration tests, real HTTPS servers.
- Faults that 'kill' the process at a chosen point, and an in-memory unit of work with
  the repository's compare-and-set rules (its leases: the kit's `InMemoryLeasedRows`).
  Time is the kit's `ManualClock`, started at `T0`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import itertools
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from flotilla_kit.rbac import permissions_of
from flotilla_kit.resource_keys import KeyedResource
from flotilla_kit.testing import InMemoryLeasedRows, InMemoryResourceKeys, InMemoryUnitOfWork
from flotilla_orders.domain import (
    CommittedTransfer,
    HistoryEntry,
    Order,
    OrderOutcome,
    OrderRefund,
    OrderState,
    payment_state,
    refunded,
)
from flotilla_orders.service_layer.faults import FaultPoint
from flotilla_orders.service_layer.ports import (
    AccountInfo,
    AccountsUnavailable,
    InventoryProtocolError,
    InventoryUnavailable,
    PaymentsProtocolError,
    PaymentsUnavailable,
    Product,
    Reservation,
    ReservationState,
    ReservedLine,
    StockRefusal,
    TransferAnswer,
    TransferCall,
    TransferOutcome,
)

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)
PROBLEMS = "https://flotilla.dev/problems/"


# -- the inventory -----------------------------------------------------------------------


@dataclass
class FakeProduct:
    id: str
    unit_price_minor: int
    currency: str
    on_hand: int
    held: int = 0
    name: str = ""

    @property
    def available(self) -> int:
        return self.on_hand - self.held


@dataclass
class FakeReservation:
    id: str
    state: ReservationState
    lines: tuple[ReservedLine, ...] = ()
    refusal: StockRefusal | None = None
    short: tuple[str, ...] = ()
    tombstone: bool = False

    def answer(self) -> Reservation:
        return Reservation(
            reservation_id=self.id,
            state=self.state,
            refusal=self.refusal,
            lines=self.lines,
            short_products=self.short,
        )


class FakeStock:
    """The inventory contract (proto/flotilla_proto/inventory/v1/inventory.proto) in
    memory. `holds` and `commits` count what really happened, for exactly-once checks."""

    def __init__(self) -> None:
        self.products: dict[str, FakeProduct] = {}
        self.reservations: dict[str, FakeReservation] = {}
        self.holds: list[str] = []  # reservation ids, once per hold placed
        self.commits: list[str] = []
        self.releases: list[str] = []  # holds given back (not tombstones)

    def add(self, product_id: str, price: int, *, currency: str = "EUR", on_hand: int = 100) -> str:
        self.products[product_id] = FakeProduct(product_id, price, currency, on_hand)
        return product_id

    def availability(self, product_ids: Sequence[str]) -> list[Product]:
        found: list[Product] = []
        for product_id in product_ids:
            p = self.products.get(product_id)
            if p is None:
                found.append(Product(product_id, found=False))
            else:
                found.append(
                    Product(p.id, True, p.available, p.unit_price_minor, p.currency, p.name)
                )
        return found

    def reserve(self, reservation_id: str, lines: Sequence[tuple[str, int]]) -> Reservation:
        known = self.reservations.get(reservation_id)
        if known is not None:
            if known.tombstone:
                return replace(
                    known, state=ReservationState.REFUSED, refusal=StockRefusal.ALREADY_RELEASED
                ).answer()
            return known.answer()
        ids = [p for p, _ in lines]
        malformed = not 1 <= len(lines) <= 100 or len(set(ids)) != len(ids)
        if malformed or any(not 1 <= q <= 10_000 for _, q in lines):
            return self._refuse(reservation_id, StockRefusal.INVALID, ())
        unknown = tuple(p for p in ids if p not in self.products)
        if unknown:
            return self._refuse(reservation_id, StockRefusal.UNKNOWN_PRODUCT, unknown)
        short = tuple(p for p, q in lines if self.products[p].available < q)
        if short:
            return self._refuse(reservation_id, StockRefusal.OUT_OF_STOCK, short)
        held: list[ReservedLine] = []
        for product_id, quantity in lines:
            product = self.products[product_id]
            product.held += quantity
            held.append(
                ReservedLine(product_id, quantity, product.unit_price_minor, product.currency)
            )
        self.holds.append(reservation_id)
        reservation = FakeReservation(reservation_id, ReservationState.HELD, tuple(held))
        self.reservations[reservation_id] = reservation
        return reservation.answer()

    def _refuse(
        self, reservation_id: str, refusal: StockRefusal, short: tuple[str, ...]
    ) -> Reservation:
        refused = FakeReservation(
            reservation_id, ReservationState.REFUSED, refusal=refusal, short=short
        )
        self.reservations[reservation_id] = refused
        return refused.answer()

    def _give_back(self, reservation: FakeReservation) -> None:
        for line in reservation.lines:
            self.products[line.product_id].held -= line.quantity

    def commit(self, reservation_id: str) -> Reservation:
        known = self.reservations.get(reservation_id)
        if known is None:
            raise KeyError(reservation_id)
        if known.state is ReservationState.HELD:
            for line in known.lines:
                product = self.products[line.product_id]
                product.held -= line.quantity
                product.on_hand -= line.quantity
            known.state = ReservationState.COMMITTED
            self.commits.append(reservation_id)
        return known.answer()

    def release(self, reservation_id: str) -> Reservation:
        known = self.reservations.get(reservation_id)
        if known is None:
            known = FakeReservation(reservation_id, ReservationState.RELEASED, tombstone=True)
            self.reservations[reservation_id] = known
        elif known.state is ReservationState.HELD:
            self._give_back(known)
            known.state = ReservationState.RELEASED
            self.releases.append(reservation_id)
        return known.answer()

    def expire(self, reservation_id: str) -> None:
        """What the inventory's sweeper does once a hold has run out."""
        known = self.reservations[reservation_id]
        assert known.state is ReservationState.HELD
        self._give_back(known)
        known.state = ReservationState.EXPIRED

    def held(self) -> int:
        return sum(p.held for p in self.products.values())

    def state_of(self, reservation_id: str) -> ReservationState | None:
        known = self.reservations.get(reservation_id)
        return known.state if known else None


class FakeInventory:
    """The `Inventory` port over a FakeStock, with failures on demand (per method:
    "GetAvailability", "Reserve", "Commit", "Release"):

    - `down`: methods that get no answer at all (nothing happens);
    - `fail[method] = n`: the next n calls get no answer (nothing happens);
    - `lose[method] = n`: the next n calls happen, but the answer is lost;
    - `gates[method]`: the call waits for the event before it happens;
    - `before[method]`: a hook run just before the call happens."""

    def __init__(self, stock: FakeStock) -> None:
        self.stock = stock
        self.calls: list[tuple[str, str]] = []  # (method, reservation id or "")
        self.down: set[str] = set()
        self.fail: dict[str, int] = {}
        self.lose: dict[str, int] = {}
        self.gates: dict[str, asyncio.Event] = {}
        self.before: dict[str, Callable[[], None]] = {}
        self.hold_seconds: list[int] = []
        self._arrivals: dict[str, asyncio.Event] = {}

    def arrival(self, method: str) -> asyncio.Event:
        """Set once a call of `method` has arrived (before any gate)."""
        return self._arrivals.setdefault(method, asyncio.Event())

    def calls_of(self, method: str) -> list[str]:
        return [r for m, r in self.calls if m == method]

    async def _around(self, method: str, reservation_id: str, act: Callable[[], Any]) -> Any:
        self.calls.append((method, reservation_id))
        self.arrival(method).set()
        gate = self.gates.get(method)
        if gate is not None:
            await gate.wait()
        if method in self.down:
            raise InventoryUnavailable(f"{method}: inventory is down")
        if self.fail.get(method, 0) > 0:
            self.fail[method] -= 1
            raise InventoryUnavailable(f"{method}: no answer")
        hook = self.before.get(method)
        if hook is not None:
            hook()
        try:
            result = act()
        except KeyError as exc:
            raise InventoryProtocolError(f"{method}: NOT_FOUND {exc}") from exc
        if self.lose.get(method, 0) > 0:
            self.lose[method] -= 1
            raise InventoryUnavailable(f"{method}: the answer was lost")
        return result

    async def availability(self, product_ids: Sequence[str]) -> list[Product]:
        found: list[Product] = await self._around(
            "GetAvailability", "", lambda: self.stock.availability(product_ids)
        )
        return found

    async def reserve(
        self, *, reservation_id: str, lines: Sequence[tuple[str, int]], hold_s: int
    ) -> Reservation:
        self.hold_seconds.append(hold_s)
        found: Reservation = await self._around(
            "Reserve", reservation_id, lambda: self.stock.reserve(reservation_id, lines)
        )
        return found

    async def commit(self, reservation_id: str) -> Reservation:
        found: Reservation = await self._around(
            "Commit", reservation_id, lambda: self.stock.commit(reservation_id)
        )
        return found

    async def release(self, reservation_id: str) -> Reservation:
        found: Reservation = await self._around(
            "Release", reservation_id, lambda: self.stock.release(reservation_id)
        )
        return found


# -- the bank: accounts and payments -----------------------------------------------------


@dataclass
class FakeAccount:
    id: str
    owner: str
    currency: str
    balance: int


@dataclass
class FakeTransfer:
    id: str
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    reference: str
    initiator: str
    state: str  # preparing, committed, aborted
    refusal: str | None = None

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "from_account": self.from_account,
            "to_account": self.to_account,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "reference": self.reference,
            "state": self.state,
            "refusal": self.refusal,
            "path": "local",
        }


def problem(status: int, slug: str, **extra: Any) -> dict[str, Any]:
    return {"type": PROBLEMS + slug, "title": slug, "status": status, **extra}


# (status, JSON body); status 0: the caller gets no answer.
BankAnswer = tuple[int, dict[str, Any]]
_NO_ANSWER: BankAnswer = (0, {})
_REFUSALS = {
    "insufficient-funds": 422,
    "account-not-found": 404,
    "currency-mismatch": 422,
}


class FakeBank:
    """Accounts on ledger shards and the payments transfer API, in memory.

    Failures on demand, counted down by new transfers or by calls:
    - `abort_next`: new transfers are aborted for a technical reason (503 transfer-aborted);
    - `pend_next`: new transfers stay PREPARING (202); the next call with their key
      commits them (as a coordinator that finished meanwhile);
    - `lose_next`: calls happen, but the caller gets no answer;
    - `fail_next` / `down`: calls get no answer, nothing happens.
    `applied` lists the transfers that moved money, once each."""

    def __init__(self) -> None:
        self.accounts: dict[str, FakeAccount] = {}
        self.transfers: dict[str, FakeTransfer] = {}
        self.keys: dict[tuple[str, str], tuple[str, str]] = {}  # -> (fingerprint, id)
        self.applied: list[str] = []
        self.calls: list[tuple[str, str]] = []  # (caller, Idempotency-Key)
        self.abort_next = 0
        self.pend_next = 0
        self.lose_next = 0
        self.fail_next = 0
        self.down = False
        self.accounts_down = False
        self.before_transfer: Callable[[str], None] | None = None  # gets the reference
        self._numbers = itertools.count(1)

    def open(self, owner: str, balance: int = 0, *, shard: int = 0, currency: str = "EUR") -> str:
        account_id = f"acc_{shard}_{uuid.uuid4().hex}"
        self.accounts[account_id] = FakeAccount(account_id, owner, currency, balance)
        return account_id

    def balance(self, account_id: str) -> int:
        return self.accounts[account_id].balance

    def total(self) -> int:
        return sum(a.balance for a in self.accounts.values())

    def account_info(self, account_id: str) -> AccountInfo | None:
        found = self.accounts.get(account_id)
        return AccountInfo(found.id, found.owner, found.currency) if found else None

    def applied_transfers(self) -> list[FakeTransfer]:
        return [self.transfers[t] for t in self.applied]

    # -- POST /api/v1/transfers ----------------------------------------------------------

    def transfer(
        self, *, caller: str, permissions: frozenset[str], key: str, body: dict[str, Any]
    ) -> BankAnswer:
        self.calls.append((caller, key))
        if self.down:
            return _NO_ANSWER
        if self.fail_next > 0:
            self.fail_next -= 1
            return _NO_ANSWER
        answer = self._transfer(caller, permissions, key, body)
        if self.lose_next > 0:
            self.lose_next -= 1
            return _NO_ANSWER
        return answer

    def _transfer(
        self, caller: str, permissions: frozenset[str], key: str, body: dict[str, Any]
    ) -> BankAnswer:
        if "payments:transfer" not in permissions:
            return 403, problem(403, "forbidden")
        on_behalf_of = body.get("on_behalf_of")
        if on_behalf_of is not None and "payments:transfer:on-behalf" not in permissions:
            return 403, problem(403, "forbidden")
        fingerprint = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()
        stored = self.keys.get((caller, key))
        if stored is not None:
            if stored[0] != fingerprint:
                return 422, problem(422, "idempotency-key-reused")
            return self._answer(self.transfers[stored[1]], replay=True)
        amount = body["amount_minor"]
        if not isinstance(amount, int) or not 0 < amount <= 10**15:
            return 422, problem(422, "validation-error")
        if self.before_transfer is not None:
            self.before_transfer(str(body.get("reference", "")))
        transfer = FakeTransfer(
            id=str(uuid.uuid4()),
            from_account=body["from_account"],
            to_account=body["to_account"],
            amount_minor=amount,
            currency=body["currency"],
            reference=body.get("reference", "transfer"),
            initiator=on_behalf_of or caller,
            state="preparing",
        )
        self.transfers[transfer.id] = transfer
        self.keys[(caller, key)] = (fingerprint, transfer.id)
        if self.abort_next > 0:
            self.abort_next -= 1
            transfer.state, transfer.refusal = "aborted", "participant-unavailable"
        elif self.pend_next > 0:
            self.pend_next -= 1
        else:
            self._settle(transfer)
        return self._answer(transfer, replay=False)

    def _settle(self, transfer: FakeTransfer) -> None:
        source = self.accounts.get(transfer.from_account)
        target = self.accounts.get(transfer.to_account)
        refusal: str | None = None
        if source is None or target is None or source.owner != transfer.initiator:
            refusal = "account-not-found"
        elif transfer.currency != source.currency or transfer.currency != target.currency:
            refusal = "currency-mismatch"
        elif source.balance < transfer.amount_minor:
            refusal = "insufficient-funds"
        if refusal is not None:
            transfer.state, transfer.refusal = "aborted", refusal
            return
        assert source is not None
        assert target is not None
        source.balance -= transfer.amount_minor
        target.balance += transfer.amount_minor
        transfer.state = "committed"
        self.applied.append(transfer.id)

    def _answer(self, transfer: FakeTransfer, *, replay: bool) -> BankAnswer:
        if replay and transfer.state == "preparing":
            self._settle(transfer)  # the coordinator finished it meanwhile
        if transfer.state == "committed":
            return 201, transfer.body()
        if transfer.state == "preparing":
            return 202, transfer.body()
        refusal = transfer.refusal or "participant-unavailable"
        extra = {"transfer_id": transfer.id, "refusal": refusal}
        if refusal in _REFUSALS:
            return _REFUSALS[refusal], problem(_REFUSALS[refusal], refusal, **extra)
        return 503, problem(503, "transfer-aborted", **extra)


class FakePayments:
    """The `Payments` port over a FakeBank, as the orders service (its role) calls it."""

    def __init__(self, bank: FakeBank, *, caller: str = "orders") -> None:
        self.bank = bank
        self.caller = caller
        self.permissions = permissions_of(["service:orders"])
        self.keys: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}  # key -> the call waits for it

    async def transfer(self, call: TransferCall) -> TransferAnswer:
        self.keys.append(call.idempotency_key)
        gate = self.gates.get(call.idempotency_key)
        if gate is not None:
            await gate.wait()
        body = {
            "from_account": call.from_account,
            "to_account": call.to_account,
            "amount_minor": call.amount_minor,
            "currency": call.currency,
            "reference": call.reference,
            "on_behalf_of": call.on_behalf_of,
        }
        status, answer = self.bank.transfer(
            caller=self.caller, permissions=self.permissions, key=call.idempotency_key, body=body
        )
        slug = str(answer.get("type", "")).rsplit("/", 1)[-1] or None
        transfer_id = answer.get("id", answer.get("transfer_id"))
        match status:
            case 0:
                raise PaymentsUnavailable("no answer")
            case 201:
                return TransferAnswer(TransferOutcome.COMMITTED, transfer_id)
            case 202:
                return TransferAnswer(TransferOutcome.PENDING, transfer_id)
            case 503 if slug == "transfer-aborted":
                return TransferAnswer(TransferOutcome.ABORTED, transfer_id, slug)
            case 404 | 422 if slug != "idempotency-key-reused":
                return TransferAnswer(TransferOutcome.REFUSED, transfer_id, slug)
        raise PaymentsProtocolError(f"HTTP {status} {slug}")

    def keys_of(self, order_id: uuid.UUID | str, kind: str = "pay") -> list[str]:
        prefix = f"order:{order_id}:{kind}:"
        return [k for k in self.keys if k.startswith(prefix)]


class FakeAccounts:
    """The `Accounts` port over a FakeBank."""

    def __init__(self, bank: FakeBank) -> None:
        self.bank = bank
        self.asked: list[str] = []

    async def account(self, account_id: str) -> AccountInfo | None:
        self.asked.append(account_id)
        if self.bank.accounts_down:
            raise AccountsUnavailable("accounts is down")
        return self.bank.account_info(account_id)


def expire_the_hold_while_paying(bank: FakeBank, stock: FakeStock) -> None:
    """The inventory's sweeper ends an order's hold while its payment goes through."""

    def expire(reference: str) -> None:
        if reference.startswith("order "):
            stock.expire(reference.removeprefix("order "))

    bank.before_transfer = expire


# -- faults ------------------------------------------------------------------------------


class SimulatedCrash(BaseException):
    """The process 'dies' here: nothing after this point runs (not even `except Exception`)."""


class CrashAt:
    """Faults that 'kill' the process the first time it reaches `point` (a restarted
    process would not crash at the same place again)."""

    def __init__(self, point: FaultPoint) -> None:
        self.point: FaultPoint | None = point
        self.hits: list[FaultPoint] = []
        self.crashed = False

    def hit(self, point: FaultPoint) -> None:
        self.hits.append(point)
        if point is self.point:
            self.point = None
            self.crashed = True
            raise SimulatedCrash(point.value)


# -- storage -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StoredEvent:
    event: str
    subject: str
    data: dict[str, Any]


@dataclass
class FakeStore:
    orders: dict[uuid.UUID, Order] = field(default_factory=dict)
    keys: dict[tuple[str, str], KeyedResource] = field(default_factory=dict)
    events: list[StoredEvent] = field(default_factory=list)
    outcomes: dict[str, OrderOutcome] = field(default_factory=dict)
    refunds: dict[str, OrderRefund] = field(default_factory=dict)
    transfers: dict[str, CommittedTransfer] = field(default_factory=dict)
    # Runs just before a key is stored: lets a test slip a competing request in between.
    before_remember: Callable[[], None] | None = None


Undo = list[Callable[[], object]]


class FakeOrders(InMemoryLeasedRows[uuid.UUID, Order]):
    """Writes land in the store at once (no await in between: each is atomic, like a row
    update) and are undone if the unit of work is not committed."""

    def __init__(self, store: FakeStore, undo: Undo) -> None:
        super().__init__(store.orders, undo, attempts="retries", expected="version")
        self._store = store

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: Order | None, state: OrderState | None = None
    ) -> list[Order]:
        return self._page(customer_id, state, limit=limit, after=after)

    async def page_in_state(
        self, state: OrderState, *, limit: int, after: Order | None
    ) -> list[Order]:
        return self._page(None, state, limit=limit, after=after)

    def _page(
        self, customer_id: str | None, state: OrderState | None, *, limit: int, after: Order | None
    ) -> list[Order]:
        found = sorted(
            (
                o
                for o in self._store.orders.values()
                if customer_id in (None, o.customer_id) and state in (None, o.state)
            ),
            key=lambda o: (o.created_at, o.id),
            reverse=True,
        )
        if after is not None:
            found = [o for o in found if (o.created_at, o.id) < (after.created_at, after.id)]
        return found[:limit]

    async def save(
        self, order: Order, *, expected_version: int, owner: str, prices: bool = False
    ) -> bool:
        current = self._store.orders.get(order.id)
        if current is None or current.version != expected_version or current.lease_owner != owner:
            return False
        if not prices:
            # Only the one write that records the held prices may change the lines.
            order = replace(order, lines=current.lines)
        self._put(order)
        return True

    async def start_refund(self, order: Order, *, expected_version: int) -> bool:
        current = self._store.orders.get(order.id)
        if (
            current is None
            or current.version != expected_version
            or current.state is not OrderState.CONFIRMED
            or not current.is_final
        ):
            return False
        self._put(replace(order, lines=current.lines))
        return True


class FakeEvents:
    def __init__(self, store: FakeStore, undo: Undo) -> None:
        self._store = store
        self._undo = undo

    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None:
        events = self._store.events
        events.append(StoredEvent(event, subject, data))
        last = len(events) - 1
        self._undo.append(lambda: events.pop(last))


class FakeHistory:
    """The read model's facts: the first one stored under a key stays."""

    def __init__(self, store: FakeStore, undo: Undo) -> None:
        self._store = store
        self._undo = undo

    async def add_outcome(self, outcome: OrderOutcome, *, event_id: str) -> None:
        rows = self._store.outcomes
        if outcome.order_id not in rows:
            rows[outcome.order_id] = outcome
            self._undo.append(lambda: rows.pop(outcome.order_id))

    async def add_refund(self, refund: OrderRefund, *, event_id: str) -> None:
        rows = self._store.refunds
        if refund.order_id not in rows:
            rows[refund.order_id] = refund
            self._undo.append(lambda: rows.pop(refund.order_id))

    async def add_transfer(self, transfer: CommittedTransfer, *, event_id: str) -> None:
        rows = self._store.transfers
        if transfer.transfer_id not in rows:
            rows[transfer.transfer_id] = transfer
            self._undo.append(lambda: rows.pop(transfer.transfer_id))

    def _entry(self, outcome: OrderOutcome) -> HistoryEntry:
        outcome = refunded(outcome, self._store.refunds.get(outcome.order_id))
        return HistoryEntry(outcome, payment_state(outcome, frozenset(self._store.transfers)))

    async def get(self, order_id: str) -> HistoryEntry | None:
        found = self._store.outcomes.get(order_id)
        return self._entry(found) if found else None

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: HistoryEntry | None
    ) -> list[HistoryEntry]:
        mine = sorted(
            (o for o in self._store.outcomes.values() if o.customer_id == customer_id),
            key=lambda o: (o.finished_at, o.order_id),
            reverse=True,
        )
        if after is not None:
            last = (after.outcome.finished_at, after.outcome.order_id)
            mine = [o for o in mine if (o.finished_at, o.order_id) < last]
        return [self._entry(o) for o in mine[:limit]]


class FakeUnitOfWork(InMemoryUnitOfWork):
    def __init__(self, store: FakeStore, *, write: bool) -> None:
        super().__init__(write=write)
        self.orders = FakeOrders(store, self.undo)
        self.idempotency = InMemoryResourceKeys(store, self.undo)
        self.events = FakeEvents(store, self.undo)
        self.history = FakeHistory(store, self.undo)


class FakeUowFactory:
    def __init__(self, store: FakeStore) -> None:
        self.store = store

    def __call__(self, *, write: bool = True) -> FakeUnitOfWork:
        return FakeUnitOfWork(self.store, write=write)
