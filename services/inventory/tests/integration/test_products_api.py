"""The catalogue over REST on a real SQLite file and a real PostgreSQL: every answer, and
bad input of every kind answered with a problem that changed nothing."""

from __future__ import annotations

from typing import Any

import pytest

from flotilla_inventory.adapters.audit import AUDIT_LOG

from .harness import Instance, auth, stock_events, take_snapshot

PRODUCTS = "/api/v1/products"
NEW = {"sku": "MUG-1", "name": "Blue mug", "price_minor": 1250, "currency": "EUR", "on_hand": 7}


def problem(response: Any, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["type"] == f"https://flotilla.dev/problems/{slug}"
    assert body["status"] == status
    assert "Traceback" not in response.text
    return body


async def test_create_then_read_a_product(inventory: Instance) -> None:
    created = await inventory.http.post(PRODUCTS, json=NEW, headers=inventory.admin())
    assert created.status_code == 201, created.text
    body = created.json()
    assert body == {
        "id": body["id"], "sku": "MUG-1", "name": "Blue mug", "price_minor": 1250,
        "currency": "EUR", "available": 7, "on_hand": 7,
    }  # fmt: skip
    assert created.headers["location"] == f"{PRODUCTS}/{body['id']}"
    # Reads are public: no token.
    read = await inventory.http.get(created.headers["location"])
    assert (read.status_code, read.json()) == (200, body)
    [event] = await stock_events(inventory.database)
    assert event["type"] == "flotilla.inventory.stock_changed"
    assert event["subject"] == body["id"]
    assert event["data"] == {
        "product_id": body["id"], "sku": "MUG-1", "on_hand": 7, "reserved": 0,
        "available": 7, "version": 1, "reason": "created",
    }  # fmt: skip


async def test_the_catalogue_pages_in_sku_order(inventory: Instance) -> None:
    for sku in ("C-3", "A-1", "D-4", "B-2", "E-5"):
        await inventory.product(sku)
    first = await inventory.http.get(PRODUCTS, params={"limit": 2})
    assert first.status_code == 200
    assert [p["sku"] for p in first.json()["items"]] == ["A-1", "B-2"]
    after = first.json()["next_after"]
    second = await inventory.http.get(PRODUCTS, params={"limit": 2, "after": after})
    third = await inventory.http.get(
        PRODUCTS, params={"limit": 2, "after": second.json()["next_after"]}
    )
    assert [p["sku"] for p in second.json()["items"]] == ["C-3", "D-4"]
    assert ([p["sku"] for p in third.json()["items"]], third.json()["next_after"]) == (
        ["E-5"],
        None,
    )
    everything = await inventory.http.get(PRODUCTS)
    assert len(everything.json()["items"]) == 5
    assert everything.json()["next_after"] is None


async def test_a_repeated_create_with_the_same_key_replays_once(inventory: Instance) -> None:
    headers = inventory.admin("key-1")
    first = await inventory.http.post(PRODUCTS, json=NEW, headers=headers)
    again = await inventory.http.post(PRODUCTS, json=NEW, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    listed = await inventory.http.get(PRODUCTS)
    assert len(listed.json()["items"]) == 1
    before = await take_snapshot(inventory.database)
    reused = await inventory.http.post(PRODUCTS, json={**NEW, "name": "Red mug"}, headers=headers)
    problem(reused, 422, "idempotency-key-reused")
    assert await take_snapshot(inventory.database) == before


async def test_a_taken_sku_is_a_conflict(inventory: Instance) -> None:
    await inventory.http.post(PRODUCTS, json=NEW, headers=inventory.admin())
    before = await take_snapshot(inventory.database)
    taken = await inventory.http.post(
        PRODUCTS, json={**NEW, "name": "Other"}, headers=inventory.admin()
    )
    assert "MUG-1" in problem(taken, 409, "duplicate-sku")["detail"]
    assert await take_snapshot(inventory.database) == before


def _bad_creates() -> list[tuple[str, dict[str, Any] | bytes, int, str]]:
    return [
        ("unknown currency", {**NEW, "currency": "XYZ"}, 422, "invalid-product"),
        ("lowercase currency", {**NEW, "currency": "eur"}, 422, "invalid-product"),
        ("price 0", {**NEW, "price_minor": 0}, 422, "validation-error"),
        ("negative price", {**NEW, "price_minor": -1}, 422, "validation-error"),
        ("price as a string", {**NEW, "price_minor": "1250"}, 422, "validation-error"),
        ("fractional price", {**NEW, "price_minor": 12.5}, 422, "validation-error"),
        ("huge price", {**NEW, "price_minor": 10**13}, 422, "validation-error"),
        ("negative stock", {**NEW, "on_hand": -1}, 422, "validation-error"),
        ("stock as a float", {**NEW, "on_hand": 1.0}, 422, "validation-error"),
        ("huge stock", {**NEW, "on_hand": 10**10}, 422, "validation-error"),
        ("sku with spaces", {**NEW, "sku": "MUG 1"}, 422, "validation-error"),
        ("empty name", {**NEW, "name": ""}, 422, "validation-error"),
        ("blank name", {**NEW, "name": "   "}, 422, "invalid-product"),
        ("a NUL in the name", {**NEW, "name": "Blue\u0000mug"}, 422, "validation-error"),
        ("a bidi override in the name", {**NEW, "name": "\u202egum eulB"}, 422, "validation-error"),
        ("a NUL in the sku", {**NEW, "sku": "MUG\u0000"}, 422, "validation-error"),
        (
            "missing price",
            {k: v for k, v in NEW.items() if k != "price_minor"},
            422,
            "validation-error",
        ),
        ("unknown field", {**NEW, "held": 3}, 422, "validation-error"),
        ("not JSON", b'{"sku": ', 400, "malformed-json"),
        ("a list", b"[]", 422, "validation-error"),
    ]


@pytest.mark.parametrize(("case", "body", "status", "slug"), _bad_creates())
async def test_bad_products_are_refused_and_change_nothing(
    inventory: Instance, case: str, body: dict[str, Any] | bytes, status: int, slug: str
) -> None:
    before = await take_snapshot(inventory.database)
    headers = {**inventory.admin(), "Content-Type": "application/json"}
    if isinstance(body, bytes):
        response = await inventory.http.post(PRODUCTS, content=body, headers=headers)
    else:
        response = await inventory.http.post(PRODUCTS, json=body, headers=headers)
    problem(response, status, slug)
    assert await take_snapshot(inventory.database) == before, case


async def test_writes_need_a_key_a_token_the_role_and_json(inventory: Instance) -> None:
    before = await take_snapshot(inventory.database)
    no_key = {k: v for k, v in inventory.admin().items() if k != "Idempotency-Key"}
    problem(await inventory.http.post(PRODUCTS, json=NEW, headers=no_key), 400,
            "idempotency-key-required")  # fmt: skip
    bad_key = {**inventory.admin(), "Idempotency-Key": "x" * 129}
    problem(await inventory.http.post(PRODUCTS, json=NEW, headers=bad_key), 400,
            "invalid-idempotency-key")  # fmt: skip
    problem(await inventory.http.post(PRODUCTS, json=NEW), 401, "unauthenticated")
    for role in ("customer", "support", "service:orders"):
        headers = {**auth(inventory.tokens, "someone", role), "Idempotency-Key": "k"}
        problem(await inventory.http.post(PRODUCTS, json=NEW, headers=headers), 403, "forbidden")
    as_form = await inventory.http.post(PRODUCTS, data={"sku": "x"}, headers=inventory.admin())
    problem(as_form, 415, "unsupported-media-type")
    assert await take_snapshot(inventory.database) == before


async def test_reading_an_unknown_product_or_with_a_bad_cursor(inventory: Instance) -> None:
    problem(await inventory.http.get(f"{PRODUCTS}/prd_nope"), 404, "product-not-found")
    problem(await inventory.http.get(f"{PRODUCTS}/{'x' * 65}"), 422, "validation-error")
    problem(await inventory.http.get(PRODUCTS, params={"after": "no such!"}), 400, "invalid-cursor")
    problem(await inventory.http.get(PRODUCTS, params={"limit": 0}), 422, "validation-error")
    problem(await inventory.http.get(PRODUCTS, params={"limit": 101}), 422, "validation-error")
    problem(await inventory.http.get(PRODUCTS, params={"limit": "x"}), 422, "validation-error")


async def test_patch_renames_and_reprices(inventory: Instance) -> None:
    product_id = await inventory.product(on_hand=5)
    renamed = await inventory.http.patch(
        f"{PRODUCTS}/{product_id}", json={"name": "Green mug"}, headers=inventory.admin()
    )
    assert renamed.status_code == 200, renamed.text
    assert (renamed.json()["name"], renamed.json()["price_minor"]) == ("Green mug", 1250)
    repriced = await inventory.http.patch(
        f"{PRODUCTS}/{product_id}", json={"price_minor": 1500}, headers=inventory.admin()
    )
    assert (repriced.json()["name"], repriced.json()["price_minor"]) == ("Green mug", 1500)
    assert repriced.json()["on_hand"] == 5
    # Not a stock change: no event beyond the creation.
    assert [e["data"]["reason"] for e in await stock_events(inventory.database)] == ["created"]


async def test_a_held_reservation_keeps_its_price_and_a_new_one_gets_the_new(
    inventory: Instance,
) -> None:
    product_id = await inventory.product(price_minor=1000)
    held = await inventory.reserve_rest("r1", (product_id, 1))
    await inventory.http.patch(
        f"{PRODUCTS}/{product_id}", json={"price_minor": 1700}, headers=inventory.admin()
    )
    later = await inventory.reserve_rest("r2", (product_id, 1))
    committed = await inventory.http.post(
        "/internal/v1/reservations/r1/commit", headers=inventory.orders()
    )
    assert held.json()["lines"][0]["unit_price_minor"] == 1000
    assert committed.json()["lines"][0]["unit_price_minor"] == 1000
    assert later.json()["lines"][0]["unit_price_minor"] == 1700


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        ({}, 422, "validation-error"),
        ({"price_minor": 0}, 422, "validation-error"),
        ({"price_minor": "9"}, 422, "validation-error"),
        ({"name": ""}, 422, "validation-error"),
        ({"currency": "USD"}, 422, "validation-error"),
        ({"on_hand": 100}, 422, "validation-error"),
        ({"name": "a\u0000b"}, 422, "validation-error"),
    ],
)
async def test_bad_patches_change_nothing(
    inventory: Instance, body: dict[str, Any], status: int, slug: str
) -> None:
    product_id = await inventory.product()
    before = await take_snapshot(inventory.database)
    response = await inventory.http.patch(
        f"{PRODUCTS}/{product_id}", json=body, headers=inventory.admin()
    )
    problem(response, status, slug)
    assert await take_snapshot(inventory.database) == before


