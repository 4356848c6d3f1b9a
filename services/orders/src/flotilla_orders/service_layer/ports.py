"""What the use cases need from the outside world; adapters provide it, tests fake it."""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flotilla_kit.recovery import LeasedRows
from flotilla_kit.resource_keys import ResourceKeys
from flotilla_kit.unit_of_work import UnitOfWork
from flotilla_kit.unit_of_work import UnitOfWorkFactory as KitUnitOfWorkFactory
from flotilla_orders.domain import (
    CommittedTransfer,
    HistoryEntry,
    Order,
    OrderOutcome,
    OrderRefund,
    OrderState,
)
from flotilla_orders.service_layer.faults import FaultPoint

__all__ = [
    "AccountInfo",
    "Accounts",
    "AccountsUnavailable",
    "EventLog",
    "Faults",
    "HistoryRepository",
    "Inventory",
    "InventoryProtocolError",
    "InventoryUnavailable",
    "OrderRepository",
    "OrdersUnitOfWork",
    "Payments",
    "PaymentsProtocolError",
    "PaymentsUnavailable",
    "Product",
    "Reservation",
    "ReservationState",
    "ReservedLine",
    "SagaMetrics",
    "StockRefusal",
    "TransferAnswer",
    "TransferCall",
    "TransferOutcome",
    "UnitOfWorkFactory",
]


# -- inventory (gRPC, `flotilla.inventory.v1.Inventory`) ------------------------------------


class InventoryUnavailable(Exception):
    """No answer from any inventory instance (unreachable, deadline passed, our token
    refused): the call may or may not have taken effect."""


class InventoryProtocolError(Exception):
    """An answer the contract does not allow (an unset state, a malformed request): a bug
    somewhere. Logged as an error; the saga tries again later."""


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
    REFUSED = "refused"


class StockRefusal(enum.StrEnum):
    OUT_OF_STOCK = "out-of-stock"
    UNKNOWN_PRODUCT = "unknown-product"
    ALREADY_RELEASED = "already-released"
    INVALID = "invalid"


@dataclass(frozen=True, slots=True)
class ReservedLine:
    product_id: str
    quantity: int
    unit_price_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Reservation:
    reservation_id: str
    state: ReservationState
    refusal: StockRefusal | None = None
    lines: tuple[ReservedLine, ...] = ()
    short_products: tuple[str, ...] = ()
    detail: str = ""


@dataclass(frozen=True, slots=True)
class Product:
    product_id: str
    found: bool
    available: int = 0
    unit_price_minor: int = 0
    currency: str = ""
    name: str = ""


class Inventory(Protocol):
    """Every call is idempotent per reservation id (our order id)."""

    async def availability(self, product_ids: Sequence[str]) -> list[Product]:
        """In the order asked; raises InventoryUnavailable or InventoryProtocolError."""

    async def reserve(
        self, *, reservation_id: str, lines: Sequence[tuple[str, int]], hold_s: int
    ) -> Reservation: ...

    async def commit(self, reservation_id: str) -> Reservation: ...

    async def release(self, reservation_id: str) -> Reservation:
        """For an id never reserved, leaves a tombstone (a late Reserve is refused)."""


# -- payments (REST, `POST /api/v1/transfers`) ----------------------------------------------


class PaymentsUnavailable(Exception):
    """No usable answer from any payments instance: the transfer under this key may or may
    not exist. Ask again with the SAME key; the answer tells its current state."""


class PaymentsProtocolError(Exception):
    """An answer our request should never get (our own key reused for another body, a
    malformed request): a bug somewhere. Logged as an error; the saga tries again later."""


@dataclass(frozen=True, slots=True)
class TransferCall:
    idempotency_key: str
    from_account: str
    to_account: str
    amount_minor: int
    currency: str
    reference: str
    on_behalf_of: str


class TransferOutcome(enum.StrEnum):
    COMMITTED = "committed"  # 201: the money moved
    PENDING = "pending"  # 202: not final yet; ask again with the same key
    REFUSED = "refused"  # 4xx: refused, nothing moved (insufficient funds, ...)
    ABORTED = "aborted"  # 503 transfer-aborted: nothing moved; a new attempt needs a new key


