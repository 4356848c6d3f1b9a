"""The bank's pages: the user's accounts, one account's statement, a transfer."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from flotilla_kit.text import refusal
from flotilla_web.domain import ApiFailed, InvalidAmount, InvalidForm, parse_amount
from flotilla_web.service_layer.answers import expect_ok, items_of, path_id
from flotilla_web.service_layer.ports import UserApi

__all__ = [
    "ACCOUNTS",
    "STATEMENT_PAGE",
    "TRANSFERS",
    "Statement",
    "TransferOutcome",
    "account_statement",
    "my_accounts",
    "send_transfer",
    "valid_key",
]

ACCOUNTS = "/api/v1/accounts"
TRANSFERS = "/api/v1/transfers"
STATEMENT_PAGE = 50
_MAX_ACCOUNT_ID = 64


async def my_accounts(api: UserApi) -> list[dict[str, Any]]:
    return items_of(expect_ok(await api.get(ACCOUNTS), "accounts"))


@dataclass(frozen=True, slots=True)
class Statement:
    account: dict[str, Any]
    entries: list[dict[str, Any]]
    # `after` of the next (older) page, or None on the last.
    next_after: str | None


async def account_statement(api: UserApi, account_id: str, *, after: str | None) -> Statement:
    """The account and a page of its entries, newest first; NotFound for an account that
    is not the user's (the API answers someone else's like a missing one)."""
    path = f"{ACCOUNTS}/{path_id(account_id)}"
    params: dict[str, str | int] = {"limit": STATEMENT_PAGE}
    if after:
        params["after"] = after
    account, entries = await asyncio.gather(
        api.get(path), api.get(f"{path}/entries", params=params)
    )
    body = expect_ok(account, "account")
    if entries.status == 422:  # a cursor the API refuses (edited by hand): the first page
        entries = await api.get(f"{path}/entries", params={"limit": STATEMENT_PAGE})
    page = expect_ok(entries, "statement")
    following = page.get("next") if isinstance(page, dict) else None
    return Statement(body, items_of(page), str(following) if following is not None else None)


def valid_key(value: str) -> bool:
    """An idempotency key as the pages make them: a UUID."""
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class TransferOutcome:
    """What became of a transfer, as the page says it: `201` completed, `202` accepted
    and finishing, `refused` (nothing moved, `detail` says why)."""

    status: Literal["201", "202", "refused"]
    transfer: dict[str, Any] | None
    detail: str = ""


async def send_transfer(
    api: UserApi, *, from_account: str, to_account: str, amount: str, idempotency_key: str
) -> TransferOutcome:
    """Checks the form (InvalidForm naming each field that is wrong, nothing sent), then
    asks payments; the same key again is the same transfer (payments replays it)."""
    accounts = await my_accounts(api)
    source = next((a for a in accounts if a.get("id") == from_account), None)
    errors: dict[str, str] = {}
    if source is None:
        errors["from_account"] = "Choose one of your accounts."
    to_account = to_account.strip()
    if not to_account:
        errors["to_account"] = "Enter the account to send the money to."
    elif len(to_account) > _MAX_ACCOUNT_ID or refusal(to_account) is not None:
        errors["to_account"] = "That is not an account id (they look like acc_0_1f2e...)."
    elif to_account == from_account:
        errors["to_account"] = "Choose another account than the one you pay from."
    currency = str(source.get("currency", "EUR")) if source is not None else "EUR"
    amount_minor = 0
    try:
        amount_minor = parse_amount(amount, currency)
    except InvalidAmount as error:
        errors["amount"] = str(error)
    if not valid_key(idempotency_key):
        errors["idempotency_key"] = "This form has expired: check it and send it again."
    if errors:
        raise InvalidForm(errors)
    answer = await api.post(
        TRANSFERS,
        json={
            "from_account": from_account,
            "to_account": to_account,
            "amount_minor": amount_minor,
            "currency": currency,
        },
        headers={"Idempotency-Key": idempotency_key},
    )
    body = answer.body if isinstance(answer.body, dict) else None
    if answer.status == 201:
        return TransferOutcome("201", body)
    if answer.status == 202:
        return TransferOutcome("202", body)
    if 400 <= answer.status < 500:
        return TransferOutcome("refused", None, answer.detail or "The transfer was refused.")
    if answer.status == 503:
        detail = answer.detail or "The bank could not complete the transfer now."
        return TransferOutcome("refused", None, f"{detail} Nothing moved; try again later.")
    raise ApiFailed(answer.status, f"transfer: {answer.detail or 'no detail'}")