async def test_patch_of_an_unknown_product_or_by_a_customer(inventory: Instance) -> None:
    product_id = await inventory.product()
    before = await take_snapshot(inventory.database)
    missing = await inventory.http.patch(
        f"{PRODUCTS}/prd_nope", json={"name": "x"}, headers=inventory.admin()
    )
    problem(missing, 404, "product-not-found")
    customer = await inventory.http.patch(
        f"{PRODUCTS}/{product_id}", json={"name": "x"},
        headers=auth(inventory.tokens, "carol", "customer"),
    )  # fmt: skip
    problem(customer, 403, "forbidden")
    assert await take_snapshot(inventory.database) == before


async def test_stock_adjustments_in_and_out(inventory: Instance) -> None:
    product_id = await inventory.product(on_hand=5)
    url = f"{PRODUCTS}/{product_id}/stock-adjustments"
    goods_in = await inventory.http.post(
        url, json={"delta": 20, "reason": "delivery"}, headers=inventory.admin()
    )
    assert goods_in.status_code == 200, goods_in.text
    assert (goods_in.json()["on_hand"], goods_in.json()["available"]) == (25, 25)
    goods_out = await inventory.http.post(
        url, json={"delta": -4, "reason": "broken"}, headers=inventory.admin()
    )
    assert goods_out.json()["on_hand"] == 21
    assert await inventory.stock(product_id) == (21, 0)
    events = await stock_events(inventory.database)
    assert [(e["data"]["reason"], e["data"]["on_hand"], e["data"]["version"]) for e in events] == [
        ("created", 5, 1),
        ("adjusted", 25, 2),
        ("adjusted", 21, 3),
    ]