@dataclass(frozen=True, slots=True)
class TransferAnswer:
    outcome: TransferOutcome
    transfer_id: str | None = None
    problem: str | None = None  # the problem type's slug of a refusal


class Payments(Protocol):
    async def transfer(self, call: TransferCall) -> TransferAnswer:
        """Raises PaymentsUnavailable or PaymentsProtocolError."""


# -- accounts (REST, `GET /api/v1/accounts/{id}` on the shard the id names) ----------------


class AccountsUnavailable(Exception):
    """No usable answer from the account's shard."""


@dataclass(frozen=True, slots=True)
class AccountInfo:
    id: str
    owner_id: str
    currency: str


class Accounts(Protocol):
    async def account(self, account_id: str) -> AccountInfo | None:
        """None: no such account (or not a customer account, or a shard nobody serves)."""


# -- storage ---------------------------------------------------------------------------------


class OrderRepository(LeasedRows[uuid.UUID, Order], Protocol):
    """Orders; the saga's leases and retries as `flotilla_kit.recovery` drives them."""

    async def add(self, order: Order) -> None: ...

    async def get(self, order_id: uuid.UUID) -> Order | None: ...

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: Order | None, state: OrderState | None = None
    ) -> list[Order]:
        """Newest first, only those in `state` if given; `after` is the last order of the
        previous page."""

    async def page_in_state(
        self, state: OrderState, *, limit: int, after: Order | None
    ) -> list[Order]:
        """Everyone's orders in `state` (staff), newest first; `after` as above."""

    async def save(
        self, order: Order, *, expected_version: int, owner: str, prices: bool = False
    ) -> bool:
        """Compare-and-set: store every mutable field of `order` only if the stored order
        is still at `expected_version` and leased to `owner`; `prices`: its lines' unit
        prices too (they are set once, when the stock is held)."""

    async def start_refund(self, order: Order, *, expected_version: int) -> bool:
        """Compare-and-set of a finished, unleased order (CONFIRMED at `expected_version`)
        to `order` (REFUNDING, leased to its driver)."""

    async def count_unfinished(self) -> int: ...


class EventLog(Protocol):
    """Events to publish, written in the caller's transaction (the outbox)."""

    async def add(self, event: str, *, subject: str, data: dict[str, Any]) -> None: ...


class HistoryRepository(Protocol):
    """The read model's facts, each as its event said it; the first to arrive wins (the
    same fact again, under another event id, changes nothing)."""

    async def add_outcome(self, outcome: OrderOutcome, *, event_id: str) -> None: ...

    async def add_refund(self, refund: OrderRefund, *, event_id: str) -> None: ...

    async def add_transfer(self, transfer: CommittedTransfer, *, event_id: str) -> None: ...

    async def get(self, order_id: str) -> HistoryEntry | None: ...

    async def page_for_customer(
        self, customer_id: str, *, limit: int, after: HistoryEntry | None
    ) -> list[HistoryEntry]:
        """Newest first (by when the order ended); `after`: the previous page's last."""


class OrdersUnitOfWork(UnitOfWork, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def orders(self) -> OrderRepository: ...

    @property
    def idempotency(self) -> ResourceKeys:
        """The Idempotency-Keys of POST /orders, each naming the order it created."""

    @property
    def events(self) -> EventLog: ...

    @property
    def history(self) -> HistoryRepository: ...


UnitOfWorkFactory = KitUnitOfWorkFactory[OrdersUnitOfWork]


# -- faults, metrics -------------------------------------------------------------------------


class Faults(Protocol):
    def hit(self, point: FaultPoint) -> None:
        """Return, or end the process there (fault injection in tests and chaos runs)."""


class SagaMetrics(Protocol):
    def saga_finished(self, state: str, reason: str | None, seconds: float) -> None:
        """An order became CONFIRMED or CANCELLED, `seconds` after it was placed."""

    def step_result(self, step: str, result: str) -> None:
        """What one run of a step led to: `advanced`, `retry`, `error`."""

    def unfinished(self, count: int) -> None: ...

    def recovery_action(self, kind: str) -> None: ...

    def order_refused(self, problem: str) -> None:
        """A POST refused before anything was written, by problem type."""

    def refund_finished(self, outcome: str) -> None:
        """The refund of a CONFIRMED order ended: `refunded` or `refused`."""
