"""The HTTP API served for real (`python -m flotilla_billing serve`: the kit's WSGI server
and Django chassis) on SQLite and PostgreSQL, with tokens from the kit's TokenMinter: a
customer's own documents as JSON and as a PDF, someone else's answered like a missing
one, 406 for an Accept it cannot serve, 401/403, paging newest first, staff reading a
customer's; and the consumer running inside the serving process."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from flotilla_billing.adapters.unit_of_work import SqlUnitOfWorkFactory
from flotilla_billing.domain import ConfirmedOrder, Document, OrderLine, RefundedOrder, VatRates
from flotilla_billing.entrypoints.schemas import DocumentOut, DocumentPage
from flotilla_billing.service_layer import use_cases
from flotilla_kit.db import Database
from flotilla_kit.testing import TokenMinter, serving_keys
from services.billing.tests.integration.events import order_event, publish_event
from services.billing.tests.integration.served import Served, serving
from services.billing.tests.pdfs import pdf_text

INVOICES = "/api/v1/invoices"
NOW = dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC)
PROBLEM = "application/problem+json"


def auth(minter: TokenMinter, subject: str = "alice", *roles: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {minter.mint(subject, list(roles) or ['customer'])}"}


async def _issue(
    database: Database, order_id: str, customer: str, *, refund: bool = False
) -> list[Document]:
    lines = (OrderLine("apple", 2, 150), OrderLine("book", 1, 1055))
    issued = []
    uow = SqlUnitOfWorkFactory(database)
    async with uow() as u:
        invoice = await use_cases.issue_invoice(
            documents=u.documents, events=u.events, rates=VatRates(2000, {"book": 550}), now=NOW,
            order=ConfirmedOrder(order_id, customer, "EUR", 1355, lines, "t-pay"),
        )  # fmt: skip
        assert invoice is not None
        issued.append(invoice)
        if refund:
            note = await use_cases.issue_credit_note(
                documents=u.documents, events=u.events, now=NOW,
                refund=RefundedOrder(order_id, customer, "EUR", 1355, lines, "t-refund"),
            )  # fmt: skip
            assert note is not None
            issued.append(note)
        await u.commit()
    return issued


@pytest.fixture
async def seeded(database: Database) -> dict[str, list[Document]]:
    """alice: invoices for o-1 (credited), o-2, o-3; bob: one invoice."""
    return {
        "alice": [
            *await _issue(database, "o-1", "alice", refund=True),
            *await _issue(database, "o-2", "alice"),
            *await _issue(database, "o-3", "alice"),
        ],
        "bob": await _issue(database, "b-1", "bob"),
    }


@pytest.fixture
async def served(
    migrated: str, nats_url: str, tokens: TokenMinter, tmp_path: Path, seeded: dict[str, Any]
) -> AsyncIterator[Served]:
    with serving_keys(tokens) as keys_url:
        context = serving(
            database_url=migrated, nats_url=nats_url, keys_url=keys_url, folder=tmp_path / "svc"
        )
        server = await asyncio.to_thread(context.__enter__)
        try:
            yield server
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)
        # SIGTERM: drained, the consumer and the database closed, exit 0.
        assert server.process.returncode == 0, server.log()


async def get(served: Served, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=served.url, timeout=10.0) as client:
        return await client.get(path, **kwargs)


async def test_own_documents_as_json_and_pdf_and_nobody_elses(
    served: Served, seeded: dict[str, list[Document]], tokens: TokenMinter
) -> None:
    note = seeded["alice"][1]
    answer = await get(served, f"{INVOICES}/{note.id}", headers=auth(tokens))
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert (body["kind"], body["number"], body["credits_number"]) == (
        "credit_note", "2026-000002", "2026-000001",
    )  # fmt: skip
    assert (body["net_minor"], body["vat_minor"], body["total_minor"]) == (-1250, -105, -1355)
    assert [line["vat_rate_bp"] for line in body["lines"]] == [2000, 550]
    # The documented shape is the answer's (the OpenAPI document's response model).
    assert DocumentOut.model_validate(body).model_dump(mode="json") == body
    pdf = await get(
        served, f"{INVOICES}/{note.id}", headers={**auth(tokens), "Accept": "application/pdf"}
    )
    assert pdf.status_code == 200, pdf.text
    assert pdf.headers["content-type"] == "application/pdf"
    assert pdf.headers["content-disposition"] == 'inline; filename="2026-000002.pdf"'
    text = pdf_text(pdf.content)
    assert "Credit note 2026-000002" in text
    assert "-13.55 EUR" in text
    # Another customer's document, a missing one and a non-id: the same 404.
    bobs = seeded["bob"][0]
    answers = [
        await get(served, f"{INVOICES}/{bobs.id}", headers=auth(tokens)),
        await get(served, f"{INVOICES}/{uuid.uuid4()}", headers=auth(tokens)),
        await get(served, f"{INVOICES}/not-an-id", headers=auth(tokens)),
    ]
    for missing in answers:
        assert missing.status_code == 404, missing.text
        assert missing.headers["content-type"] == PROBLEM
        assert missing.json()["type"].endswith("/invoice-not-found")
    assert len({a.json()["detail"] for a in answers}) == 1  # nothing tells them apart
    # Staff read anyone's.
    staff = await get(served, f"{INVOICES}/{bobs.id}", headers=auth(tokens, "sam", "support"))
    assert staff.status_code == 200
    assert staff.json()["customer_id"] == "bob"
    # An Accept neither JSON nor PDF: 406, as a problem.
    html = await get(
        served, f"{INVOICES}/{note.id}", headers={**auth(tokens), "Accept": "text/html"}
    )
    assert html.status_code == 406, html.text
    assert html.headers["content-type"] == PROBLEM
    assert html.json()["type"].endswith("/not-acceptable")
    metrics = (await get(served, "/metrics")).text
    assert 'route="/api/v1/invoices/{invoice_id}"' in metrics


async def test_the_openapi_document_lists_both_operations(served: Served) -> None:
    # Public, as FastAPI's: the gateway fetches it for the aggregated docs.
    answer = await get(served, "/openapi.json")
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["info"]["title"] == "billing"
    paths = document["paths"]
    assert {(m, p) for p, item in paths.items() for m in item} == {
        ("get", INVOICES),
        ("get", f"{INVOICES}/{{invoice_id}}"),
    }  # the gateway's policy's templates; not /livez, /readyz, /metrics, /openapi.json
    listed = paths[INVOICES]["get"]
    assert [p["name"] for p in listed["parameters"]] == ["limit", "after", "customer_id"]
    assert listed["security"] == [{"bearer": []}]
    assert "`invoices:read`" in listed["description"]
    page = listed["responses"]["200"]["content"]["application/json"]["schema"]
    assert page == {"$ref": "#/components/schemas/DocumentPage"}
    one = paths[f"{INVOICES}/{{invoice_id}}"]["get"]
    assert one["summary"] == "One invoice or credit note, as JSON or as a PDF."
    assert set(one["responses"]["200"]["content"]) == {"application/json", "application/pdf"}
    assert one["responses"]["404"]["content"][PROBLEM]["schema"] == {
        "$ref": "#/components/schemas/Problem"
    }
    assert {"DocumentOut", "DocumentLineOut", "DocumentPage", "Problem"} <= set(
        document["components"]["schemas"]
    )


async def test_access_and_paging(
    served: Served, seeded: dict[str, list[Document]], tokens: TokenMinter
) -> None:
    assert (await get(served, INVOICES)).status_code == 401
    unauthorized = await get(served, INVOICES, headers={"Authorization": "Bearer nope"})
    assert unauthorized.status_code == 401
    assert "Bearer" in unauthorized.headers["www-authenticate"]
    # A role without invoices:read (load-test grants nothing).
    forbidden = await get(served, INVOICES, headers=auth(tokens, "lt", "load-test"))
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == PROBLEM
    numbers: list[str] = []
    after: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"after": after} if after else {})}
        page = await get(served, INVOICES, headers=auth(tokens), params=params)
        assert page.status_code == 200, page.text
        assert DocumentPage.model_validate(page.json()).model_dump(mode="json") == page.json()
        numbers += [item["number"] for item in page.json()["items"]]
        after = page.json()["next_after"]
        if after is None:
            break
    assert numbers == ["2026-000004", "2026-000003", "2026-000002", "2026-000001"]
    # A customer may not name another; staff may.
    other = await get(served, INVOICES, headers=auth(tokens), params={"customer_id": "bob"})
    assert other.status_code == 403
    staff = await get(
        served, INVOICES, headers=auth(tokens, "ada", "admin"), params={"customer_id": "bob"}
    )
    assert [i["number"] for i in staff.json()["items"]] == ["2026-000005"]
    for params, where in (
        ({"limit": 0}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"after": "zz"}, None),
    ):
        bad = await get(served, INVOICES, headers=auth(tokens), params=params)
        assert bad.status_code == 422, bad.text
        if where is not None:
            assert bad.json()["errors"][0]["location"] == ["query", where]
        else:
            assert bad.json()["type"].endswith("/invalid-cursor")


async def test_the_serving_process_issues_invoices_from_order_events(
    served: Served, nats_url: str, tokens: TokenMinter
) -> None:
    order = {
        "order_id": str(uuid.uuid4()), "customer_id": "carol", "currency": "EUR",
        "lines": [{"product_id": "pear", "quantity": 3, "unit_price_minor": 200}],
        "total_minor": 600, "payment_transfer_id": "t-9",
    }  # fmt: skip
    await publish_event(nats_url, order_event("order_confirmed", order))
    async with asyncio.timeout(30):
        while True:  # another process applies it: ask until it shows
            page = await get(served, INVOICES, headers=auth(tokens, "carol"))
            if page.json()["items"]:
                break
            await asyncio.sleep(0.1)
    [invoice] = page.json()["items"]
    assert (invoice["order_id"], invoice["total_minor"], invoice["vat_minor"]) == (
        order["order_id"], 600, 100,
    )  # fmt: skip
    year = dt.datetime.now(dt.UTC).year  # issued now; the seeded five are of NOW's year
    assert invoice["number"] == (f"{year}-000006" if year == NOW.year else f"{year}-000001")
    metrics = (await get(served, "/metrics")).text
    assert (
        'flotilla_events_consumed_total{consumer="billing-orders",outcome="applied"} 1.0' in metrics
    )
    assert 'flotilla_billing_documents_total{kind="invoice"} 1.0' in metrics
    assert 'flotilla_billing_documents_total{kind="credit_note"} 0.0' in metrics
    assert 'route="/api/v1/invoices"' in metrics