async def test_an_adjustment_is_applied_once_per_key(inventory: Instance) -> None:
    product_id = await inventory.product(on_hand=5)
    url = f"{PRODUCTS}/{product_id}/stock-adjustments"
    headers = inventory.admin("adjust-1")
    body = {"delta": 3, "reason": "delivery"}
    first = await inventory.http.post(url, json=body, headers=headers)
    again = await inventory.http.post(url, json=body, headers=headers)
    assert again.json() == first.json()
    assert again.headers["idempotency-replayed"] == "true"
    assert await inventory.stock(product_id) == (8, 0)


async def test_stock_may_not_drop_below_what_is_held(inventory: Instance) -> None:
    product_id = await inventory.product(on_hand=5)
    held = await inventory.reserve_rest("r1", (product_id, 3))
    assert held.json()["state"] == "held"
    before = await take_snapshot(inventory.database)
    response = await inventory.http.post(
        f"{PRODUCTS}/{product_id}/stock-adjustments",
        json={"delta": -3, "reason": "lost"},
        headers=inventory.admin(),
    )
    body = problem(response, 409, "insufficient-stock")
    assert "3 of them held" in body["detail"]
    assert await take_snapshot(inventory.database) == before
    # Down to exactly what is held is fine.
    ok = await inventory.http.post(
        f"{PRODUCTS}/{product_id}/stock-adjustments",
        json={"delta": -2, "reason": "lost"},
        headers=inventory.admin(),
    )
    assert (ok.status_code, ok.json()["available"]) == (200, 0)


