"""The shop's pages: /shop, /basket (and its forms), /checkout."""

from __future__ import annotations

import uuid

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from flotilla_web.domain import MAX_QUANTITY, InvalidForm
from flotilla_web.entrypoints.rendering import render
from flotilla_web.entrypoints.sessions import CheckedForm, CurrentSession, WebSession, Wired, field
from flotilla_web.service_layer import bank, shop
from flotilla_web.service_layer.bank import valid_key

__all__ = ["router"]

router = APIRouter()


async def _shop_page(
    request: Request,
    web: WebSession,
    *,
    errors: dict[str, str] | None = None,
    failed_product: str = "",
    status: int = 200,
) -> HTMLResponse:
    products = await shop.catalogue(web.api)
    return render(
        request,
        "shop.html",
        {
            "title": "Shop",
            "products": products,
            "errors": errors or {},
            "failed_product": failed_product,
            "max_quantity": MAX_QUANTITY,
        },
        session=web,
        status=status,
    )


@router.get("/shop", include_in_schema=False)
async def catalogue(request: Request, web: CurrentSession) -> HTMLResponse:
    return await _shop_page(request, web)


def _quantity(text: str) -> int:
    text = text.strip()
    if not text.isdigit() or not 1 <= int(text) <= MAX_QUANTITY:
        raise InvalidForm({"quantity": f"Enter a whole number from 1 to {MAX_QUANTITY:,}."})
    return int(text)


@router.post("/basket", include_in_schema=False)
async def add_to_basket(
    request: Request, web: CurrentSession, form: CheckedForm, wiring: Wired
) -> Response:
    product_id = field(form, "product_id")
    try:
        await shop.add_to_basket(
            wiring.uow,
            web.api,
            session_id=web.id,
            product_id=product_id,
            quantity=_quantity(field(form, "quantity")),
        )
    except InvalidForm as invalid:
        errors = dict(invalid.errors)
        if "product_id" in errors:  # shown at the quantity: the field the user sees
            errors["quantity"] = errors.pop("product_id")
        return await _shop_page(request, web, errors=errors, failed_product=product_id, status=400)
    return RedirectResponse("/basket", status_code=303)


async def _basket_page(
    request: Request,
    web: WebSession,
    *,
    errors: dict[str, str] | None = None,
    values: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    lines = await shop.basket_lines(web.api, web.session.basket)
    accounts = await bank.my_accounts(web.api)
    totals: dict[str, int] = {}
    for line in lines:
        if line.product is not None and line.amount_minor is not None:
            currency = str(line.product.get("currency", ""))
            totals[currency] = totals.get(currency, 0) + line.amount_minor
    values = values or {}
    key = values.get("idempotency_key", "")
    return render(
        request,
        "basket.html",
        {
            "title": "Basket",
            "lines": lines,
            "totals": totals,
            "accounts": accounts,
            "errors": errors or {},
            "values": values,
            "idempotency_key": key if valid_key(key) else str(uuid.uuid4()),
        },
        session=web,
        status=status,
    )


@router.get("/basket", include_in_schema=False)
async def basket(request: Request, web: CurrentSession) -> HTMLResponse:
    return await _basket_page(request, web)


@router.post("/basket/remove", include_in_schema=False)
async def remove_from_basket(web: CurrentSession, form: CheckedForm, wiring: Wired) -> Response:
    await shop.remove_from_basket(
        wiring.uow, session_id=web.id, product_id=field(form, "product_id")
    )
    return RedirectResponse("/basket", status_code=303)


@router.post("/checkout", include_in_schema=False)
async def check_out(
    request: Request, web: CurrentSession, form: CheckedForm, wiring: Wired
) -> Response:
    values = {name: field(form, name) for name in ("account_id", "idempotency_key")}
    try:
        order_id = await shop.check_out(
            wiring.uow,
            web.api,
            session_id=web.id,
            account_id=values["account_id"],
            idempotency_key=values["idempotency_key"],
        )
    except InvalidForm as invalid:
        return await _basket_page(request, web, errors=invalid.errors, values=values, status=400)
    return RedirectResponse(f"/orders/{order_id}", status_code=303)
