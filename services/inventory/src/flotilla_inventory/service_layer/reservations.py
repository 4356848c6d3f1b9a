"""Reserve, Commit, Release: the reservation desk shared by the gRPC API and the REST path.

| state now              | Reserve                  | Commit          | Release              |
|------------------------|--------------------------|-----------------|----------------------|
| (none)                 | hold all lines, or REFUSE | unknown (None) | tombstone (RELEASED) |
| HELD                   | HELD (held once)         | COMMITTED: sold | RELEASED: given back |
| HELD, deadline passed  | EXPIRED (given back)     | EXPIRED         | EXPIRED              |
| COMMITTED              | COMMITTED                | COMMITTED       | COMMITTED            |
| RELEASED               | RELEASED (*)             | RELEASED        | RELEASED             |
| EXPIRED                | EXPIRED                  | EXPIRED         | EXPIRED              |
| REFUSED                | REFUSED                  | REFUSED         | REFUSED              |

(*) a tombstone refuses a Reserve with ALREADY_RELEASED. A Reserve whose lines differ
from those the id was first asked for is refused as INVALID and changes nothing.

Each call is one transaction (two when a Reserve is refused: the holds are rolled back,
then the refusal is recorded). A hold is one conditional statement per line,
`held = held + q WHERE on_hand - held >= q`: two instances racing for the last units can
never oversell, and the CHECK constraints say the same once more. Leaving HELD is a
compare-and-set on the reservation's state: of two calls (or two sweepers) one wins, and
only the winner moves stock. Locks are always taken in one order, reservation rows (by
id) before product rows (by id), so that no two transactions wait for each other in a
circle on PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, replace

from flotilla_inventory.domain import (
    Product,
    Refusal,
    RequestedLine,
    Reservation,
    ReservationState,
    ReservedLine,
    StockReason,
    answer_to_reserve,
    hold_problem,
    lines_fingerprint,
    lines_problem,
    refused,
    reservation_id_problem,
)
from flotilla_inventory.service_layer.ports import (
    Held,
    InventoryUnitOfWork,
    ReservationMetrics,
    UnitOfWorkFactory,
)
from flotilla_kit.clock import Clock, utc_now

__all__ = ["Availability", "ReservationDesk", "ReserveCall"]

_TOMBSTONE_DETAIL = "released before it was reserved"


@dataclass(frozen=True, slots=True)
class ReserveCall:
    reservation_id: str
    lines: tuple[RequestedLine, ...]
    hold_s: int = 0  # 0: the service's default hold


@dataclass(frozen=True, slots=True)
class Availability:
    product_id: str
    product: Product | None  # None: no such product


@dataclass(frozen=True, slots=True)
class _Shortfall:
    refusal: Refusal
    detail: str
    products: list[str]


async def _shortfall(uow: InventoryUnitOfWork, untried: list[RequestedLine]) -> _Shortfall:
    """Why the first of `untried` could not be held: the unknown products among them if
    any (UNKNOWN_PRODUCT), else the short ones (OUT_OF_STOCK). The first failed its hold,
    so it is one or the other (read in the same transaction)."""
    found = await uow.products.get_many([line.product_id for line in untried])
    unknown = [line.product_id for line in untried if line.product_id not in found]
    if unknown:
        return _Shortfall(
            Refusal.UNKNOWN_PRODUCT, f"no such product: {', '.join(unknown)}", unknown
        )
    first, *rest = untried
    short = [first.product_id] + [
        line.product_id for line in rest if found[line.product_id].available < line.quantity
    ]
    return _Shortfall(Refusal.OUT_OF_STOCK, f"not enough in stock: {', '.join(short)}", short)


def _outcome(answer: Reservation | None) -> str:
    if answer is None:
        return "unknown"
    return answer.refusal.value if answer.refusal is not None else answer.state.value


class ReservationDesk:
    def __init__(
        self,
        uow: UnitOfWorkFactory,
        *,
        default_hold_s: int,
        max_hold_s: int,
        metrics: ReservationMetrics,
        clock: Clock = utc_now,
    ) -> None:
        self._uow = uow
        self._default_hold_s = default_hold_s
        self._max_hold_s = max_hold_s
        self._metrics = metrics
        self._clock = clock

    # Reserve ------------------------------------------------------------------------

    async def reserve(self, call: ReserveCall) -> Reservation:
        answer = await self._reserve(call)
        self._metrics.answered("reserve", _outcome(answer))
        return answer

    def _invalid(self, call: ReserveCall, now: dt.datetime) -> Reservation | None:
        """The answer to a malformed Reserve (it depends on the request alone, so it is
        given without writing anything), or None."""
        problem = (
            reservation_id_problem(call.reservation_id)
            or lines_problem(call.lines)
            or hold_problem(call.hold_s, self._max_hold_s)
        )
        if problem is None:
            return None
        return refused(call.reservation_id, Refusal.INVALID, problem, now=now)

    def _header(self, call: ReserveCall, now: dt.datetime) -> Reservation:
        """The reservation HELD, before its lines (their prices come with the holds)."""
        return Reservation(
            id=call.reservation_id,
            state=ReservationState.HELD,
            created_at=now,
            expires_at=now + dt.timedelta(seconds=call.hold_s or self._default_hold_s),
            fingerprint=lines_fingerprint(call.lines),
        )

    def _held(self, call: ReserveCall, held: dict[str, Held], now: dt.datetime) -> Reservation:
        return replace(
            self._header(call, now),
            lines=tuple(
                ReservedLine(
                    line.product_id,
                    line.quantity,
                    held[line.product_id].unit_price_minor,
                    held[line.product_id].currency,
                )
                for line in sorted(call.lines, key=lambda line: line.product_id)
            ),
        )

    async def _reserve(self, call: ReserveCall) -> Reservation:
        now = self._clock()
        invalid = self._invalid(call, now)
        if invalid is not None:
            return invalid
        fingerprint = lines_fingerprint(call.lines)
        async with self._uow() as uow:
            # The reservation's row first, then the products: the lock order of every
            # call (Commit and Release decide the row, then move stock), so that two
            # transactions never wait for each other in a circle on PostgreSQL.
            if not await uow.reservations.add(self._header(call, now)):
                # A taken id (a repeat, or a race lost) holds nothing: it answers for
                # itself, in this same transaction.
                return await self._answer_taken(
                    uow, reservation_id=call.reservation_id, fingerprint=fingerprint, now=now
                )
            held, shortfall = await self._hold_all(uow, call.lines)
            if shortfall is None:
                reservation = self._held(call, {line.product_id: h for line, h in held}, now)
                await uow.reservations.add_lines(
                    [(reservation.id, line) for line in reservation.lines]
                )
                for _, h in held:
                    await uow.events.changed(h.level, StockReason.RESERVED)
                await uow.commit()
                return reservation
            # Short: the row and the holds go back with the rollback.
            refusal = refused(
                call.reservation_id,
                shortfall.refusal,
                shortfall.detail,
                now=now,
                short_products=shortfall.products,
                fingerprint=fingerprint,
            )
        async with self._uow() as uow:
            if await uow.reservations.add(refusal):
                await uow.commit()
                return refusal
            # Taken in between (another Reserve of the same id): its answer stands.
            return await self._answer_taken(
                uow, reservation_id=call.reservation_id, fingerprint=fingerprint, now=now
            )

    async def _answer_taken(
        self, uow: InventoryUnitOfWork, *, reservation_id: str, fingerprint: str, now: dt.datetime
    ) -> Reservation:
        """The answer to a Reserve whose id is taken: the reservation there (expired
        first if its hold has passed), as `answer_to_reserve` puts it. Commits."""
        existing = await uow.reservations.get(reservation_id)
        assert existing is not None  # the insert conflicted with it
        existing = await self._settle_overdue(uow, existing, now)
        await uow.commit()
        return answer_to_reserve(existing, fingerprint, now=now)

    async def _hold_all(
        self, uow: InventoryUnitOfWork, lines: tuple[RequestedLine, ...]
    ) -> tuple[list[tuple[RequestedLine, Held]], _Shortfall | None]:
        """Hold every line, in product-id order, or stop at the first that cannot be
        held and say why."""
        held: list[tuple[RequestedLine, Held]] = []
        ordered = sorted(lines, key=lambda line: line.product_id)
        for index, line in enumerate(ordered):
            holding = await uow.products.hold(line.product_id, line.quantity)
            if holding is None:
                return held, await _shortfall(uow, ordered[index:])
            held.append((line, holding))
        return held, None

    async def reserve_batch(self, calls: Sequence[ReserveCall]) -> list[Reservation]:
        """Several Reserves at once (the requests a stream has in hand), answered in the
        order of `calls`, each exactly as `reserve` would answer it.

        New reservations are held together in one transaction: one insert for the
        reservations, one conditional update per product for the sum of what they ask of
        it, one insert for their lines. Ids already taken (repeats) are answered alone.
        When a product cannot cover the sum, that transaction is rolled back and each call
        goes its own way (its own transaction, its own exact refusal): a batch never
        changes an answer, only what the answers cost.
        """
        now = self._clock()
        answers: dict[int, Reservation] = {}
        together: list[tuple[int, ReserveCall]] = []
        alone: list[int] = []  # repeats of an id within the batch, and ids already known
        ids: set[str] = set()
        for index, call in enumerate(calls):
            invalid = self._invalid(call, now)
            if invalid is not None:
                answers[index] = invalid
            elif call.reservation_id in ids:
                alone.append(index)
            else:
                ids.add(call.reservation_id)
                together.append((index, call))
        if together:
            held = await self._reserve_together(together, now)
            if held is None:
                alone = [index for index, _ in together] + alone
            else:
                answers.update(held)
                alone = [i for i, _ in together if i not in held] + alone
        for index in sorted(alone):
            answers[index] = await self._reserve(calls[index])
        for index in range(len(calls)):
            self._metrics.answered("reserve", _outcome(answers[index]))
        return [answers[index] for index in range(len(calls))]

    async def _reserve_together(
        self, calls: list[tuple[int, ReserveCall]], now: dt.datetime
    ) -> dict[int, Reservation] | None:
        """Hold every new reservation of the batch in one transaction; ids already taken
        are left out (answered alone). None: rolled back, every call goes alone."""
        async with self._uow() as uow:
            # Rows first, in id order, then products in id order: the lock order of every
            # call (see _reserve).
            ordered = sorted(calls, key=lambda item: item[1].reservation_id)
            inserted = await uow.reservations.add_many(
                [self._header(call, now) for _, call in ordered]
            )
            fresh = [(index, call) for index, call in ordered if call.reservation_id in inserted]
            if not fresh:
                return {}
            totals: dict[str, int] = {}
            for _, call in fresh:
                for line in call.lines:
                    totals[line.product_id] = totals.get(line.product_id, 0) + line.quantity
            held: dict[str, Held] = {}
            for product_id in sorted(totals):  # the lock order of every hold
                holding = await uow.products.hold(product_id, totals[product_id])
                if holding is None:
                    return None
                held[product_id] = holding
            answers = {index: self._held(call, held, now) for index, call in fresh}
            await uow.reservations.add_lines(
                [(r.id, line) for r in answers.values() for line in r.lines]
            )
            for holding in held.values():
                await uow.events.changed(holding.level, StockReason.RESERVED)
            await uow.commit()
            return answers

    # Commit and Release ---------------------------------------------------------------

    async def commit(self, reservation_id: str) -> Reservation | None:
        """The reservation after the call; None when there is no such reservation."""
        answer = await self._commit(reservation_id)
        self._metrics.answered("commit", _outcome(answer))
        return answer

    async def _commit(self, reservation_id: str) -> Reservation | None:
        if reservation_id_problem(reservation_id) is not None:
            return None  # an id no Reserve could have used names no reservation
        now = self._clock()
        async with self._uow() as uow:
            decided = await uow.reservations.decide(
                reservation_id, to=ReservationState.COMMITTED, now=now
            )
            if decided is not None:
                for line in decided.lines:
                    level = await uow.products.sell(line.product_id, line.quantity)
                    await uow.events.changed(level, StockReason.COMMITTED)
                await uow.commit()
                return decided
            existing = await uow.reservations.get(reservation_id)
            if existing is None:
                return None
            existing = await self._settle_overdue(uow, existing, now)
            await uow.commit()
            return existing

    async def release(self, reservation_id: str) -> Reservation:
        answer = await self._release(reservation_id)
        self._metrics.answered("release", _outcome(answer))
        return answer

    async def _release(self, reservation_id: str) -> Reservation:
        now = self._clock()
        problem = reservation_id_problem(reservation_id)
        if problem is not None:
            return refused(reservation_id, Refusal.INVALID, problem, now=now)
        async with self._uow() as uow:
            decided = await self._give_back(uow, reservation_id, now)
            if decided is not None:
                await uow.commit()
                return decided
            existing = await uow.reservations.get(reservation_id)
            if existing is None:
                tombstone = Reservation(
                    id=reservation_id,
                    state=ReservationState.RELEASED,
                    created_at=now,
                    decided_at=now,
                    detail=_TOMBSTONE_DETAIL,
                )
                if await uow.reservations.add(tombstone):
                    await uow.commit()
                    return tombstone
                # A Reserve inserted it meanwhile and has committed (PostgreSQL; a SQLite
                # writer holds the write lock): release what it holds.
                decided = await self._give_back(uow, reservation_id, now)
                if decided is not None:
                    await uow.commit()
                    return decided
                existing = await uow.reservations.get(reservation_id)
                assert existing is not None
            existing = await self._settle_overdue(uow, existing, now)
            await uow.commit()
            return existing

    async def _give_back(
        self, uow: InventoryUnitOfWork, reservation_id: str, now: dt.datetime
    ) -> Reservation | None:
        decided = await uow.reservations.decide(
            reservation_id, to=ReservationState.RELEASED, now=now
        )
        if decided is not None:
            for line in decided.lines:
                level = await uow.products.unhold(line.product_id, line.quantity)
                await uow.events.changed(level, StockReason.RELEASED)
        return decided

    # Expiry ---------------------------------------------------------------------------

    async def _expire(
        self, uow: InventoryUnitOfWork, reservation_id: str, now: dt.datetime
    ) -> Reservation | None:
        """HELD past its deadline -> EXPIRED, stock given back; None when it is not (any
        more): another call or sweeper decided it first."""
        decided = await uow.reservations.decide(
            reservation_id, to=ReservationState.EXPIRED, now=now, overdue=True
        )
        if decided is not None:
            for line in decided.lines:
                level = await uow.products.unhold(line.product_id, line.quantity)
                await uow.events.changed(level, StockReason.EXPIRED)
        return decided

    async def _settle_overdue(
        self, uow: InventoryUnitOfWork, reservation: Reservation, now: dt.datetime
    ) -> Reservation:
        """The reservation as it is, after expiring it if its hold has passed."""
        if not reservation.overdue(now):
            return reservation
        expired = await self._expire(uow, reservation.id, now)
        if expired is not None:
            return expired
        again = await uow.reservations.get(reservation.id)
        assert again is not None
        return again

    async def expire_overdue(self, *, limit: int) -> int:
        """One sweep: expire HELD reservations past their deadline (up to `limit`), each in
        its own transaction; how many this call expired."""
        now = self._clock()
        async with self._uow(write=False) as uow:
            due = await uow.reservations.overdue(now, limit=limit)
        count = 0
        for reservation_id in due:
            async with self._uow() as uow:
                if await self._expire(uow, reservation_id, now) is not None:
                    await uow.commit()
                    count += 1
        if count:
            self._metrics.expired(count)
        return count

    # Reads ----------------------------------------------------------------------------

    async def get(self, reservation_id: str) -> Reservation | None:
        if reservation_id_problem(reservation_id) is not None:
            return None
        async with self._uow(write=False) as uow:
            found = await uow.reservations.get(reservation_id)
        if found is None or not found.overdue(self._clock()):
            return found
        async with self._uow() as uow:
            settled = await self._settle_overdue(uow, found, self._clock())
            await uow.commit()
        return settled

    async def availability(self, product_ids: list[str]) -> list[Availability]:
        """In the order asked; an id asked twice is answered twice."""
        async with self._uow(write=False) as uow:
            found = await uow.products.get_many(sorted(set(product_ids)))
        return [Availability(product_id, found.get(product_id)) for product_id in product_ids]