@pytest.mark.parametrize(
    ("body", "status", "slug"),
    [
        ({"delta": 0, "reason": "nothing"}, 422, "validation-error"),
        ({"delta": "5", "reason": "x"}, 422, "validation-error"),
        ({"delta": 1.5, "reason": "x"}, 422, "validation-error"),
        ({"delta": 10**10, "reason": "x"}, 422, "validation-error"),
        ({"delta": 5}, 422, "validation-error"),
        ({"delta": 5, "reason": ""}, 422, "validation-error"),
        ({"delta": 5, "reason": " "}, 422, "invalid-product"),
        ({"delta": 5, "reason": "a\u0000b"}, 422, "validation-error"),
        ({"delta": 10**9, "reason": "over the top"}, 422, "invalid-product"),
        ({"delta": -6, "reason": "below zero"}, 409, "insufficient-stock"),
    ],
)
async def test_bad_adjustments_change_nothing(
    inventory: Instance, body: dict[str, Any], status: int, slug: str
) -> None:
    product_id = await inventory.product(on_hand=5)
    before = await take_snapshot(inventory.database)
    response = await inventory.http.post(
        f"{PRODUCTS}/{product_id}/stock-adjustments", json=body, headers=inventory.admin()
    )
    problem(response, status, slug)
    assert await take_snapshot(inventory.database) == before


