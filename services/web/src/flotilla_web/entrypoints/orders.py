"""The order pages (/orders, /orders/{id} and the JSON status it polls) and the invoices
(/invoices, /invoices/{id}/pdf)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from flotilla_web.entrypoints.rendering import render
from flotilla_web.entrypoints.sessions import CurrentSession
from flotilla_web.service_layer import invoices, orders

__all__ = ["router"]

router = APIRouter()

# What a PDF's file name may hold when passed on to the browser.
_FILE_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


@router.get("/orders", include_in_schema=False)
async def order_history(request: Request, web: CurrentSession) -> HTMLResponse:
    found = await orders.my_orders(web.api)
    return render(request, "orders.html", {"title": "Orders", "orders": found}, session=web)


@router.get("/orders/{order_id}", include_in_schema=False)
async def order(request: Request, order_id: str, web: CurrentSession) -> HTMLResponse:
    found = await orders.order(web.api, order_id)
    return render(
        request,
        "order.html",
        {
            "title": f"Order {order_id}",
            "order": found,
            "final": found.get("state") in orders.FINAL_STATES,
        },
        session=web,
    )


@router.get("/orders/{order_id}/status", include_in_schema=False)
async def order_status(order_id: str, web: CurrentSession) -> JSONResponse:
    status: dict[str, Any] = await orders.order_status(web.api, order_id)
    return JSONResponse(status, headers={"Cache-Control": "no-store"})


@router.get("/invoices", include_in_schema=False)
async def invoice_list(request: Request, web: CurrentSession) -> HTMLResponse:
    found = await invoices.my_invoices(web.api)
    return render(request, "invoices.html", {"title": "Invoices", "invoices": found}, session=web)


@router.get("/invoices/{invoice_id}/pdf", include_in_schema=False)
async def invoice_pdf(invoice_id: str, web: CurrentSession) -> StreamingResponse:
    answer = await invoices.invoice_pdf(web.api, invoice_id)
    name = invoice_id if _FILE_NAME.fullmatch(invoice_id) else "invoice"
    sent = answer.headers.get("content-disposition", "")
    found = re.search(r'filename="([^"]+)"', sent)
    if found is not None and _FILE_NAME.fullmatch(found.group(1).removesuffix(".pdf")):
        name = found.group(1).removesuffix(".pdf")
    headers = {
        "Content-Disposition": f'inline; filename="{name}.pdf"',
        "Cache-Control": "no-store",
    }
    return StreamingResponse(
        answer.chunks,
        media_type="application/pdf",
        headers=headers,
        background=BackgroundTask(answer.close),
    )
