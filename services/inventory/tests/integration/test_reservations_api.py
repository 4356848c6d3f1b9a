"""The REST reservation path (the same use cases as gRPC) on SQLite and PostgreSQL: every
answer, idempotency, the tombstone, expiry, and bad input answered with a problem that
changed nothing."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla_kit.clock import ManualClock

from .harness import Instance, auth, stock_events, take_snapshot
from .test_products_api import problem

RESERVATIONS = "/internal/v1/reservations"


async def test_reserve_then_commit(inventory: Instance) -> None:
    mug = await inventory.product("MUG-1", on_hand=10, price_minor=1250)
    cup = await inventory.product("CUP-1", on_hand=4, price_minor=800)
    held = await inventory.reserve_rest("ord-1", (mug, 3), (cup, 4))
    assert held.status_code == 200, held.text
    body = held.json()
    assert (body["reservation_id"], body["state"], body["refusal"]) == ("ord-1", "held", None)
    assert sorted((line["product_id"], line["quantity"], line["unit_price_minor"],
                   line["currency"]) for line in body["lines"]) == sorted(
        [(mug, 3, 1250, "EUR"), (cup, 4, 800, "EUR")]
    )  # fmt: skip
    assert body["expires_at"] is not None
    assert await inventory.stock(mug) == (10, 3)
    assert await inventory.stock(cup) == (4, 4)
    listed = await inventory.http.get(f"/api/v1/products/{cup}")
    assert (listed.json()["available"], listed.json()["on_hand"]) == (0, 4)

    committed = await inventory.http.post(
        f"{RESERVATIONS}/ord-1/commit", headers=inventory.orders()
    )
    assert (committed.status_code, committed.json()["state"]) == (200, "committed")
    assert await inventory.stock(mug) == (7, 0)
    assert await inventory.stock(cup) == (0, 0)
    read = await inventory.http.get(f"{RESERVATIONS}/ord-1", headers=inventory.orders())
    assert read.json() == committed.json()
    reasons = [(e["subject"], e["data"]["reason"]) for e in await stock_events(inventory.database)]
    assert reasons[2:] == sorted([(mug, "reserved"), (cup, "reserved")]) + sorted(
        [(mug, "committed"), (cup, "committed")]
    )


async def test_every_call_is_idempotent(inventory: Instance) -> None:
    mug = await inventory.product(on_hand=5)
    first = await inventory.reserve_rest("ord-1", (mug, 2))
    again = await inventory.reserve_rest("ord-1", (mug, 2))
    assert again.json() == first.json()
    assert await inventory.stock(mug) == (5, 2)
    release = f"{RESERVATIONS}/ord-1/release"
    released = await inventory.http.post(release, headers=inventory.orders())
    released_again = await inventory.http.post(release, headers=inventory.orders())
    assert released.json()["state"] == released_again.json()["state"] == "released"
    assert await inventory.stock(mug) == (5, 0)
    # The reservation stays released: a late commit or reserve says so and moves nothing.
    commit = await inventory.http.post(f"{RESERVATIONS}/ord-1/commit", headers=inventory.orders())
    late = await inventory.reserve_rest("ord-1", (mug, 2))
    assert commit.json()["state"] == late.json()["state"] == "released"
    assert await inventory.stock(mug) == (5, 0)
    events = await stock_events(inventory.database)
    assert [e["data"]["reason"] for e in events] == ["created", "reserved", "released"]


async def test_out_of_stock_and_unknown_products_hold_nothing(inventory: Instance) -> None:
    mug = await inventory.product("MUG-1", on_hand=2)
    cup = await inventory.product("CUP-1", on_hand=5)
    short = await inventory.reserve_rest("ord-1", (cup, 5), (mug, 3))
    assert short.status_code == 200
    assert (short.json()["state"], short.json()["refusal"]) == ("refused", "out_of_stock")
    assert short.json()["short_products"] == [mug]
    assert short.json()["lines"] == []
    unknown = await inventory.reserve_rest("ord-2", (cup, 1), ("prd_nope", 1))
    assert (unknown.json()["state"], unknown.json()["refusal"]) == ("refused", "unknown_product")
    assert unknown.json()["short_products"] == ["prd_nope"]
    assert await inventory.stock(mug) == (2, 0)
    assert await inventory.stock(cup) == (5, 0)
    assert [e["data"]["reason"] for e in await stock_events(inventory.database)] == [
        "created",
        "created",
    ]
    # Kept: the same answer later, even once the stock is there.
    await inventory.http.post(
        f"/api/v1/products/{mug}/stock-adjustments",
        json={"delta": 10, "reason": "delivery"},
        headers=inventory.admin(),
    )
    assert (await inventory.reserve_rest("ord-1", (cup, 5), (mug, 3))).json() == short.json()


async def test_release_before_reserve_leaves_a_tombstone(inventory: Instance) -> None:
    mug = await inventory.product(on_hand=5)
    tombstone = await inventory.http.post(
        f"{RESERVATIONS}/ord-9/release", headers=inventory.orders()
    )
    assert (tombstone.status_code, tombstone.json()["state"]) == (200, "released")
    assert tombstone.json()["lines"] == []
    late = await inventory.reserve_rest("ord-9", (mug, 1))
    assert (late.json()["state"], late.json()["refusal"]) == ("refused", "already_released")
    assert await inventory.stock(mug) == (5, 0)
    read = await inventory.http.get(f"{RESERVATIONS}/ord-9", headers=inventory.orders())
    assert read.json()["state"] == "released"


async def test_commit_or_read_of_no_reservation_is_not_found(inventory: Instance) -> None:
    before = await take_snapshot(inventory.database)
    problem(
        await inventory.http.post(f"{RESERVATIONS}/never/commit", headers=inventory.orders()),
        404, "reservation-not-found",
    )  # fmt: skip
    problem(
        await inventory.http.get(f"{RESERVATIONS}/never", headers=inventory.orders()),
        404, "reservation-not-found",
    )  # fmt: skip
    assert await take_snapshot(inventory.database) == before


async def test_a_hold_past_its_deadline_is_expired_when_next_asked(
    inventory: Instance, clock: ManualClock
) -> None:
    mug = await inventory.product(on_hand=5)
    await inventory.reserve_rest("ord-1", (mug, 2), hold_s=30)
    clock.advance(30)
    committed = await inventory.http.post(
        f"{RESERVATIONS}/ord-1/commit", headers=inventory.orders()
    )
    assert committed.json()["state"] == "expired"
    assert await inventory.stock(mug) == (5, 0)
    assert [e["data"]["reason"] for e in await stock_events(inventory.database)][-1] == "expired"


def _line(product: str = "P", quantity: Any = 1) -> dict[str, Any]:
    return {"product_id": product, "quantity": quantity}


_SCHEMA, _RULES = "validation-error", "invalid-reservation"


def _bad_reserves() -> list[tuple[str, dict[str, Any], str]]:
    """(case, change to a good request, problem): the schema refuses most; the rules
    beyond it (duplicates, a hold too long) answer `invalid-reservation`."""
    return [
        ("quantity 0", {"lines": [_line(quantity=0)]}, _SCHEMA),
        ("negative quantity", {"lines": [_line(quantity=-2)]}, _SCHEMA),
        ("huge quantity", {"lines": [_line(quantity=10_001)]}, _SCHEMA),
        ("quantity as a string", {"lines": [_line(quantity="1")]}, _SCHEMA),
        ("fractional quantity", {"lines": [_line(quantity=1.5)]}, _SCHEMA),
        ("quantity true", {"lines": [_line(quantity=True)]}, _SCHEMA),
        ("no lines", {"lines": []}, _SCHEMA),
        ("too many lines", {"lines": [_line(f"prd_{i}") for i in range(101)]}, _SCHEMA),
        ("duplicate lines", {"lines": [_line(), _line(quantity=2)]}, _RULES),
        ("product id too long", {"lines": [_line("x" * 65)]}, _SCHEMA),
        ("reservation id too long", {"reservation_id": "r" * 65}, _SCHEMA),
        ("reservation id with a slash", {"reservation_id": "a/b"}, _SCHEMA),
        ("hold longer than allowed", {"hold_s": 3601}, _RULES),
        ("negative hold", {"hold_s": -1}, _SCHEMA),
        ("unknown field", {"priority": "high"}, _SCHEMA),
    ]


@pytest.mark.parametrize(("case", "change", "slug"), _bad_reserves())
async def test_bad_reservations_are_refused_and_change_nothing(
    inventory: Instance, case: str, change: dict[str, Any], slug: str
) -> None:
    mug = await inventory.product(on_hand=5)
    body: dict[str, Any] = {"reservation_id": "ord-1", "lines": [_line(mug)], **change}
    body["lines"] = [{**line, "product_id": mug if line["product_id"] == "P" else
                      line["product_id"]} for line in body["lines"]]  # fmt: skip
    before = await take_snapshot(inventory.database)
    response = await inventory.http.post(RESERVATIONS, json=body, headers=inventory.orders())
    found = problem(response, 422, slug)
    assert found["detail"]
    assert await take_snapshot(inventory.database) == before, case


async def test_reservations_need_the_reserve_permission(inventory: Instance) -> None:
    mug = await inventory.product(on_hand=5)
    body = {"reservation_id": "ord-1", "lines": [_line(mug)]}
    before = await take_snapshot(inventory.database)
    problem(await inventory.http.post(RESERVATIONS, json=body), 401, "unauthenticated")
    for role in ("customer", "admin", "support", "service:payments"):
        headers = auth(inventory.tokens, "someone", role)
        problem(await inventory.http.post(RESERVATIONS, json=body, headers=headers), 403,
                "forbidden")  # fmt: skip
        for path in (f"{RESERVATIONS}/ord-1/commit", f"{RESERVATIONS}/ord-1/release"):
            problem(await inventory.http.post(path, headers=headers), 403, "forbidden")
        problem(await inventory.http.get(f"{RESERVATIONS}/ord-1", headers=headers), 403,
                "forbidden")  # fmt: skip
    assert await take_snapshot(inventory.database) == before


async def test_a_malformed_id_in_the_path_is_refused(inventory: Instance) -> None:
    before = await take_snapshot(inventory.database)
    problem(
        await inventory.http.post(f"{RESERVATIONS}/-bad/release", headers=inventory.orders()),
        422, "invalid-reservation",
    )  # fmt: skip
    problem(
        await inventory.http.post(f"{RESERVATIONS}/{'x' * 65}/release", headers=inventory.orders()),
        422, "validation-error",
    )  # fmt: skip
    assert await take_snapshot(inventory.database) == before
