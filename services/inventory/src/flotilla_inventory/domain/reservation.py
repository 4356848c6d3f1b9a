"""Reservations of stock, and the rules of their life (the state machine of
`proto/flotilla_proto/inventory/v1/inventory.proto`):

    (none) --Reserve, all lines in stock--> HELD --Commit--> COMMITTED
    (none) --Reserve, a line short--------> REFUSED          HELD --Release--> RELEASED
    (none) --Release (came first)---------> RELEASED (a tombstone: a late Reserve is refused)
    HELD --hold passed (sweeper, or the next call that finds it)--> EXPIRED

A reservation's id is the caller's (an order id), so every call is idempotent per id: a
call on a reservation already past the state it asks for answers with the reservation as
it is; a call that cannot apply answers with the state that prevents it.

A refusal that depends on the stock (OUT_OF_STOCK, UNKNOWN_PRODUCT) is kept, so that the
same Reserve hears the same answer later, even after a restock. A refusal that depends on
the request alone (INVALID) writes nothing: the answer is the same anyway.
"""

from __future__ import annotations

import datetime as dt
import enum
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = [
    "MAX_LINES",
    "MAX_QUANTITY",
    "PRODUCT_ID_LENGTH",
    "Refusal",
    "RequestedLine",
    "Reservation",
    "ReservationState",
    "ReservedLine",
    "answer_to_reserve",
    "hold_problem",
    "lines_fingerprint",
    "lines_problem",
    "refused",
    "reservation_id_problem",
]

MAX_LINES = 100
MAX_QUANTITY = 10_000
PRODUCT_ID_LENGTH = 64
_RESERVATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,63}")


class ReservationState(enum.StrEnum):
    HELD = "held"
    COMMITTED = "committed"
    RELEASED = "released"
    EXPIRED = "expired"
    REFUSED = "refused"


class Refusal(enum.StrEnum):
    OUT_OF_STOCK = "out_of_stock"  # a line asks for more than is available
    UNKNOWN_PRODUCT = "unknown_product"  # a line names no product
    ALREADY_RELEASED = "already_released"  # a tombstone: Release came before this Reserve
    INVALID = "invalid"  # malformed: no lines, quantity out of range, duplicates, ...


@dataclass(frozen=True, slots=True)
class RequestedLine:
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class ReservedLine:
    """A line as held: its unit price is fixed when the stock is held, so a later price
    change does not touch it."""

    product_id: str
    quantity: int
    unit_price_minor: int
    currency: str


@dataclass(frozen=True, slots=True)
class Reservation:
    id: str
    state: ReservationState
    created_at: dt.datetime
    lines: tuple[ReservedLine, ...] = ()  # empty unless stock was held at some point
    expires_at: dt.datetime | None = None  # the hold's deadline, once stock was held
    decided_at: dt.datetime | None = None  # when it left HELD (or was refused, released)
    refusal: Refusal | None = None  # set when REFUSED
    detail: str = ""
    short_products: tuple[str, ...] = ()  # for OUT_OF_STOCK and UNKNOWN_PRODUCT
    # What was asked for (`lines_fingerprint`), to tell a repeated Reserve from another
    # one reusing the id; None for a tombstone, which was never asked to hold anything.
    fingerprint: str | None = None

    @property
    def is_tombstone(self) -> bool:
        return self.state is ReservationState.RELEASED and self.fingerprint is None

    def overdue(self, now: dt.datetime) -> bool:
        """HELD past its deadline: EXPIRED for whoever looks first (the sweeper or a
        call), so that an answer never depends on when the sweeper last ran."""
        return (
            self.state is ReservationState.HELD
            and self.expires_at is not None
            and self.expires_at <= now
        )


def reservation_id_problem(reservation_id: str) -> str | None:
    if _RESERVATION_ID.fullmatch(reservation_id) is None:
        return (
            "reservation_id must be 1 to 64 letters, digits or . _ : - "
            "(starting with a letter or digit)"
        )
    return None


def lines_problem(lines: Sequence[RequestedLine]) -> str | None:
    """What makes the lines malformed (INVALID), or None. A product id that names no
    product is not malformed: that is UNKNOWN_PRODUCT, decided against the catalogue."""
    if not 1 <= len(lines) <= MAX_LINES:
        return f"a reservation has 1 to {MAX_LINES} lines"
    seen: set[str] = set()
    for line in lines:
        if not 1 <= len(line.product_id) <= PRODUCT_ID_LENGTH:
            return f"product_id must be 1 to {PRODUCT_ID_LENGTH} characters"
        if isinstance(line.quantity, bool) or not 1 <= line.quantity <= MAX_QUANTITY:
            return f"quantity must be between 1 and {MAX_QUANTITY} (product {line.product_id})"
        if line.product_id in seen:
            return f"product {line.product_id} appears in more than one line"
        seen.add(line.product_id)
    return None


def hold_problem(hold_s: int, max_hold_s: int) -> str | None:
    """hold_s 0 asks for the service's default hold."""
    if not 0 <= hold_s <= max_hold_s:
        return f"hold_s must be between 1 and {max_hold_s} (0: the default hold)"
    return None


def lines_fingerprint(lines: Sequence[RequestedLine]) -> str:
    """The same for the same lines in any order."""
    canonical = ";".join(sorted(f"{line.product_id}:{line.quantity}" for line in lines))
    return hashlib.sha256(canonical.encode()).hexdigest()


def refused(
    reservation_id: str,
    refusal: Refusal,
    detail: str,
    *,
    now: dt.datetime,
    short_products: Sequence[str] = (),
    fingerprint: str | None = None,
) -> Reservation:
    return Reservation(
        id=reservation_id,
        state=ReservationState.REFUSED,
        created_at=now,
        decided_at=now,
        refusal=refusal,
        detail=detail,
        short_products=tuple(short_products),
        fingerprint=fingerprint,
    )


def answer_to_reserve(existing: Reservation, fingerprint: str, *, now: dt.datetime) -> Reservation:
    """The answer to a Reserve of an id already known (not overdue: the caller expires an
    overdue one first). A repeat gets the reservation as it is; a tombstone refuses it;
    another request under the same id is refused as INVALID and changes nothing."""
    if existing.is_tombstone:
        return refused(
            existing.id,
            Refusal.ALREADY_RELEASED,
            "the reservation was released before it was reserved",
            now=now,
        )
    if existing.fingerprint != fingerprint:
        return refused(
            existing.id,
            Refusal.INVALID,
            f"reservation_id {existing.id!r} was already used for other lines "
            f"(it is {existing.state.value})",
            now=now,
        )
    return existing
