"""An order and the checkout saga that runs it: the steps, the compensations, the reasons.

    RESERVING --HELD--> PAYING --paid--> COMMITTING --COMMITTED--> DONE (CONFIRMED)
        |                 |                  |
        |                 |                  +--RELEASED/EXPIRED--> REFUNDING --refunded--+
        |                 +--refused / attempts used up--> RELEASING <--------------------+
        +--no answer until the deadline--> RELEASING --Release answered--> DONE (CANCELLED)
        +--REFUSED (out of stock)--> DONE (CANCELLED)

    DONE (CONFIRMED) --refund asked--> REFUNDING_ORDER (REFUNDING) --refunded--> DONE (REFUNDED)
                                              +--refused--> DONE (CONFIRMED, refusal noted)

Each transition returns a new `Order` with `version + 1`; storing it with a
compare-and-set on that version, before the call the new step leads to, is the service
layer's job. Whatever step an order is stored in, running that step again is safe: every
call it makes is idempotent (the reservation id is the order id, and each payment
attempt has its own Idempotency-Key, stored before it is used).
"""

from __future__ import annotations

import datetime as dt
import enum
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

__all__ = [
    "MAX_AMOUNT_MINOR",
    "MAX_LINES",
    "MAX_QUANTITY",
    "CancelReason",
    "IllegalTransition",
    "InvalidLines",
    "Order",
    "OrderLine",
    "OrderState",
    "SagaStep",
    "check_lines",
    "new_order",
]

MAX_LINES = 100
MAX_QUANTITY = 10_000
# What payments accepts as one transfer (and far below 2**63: sums still fit a BIGINT).
MAX_AMOUNT_MINOR = 10**15


class OrderState(enum.StrEnum):
    """What a customer sees."""

    PENDING = "PENDING"
    CONFIRMED = "CONFIRMED"
    CANCELLED = "CANCELLED"
    # A confirmed order whose money is being given back (support asked), then given back.
    REFUNDING = "REFUNDING"
    REFUNDED = "REFUNDED"


class SagaStep(enum.StrEnum):
    """Where the saga stands: the call it makes next (DONE: none)."""

    RESERVING = "reserving"
    PAYING = "paying"
    COMMITTING = "committing"
    REFUNDING = "refunding"
    RELEASING = "releasing"
    # The refund of a CONFIRMED order (not a compensation: the sale stands, stock stays sold).
    REFUNDING_ORDER = "refunding-order"
    DONE = "done"


class CancelReason(enum.StrEnum):
    OUT_OF_STOCK = "out-of-stock"
    INSUFFICIENT_FUNDS = "insufficient-funds"
    PAYMENT_REFUSED = "payment-refused"
    PAYMENT_UNAVAILABLE = "payment-unavailable"
    INVENTORY_UNAVAILABLE = "inventory-unavailable"
    RESERVATION_EXPIRED = "reservation-expired"


_S = SagaStep
_NEXT: dict[SagaStep, frozenset[SagaStep]] = {
    _S.RESERVING: frozenset({_S.PAYING, _S.RELEASING, _S.DONE}),
    _S.PAYING: frozenset({_S.COMMITTING, _S.RELEASING}),
    _S.COMMITTING: frozenset({_S.DONE, _S.REFUNDING}),
    _S.REFUNDING: frozenset({_S.RELEASING}),
    _S.RELEASING: frozenset({_S.DONE}),
    _S.REFUNDING_ORDER: frozenset({_S.DONE}),
    # A finished order moves on only when a CONFIRMED one is refunded (`start_refund`).
    _S.DONE: frozenset({_S.REFUNDING_ORDER}),
}


class IllegalTransition(ValueError):
    def __init__(self, current: SagaStep, new: SagaStep) -> None:
        super().__init__(f"an order cannot go from {current} to {new}")


class InvalidLines(ValueError):
    """Lines no order may have (the HTTP layer refuses them first; this is the rule)."""


@dataclass(frozen=True, slots=True)
class OrderLine:
    product_id: str
    quantity: int
    # Fixed by the inventory when it holds the stock; None until then.
    unit_price_minor: int | None = None


def check_lines(lines: Sequence[tuple[str, int]]) -> None:
    """1..100 lines, each product once, each quantity an integer in 1..10000."""
    if not 1 <= len(lines) <= MAX_LINES:
        raise InvalidLines(f"an order has 1 to {MAX_LINES} lines")
    seen: set[str] = set()
    for product_id, quantity in lines:
        if not 1 <= len(product_id) <= 64:
            raise InvalidLines("a product id has 1 to 64 characters")
        if isinstance(quantity, bool) or not isinstance(quantity, int):
            raise InvalidLines("a quantity is an integer")
        if not 1 <= quantity <= MAX_QUANTITY:
            raise InvalidLines(f"a quantity is between 1 and {MAX_QUANTITY}")
        if product_id in seen:
            raise InvalidLines(f"product {product_id!r} is on two lines")
        seen.add(product_id)


