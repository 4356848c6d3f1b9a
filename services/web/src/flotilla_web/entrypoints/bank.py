"""The bank's pages: /accounts, /accounts/{account_id}, /transfer."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from flotilla_web.domain import InvalidForm
from flotilla_web.entrypoints.rendering import render
from flotilla_web.entrypoints.sessions import CheckedForm, CurrentSession, WebSession, field
from flotilla_web.service_layer import bank
from flotilla_web.service_layer.bank import valid_key

__all__ = ["router"]

router = APIRouter()


@router.get("/accounts", include_in_schema=False)
async def accounts(request: Request, web: CurrentSession) -> HTMLResponse:
    found = await bank.my_accounts(web.api)
    return render(request, "accounts.html", {"title": "Accounts", "accounts": found}, session=web)


@router.get("/accounts/{account_id}", include_in_schema=False)
async def account(request: Request, account_id: str, web: CurrentSession) -> HTMLResponse:
    after = request.query_params.get("after")
    statement = await bank.account_statement(web.api, account_id, after=after)
    return render(
        request,
        "account.html",
        {
            "title": f"Account {statement.account.get('name') or account_id}",
            "account": statement.account,
            "entries": statement.entries,
            "next_after": statement.next_after,
        },
        session=web,
    )


def _transfer_form(
    request: Request,
    web: WebSession,
    accounts: list[dict[str, Any]],
    *,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> HTMLResponse:
    values = values or {}
    key = values.get("idempotency_key", "")
    return render(
        request,
        "transfer.html",
        {
            "title": "Transfer",
            "accounts": accounts,
            "values": values,
            "errors": errors or {},
            # A fresh key per rendering: one form sent twice is one transfer.
            "idempotency_key": key if valid_key(key) else str(uuid.uuid4()),
        },
        session=web,
        status=status,
    )


@router.get("/transfer", include_in_schema=False)
async def transfer_form(request: Request, web: CurrentSession) -> HTMLResponse:
    return _transfer_form(request, web, await bank.my_accounts(web.api))


@router.post("/transfer", include_in_schema=False)
async def transfer(request: Request, web: CurrentSession, form: CheckedForm) -> HTMLResponse:
    values = {
        name: field(form, name)
        for name in ("from_account", "to_account", "amount", "idempotency_key")
    }
    try:
        outcome = await bank.send_transfer(web.api, **values)
    except InvalidForm as invalid:
        accounts = await bank.my_accounts(web.api)
        return _transfer_form(
            request, web, accounts, values=values, errors=invalid.errors, status=400
        )
    return render(
        request,
        "transfer_result.html",
        {"title": "Transfer", "outcome": outcome},
        session=web,
        status=422 if outcome.status == "refused" else 200,
    )