async def test_adjusting_an_unknown_product_or_without_a_key(inventory: Instance) -> None:
    product_id = await inventory.product()
    before = await take_snapshot(inventory.database)
    missing = await inventory.http.post(
        f"{PRODUCTS}/prd_nope/stock-adjustments",
        json={"delta": 1, "reason": "x"},
        headers=inventory.admin(),
    )
    problem(missing, 404, "product-not-found")
    no_key = {k: v for k, v in inventory.admin().items() if k != "Idempotency-Key"}
    keyless = await inventory.http.post(
        f"{PRODUCTS}/{product_id}/stock-adjustments",
        json={"delta": 1, "reason": "x"},
        headers=no_key,
    )
    problem(keyless, 400, "idempotency-key-required")
    assert await take_snapshot(inventory.database) == before


async def test_admin_changes_are_audited(inventory: Instance) -> None:
    product_id = await inventory.product()
    await inventory.http.patch(
        f"{PRODUCTS}/{product_id}", json={"name": "x"}, headers=inventory.admin()
    )
    await inventory.http.post(
        f"{PRODUCTS}/{product_id}/stock-adjustments",
        json={"delta": 1, "reason": "found one"},
        headers=inventory.admin(),
    )
    records = await AUDIT_LOG.newest(inventory.database.url, 10)
    assert [(r["actor"], r["action"], r["target"]) for r in records] == [
        ("ada", "product.created", product_id),
        ("ada", "product.updated", product_id),
        ("ada", "stock.adjusted", product_id),
    ]
    report = await AUDIT_LOG.report(inventory.database.url, "inventory")
    assert report["intact"] is True
    support = auth(inventory.tokens, "sam", "support")
    log = await inventory.http.get("/api/v1/audit/inventory", params={"limit": 2}, headers=support)
    assert log.status_code == 200, log.text
    assert (log.json()["log"], log.json()["chain"]) == (
        "inventory", {"intact": True, "records": 3, "first_broken": None, "reason": ""},
    )  # fmt: skip
    assert [r["action"] for r in log.json()["records"]] == ["stock.adjusted", "product.updated"]
    customer = auth(inventory.tokens, "alice", "customer")
    problem(await inventory.http.get("/api/v1/audit/inventory", headers=customer), 403, "forbidden")


def test_the_openapi_documents_every_answer(inventory: Instance) -> None:
    schema = inventory.app.openapi()
    expected = {
        ("get", PRODUCTS): {"200", "400", "422"},
        ("post", PRODUCTS): {"201", "400", "401", "403", "409", "413", "415", "422"},
        ("get", PRODUCTS + "/{product_id}"): {"200", "404", "422"},
        ("patch", PRODUCTS + "/{product_id}"): {
            "200",
            "400",
            "401",
            "403",
            "404",
            "413",
            "415",
            "422",
        },
        ("post", PRODUCTS + "/{product_id}/stock-adjustments"): {
            "200",
            "400",
            "401",
            "403",
            "404",
            "409",
            "413",
            "415",
            "422",
        },
        ("post", "/internal/v1/reservations"): {"200", "400", "401", "403", "413", "415", "422"},
        ("post", "/internal/v1/reservations/{reservation_id}/commit"): {
            "200",
            "401",
            "403",
            "404",
            "422",
        },
        ("post", "/internal/v1/reservations/{reservation_id}/release"): {
            "200",
            "401",
            "403",
            "422",
        },
        ("get", "/internal/v1/reservations/{reservation_id}"): {"200", "401", "403", "404", "422"},
        ("get", "/api/v1/audit/inventory"): {"200", "401", "403", "422"},
    }
    for (method, path), codes in expected.items():
        assert set(schema["paths"][path][method]["responses"]) == codes, (method, path)
    assert set(schema["paths"]) == {path for _, path in expected}
