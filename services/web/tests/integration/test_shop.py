"""The shop: the catalogue, the basket kept in the session, checkout (one order however
often the form is sent), the order page and the status it polls, the order history,
invoices and their PDF."""

from __future__ import annotations

import re

import httpx
import pytest

from services.web.tests.integration.conftest import Site, csrf_of, key_of, log_in, page_csrf
from services.web.tests.integration.gateway import PDF

ORDERS = "/api/v1/orders"


async def _add(browser: httpx.AsyncClient, product_id: str, quantity: str) -> httpx.Response:
    csrf = await page_csrf(browser, "/shop")
    return await browser.post(
        "/basket", data={"csrf_token": csrf, "product_id": product_id, "quantity": quantity}
    )


async def test_the_shop_lists_products_with_price_stock_and_a_form_each(
    site: Site, alice: httpx.AsyncClient
) -> None:
    page = await alice.get("/shop")
    assert page.status_code == 200
    assert "Apple" in page.text
    assert "1.50 EUR" in page.text
    assert "10 in stock" in page.text
    assert "Out of stock" in page.text  # the pear
    assert page.text.count('<form method="post" action="/basket"') == 2
    assert page.text.count(">Add to basket</button>") == 2
    for index in (1, 2):
        assert f'<label for="quantity-{index}">Quantity</label>' in page.text


async def test_the_basket_keeps_what_was_added_until_removed(
    site: Site, alice: httpx.AsyncClient
) -> None:
    added = await _add(alice, "prd_apple", "2")
    assert (added.status_code, added.headers["location"]) == (303, "/basket")
    await _add(alice, "prd_apple", "3")
    basket = await alice.get("/basket")
    assert "Apple" in basket.text
    assert '<td class="num">5</td>' in basket.text
    assert '<td class="num" id="basket-total">7.50 EUR</td>' in basket.text
    assert '<label for="account_id">Pay from</label>' in basket.text
    assert ">Place order</button>" in basket.text
    removed = await alice.post(
        "/basket/remove", data={"csrf_token": csrf_of(basket.text), "product_id": "prd_apple"}
    )
    assert removed.status_code == 303
    assert "Your basket is empty" in (await alice.get("/basket")).text


async def test_each_session_has_its_own_basket(site: Site, alice: httpx.AsyncClient) -> None:
    await _add(alice, "prd_apple", "1")
    async with site.browser() as bob:
        await log_in(bob, "bob")
        assert "Your basket is empty" in (await bob.get("/basket")).text


@pytest.mark.parametrize(
    ("product_id", "quantity"),
    [("prd_apple", "0"), ("prd_apple", "-1"), ("prd_apple", "x"), ("prd_apple", "10001"),
     ("prd_apple", "1.5"), ("prd_nothing", "1"), ("../../x", "1"), ("", "1")],
)  # fmt: skip
async def test_a_bad_quantity_or_product_is_shown_at_the_field(
    site: Site, alice: httpx.AsyncClient, product_id: str, quantity: str
) -> None:
    answer = await _add(alice, product_id, quantity)
    assert answer.status_code == 400, answer.text
    assert answer.text.count('class="field-error"') <= 1
    if product_id in site.world.products:
        assert '<p class="field-error" id="quantity-error">' in answer.text
        assert 'aria-describedby="quantity-error"' in answer.text
    assert "Your basket is empty" in (await alice.get("/basket")).text


async def test_adding_without_the_csrf_token_is_403_and_changes_nothing(
    site: Site, alice: httpx.AsyncClient
) -> None:
    answer = await alice.post("/basket", data={"product_id": "prd_apple", "quantity": "1"})
    assert answer.status_code == 403
    assert "Your basket is empty" in (await alice.get("/basket")).text


