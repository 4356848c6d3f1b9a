"""The catalogue: products, their details and their stock on hand, one function per use
case. Reads are public; changes need `inventory:write` (admin) and are audited.

Every stock change writes its `stock_changed` event in the same transaction, with the
product's new `version`.
"""

from __future__ import annotations

import datetime as dt

from flotilla_inventory.domain import (
    MAX_ON_HAND,
    MAX_PRICE_MINOR,
    MAX_REASON_LENGTH,
    NAME_LENGTH,
    Product,
    StockReason,
    new_product_id,
    product_problem,
    valid_sku,
)
from flotilla_inventory.service_layer.errors import (
    DuplicateSku,
    InsufficientStock,
    InvalidCursor,
    InvalidProduct,
    NotAllowed,
    ProductNotFound,
)
from flotilla_inventory.service_layer.ports import InventoryUnitOfWork
from flotilla_kit.tokens import Principal

__all__ = [
    "WRITE_PERMISSION",
    "adjust_stock",
    "create_product",
    "get_product",
    "list_products",
    "update_product",
]

WRITE_PERMISSION = "inventory:write"


def _require(principal: Principal, permission: str) -> None:
    if not principal.can(permission):
        raise NotAllowed(permission)


async def create_product(
    uow: InventoryUnitOfWork,
    *,
    principal: Principal,
    sku: str,
    name: str,
    price_minor: int,
    currency: str,
    on_hand: int,
    now: dt.datetime,
) -> Product:
    _require(principal, WRITE_PERMISSION)
    problem = product_problem(
        sku=sku, name=name, price_minor=price_minor, currency=currency, on_hand=on_hand
    )
    if problem is not None:
        raise InvalidProduct(problem)
    product = Product(
        id=new_product_id(),
        sku=sku,
        name=name,
        price_minor=price_minor,
        currency=currency,
        on_hand=on_hand,
        held=0,
        version=1,
        created_at=now,
        updated_at=now,
    )
    if not await uow.products.add(product):
        raise DuplicateSku(sku)
    await uow.events.changed(product.stock, StockReason.CREATED)
    await uow.audit.record(
        actor=principal.subject,
        action="product.created",
        target=product.id,
        details={
            "sku": sku,
            "name": name,
            "price_minor": price_minor,
            "currency": currency,
            "on_hand": on_hand,
        },
    )
    return product


async def get_product(uow: InventoryUnitOfWork, *, product_id: str) -> Product:
    product = await uow.products.get(product_id)
    if product is None:
        raise ProductNotFound(product_id)
    return product


async def list_products(
    uow: InventoryUnitOfWork, *, limit: int, after: str | None = None
) -> tuple[list[Product], str | None]:
    """A page of the catalogue in sku order, and where the next page starts (None on the
    last page). `after` is the previous page's `next_after`: the last sku it showed."""
    if after is not None and not valid_sku(after):
        raise InvalidCursor
    found = await uow.products.page(limit=limit + 1, after_sku=after)
    page = found[:limit]
    return page, (page[-1].sku if len(found) > limit else None)


async def update_product(
    uow: InventoryUnitOfWork,
    *,
    principal: Principal,
    product_id: str,
    name: str | None = None,
    price_minor: int | None = None,
    now: dt.datetime,
) -> Product:
    """Rename and/or reprice. New reservations get the new price; held ones keep theirs
    (their lines carry the price they were held at)."""
    _require(principal, WRITE_PERMISSION)
    if name is None and price_minor is None:
        raise InvalidProduct("give a new name, a new price_minor, or both")
    if name is not None and (not name.strip() or len(name) > NAME_LENGTH):
        raise InvalidProduct(f"name must be 1 to {NAME_LENGTH} characters")
    if price_minor is not None and not 0 < price_minor <= MAX_PRICE_MINOR:
        raise InvalidProduct(f"price_minor must be between 1 and {MAX_PRICE_MINOR}")
    product = await uow.products.update_details(
        product_id, name=name, price_minor=price_minor, now=now
    )
    if product is None:
        raise ProductNotFound(product_id)
    changes: dict[str, object] = {}
    if name is not None:
        changes["name"] = name
    if price_minor is not None:
        changes["price_minor"] = price_minor
    await uow.audit.record(
        actor=principal.subject, action="product.updated", target=product_id, details=changes
    )
    return product


async def adjust_stock(
    uow: InventoryUnitOfWork,
    *,
    principal: Principal,
    product_id: str,
    delta: int,
    reason: str,
    now: dt.datetime,
) -> Product:
    """Goods in (delta > 0) or out (delta < 0: damaged, lost, counted). Stock on hand may
    not drop below what is held for reservations: refused, nothing changed."""
    _require(principal, WRITE_PERMISSION)
    if delta == 0 or abs(delta) > MAX_ON_HAND:
        raise InvalidProduct(f"delta must be non-zero and at most {MAX_ON_HAND} either way")
    if not reason.strip() or len(reason) > MAX_REASON_LENGTH:
        raise InvalidProduct(f"reason must be 1 to {MAX_REASON_LENGTH} characters")
    product = await uow.products.adjust(product_id, delta, now=now)
    if product is None:
        current = await uow.products.get(product_id)
        if current is None:
            raise ProductNotFound(product_id)
        if current.on_hand + delta > MAX_ON_HAND:
            raise InvalidProduct(f"on_hand would exceed {MAX_ON_HAND}")
        raise InsufficientStock(product_id, on_hand=current.on_hand, held=current.held, delta=delta)
    await uow.events.changed(product.stock, StockReason.ADJUSTED)
    await uow.audit.record(
        actor=principal.subject,
        action="stock.adjusted",
        target=product_id,
        details={"delta": delta, "reason": reason, "on_hand": product.on_hand},
    )
    return product
