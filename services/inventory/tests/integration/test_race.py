"""Two inventory instances on one database (each its own Database, its own gRPC server over
mutual TLS), racing: for the last units, to decide the same reservations, to sweep the
same expired holds. Never oversold, `on_hand - held >= 0` always, every HELD line
accounted for, every decision taken once. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import String, bindparam, func, select

from flotilla_inventory.adapters.tables import products, reservation_lines, reservations
from flotilla_kit.clock import ManualClock
from flotilla_kit.db import Query
from flotilla_kit.testing import TokenMinter
from flotilla_proto.inventory.v1 import inventory_pb2 as pb

from .harness import TIMEOUT_S, Instance, Pki, running_inventory, stock_events

pytestmark = pytest.mark.slow


@pytest.fixture
async def pair(
    database_url: str, tokens: TokenMinter, dev_pki: Pki, clock: ManualClock
) -> AsyncIterator[tuple[Instance, Instance]]:
    async with (
        running_inventory(database_url, tokens=tokens, dev_pki=dev_pki, clock=clock) as one,
        running_inventory(database_url, tokens=tokens, dev_pki=dev_pki, clock=clock) as two,
    ):
        assert one.database is not two.database
        yield one, two


_PRODUCT_ID = bindparam("product_id", type_=String())
_STOCK = Query(select(products.c.on_hand, products.c.held).where(products.c.id == _PRODUCT_ID))
_HELD_LINES = Query(
    select(func.coalesce(func.sum(reservation_lines.c.quantity), 0).label("quantity"))
    .join(reservations, reservations.c.id == reservation_lines.c.reservation_id)
    .where(reservations.c.state == "held", reservation_lines.c.product_id == _PRODUCT_ID)
)


async def _ledger(instance: Instance, product_id: str) -> tuple[int, int, int]:
    """(on hand, held, the sum of the lines of HELD reservations) of a product."""
    async with instance.database.transaction(write=False) as tx:
        stock = await tx.first(_STOCK, product_id=product_id)
        lines = await tx.scalar(_HELD_LINES, product_id=product_id)
    assert stock is not None, product_id
    return int(stock.on_hand), int(stock.held), int(lines)


async def _stream(instance: Instance, requests: list[pb.ReserveRequest]) -> list[pb.Reservation]:
    call = instance.grpc.ReserveStream(metadata=instance.service_auth, timeout=TIMEOUT_S * 6)

    async def write() -> None:
        for request in requests:
            await call.write(request)
        await call.done_writing()

    writer = asyncio.create_task(write())
    answers = [answer async for answer in call]
    await writer
    return answers


async def test_the_last_units_are_never_oversold(pair: tuple[Instance, Instance]) -> None:
    one, two = pair
    product_id = await one.product("LAST-1", on_hand=12)
    rng = random.Random(11)
    wanted = {f"race-{i}": rng.randint(1, 3) for i in range(80)}
    requests = [
        pb.ReserveRequest(
            reservation_id=reservation_id, lines=[pb.Line(product_id=product_id, quantity=q)]
        )
        for reservation_id, q in wanted.items()
    ]
    # A quarter each: unary on one, unary on two, a stream on one, a stream on two.
    unary = [
        instance.grpc.Reserve(request, metadata=instance.service_auth, timeout=TIMEOUT_S * 6)
        for instance, request in zip((one, two) * 20, requests[:40], strict=True)
    ]
    unary_answers, streamed_one, streamed_two = await asyncio.gather(
        asyncio.gather(*unary), _stream(one, requests[40:60]), _stream(two, requests[60:])
    )
    answers = [*unary_answers, *streamed_one, *streamed_two]
    assert sorted(a.reservation_id for a in answers) == sorted(wanted)

    held = {a.reservation_id for a in answers if a.state == pb.HELD}
    refused = {a.reservation_id for a in answers if a.state == pb.REFUSED}
    assert held | refused == set(wanted)
    assert all(a.refusal == pb.OUT_OF_STOCK for a in answers if a.state == pb.REFUSED)
    on_hand, held_units, lines = await _ledger(one, product_id)
    assert on_hand == 12
    assert held_units == lines == sum(wanted[r] for r in held)  # every HELD line accounted
    assert on_hand - held_units >= 0
    # Holds only ever grew, so what is left now is at most what was left at any refusal:
    # nobody was refused while their units were there.
    assert all(wanted[r] > on_hand - held_units for r in refused)
    assert await _ledger(two, product_id) == (on_hand, held_units, lines)
    events = [e for e in await stock_events(one.database) if e["data"]["reason"] == "reserved"]
    assert max(e["data"]["reserved"] for e in events) == held_units
    assert len({e["data"]["version"] for e in events}) == len(events)


async def test_a_reservation_is_decided_once_whoever_asks(
    pair: tuple[Instance, Instance],
) -> None:
    one, two = pair
    product_id = await one.product("DECIDE-1", on_hand=100)
    ids = [f"dec-{i}" for i in range(30)]
    for reservation_id in ids:
        assert (await one.reserve(reservation_id, (product_id, 2))).state == pb.HELD
    calls = []
    for n, reservation_id in enumerate(ids):
        committer, releaser = (one, two) if n % 2 else (two, one)
        calls += [committer.commit(reservation_id), releaser.release(reservation_id)]
    answers = await asyncio.gather(*calls)
    outcomes: dict[str, set[int]] = {}
    for answer in answers:
        outcomes.setdefault(answer.reservation_id, set()).add(answer.state)
    # Both calls on a reservation report the one decision taken.
    assert all(len(states) == 1 for states in outcomes.values()), outcomes
    committed = sum(1 for states in outcomes.values() if states == {pb.COMMITTED})
    released = sum(1 for states in outcomes.values() if states == {pb.RELEASED})
    assert committed + released == len(ids)
    assert await _ledger(one, product_id) == (100 - 2 * committed, 0, 0)
    reasons = [e["data"]["reason"] for e in await stock_events(one.database)]
    assert (reasons.count("committed"), reasons.count("released")) == (committed, released)


async def test_two_sweepers_expire_each_hold_once(
    pair: tuple[Instance, Instance], clock: ManualClock
) -> None:
    one, two = pair
    product_id = await one.product("SWEEP-1", on_hand=50)
    for i in range(24):
        instance = (one, two)[i % 2]
        assert (await instance.reserve(f"sw-{i}", (product_id, 2), hold_s=30)).state == pb.HELD
    await one.reserve("sw-long", (product_id, 1), hold_s=300)
    clock.advance(31)
    swept = await asyncio.gather(one.app.state.sweeper.tick(), two.app.state.sweeper.tick())
    assert sum(swept) == 24
    assert await _ledger(one, product_id) == (50, 1, 1)
    reasons = [e["data"]["reason"] for e in await stock_events(one.database)]
    assert reasons.count("expired") == 24
    assert (await two.release("sw-long")).state == pb.RELEASED
    assert await _ledger(one, product_id) == (50, 0, 0)


async def test_a_repeated_reserve_racing_a_release_never_deadlocks(
    pair: tuple[Instance, Instance],
) -> None:
    """A saga retrying its Reserve while its compensation releases: the Reserve takes the
    reservation's row before any product's (as Release does), so the two never wait for
    each other in a circle (PostgreSQL would abort one as a deadlock)."""
    one, two = pair
    mug = await one.product("MUG-1", on_hand=100)
    cup = await one.product("CUP-1", on_hand=100)
    ids = [f"again-{i}" for i in range(30)]
    for reservation_id in ids:
        assert (await one.reserve(reservation_id, (mug, 1), (cup, 1))).state == pb.HELD
    calls = []
    for n, reservation_id in enumerate(ids):
        reserver, releaser = (one, two) if n % 2 else (two, one)
        calls += [
            reserver.reserve(reservation_id, (mug, 1), (cup, 1)),
            releaser.release(reservation_id),
        ]
    answers = await asyncio.gather(*calls)
    repeats, releases = answers[0::2], answers[1::2]
    assert {a.state for a in releases} == {pb.RELEASED}
    assert {a.state for a in repeats} <= {pb.HELD, pb.RELEASED}
    assert await _ledger(one, mug) == (100, 0, 0)
    assert await _ledger(one, cup) == (100, 0, 0)
