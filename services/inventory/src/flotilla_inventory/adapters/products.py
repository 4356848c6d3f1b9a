"""Products over SQLAlchemy Core, on SQLite and PostgreSQL alike.

The stock statements are conditional single statements with RETURNING: a hold
(`held = held + q WHERE on_hand - held >= q`) either takes the units and says what is
left, or changes nothing; there is no read-then-write window for a racing transaction.
They are built once here (the hot path of every reservation), with bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any, cast

from sqlalchemy import BigInteger, String, bindparam, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import CursorResult, Row
from sqlalchemy.ext.asyncio import AsyncSession

from flotilla_inventory.adapters.tables import products
from flotilla_inventory.domain import MAX_ON_HAND, Product, StockLevel
from flotilla_inventory.service_layer.ports import Held
from flotilla_kit.db import UtcDateTime

__all__ = ["SqlProducts"]

_ID = bindparam("product_id", type_=String())
_QUANTITY = bindparam("quantity", type_=BigInteger())
_DELTA = bindparam("delta", type_=BigInteger())
_NOW = bindparam("now", type_=UtcDateTime())
_LEVEL = (products.c.sku, products.c.on_hand, products.c.held, products.c.version)

_HOLD = (
    update(products)
    .where(products.c.id == _ID, products.c.on_hand - products.c.held >= _QUANTITY)
    .values(held=products.c.held + _QUANTITY, version=products.c.version + 1)
    .returning(*_LEVEL, products.c.price_minor, products.c.currency)
)
_UNHOLD = (
    update(products)
    .where(products.c.id == _ID)
    .values(held=products.c.held - _QUANTITY, version=products.c.version + 1)
    .returning(*_LEVEL)
)
_SELL = (
    update(products)
    .where(products.c.id == _ID)
    .values(
        on_hand=products.c.on_hand - _QUANTITY,
        held=products.c.held - _QUANTITY,
        version=products.c.version + 1,
    )
    .returning(*_LEVEL)
)
_ADJUST = (
    update(products)
    .where(
        products.c.id == _ID,
        products.c.on_hand + _DELTA - products.c.held >= 0,
        products.c.on_hand + _DELTA <= MAX_ON_HAND,
    )
    .values(on_hand=products.c.on_hand + _DELTA, version=products.c.version + 1, updated_at=_NOW)
    .returning(*products.c)
)
_GET = select(products).where(products.c.id == _ID)


def _product(row: Row[Any]) -> Product:
    m = row._mapping
    return Product(
        id=m["id"],
        sku=m["sku"],
        name=m["name"],
        price_minor=int(m["price_minor"]),
        currency=m["currency"],
        on_hand=int(m["on_hand"]),
        held=int(m["held"]),
        version=int(m["version"]),
        created_at=m["created_at"],
        updated_at=m["updated_at"],
    )


def _level(product_id: str, row: Row[Any] | None) -> StockLevel:
    if row is None:
        # Only a held line's product is given back or sold, and products are never
        # deleted: a missing row here is a bug, not a request to answer.
        raise LookupError(f"product {product_id!r} vanished under a held reservation")
    return StockLevel(product_id, row.sku, int(row.on_hand), int(row.held), int(row.version))


class SqlProducts:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, product: Product) -> bool:
        insert = (
            postgresql_insert
            if self.session.get_bind().dialect.name == "postgresql"
            else sqlite_insert
        )
        statement = (
            insert(products)
            .values(
                id=product.id,
                sku=product.sku,
                name=product.name,
                price_minor=product.price_minor,
                currency=product.currency,
                on_hand=product.on_hand,
                held=product.held,
                version=product.version,
                created_at=product.created_at,
                updated_at=product.updated_at,
            )
            .on_conflict_do_nothing()  # the id or the sku: either way, not added
        )
        result = cast(CursorResult[Any], await self.session.execute(statement))
        return result.rowcount == 1

    async def get(self, product_id: str) -> Product | None:
        row = (await self.session.execute(_GET, {"product_id": product_id})).first()
        return _product(row) if row else None

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        if not product_ids:
            return {}
        rows = await self.session.execute(
            select(products).where(products.c.id.in_(list(product_ids)))
        )
        return {row.id: _product(row) for row in rows}

    async def by_sku(self, sku: str) -> Product | None:
        row = (await self.session.execute(select(products).where(products.c.sku == sku))).first()
        return _product(row) if row else None

    async def page(self, *, limit: int, after_sku: str | None) -> list[Product]:
        query = select(products).order_by(products.c.sku).limit(limit)
        if after_sku is not None:
            query = query.where(products.c.sku > after_sku)
        return [_product(row) for row in await self.session.execute(query)]

    async def update_details(
        self, product_id: str, *, name: str | None, price_minor: int | None, now: dt.datetime
    ) -> Product | None:
        values: dict[str, Any] = {"updated_at": now}
        if name is not None:
            values["name"] = name
        if price_minor is not None:
            values["price_minor"] = price_minor
        row = (
            await self.session.execute(
                update(products)
                .where(products.c.id == product_id)
                .values(**values)
                .returning(*products.c)
            )
        ).first()
        return _product(row) if row else None

    async def hold(self, product_id: str, quantity: int) -> Held | None:
        row = (
            await self.session.execute(_HOLD, {"product_id": product_id, "quantity": quantity})
        ).first()
        if row is None:
            return None
        return Held(_level(product_id, row), int(row.price_minor), row.currency)

    async def unhold(self, product_id: str, quantity: int) -> StockLevel:
        result = await self.session.execute(
            _UNHOLD, {"product_id": product_id, "quantity": quantity}
        )
        return _level(product_id, result.first())

    async def sell(self, product_id: str, quantity: int) -> StockLevel:
        result = await self.session.execute(_SELL, {"product_id": product_id, "quantity": quantity})
        return _level(product_id, result.first())

    async def adjust(self, product_id: str, delta: int, *, now: dt.datetime) -> Product | None:
        row = (
            await self.session.execute(
                _ADJUST, {"product_id": product_id, "delta": delta, "now": now}
            )
        ).first()
        return _product(row) if row else None
