"""What the use cases need from the outside world; adapters provide it, tests fake it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from flotilla_inventory.domain import (
    Product,
    Reservation,
    ReservationState,
    ReservedLine,
    StockLevel,
    StockReason,
)
from flotilla_kit.unit_of_work import UnitOfWork
from flotilla_kit.unit_of_work import UnitOfWorkFactory as KitUnitOfWorkFactory

__all__ = [
    "AuditTrail",
    "Held",
    "InventoryUnitOfWork",
    "Products",
    "ReservationMetrics",
    "Reservations",
    "StockEvents",
    "UnitOfWorkFactory",
]


@dataclass(frozen=True, slots=True)
class Held:
    """A line's stock, held: the product's level after the hold and its price then."""

    level: StockLevel
    unit_price_minor: int
    currency: str


class Products(Protocol):
    async def add(self, product: Product) -> bool:
        """Insert; False (and nothing written) when the id or the sku is taken."""
        ...

    async def get(self, product_id: str) -> Product | None: ...

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]: ...

    async def by_sku(self, sku: str) -> Product | None: ...

    async def page(self, *, limit: int, after_sku: str | None) -> list[Product]:
        """Products in sku order, those after `after_sku` when given."""
        ...

    async def update_details(
        self, product_id: str, *, name: str | None, price_minor: int | None, now: dt.datetime
    ) -> Product | None:
        """Rename and/or reprice; None when there is no such product."""
        ...

    async def hold(self, product_id: str, quantity: int) -> Held | None:
        """Hold `quantity` more, only if that many are available, in one conditional
        statement: None (and nothing changed) when the product is missing or short."""
        ...

    async def unhold(self, product_id: str, quantity: int) -> StockLevel:
        """Give held stock back (a release or an expiry)."""
        ...

    async def sell(self, product_id: str, quantity: int) -> StockLevel:
        """Held stock leaves the shop: on hand and held both drop."""
        ...

    async def adjust(self, product_id: str, delta: int, *, now: dt.datetime) -> Product | None:
        """Change stock on hand by `delta`, only if it stays at or above what is held (and
        within range): None (and nothing changed) otherwise, or when the product is
        missing."""
        ...


class Reservations(Protocol):
    async def add(self, reservation: Reservation) -> bool:
        """Insert with its lines; False (and nothing written) when the id is taken. A
        concurrent insert of the same id waits for the other transaction to end."""
        ...

    async def add_many(self, reservations: Sequence[Reservation]) -> set[str]:
        """Insert those whose id is free (in the order given: the lock order), with their
        lines; the ids inserted. A concurrent insert of the same id waits for the other
        transaction to end."""
        ...

    async def add_lines(self, lines: Sequence[tuple[str, ReservedLine]]) -> None:
        """Lines (reservation id, line) of reservations added in this transaction."""
        ...

    async def get(self, reservation_id: str) -> Reservation | None: ...

    async def decide(
        self,
        reservation_id: str,
        *,
        to: ReservationState,
        now: dt.datetime,
        overdue: bool = False,
    ) -> Reservation | None:
        """Compare-and-set out of HELD: move the reservation to `to` only if it is HELD and
        its deadline has not passed (`overdue=False`) or has (`overdue=True`). The
        reservation as decided when this call won, else None (someone else decided)."""
        ...

    async def overdue(self, now: dt.datetime, *, limit: int) -> list[str]:
        """Ids of HELD reservations whose deadline has passed, oldest deadline first."""
        ...


class StockEvents(Protocol):
    """`flotilla.inventory.stock_changed`, written in the transaction of the change."""

    async def changed(self, level: StockLevel, reason: StockReason) -> None: ...


class AuditTrail(Protocol):
    """Admin actions, recorded in the same transaction as the change."""

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None: ...


class InventoryUnitOfWork(UnitOfWork, Protocol):
    """One transaction; rolled back on exit unless committed."""

    @property
    def products(self) -> Products: ...

    @property
    def reservations(self) -> Reservations: ...

    @property
    def events(self) -> StockEvents: ...

    @property
    def audit(self) -> AuditTrail: ...


UnitOfWorkFactory = KitUnitOfWorkFactory[InventoryUnitOfWork]


class ReservationMetrics(Protocol):
    def answered(self, operation: str, outcome: str) -> None:
        """operation: reserve | commit | release; outcome: the answer's state, or the
        refusal for a refused Reserve, or `unknown` for a Commit of no reservation."""
        ...

    def expired(self, count: int) -> None:
        """Reservations the sweeper expired."""
        ...
