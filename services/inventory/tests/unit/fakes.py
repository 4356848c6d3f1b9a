"""In-memory stand-ins for the ports: the rules run without a database.

A `FakeUow` works on a copy of the store and writes it back only on `commit()`, so a use
case that forgets to commit (or fails half way) leaves the store as it was, as the real
unit of work does. The fake products keep the database's rules too: a hold is
conditional, and stock below zero raises like a CHECK constraint would.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import TracebackType
from typing import Any, Self

from flotilla_inventory.domain import (
    MAX_ON_HAND,
    Product,
    Reservation,
    ReservationState,
    ReservedLine,
    StockLevel,
    StockReason,
)
from flotilla_inventory.service_layer.ports import Held

START = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)


class StockWouldGoNegative(Exception):
    """What the database's CHECK constraints would raise."""


@dataclass
class Store:
    products: dict[str, Product] = field(default_factory=dict)
    reservations: dict[str, Reservation] = field(default_factory=dict)
    events: list[tuple[StockLevel, StockReason]] = field(default_factory=list)
    audit: list[tuple[str, str, str, dict[str, Any]]] = field(default_factory=list)
    commits: int = 0

    def add_product(
        self,
        product_id: str,
        *,
        on_hand: int = 10,
        held: int = 0,
        price_minor: int = 500,
        sku: str | None = None,
    ) -> Product:
        product = Product(
            id=product_id,
            sku=sku or product_id.upper(),
            name=f"product {product_id}",
            price_minor=price_minor,
            currency="EUR",
            on_hand=on_hand,
            held=held,
            version=1,
            created_at=START,
            updated_at=START,
        )
        self.products[product_id] = product
        return product

    def state(self) -> tuple[object, ...]:
        """Everything a call could change, to prove a refused one changed nothing."""
        return (
            tuple(sorted(self.products.items())),
            tuple(sorted(self.reservations.items())),
            tuple(self.events),
            tuple(self.audit),
        )


def _check(product: Product) -> Product:
    if product.held < 0 or product.on_hand - product.held < 0 or product.on_hand < 0:
        raise StockWouldGoNegative(product.id)
    return product


class FakeProducts:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, product: Product) -> bool:
        if product.id in self.store.products or any(
            p.sku == product.sku for p in self.store.products.values()
        ):
            return False
        self.store.products[product.id] = product
        return True

    async def get(self, product_id: str) -> Product | None:
        return self.store.products.get(product_id)

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        return {i: self.store.products[i] for i in product_ids if i in self.store.products}

    async def by_sku(self, sku: str) -> Product | None:
        return next((p for p in self.store.products.values() if p.sku == sku), None)

    async def page(self, *, limit: int, after_sku: str | None) -> list[Product]:
        ordered = sorted(self.store.products.values(), key=lambda p: p.sku)
        return [p for p in ordered if after_sku is None or p.sku > after_sku][:limit]

    async def update_details(
        self, product_id: str, *, name: str | None, price_minor: int | None, now: dt.datetime
    ) -> Product | None:
        product = self.store.products.get(product_id)
        if product is None:
            return None
        changed = replace(
            product,
            name=name if name is not None else product.name,
            price_minor=price_minor if price_minor is not None else product.price_minor,
            updated_at=now,
        )
        self.store.products[product_id] = changed
        return changed

    def _change(self, product_id: str, *, on_hand: int = 0, held: int = 0) -> Product:
        product = self.store.products[product_id]
        changed = _check(
            replace(
                product,
                on_hand=product.on_hand + on_hand,
                held=product.held + held,
                version=product.version + 1,
            )
        )
        self.store.products[product_id] = changed
        return changed

    async def hold(self, product_id: str, quantity: int) -> Held | None:
        product = self.store.products.get(product_id)
        if product is None or product.available < quantity:
            return None
        changed = self._change(product_id, held=quantity)
        return Held(changed.stock, changed.price_minor, changed.currency)

    async def unhold(self, product_id: str, quantity: int) -> StockLevel:
        return self._change(product_id, held=-quantity).stock

    async def sell(self, product_id: str, quantity: int) -> StockLevel:
        return self._change(product_id, on_hand=-quantity, held=-quantity).stock

    async def adjust(self, product_id: str, delta: int, *, now: dt.datetime) -> Product | None:
        product = self.store.products.get(product_id)
        if product is None or not product.held <= product.on_hand + delta <= MAX_ON_HAND:
            return None
        changed = replace(self._change(product_id, on_hand=delta), updated_at=now)
        self.store.products[product_id] = changed
        return changed


class FakeReservations:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def add(self, reservation: Reservation) -> bool:
        if reservation.id in self.store.reservations:
            return False
        self.store.reservations[reservation.id] = reservation
        return True

    async def add_many(self, reservations: Sequence[Reservation]) -> set[str]:
        return {r.id for r in reservations if await self.add(r)}

    async def add_lines(self, lines: Sequence[tuple[str, ReservedLine]]) -> None:
        for reservation_id, line in lines:
            found = self.store.reservations[reservation_id]
            self.store.reservations[reservation_id] = replace(found, lines=(*found.lines, line))

    async def get(self, reservation_id: str) -> Reservation | None:
        return self.store.reservations.get(reservation_id)

    async def decide(
        self,
        reservation_id: str,
        *,
        to: ReservationState,
        now: dt.datetime,
        overdue: bool = False,
    ) -> Reservation | None:
        found = self.store.reservations.get(reservation_id)
        if found is None or found.state is not ReservationState.HELD:
            return None
        assert found.expires_at is not None
        if (found.expires_at <= now) != overdue:
            return None
        decided = replace(found, state=to, decided_at=now)
        self.store.reservations[reservation_id] = decided
        return decided

    async def overdue(self, now: dt.datetime, *, limit: int) -> list[str]:
        due = [
            r
            for r in self.store.reservations.values()
            if r.state is ReservationState.HELD and r.expires_at and r.expires_at <= now
        ]
        due.sort(key=lambda r: (r.expires_at, r.id))
        return [r.id for r in due[:limit]]


class FakeEvents:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def changed(self, level: StockLevel, reason: StockReason) -> None:
        self.store.events.append((level, reason))


class FakeAudit:
    def __init__(self, store: Store) -> None:
        self.store = store

    async def record(
        self, *, actor: str, action: str, target: str, details: Mapping[str, Any]
    ) -> None:
        self.store.audit.append((actor, action, target, dict(details)))


class FakeUow:
    def __init__(self, store: Store) -> None:
        self._store = store
        self.committed = False

    async def __aenter__(self) -> Self:
        self._work = copy.deepcopy(self._store)
        self.products = FakeProducts(self._work)
        self.reservations = FakeReservations(self._work)
        self.events = FakeEvents(self._work)
        self.audit = FakeAudit(self._work)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        return None

    async def commit(self) -> None:
        self._store.products = self._work.products
        self._store.reservations = self._work.reservations
        self._store.events = self._work.events
        self._store.audit = self._work.audit
        self._store.commits += 1
        self.committed = True


class FakeUowFactory:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.opened = 0

    def __call__(self, *, write: bool = True) -> FakeUow:
        self.opened += 1
        return FakeUow(self.store)


@dataclass
class FakeMetrics:
    answers: list[tuple[str, str]] = field(default_factory=list)
    expirations: int = 0

    def answered(self, operation: str, outcome: str) -> None:
        self.answers.append((operation, outcome))

    def expired(self, count: int) -> None:
        self.expirations += count
