"""Request and response bodies of the accounts REST API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from flotilla_accounts.domain import CURRENCIES, MAX_AMOUNT_MINOR, Account, StatementLine
from flotilla_kit.text import ApiModel, Name, SingleLine

__all__ = [
    "AccountList",
    "AccountOut",
    "DepositIn",
    "DepositOut",
    "OpenAccountIn",
    "Statement",
    "StatementItem",
]

# A name the customer reads: one line, NFC (the kit's text rule), trimmed.
AccountName = Annotated[Name, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
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


class OpenAccountIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    name: AccountName = Field(examples=["Everyday"])
    currency: CurrencyCode

    _currency = field_validator("currency")(_known_currency)


class DepositIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    amount_minor: StrictInt = Field(
        gt=0, le=MAX_AMOUNT_MINOR, description="Amount in minor units (cents).", examples=[2500]
    )
    currency: CurrencyCode
    reference: SingleLine = Field(default="deposit", max_length=140)

    _currency = field_validator("currency")(_known_currency)


class AccountOut(BaseModel):
    id: str
    owner_id: str
    name: str
    currency: str
    balance_minor: int = Field(description="Balance in minor units (cents).")
    available_minor: int = Field(
        description="What can be spent now: the balance less amounts held for transfers "
        "not decided yet."
    )
    created_at: dt.datetime

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            owner_id=account.owner_id,
            name=account.name,
            currency=account.currency,
            balance_minor=account.balance_minor,
            available_minor=account.available_minor,
            created_at=account.created_at,
        )


class AccountList(BaseModel):
    items: list[AccountOut]


class DepositOut(BaseModel):
    posting_id: str
    account: AccountOut


class StatementItem(BaseModel):
    id: int = Field(description="The entry's id; newer entries have larger ids.")
    posting_id: str
    kind: str = Field(
        description="deposit, transfer (same shard), transfer.debit or transfer.credit "
        "(a side of a cross-shard transfer)."
    )
    amount_minor: int = Field(description="Money in (positive) or out (negative), minor units.")
    currency: str
    reference: str
    created_at: dt.datetime

    @classmethod
    def of(cls, line: StatementLine) -> StatementItem:
        return cls(
            id=line.id,
            posting_id=line.posting_id,
            kind=line.kind,
            amount_minor=line.amount_minor,
            currency=line.currency,
            reference=line.reference,
            created_at=line.created_at,
        )


class Statement(BaseModel):
    items: list[StatementItem]
    next: str | None = Field(
        description="Pass as `after` to get the next (older) page; null on the last page."
    )