async def test_checkout_places_one_order_and_the_page_follows_its_status(
    site: Site, alice: httpx.AsyncClient
) -> None:
    await _add(alice, "prd_apple", "2")
    basket = await alice.get("/basket")
    data = {
        "csrf_token": csrf_of(basket.text),
        "idempotency_key": key_of(basket.text),
        "account_id": site.alice_eur,
    }
    placed = await alice.post("/checkout", data=data)
    assert placed.status_code == 303, placed.text
    again = await alice.post("/checkout", data=data)  # a double click
    assert again.headers["location"] == placed.headers["location"]
    (order_id,) = site.world.orders
    assert placed.headers["location"] == f"/orders/{order_id}"
    assert len(site.world.calls_to("POST", ORDERS)) == 1
    assert site.world.calls_to("POST", ORDERS)[0].idempotency_key == data["idempotency_key"]
    assert "Your basket is empty" in (await alice.get("/basket")).text

    page = await alice.get(f"/orders/{order_id}")
    assert page.status_code == 200
    assert re.search(
        rf'<p id="order-status" [^>]*data-status="PENDING" data-poll="/orders/{order_id}/status"'
        r' aria-live="polite">',
        page.text,
    ), page.text
    status = await alice.get(f"/orders/{order_id}/status")
    assert status.json() == {"status": "PENDING", "reason": None}
    site.world.orders[order_id]["state"] = "CANCELLED"
    site.world.orders[order_id]["reason"] = "insufficient-funds"
    status = await alice.get(f"/orders/{order_id}/status")
    assert status.json() == {"status": "CANCELLED", "reason": "insufficient-funds"}
    final = await alice.get(f"/orders/{order_id}")
    assert 'data-status="CANCELLED"' in final.text
    assert "data-poll" not in final.text

    history = await alice.get("/orders")
    assert f'<a class="id" href="/orders/{order_id}">' in history.text


async def test_a_refused_checkout_keeps_the_basket_and_names_the_field(
    site: Site, alice: httpx.AsyncClient
) -> None:
    await _add(alice, "prd_apple", "1")
    basket = await alice.get("/basket")
    answer = await alice.post(
        "/checkout",
        data={
            "csrf_token": csrf_of(basket.text),
            "idempotency_key": key_of(basket.text),
            "account_id": site.bob_eur,  # not hers: the orders service refuses it
        },
    )
    assert answer.status_code == 400
    assert (
        '<p class="field-error" id="account_id-error">Not an account of yours.</p>' in answer.text
    )
    assert "Apple" in (await alice.get("/basket")).text


async def test_checkout_of_an_empty_basket_is_a_field_error(
    site: Site, alice: httpx.AsyncClient
) -> None:
    basket = await alice.get("/basket")
    answer = await alice.post(
        "/checkout",
        data={"csrf_token": csrf_of(basket.text), "idempotency_key": "x", "account_id": "a"},
    )
    assert answer.status_code == 400
    assert 'id="basket-error"' in answer.text
    assert site.world.calls_to("POST", ORDERS) == []


async def test_someone_elses_order_is_404_as_a_page_and_as_json(
    site: Site, alice: httpx.AsyncClient
) -> None:
    site.world.orders["bobs"] = {"id": "bobs", "customer_id": "user-bob", "state": "PENDING"}
    page = await alice.get("/orders/bobs")
    assert page.status_code == 404
    assert "<h1>Not found</h1>" in page.text
    status = await alice.get("/orders/bobs/status")
    assert status.status_code == 404
    assert status.headers["content-type"].startswith("application/problem+json")


async def test_invoices_are_listed_and_their_pdf_streamed(
    site: Site, alice: httpx.AsyncClient
) -> None:
    site.world.invoices["inv_1"] = {
        "id": "inv_1", "kind": "invoice", "number": "2026-000001", "order_id": "o-1",
        "customer_id": "user-alice", "currency": "EUR", "total_minor": 300,
        "issued_at": "2026-12-07T10:00:00+00:00",
    }  # fmt: skip
    site.world.invoices["inv_2"] = {
        **site.world.invoices["inv_1"],
        "id": "inv_2",
        "customer_id": "user-bob",
    }
    page = await alice.get("/invoices")
    assert "2026-000001" in page.text
    assert "3.00 EUR" in page.text
    assert 'href="/invoices/inv_1/pdf"' in page.text
    assert "inv_2" not in page.text
    pdf = await alice.get("/invoices/inv_1/pdf")
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'inline; filename="2026-000001.pdf"'
    assert pdf.content == PDF
    other = await alice.get("/invoices/inv_2/pdf")
    assert other.status_code == 404
    assert "<h1>Not found</h1>" in other.text
