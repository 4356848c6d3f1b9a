"""The invoices page and the PDF of one document."""

from __future__ import annotations

from typing import Any

from flotilla_web.domain import ApiFailed, NotFound
from flotilla_web.service_layer.answers import expect_ok, items_of, path_id
from flotilla_web.service_layer.ports import StreamedAnswer, UserApi

__all__ = ["INVOICES", "INVOICES_PAGE", "invoice_pdf", "my_invoices"]

INVOICES = "/api/v1/invoices"
INVOICES_PAGE = 50
PDF = "application/pdf"


async def my_invoices(api: UserApi) -> list[dict[str, Any]]:
    """The user's invoices and credit notes, newest first."""
    return items_of(expect_ok(await api.get(INVOICES, params={"limit": INVOICES_PAGE}), "invoices"))


async def invoice_pdf(api: UserApi, invoice_id: str) -> StreamedAnswer:
    """The document's PDF, still streaming; NotFound for someone else's or a missing one."""
    answer = await api.stream(f"{INVOICES}/{path_id(invoice_id)}", accept=PDF)
    if answer.status == 200 and answer.headers.get("content-type", "").startswith(PDF):
        return answer
    await answer.close()
    if answer.status == 404:
        raise NotFound
    raise ApiFailed(answer.status, "invoice PDF")
