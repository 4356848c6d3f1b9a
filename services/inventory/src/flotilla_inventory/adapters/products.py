"""Products over SQLAlchemy Core, on SQLite and PostgreSQL alike.

The stock statements are conditional single statements with RETURNING: a hold
(`held = held + q WHERE on_hand - held >= q`) either takes the units and says what is
left, or changes nothing; there is no read-then-write window for a racing transaction.
Every statement is declared once here (the holds are the hot path of every reservation)
and run with bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy import BigInteger, String, any_, bindparam, func, select, update
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import JSON
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.sql.base import Executable

from flotilla_inventory.adapters.tables import products
from flotilla_inventory.domain import MAX_ON_HAND, Product, StockLevel
from flotilla_inventory.service_layer.ports import Held
from flotilla_kit.db import Query, Row, Transaction, UtcDateTime

__all__ = ["SqlProducts"]

_ID = bindparam("product_id", type_=String())
_QUANTITY = bindparam("quantity", type_=BigInteger())
_DELTA = bindparam("delta", type_=BigInteger())
_NOW = bindparam("now", type_=UtcDateTime())
_LEVEL = (products.c.sku, products.c.on_hand, products.c.held, products.c.version)


def _add(dialect_name: str) -> Executable:
    insert = postgresql_insert if dialect_name == "postgresql" else sqlite_insert
    return (
        insert(products)
        .values({column.name: bindparam(column.name) for column in products.c})
        .on_conflict_do_nothing()  # the id or the sku: either way, not added
    )


def _with_ids(dialect_name: str) -> Executable:
    """Products whose id is in the list `ids`, in one statement: the kit binds no
    expanding `IN (...)`, so the list is one parameter (a text[] on PostgreSQL, which is
    what it makes of an IN list anyway; JSON read by json_each on SQLite)."""
    if dialect_name == "postgresql":
        wanted = products.c.id == any_(bindparam("ids", type_=ARRAY(String())))
    else:
        listed = func.json_each(bindparam("ids", type_=JSON())).table_valued("value")
        wanted = products.c.id.in_(select(listed.c.value))
    return select(products).where(wanted)


_ADD = Query(_add)
_GET = Query(select(products).where(products.c.id == _ID))
_GET_MANY = Query(_with_ids)
_BY_SKU = Query(select(products).where(products.c.sku == bindparam("sku", type_=String())))
_FIRST_PAGE = Query(select(products).order_by(products.c.sku).limit(bindparam("limit")))
_PAGE_AFTER = Query(
    select(products)
    .where(products.c.sku > bindparam("after_sku", type_=String()))
    .order_by(products.c.sku)
    .limit(bindparam("limit"))
)
# A detail not given (None) keeps its value.
_UPDATE_DETAILS = Query(
    update(products)
    .where(products.c.id == _ID)
    .values(
        name=func.coalesce(bindparam("name", type_=products.c.name.type), products.c.name),
        price_minor=func.coalesce(
            bindparam("price_minor", type_=BigInteger()), products.c.price_minor
        ),
        updated_at=_NOW,
    )
    .returning(*products.c)
)
_HOLD = Query(
    update(products)
    .where(products.c.id == _ID, products.c.on_hand - products.c.held >= _QUANTITY)
    .values(held=products.c.held + _QUANTITY, version=products.c.version + 1)
    .returning(*_LEVEL, products.c.price_minor, products.c.currency)
)
_UNHOLD = Query(
    update(products)
    .where(products.c.id == _ID)
    .values(held=products.c.held - _QUANTITY, version=products.c.version + 1)
    .returning(*_LEVEL)
)
_SELL = Query(
    update(products)
    .where(products.c.id == _ID)
    .values(
        on_hand=products.c.on_hand - _QUANTITY,
        held=products.c.held - _QUANTITY,
        version=products.c.version + 1,
    )
    .returning(*_LEVEL)
)
_ADJUST = Query(
    update(products)
    .where(
        products.c.id == _ID,
        products.c.on_hand + _DELTA - products.c.held >= 0,
        products.c.on_hand + _DELTA <= MAX_ON_HAND,
    )
    .values(on_hand=products.c.on_hand + _DELTA, version=products.c.version + 1, updated_at=_NOW)
    .returning(*products.c)
)


def _product(row: Row) -> Product:
    return Product(
        id=row.id,
        sku=row.sku,
        name=row.name,
        price_minor=int(row.price_minor),
        currency=row.currency,
        on_hand=int(row.on_hand),
        held=int(row.held),
        version=int(row.version),
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


def _level(product_id: str, row: Row | None) -> StockLevel:
    if row is None:
        # Only a held line's product is given back or sold, and products are never
        # deleted: a missing row here is a bug, not a request to answer.
        raise LookupError(f"product {product_id!r} vanished under a held reservation")
    return StockLevel(product_id, row.sku, int(row.on_hand), int(row.held), int(row.version))


class SqlProducts:
    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(self, product: Product) -> bool:
        added = await self.transaction.execute(
            _ADD,
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
        return added == 1

    async def get(self, product_id: str) -> Product | None:
        row = await self.transaction.first(_GET, product_id=product_id)
        return _product(row) if row else None

    async def get_many(self, product_ids: Sequence[str]) -> dict[str, Product]:
        if not product_ids:
            return {}
        rows = await self.transaction.all(_GET_MANY, ids=list(product_ids))
        return {row.id: _product(row) for row in rows}

    async def by_sku(self, sku: str) -> Product | None:
        row = await self.transaction.first(_BY_SKU, sku=sku)
        return _product(row) if row else None

    async def page(self, *, limit: int, after_sku: str | None) -> list[Product]:
        if after_sku is None:
            rows = await self.transaction.all(_FIRST_PAGE, limit=limit)
        else:
            rows = await self.transaction.all(_PAGE_AFTER, limit=limit, after_sku=after_sku)
        return [_product(row) for row in rows]

    async def update_details(
        self, product_id: str, *, name: str | None, price_minor: int | None, now: dt.datetime
    ) -> Product | None:
        row = await self.transaction.first(
            _UPDATE_DETAILS, product_id=product_id, name=name, price_minor=price_minor, now=now
        )
        return _product(row) if row else None

    async def hold(self, product_id: str, quantity: int) -> Held | None:
        row = await self.transaction.first(_HOLD, product_id=product_id, quantity=quantity)
        if row is None:
            return None
        return Held(_level(product_id, row), int(row.price_minor), row.currency)

    async def unhold(self, product_id: str, quantity: int) -> StockLevel:
        row = await self.transaction.first(_UNHOLD, product_id=product_id, quantity=quantity)
        return _level(product_id, row)

    async def sell(self, product_id: str, quantity: int) -> StockLevel:
        row = await self.transaction.first(_SELL, product_id=product_id, quantity=quantity)
        return _level(product_id, row)

    async def adjust(self, product_id: str, delta: int, *, now: dt.datetime) -> Product | None:
        row = await self.transaction.first(_ADJUST, product_id=product_id, delta=delta, now=now)
        return _product(row) if row else None