@dataclass(frozen=True, slots=True)
class Order:
    id: uuid.UUID
    customer_id: str
    lines: tuple[OrderLine, ...]
    currency: str  # the paying account's (every product was checked to be priced in it)
    payment_account: str
    # Where the money goes, and whose it is (for the refund): stored with the order, so
    # every attempt sends the same request even if the settings change meanwhile.
    shop_account: str
    shop_owner: str
    step: SagaStep
    created_at: dt.datetime
    updated_at: dt.datetime
    # An unanswered Reserve is given up (and released) after this.
    reserve_deadline: dt.datetime
    next_attempt_at: dt.datetime
    state: OrderState = OrderState.PENDING
    reason: CancelReason | None = None
    total_minor: int | None = None
    payment_transfer_id: str | None = None
    refund_transfer_id: str | None = None
    pay_attempt: int = 1
    refund_attempt: int = 1
    version: int = 0
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None
    retries: int = 0  # unanswered tries of the current step (the backoff's exponent)
    # Why payments refused the last refund of this CONFIRMED order (its problem type).
    refund_refusal: str | None = None

    @property
    def is_final(self) -> bool:
        return self.step is SagaStep.DONE

    @property
    def payment_key(self) -> str:
        return f"order:{self.id}:pay:{self.pay_attempt}"

    @property
    def refund_key(self) -> str:
        return f"order:{self.id}:refund:{self.refund_attempt}"

    @property
    def reference(self) -> str:
        return f"order {self.id}"

    def reserve_expired(self, now: dt.datetime) -> bool:
        return self.step is SagaStep.RESERVING and now >= self.reserve_deadline

    def _move(self, step: SagaStep, *, at: dt.datetime, **changes: Any) -> Order:
        if step not in _NEXT[self.step]:
            raise IllegalTransition(self.step, step)
        return replace(
            self, step=step, updated_at=at, version=self.version + 1, retries=0, **changes
        )

    def _bump(self, *, at: dt.datetime, **changes: Any) -> Order:
        """The same step, something about it recorded (a new attempt number)."""
        return replace(self, updated_at=at, version=self.version + 1, **changes)

    # -- RESERVING -------------------------------------------------------------------------

    def reserved(self, prices: Mapping[str, int], *, at: dt.datetime) -> Order:
        """The stock is held at these unit prices: pay the total next."""
        missing = [line.product_id for line in self.lines if line.product_id not in prices]
        if missing:
            raise ValueError(f"no price for {missing}")
        lines = tuple(
            replace(line, unit_price_minor=prices[line.product_id]) for line in self.lines
        )
        total = sum(line.quantity * prices[line.product_id] for line in self.lines)
        return self._move(SagaStep.PAYING, at=at, lines=lines, total_minor=total)

    def out_of_stock(self, *, at: dt.datetime) -> Order:
        """Nothing was held: cancel at once, no money was touched."""
        if self.step is not SagaStep.RESERVING:
            raise IllegalTransition(self.step, SagaStep.DONE)
        return self._finish(OrderState.CANCELLED, at=at, reason=CancelReason.OUT_OF_STOCK)

    # -- PAYING ----------------------------------------------------------------------------

    def paid(self, transfer_id: str, *, at: dt.datetime) -> Order:
        return self._move(SagaStep.COMMITTING, at=at, payment_transfer_id=transfer_id)

    def next_payment_attempt(self, *, at: dt.datetime) -> Order:
        """The last attempt was aborted with nothing moved: the next one uses a new key."""
        if self.step is not SagaStep.PAYING:
            raise IllegalTransition(self.step, self.step)
        return self._bump(at=at, pay_attempt=self.pay_attempt + 1)

    # -- COMMITTING ------------------------------------------------------------------------

    def confirm(self, *, at: dt.datetime) -> Order:
        if self.step is not SagaStep.COMMITTING:
            raise IllegalTransition(self.step, SagaStep.DONE)
        return self._finish(OrderState.CONFIRMED, at=at, reason=None)

    def hold_lost(self, *, at: dt.datetime) -> Order:
        """The hold ran out while the payment went through: give the money back."""
        return self._move(SagaStep.REFUNDING, at=at, reason=CancelReason.RESERVATION_EXPIRED)

    # -- REFUNDING -------------------------------------------------------------------------

    def refunded(self, transfer_id: str, *, at: dt.datetime) -> Order:
        if self.step is not SagaStep.REFUNDING:
            raise IllegalTransition(self.step, SagaStep.RELEASING)
        return self._move(SagaStep.RELEASING, at=at, refund_transfer_id=transfer_id)

    def next_refund_attempt(self, *, at: dt.datetime) -> Order:
        if self.step not in (SagaStep.REFUNDING, SagaStep.REFUNDING_ORDER):
            raise IllegalTransition(self.step, self.step)
        return self._bump(at=at, refund_attempt=self.refund_attempt + 1)

    # -- refunding a CONFIRMED order -------------------------------------------------------

    @property
    def refundable(self) -> bool:
        return self.state is OrderState.CONFIRMED

    def start_refund(self, *, at: dt.datetime, lease_owner: str, lease_until: dt.datetime) -> Order:
        """Support gives a confirmed order's money back: REFUNDING, leased to its driver.
        The refund attempt counter goes on from where it stands, so a refund asked again
        after a refusal uses a key never used before."""
        if not self.refundable or self.step is not SagaStep.DONE:
            raise IllegalTransition(self.step, SagaStep.REFUNDING_ORDER)
        return self._move(
            SagaStep.REFUNDING_ORDER, at=at, state=OrderState.REFUNDING, refund_refusal=None,
            lease_owner=lease_owner, lease_until=lease_until, next_attempt_at=at,
        )  # fmt: skip

    def refund_paid(self, transfer_id: str, *, at: dt.datetime) -> Order:
        if self.step is not SagaStep.REFUNDING_ORDER:
            raise IllegalTransition(self.step, SagaStep.DONE)
        return self._move(
            SagaStep.DONE, at=at, state=OrderState.REFUNDED, refund_transfer_id=transfer_id,
            lease_owner=None, lease_until=None,
        )  # fmt: skip

    def refund_refused(self, problem: str, *, at: dt.datetime) -> Order:
        """Payments refused the refund (nothing moved): the order stays CONFIRMED, the
        refusal noted, and the next refund asked for uses the next attempt's key."""
        if self.step is not SagaStep.REFUNDING_ORDER:
            raise IllegalTransition(self.step, SagaStep.DONE)
        return self._move(
            SagaStep.DONE, at=at, state=OrderState.CONFIRMED, refund_refusal=problem,
            refund_attempt=self.refund_attempt + 1, lease_owner=None, lease_until=None,
        )  # fmt: skip

    # -- compensation ----------------------------------------------------------------------

    def release(self, reason: CancelReason, *, at: dt.datetime) -> Order:
        """Give the stock back (RESERVING past its deadline, PAYING refused)."""
        if self.step not in (SagaStep.RESERVING, SagaStep.PAYING):
            raise IllegalTransition(self.step, SagaStep.RELEASING)
        return self._move(SagaStep.RELEASING, at=at, reason=reason)

    def cancel(self, *, at: dt.datetime) -> Order:
        """The stock is released: CANCELLED, with the reason recorded on the way."""
        if self.step is not SagaStep.RELEASING or self.reason is None:
            raise IllegalTransition(self.step, SagaStep.DONE)
        return self._finish(OrderState.CANCELLED, at=at, reason=self.reason)

    def _finish(self, state: OrderState, *, at: dt.datetime, reason: CancelReason | None) -> Order:
        return self._move(
            SagaStep.DONE, at=at, state=state, reason=reason, lease_owner=None, lease_until=None
        )


def new_order(
    *,
    customer_id: str,
    lines: Sequence[tuple[str, int]],
    currency: str,
    payment_account: str,
    shop_account: str,
    shop_owner: str,
    now: dt.datetime,
    reserve_within_s: float,
    lease_owner: str,
    lease_s: float,
) -> Order:
    """An order about to be written as RESERVING, leased to the instance that drives it."""
    check_lines(lines)
    return Order(
        id=uuid.uuid4(),
        customer_id=customer_id,
        lines=tuple(OrderLine(product_id, quantity) for product_id, quantity in lines),
        currency=currency,
        payment_account=payment_account,
        shop_account=shop_account,
        shop_owner=shop_owner,
        step=SagaStep.RESERVING,
        created_at=now,
        updated_at=now,
        reserve_deadline=now + dt.timedelta(seconds=reserve_within_s),
        next_attempt_at=now,
        lease_owner=lease_owner,
        lease_until=now + dt.timedelta(seconds=lease_s),
    )
