"""Request and response bodies of the accounts REST API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from flotilla_accounts.domain import CURRENCIES, MAX_AMOUNT_MINOR, Account

__all__ = ["AccountList", "AccountOut", "DepositIn", "DepositOut", "OpenAccountIn"]

AccountName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
CurrencyCode = Annotated[
    str,
    Field(
        description="ISO 4217 code of a currency the bank keeps accounts in.",
        examples=["EUR"],
        min_length=3,
        max_length=3,
        json_schema_extra={"enum": sorted(CURRENCIES)},
    ),
]


def _known_currency(code: str) -> str:
    if code not in CURRENCIES:
        raise ValueError(f"unknown currency; use one of {', '.join(sorted(CURRENCIES))}")
    return code


class OpenAccountIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: AccountName = Field(examples=["Everyday"])
    currency: CurrencyCode
    owner_id: str | None = Field(
        default=None,
        max_length=64,
        description="Open the account for another user (needs accounts:open:any).",
    )

    _currency = field_validator("currency")(_known_currency)


class DepositIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: StrictInt = Field(
        gt=0, le=MAX_AMOUNT_MINOR, description="Amount in minor units (cents).", examples=[2500]
    )
    currency: CurrencyCode
    reference: str = Field(default="deposit", max_length=140)

    _currency = field_validator("currency")(_known_currency)


class AccountOut(BaseModel):
    id: str
    owner_id: str
    name: str
    currency: str
    balance_minor: int = Field(description="Balance in minor units (cents).")
    created_at: dt.datetime

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            owner_id=account.owner_id,
            name=account.name,
            currency=account.currency,
            balance_minor=account.balance_minor,
            created_at=account.created_at,
        )


class AccountList(BaseModel):
    items: list[AccountOut]


class DepositOut(BaseModel):
    posting_id: str
    account: AccountOut
