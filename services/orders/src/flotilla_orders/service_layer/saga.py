"""The checkout saga's driver: takes an order stored in some step and drives it to
CONFIRMED or CANCELLED; and the refund of a CONFIRMED order (REFUNDING) to REFUNDED.

Rules that make it safe to crash anywhere and to run on several instances at once:

- Every step is durable before the call it leads to: a compare-and-set on the order's
  version (and on the lease: only the lease holder writes), committed before the call.
  Whoever loses one stops driving and leaves the order to the one that won.
- Every call is idempotent: the reservation id is the order id; a payment or refund
  attempt has its own Idempotency-Key (`order:<id>:pay:<n>`), whose number is stored
  before the key is used. A key whose outcome is unknown is asked again, never replaced:
  only an answer that says nothing moved (503 `transfer-aborted`) leads to a new key.
- A call that gets no answer is made again after a backoff (exponential, full jitter);
  an unanswered Reserve only until the order's reserve deadline, then the stock is
  released (a Release before a late Reserve leaves a tombstone, so that Reserve is
  refused). Commit, Release and the refund are retried until they are answered.
- One driver at a time, by lease: the instance that accepted the order drives it at once;
  recovery (`recovery.py`) takes over orders whose lease has expired.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace

from flotilla_kit.clock import Clock, Sleep
from flotilla_kit.logs import get_logger
from flotilla_kit.recovery import Drives, Leases
from flotilla_orders.domain import (
    MAX_AMOUNT_MINOR,
    CancelReason,
    Order,
    OrderState,
    SagaStep,
    event_of,
)
from flotilla_orders.service_layer.faults import FaultPoint
from flotilla_orders.service_layer.ports import (
    Faults,
    Inventory,
    InventoryProtocolError,
    InventoryUnavailable,
    OrdersUnitOfWork,
    Payments,
    PaymentsProtocolError,
    PaymentsUnavailable,
    Reservation,
    ReservationState,
    SagaMetrics,
    StockRefusal,
    TransferAnswer,
    TransferCall,
    TransferOutcome,
    UnitOfWorkFactory,
)

__all__ = ["Saga", "SagaConfig"]

_log = get_logger("flotilla.orders.saga")

# The refusal payments gives when the customer's account cannot pay: its own reason.
_INSUFFICIENT_FUNDS = "insufficient-funds"

# What one run of a step leads to: the order as it now stands, and whether to go on at
# once (True) or to try again after a backoff (False).
_Progress = tuple[Order, bool]


@dataclass(frozen=True, slots=True)
class SagaConfig:
    instance_id: str  # the lease owner
    lease_s: float = 10.0
    retry_initial_s: float = 0.1
    retry_max_s: float = 5.0
    max_payment_attempts: int = 3
    reservation_hold_s: int = 120


class _LeaseLost(Exception):
    """The stored order moved on under another driver; `current` is what it holds now."""

    def __init__(self, current: Order) -> None:
        super().__init__(f"order {current.id} is driven elsewhere")
        self.current = current


class Saga:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        inventory: Inventory,
        payments: Payments,
        clock: Clock,
        faults: Faults,
        metrics: SagaMetrics,
        config: SagaConfig,
        draw: Callable[[], float] = random.random,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._uow = uow
        self._inventory = inventory
        self._payments = payments
        self._clock = clock
        self._faults = faults
        self._metrics = metrics
        self._config = config
        self._leases: Leases[OrdersUnitOfWork, uuid.UUID, Order] = Leases(
            uow=uow, rows=lambda uow: uow.orders, attempts=lambda order: order.retries,
            id_field="order_id", terms=config, clock=clock, sleep=sleep, draw=draw,
        )  # fmt: skip
        self._drives: Drives[Order] = Drives()

    @property
    def config(self) -> SagaConfig:
        return self._config

    @property
    def leases(self) -> Leases[OrdersUnitOfWork, uuid.UUID, Order]:
        return self._leases

    @property
    def drives(self) -> frozenset[asyncio.Task[Order | None]]:
        """The orders this process is driving right now (tests, shutdown)."""
        return self._drives.running

    # -- drivers ---------------------------------------------------------------------------

    def launch(self, order: Order) -> asyncio.Task[Order | None]:
        """Drive an order this instance holds the lease of, in the background."""
        return self._drives.start(
            self._leases.drive(order, self.step, log=_log, failed="driving an order failed"),
            name=f"order-{order.id}",
        )

    async def answer(
        self, order: Order, task: asyncio.Task[Order | None], within_s: float
    ) -> Order:
        """The order as it stands once its drive ends or `within_s` has passed, whichever
        comes first. The drive goes on either way (also when the client goes away)."""
        if within_s > 0:
            done, _ = await asyncio.wait([task], timeout=within_s)
            if task in done:
                finished = task.result()  # a drive that died unexpectedly has logged why
                if finished is not None and finished.id == order.id:
                    return finished
        return await self.reload(order)

    async def settle(self) -> None:
        """Wait until every order this process drives has stopped (tests, shutdown)."""
        await self._drives.settle()

    async def close(self) -> None:
        """Stop driving; recovery (here after a restart, or on another instance) resumes."""
        await self._drives.close()

    async def step(self, order: Order) -> Order:
        """Advance as far as possible now, without waiting to retry. Returns the order final,
        or where it stopped because a call must be made again later."""
        while not order.is_final:
            step = order.step
            try:
                order, go_on = await self._advance(order)
            except _LeaseLost as lost:
                self._metrics.step_result(step.value, "lease_lost")
                return lost.current
            self._metrics.step_result(step.value, "advanced" if go_on else "retry")
            if not go_on:
                return order
        return order

    async def _advance(self, order: Order) -> _Progress:
        match order.step:
            case SagaStep.RESERVING:
                return await self._reserve(order)
            case SagaStep.PAYING:
                return await self._pay(order)
            case SagaStep.COMMITTING:
                return await self._commit(order)
            case SagaStep.REFUNDING:
                return await self._refund(order)
            case SagaStep.RELEASING:
                return await self._release(order)
            case SagaStep.REFUNDING_ORDER:
                return await self._refund_order(order)
        raise AssertionError(f"no step to run for {order.step}")  # pragma: no cover

    # -- the steps -------------------------------------------------------------------------

    async def _reserve(self, order: Order) -> _Progress:
        if order.reserve_expired(self._clock()):
            # Whether the unanswered Reserves held anything or not, the Release settles
            # it: it frees a hold, or leaves a tombstone that refuses a late Reserve.
            released = order.release(CancelReason.INVENTORY_UNAVAILABLE, at=self._clock())
            return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
        try:
            reservation = await self._inventory.reserve(
                reservation_id=str(order.id),
                lines=[(line.product_id, line.quantity) for line in order.lines],
                hold_s=self._config.reservation_hold_s,
            )
        except InventoryUnavailable as exc:
            _log.info("inventory did not answer Reserve", order_id=str(order.id), error=str(exc))
            return order, False
        except InventoryProtocolError as exc:
            _log.error("inventory broke its contract", order_id=str(order.id), error=str(exc))
            return order, False
        self._faults.hit(FaultPoint.AFTER_RESERVE_CALL)
        now = self._clock()
        if reservation.state is ReservationState.HELD:
            return await self._held(order, reservation, now)
        return await self._not_held(order, reservation, now)

    async def _not_held(
        self, order: Order, reservation: Reservation, now: dt.datetime
    ) -> _Progress:
        match reservation.state:
            case ReservationState.REFUSED if (
                reservation.refusal is not StockRefusal.ALREADY_RELEASED
            ):
                _log.info(
                    "stock refused", order_id=str(order.id),
                    refusal=reservation.refusal, products=list(reservation.short_products),
                )  # fmt: skip
                cancelled = order.out_of_stock(at=now)
                return await self._go(order, cancelled, FaultPoint.AFTER_FINAL_RECORDED)
            case ReservationState.EXPIRED:
                # Held once, and the hold ran out while no driver was around: nothing to
                # pay for any more.
                released = order.release(CancelReason.RESERVATION_EXPIRED, at=now)
                return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
            case ReservationState.RELEASED | ReservationState.REFUSED:
                # Released (a tombstone) before this Reserve: only our own compensation
                # releases, so another driver gave up on the inventory.
                released = order.release(CancelReason.INVENTORY_UNAVAILABLE, at=now)
                return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
        _log.error(
            "Reserve answered a state the saga cannot be in",
            order_id=str(order.id), state=reservation.state.value,
        )  # fmt: skip
        return order, False

    async def _held(self, order: Order, reservation: Reservation, now: dt.datetime) -> _Progress:
        held = {line.product_id: line for line in reservation.lines}
        wanted = {line.product_id: line.quantity for line in order.lines}
        if {p: line.quantity for p, line in held.items()} != wanted:
            _log.error(
                "inventory held other lines than asked; releasing",
                order_id=str(order.id), held=sorted(held), wanted=sorted(wanted),
            )  # fmt: skip
            released = order.release(CancelReason.INVENTORY_UNAVAILABLE, at=now)
            return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
        prices = {p: line.unit_price_minor for p, line in held.items()}
        total = sum(wanted[p] * prices[p] for p in wanted)
        currencies = {line.currency for line in held.values()}
        if currencies != {order.currency} or total > MAX_AMOUNT_MINOR or total <= 0:
            # Prices changed currency since the order was checked, or the total is not
            # something payments can move: the order cannot be paid as it stands.
            _log.warning(
                "the held stock cannot be paid for; releasing", order_id=str(order.id),
                currencies=sorted(currencies), total_minor=total,
            )  # fmt: skip
            released = order.release(CancelReason.PAYMENT_REFUSED, at=now)
            return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
        paying = order.reserved(prices, at=now)
        return await self._go(order, paying, FaultPoint.AFTER_PAYING_RECORDED)

    async def _pay(self, order: Order) -> _Progress:
        assert order.total_minor is not None  # PAYING is stored with the total
        call = TransferCall(
            idempotency_key=order.payment_key,
            from_account=order.payment_account,
            to_account=order.shop_account,
            amount_minor=order.total_minor,
            currency=order.currency,
            reference=order.reference,
            on_behalf_of=order.customer_id,
        )
        answer = await self._transfer(order, call)
        if answer is None:
            return order, False
        self._faults.hit(FaultPoint.AFTER_PAY_CALL)
        now = self._clock()
        match answer.outcome:
            case TransferOutcome.COMMITTED if answer.transfer_id:
                paid = order.paid(answer.transfer_id, at=now)
                return await self._go(order, paid, FaultPoint.AFTER_COMMITTING_RECORDED)
            case TransferOutcome.REFUSED:
                reason = (
                    CancelReason.INSUFFICIENT_FUNDS
                    if answer.problem == _INSUFFICIENT_FUNDS
                    else CancelReason.PAYMENT_REFUSED
                )
                released = order.release(reason, at=now)
                return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
            case TransferOutcome.ABORTED if order.pay_attempt >= self._config.max_payment_attempts:
                released = order.release(CancelReason.PAYMENT_UNAVAILABLE, at=now)
                return await self._go(order, released, FaultPoint.AFTER_RELEASING_RECORDED)
            case TransferOutcome.ABORTED:
                # Nothing moved under this key; the next attempt (after the backoff) needs a
                # new one, and its number is durable before it is used.
                again = order.next_payment_attempt(at=now)
                return await self._store(order, again, FaultPoint.AFTER_ATTEMPT_RECORDED), False
        return order, False  # PENDING: ask again with the same key

    async def _commit(self, order: Order) -> _Progress:
        reservation = await self._call_inventory(order, "Commit", self._inventory.commit)
        if reservation is None:
            return order, False
        self._faults.hit(FaultPoint.AFTER_COMMIT_CALL)
        now = self._clock()
        match reservation.state:
            case ReservationState.COMMITTED:
                confirmed = order.confirm(at=now)
                return await self._go(order, confirmed, FaultPoint.AFTER_FINAL_RECORDED)
            case ReservationState.RELEASED | ReservationState.EXPIRED:
                _log.warning("the hold ran out before the commit", order_id=str(order.id))
                refunding = order.hold_lost(at=now)
                return await self._go(order, refunding, FaultPoint.AFTER_REFUNDING_RECORDED)
        _log.error(
            "Commit answered a state the saga cannot handle",
            order_id=str(order.id), state=reservation.state.value,
        )  # fmt: skip
        return order, False

    @staticmethod
    def _refund_call(order: Order) -> TransferCall:
        """The money back: the order's total from the shop's account to the paying one,
        on behalf of the shop's owner, under the refund attempt's key."""
        assert order.total_minor is not None
        return TransferCall(
            idempotency_key=order.refund_key,
            from_account=order.shop_account,
            to_account=order.payment_account,
            amount_minor=order.total_minor,
            currency=order.currency,
            reference=f"refund of {order.reference}",
            on_behalf_of=order.shop_owner,
        )

    async def _refund(self, order: Order) -> _Progress:
        answer = await self._transfer(order, self._refund_call(order))
        if answer is None:
            return order, False
        self._faults.hit(FaultPoint.AFTER_REFUND_CALL)
        now = self._clock()
        match answer.outcome:
            case TransferOutcome.COMMITTED if answer.transfer_id:
                refunded = order.refunded(answer.transfer_id, at=now)
                return await self._go(order, refunded, FaultPoint.AFTER_RELEASING_RECORDED)
            case TransferOutcome.REFUSED | TransferOutcome.ABORTED:
                # The customer's money must come back: never give up, a new key per attempt.
                if answer.outcome is TransferOutcome.REFUSED:
                    _log.error(
                        "the refund was refused; trying again", order_id=str(order.id),
                        problem=answer.problem, attempt=order.refund_attempt,
                    )  # fmt: skip
                again = order.next_refund_attempt(at=now)
                return await self._store(order, again, FaultPoint.AFTER_ATTEMPT_RECORDED), False
        return order, False

    async def _refund_order(self, order: Order) -> _Progress:
        """A CONFIRMED order's refund (support asked for it). Unlike a compensation, a
        definite refusal ends it: the order stays CONFIRMED and the refusal is noted and
        logged (whoever asked may ask again, with the next attempt's key)."""
        answer = await self._transfer(order, self._refund_call(order))
        if answer is None:
            return order, False
        self._faults.hit(FaultPoint.AFTER_REFUND_CALL)
        now = self._clock()
        match answer.outcome:
            case TransferOutcome.COMMITTED if answer.transfer_id:
                refunded = order.refund_paid(answer.transfer_id, at=now)
                return await self._go(order, refunded, FaultPoint.AFTER_FINAL_RECORDED)
            case TransferOutcome.REFUSED:
                _log.error(
                    "the refund of a confirmed order was refused; it stays CONFIRMED",
                    order_id=str(order.id), problem=answer.problem, attempt=order.refund_attempt,
                )  # fmt: skip
                refused = order.refund_refused(answer.problem or "refused", at=now)
                return await self._go(order, refused, FaultPoint.AFTER_FINAL_RECORDED)
            case TransferOutcome.ABORTED:
                # Nothing moved under this key: a new attempt after the backoff, new key.
                again = order.next_refund_attempt(at=now)
                return await self._store(order, again, FaultPoint.AFTER_ATTEMPT_RECORDED), False
        return order, False  # PENDING: ask again with the same key

    async def _release(self, order: Order) -> _Progress:
        reservation = await self._call_inventory(order, "Release", self._inventory.release)
        if reservation is None:
            return order, False
        self._faults.hit(FaultPoint.AFTER_RELEASE_CALL)
        match reservation.state:
            case ReservationState.RELEASED | ReservationState.EXPIRED | ReservationState.REFUSED:
                cancelled = order.cancel(at=self._clock())
                return await self._go(order, cancelled, FaultPoint.AFTER_FINAL_RECORDED)
        # COMMITTED: the stock was sold, yet the saga compensates. No path of ours commits
        # before it knows the payment went through, so this is a bug: an operator looks.
        _log.error(
            "Release answered a state the saga cannot handle",
            order_id=str(order.id), state=reservation.state.value,
        )  # fmt: skip
        return order, False

    # -- calls -----------------------------------------------------------------------------

    async def _call_inventory(
        self, order: Order, method: str, call: Callable[[str], Awaitable[Reservation]]
    ) -> Reservation | None:
        try:
            return await call(str(order.id))
        except InventoryUnavailable as exc:
            _log.info(f"inventory did not answer {method}", order_id=str(order.id), error=str(exc))
        except InventoryProtocolError as exc:
            _log.error(
                "inventory broke its contract", order_id=str(order.id),
                method=method, error=str(exc),
            )  # fmt: skip
        return None

    async def _transfer(self, order: Order, call: TransferCall) -> TransferAnswer | None:
        try:
            return await self._payments.transfer(call)
        except PaymentsUnavailable as exc:
            _log.info(
                "payments gave no usable answer; the same key is asked again",
                order_id=str(order.id), key=call.idempotency_key, error=str(exc),
            )  # fmt: skip
        except PaymentsProtocolError as exc:
            _log.error(
                "payments answered what our request should never get",
                order_id=str(order.id), key=call.idempotency_key, error=str(exc),
            )  # fmt: skip
        return None

    # -- storage ---------------------------------------------------------------------------

    async def _go(self, before: Order, after: Order, point: FaultPoint) -> _Progress:
        """Store the next step and go on with it at once."""
        return await self._store(before, after, point), True

    async def _store(self, before: Order, after: Order, point: FaultPoint) -> Order:
        """Compare-and-set `before` -> `after` (renewing the lease), with the final event in
        the same transaction; then the fault point of that durable step."""
        now = self._clock()
        owner = self._config.instance_id
        if not after.is_final:
            after = replace(
                after,
                lease_owner=owner,
                lease_until=self._leases.until(now),
                next_attempt_at=now,
            )
        async with self._uow() as uow:
            stored = await uow.orders.save(
                after,
                expected_version=before.version,
                owner=owner,
                prices=before.total_minor is None and after.total_minor is not None,
            )
            if stored:
                announced = event_of(before, after)
                if announced is not None:
                    event, data = announced
                    await uow.events.add(event, subject=str(after.id), data=data)
                await uow.commit()
        if not stored:
            raise _LeaseLost(await self.reload(before))
        if after.is_final and before.step is SagaStep.REFUNDING_ORDER:
            outcome = "refunded" if after.state is OrderState.REFUNDED else "refused"
            self._metrics.refund_finished(outcome)
            _log.info("refund finished", order_id=str(after.id), outcome=outcome)
        elif after.is_final:
            self._metrics.saga_finished(
                after.state.value,
                after.reason.value if after.reason else None,
                (now - after.created_at).total_seconds(),
            )
            _log.info(
                "order finished", order_id=str(after.id), state=after.state.value,
                reason=after.reason.value if after.reason else None,
            )  # fmt: skip
        self._faults.hit(point)
        return after

    async def reload(self, order: Order) -> Order:
        async with self._uow(write=False) as uow:
            current = await uow.orders.get(order.id)
        if current is None:  # pragma: no cover - orders are never deleted
            raise RuntimeError(f"order {order.id} disappeared")
        return current
