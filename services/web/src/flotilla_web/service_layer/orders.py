"""The order pages: one order (and its status, which the page polls), the history."""

from __future__ import annotations

from typing import Any

from flotilla_web.domain import ApiFailed
from flotilla_web.service_layer.answers import expect_ok, items_of, path_id
from flotilla_web.service_layer.ports import UserApi
from flotilla_web.service_layer.shop import ORDERS

__all__ = ["FINAL_STATES", "HISTORY_PAGE", "my_orders", "order", "order_status"]

HISTORY_PAGE = 50
# An order in one of these states changes no more by itself (the page stops polling).
FINAL_STATES = frozenset({"CONFIRMED", "CANCELLED", "REFUNDED"})


async def order(api: UserApi, order_id: str) -> dict[str, Any]:
    """The user's order; NotFound for someone else's or a missing one."""
    body = expect_ok(await api.get(f"{ORDERS}/{path_id(order_id)}"), "order")
    if not isinstance(body, dict):
        raise ApiFailed(502, "the order is not an object")
    return body


async def order_status(api: UserApi, order_id: str) -> dict[str, Any]:
    found = await order(api, order_id)
    return {"status": found.get("state"), "reason": found.get("reason")}


async def my_orders(api: UserApi) -> list[dict[str, Any]]:
    return items_of(expect_ok(await api.get(ORDERS, params={"limit": HISTORY_PAGE}), "orders"))
