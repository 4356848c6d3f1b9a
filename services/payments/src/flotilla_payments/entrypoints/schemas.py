"""Request and response bodies of the payments REST API (pydantic v2)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

from flotilla_kit.text import ApiModel, SingleLine
from flotilla_payments.domain import CURRENCIES, MAX_AMOUNT_MINOR, Transfer

__all__ = [
    "InDoubtList",
    "InDoubtTransferOut",
    "OutcomeOut",
    "TransferIn",
    "TransferList",
    "TransferOut",
]

AccountId = Annotated[
    SingleLine,
    Field(
        min_length=1,
        max_length=128,
        description="An account id, as the accounts service gives it (`acc_<shard>_<hex>`).",
        examples=["acc_0_9f1c3e5a7b2d4f6e8a0c1b3d5f7e9a2c"],
    ),
]
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


class TransferIn(ApiModel):
    model_config = ConfigDict(extra="forbid")

    from_account: AccountId = Field(description="The caller's own account the money leaves.")
    to_account: AccountId = Field(description="The account the money goes to (anyone's).")
    amount_minor: StrictInt = Field(
        gt=0, le=MAX_AMOUNT_MINOR, description="Amount in minor units (cents).", examples=[2500]
    )
    currency: CurrencyCode
    reference: SingleLine = Field(default="transfer", max_length=140, examples=["rent"])
    on_behalf_of: SingleLine | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="For a service with `payments:transfer:on-behalf` (the checkout saga): "
        "the customer whose money this is. The source account must be theirs, and the "
        "transfer is theirs to read. Refused (403) for anyone else.",
    )

    _currency = field_validator("currency")(_known_currency)


class TransferOut(BaseModel):
    id: str
    from_account: str
    to_account: str
    amount_minor: int = Field(description="Amount in minor units (cents).")
    currency: str
    reference: str
    state: Literal["preparing", "committing", "aborting", "committed", "aborted"] = Field(
        description="committed and aborted are final; the others are on their way."
    )
    refusal: str | None = Field(
        description="Why it was aborted: insufficient-funds, account-not-found, "
        "currency-mismatch, invalid (the ledger's answer), or a technical reason."
    )
    path: Literal["local", "2pc"] = Field(
        description="local: both accounts on one ledger shard; 2pc: two-phase commit."
    )
    created_at: dt.datetime
    decided_at: dt.datetime | None
    completed_at: dt.datetime | None

    @classmethod
    def of(cls, transfer: Transfer) -> TransferOut:
        return cls(
            id=str(transfer.id),
            from_account=transfer.from_account,
            to_account=transfer.to_account,
            amount_minor=transfer.amount_minor,
            currency=transfer.currency,
            reference=transfer.reference,
            state=transfer.state.value,
            refusal=transfer.refusal.value if transfer.refusal else None,
            path=transfer.path.value,
            created_at=transfer.created_at,
            decided_at=transfer.decided_at,
            completed_at=transfer.completed_at,
        )


class TransferList(BaseModel):
    items: list[TransferOut] = Field(description="Newest first.")
    next_after: str | None = Field(
        description="Pass as `after` to get the next page; null on the last page."
    )


class InDoubtTransferOut(TransferOut):
    """A transfer not final yet, with what recovery knows of it: the one shape of
    `GET /api/v1/in-doubt-transfers` and of the `in-doubt` command's lines."""

    initiator: str = Field(description="Who asked for it (the customer, or a service).")
    age_s: float = Field(description="Seconds since it was asked for.")
    attempts: int = Field(description="How many times recovery has taken it up.")
    next_attempt_at: dt.datetime | None = Field(description="When recovery may take it up next.")
    lease_owner: str | None = Field(description="The instance driving it, if any.")
    lease_until: dt.datetime | None = Field(description="Until when that instance drives it.")

    @classmethod
    def of_unfinished(cls, transfer: Transfer, now: dt.datetime) -> InDoubtTransferOut:
        return cls(
            **TransferOut.of(transfer).model_dump(),
            initiator=transfer.initiator,
            age_s=round((now - transfer.created_at).total_seconds(), 3),
            attempts=transfer.attempts,
            next_attempt_at=transfer.next_attempt_at,
            lease_owner=transfer.lease_owner,
            lease_until=transfer.lease_until,
        )


class InDoubtList(BaseModel):
    transfers: list[InDoubtTransferOut] = Field(description="Oldest first.")


class OutcomeOut(BaseModel):
    outcome: Literal["commit", "abort", "pending"]
