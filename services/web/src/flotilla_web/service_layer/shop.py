"""The shop's pages: the catalogue, the basket (kept in the session), checkout."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

from flotilla_web.domain import (
    ApiFailed,
    Basket,
    BasketRefused,
    InvalidForm,
    NotFound,
    NotLoggedIn,
)
from flotilla_web.service_layer.answers import expect_ok, items_of, path_id
from flotilla_web.service_layer.bank import valid_key
from flotilla_web.service_layer.ports import UnitOfWorkFactory, UserApi

__all__ = [
    "CATALOGUE_PAGE",
    "ORDERS",
    "PRODUCTS",
    "BasketLineView",
    "add_to_basket",
    "basket_lines",
    "catalogue",
    "check_out",
    "remove_from_basket",
]

PRODUCTS = "/api/v1/products"
ORDERS = "/api/v1/orders"
CATALOGUE_PAGE = 100
# Refusals of POST /orders that are about the account chosen; the others are the basket's.
_ACCOUNT_PROBLEMS = frozenset({"payment-account-invalid", "currency-mismatch"})


async def catalogue(api: UserApi) -> list[dict[str, Any]]:
    return items_of(
        expect_ok(await api.get(PRODUCTS, params={"limit": CATALOGUE_PAGE}), "products")
    )


async def _product(api: UserApi, product_id: str) -> dict[str, Any] | None:
    try:
        answer = await api.get(f"{PRODUCTS}/{path_id(product_id)}")
    except NotFound:
        return None
    if answer.status == 404:
        return None
    body = expect_ok(answer, "product")
    return body if isinstance(body, dict) else None


async def add_to_basket(
    uow: UnitOfWorkFactory, api: UserApi, *, session_id: str, product_id: str, quantity: int
) -> Basket:
    """More of a product in the basket; InvalidForm when there is no such product or the
    quantity breaks the basket's rules (nothing changed)."""
    if await _product(api, product_id) is None:
        raise InvalidForm({"product_id": "There is no such product."})
    async with uow() as u:
        session = await u.sessions.get(session_id, for_update=True)
        if session is None:
            raise NotLoggedIn
        try:
            basket = session.basket.add(product_id, quantity)
        except BasketRefused as error:
            raise InvalidForm({"quantity": str(error)}) from None
        await u.sessions.set_basket(session_id, basket)
        await u.commit()
    return basket


async def remove_from_basket(uow: UnitOfWorkFactory, *, session_id: str, product_id: str) -> Basket:
    async with uow() as u:
        session = await u.sessions.get(session_id, for_update=True)
        if session is None:
            raise NotLoggedIn
        basket = session.basket.remove(product_id)
        await u.sessions.set_basket(session_id, basket)
        await u.commit()
    return basket


@dataclass(frozen=True, slots=True)
class BasketLineView:
    product_id: str
    quantity: int
    # None: the catalogue no longer has it (it can still be removed).
    product: dict[str, Any] | None

    @property
    def amount_minor(self) -> int | None:
        price = self.product.get("price_minor") if self.product else None
        return price * self.quantity if isinstance(price, int) else None


async def basket_lines(api: UserApi, basket: Basket) -> list[BasketLineView]:
    products = await asyncio.gather(*(_product(api, line.product_id) for line in basket.lines))
    return [
        BasketLineView(line.product_id, line.quantity, product)
        for line, product in zip(basket.lines, products, strict=True)
    ]


async def check_out(
    uow: UnitOfWorkFactory, api: UserApi, *, session_id: str, account_id: str, idempotency_key: str
) -> str:
    """Places the basket as an order paid from `account_id`; its id. The same form sent
    twice (the same key) is the same order. InvalidForm (the basket kept) when the
    orders service refuses it."""
    async with uow(write=False) as u:
        session = await u.sessions.get(session_id)
    if session is None:
        raise NotLoggedIn
    basket = session.basket
    if basket.checkout is not None and basket.checkout.key == idempotency_key:
        return basket.checkout.order_id  # a second click on "Place order"
    errors: dict[str, str] = {}
    if not basket.lines:
        errors["basket"] = "Your basket is empty."
    if not account_id:
        errors["account_id"] = "Choose the account to pay from."
    if not valid_key(idempotency_key):
        errors["idempotency_key"] = "This form has expired: check it and send it again."
    if errors:
        raise InvalidForm(errors)
    answer = await api.post(
        ORDERS,
        json={
            "lines": [
                {"product_id": line.product_id, "quantity": line.quantity} for line in basket.lines
            ],
            "payment_account": account_id,
        },
        headers={"Idempotency-Key": idempotency_key},
    )
    if answer.status in (200, 201, 202) and isinstance(answer.body, dict):
        order_id = str(answer.body.get("id", ""))
        if not order_id:
            raise ApiFailed(502, "the order was accepted without an id")
        async with uow() as u:
            now = await u.sessions.get(session_id, for_update=True)
            if now is not None:
                after = now.basket.checked_out(idempotency_key, order_id, basket.lines)
                await u.sessions.set_basket(session_id, after)
                await u.commit()
        return order_id
    if 400 <= answer.status < 500 and answer.status != 404:
        field = "account_id" if answer.problem_type in _ACCOUNT_PROBLEMS else "basket"
        raise InvalidForm({field: answer.detail or "The order was refused."})
    raise ApiFailed(answer.status, f"order: {answer.detail or 'no detail'}")
