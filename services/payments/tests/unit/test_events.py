"""The `transfer_committed` event: written with the COMMITTED state, in its transaction,
once per transfer (whoever finishes it), never for an abort."""

from __future__ import annotations

import asyncio
import datetime as dt

import pytest

from flotilla_kit.testing import principal as who
from flotilla_payments.domain import TransferState, new_transfer
from flotilla_payments.domain.events import transfer_committed
from flotilla_payments.service_layer.coordinator import TransferRequest
from flotilla_payments.service_layer.faults import FaultPoint
from services.payments.tests.fakes import CrashAt, SimulatedCrash
from services.payments.tests.unit.world import World, send

S = TransferState


@pytest.mark.parametrize(("target", "path"), [("b0", "local"), ("b1", "2pc")])
async def test_a_committed_transfer_writes_one_event_with_its_data(
    world: World, target: str, path: str
) -> None:
    done = (
        await send(
            world.coordinator(), source=world.a0, target=getattr(world, target), amount=2_500
        )
    ).transfer
    assert done.state is S.COMMITTED
    (event,) = world.store.events
    assert (event.type, event.source, event.subject) == (
        "flotilla.payments.transfer_committed", "/flotilla/payments", str(done.id),
    )  # fmt: skip
    assert done.completed_at is not None
    assert event.data == {
        "transfer_id": str(done.id),
        "from_account": world.a0,
        "to_account": getattr(world, target),
        "amount_minor": 2_500,
        "currency": "EUR",
        "reference": "rent",
        "initiator": "alice",
        "requested_by": None,
        "path": path,
        "committed_at": done.completed_at.isoformat().replace("+00:00", "Z"),
    }
    assert dt.datetime.fromisoformat(event.data["committed_at"]) == done.completed_at
    assert world.store.routes == ["direct"]  # flotilla.payments.transfer_committed.direct


async def test_a_transfer_a_service_made_on_a_customers_behalf_is_routed_to_that_service(
    world: World,
) -> None:
    """The checkout saga pays for alice: the event goes out under `.orders`, so orders
    subscribes to its own transfers and not to every transfer of the bank."""
    saga = who("service:orders", "service:orders")
    submitted = await world.coordinator().submit(
        principal=saga,
        request=TransferRequest(world.a0, world.b1, 700, "EUR", "order 1", on_behalf_of="alice"),
        idempotency_key="order-1",
        fingerprint="f",
    )
    done = submitted.transfer
    assert (done.state, done.initiator, done.requested_by) == (
        S.COMMITTED, "alice", "service:orders",
    )  # fmt: skip
    (event,) = world.store.events
    assert (event.data["initiator"], event.data["requested_by"]) == ("alice", "service:orders")
    assert world.store.routes == ["orders"]


@pytest.mark.parametrize("target", ["b0", "b1"])
async def test_an_aborted_transfer_writes_no_event(world: World, target: str) -> None:
    done = (
        await send(
            world.coordinator(), source=world.a0, target=getattr(world, target), amount=10_001
        )
    ).transfer
    assert done.state is S.ABORTED
    assert world.store.events == []


async def test_a_transfer_finished_by_recovery_writes_its_event_once(world: World) -> None:
    # The first instance 'dies' with both commits acknowledged and COMMITTED not written:
    # no event yet. Recovery on another instance finishes it and writes the one event.
    with pytest.raises(SimulatedCrash):
        await send(
            world.coordinator(instance_id="p-0", faults=CrashAt(FaultPoint.BEFORE_DONE)),
            source=world.a0, target=world.b1,
        )  # fmt: skip
    assert world.store.events == []
    world.clock.advance(6)  # past the lease
    report = await world.recovery(world.coordinator(instance_id="p-1")).tick()
    assert report.finished == 1
    (event,) = world.store.events
    (transfer,) = world.store.transfers.values()
    assert (transfer.state, event.subject) == (S.COMMITTED, str(transfer.id))


async def test_of_two_finishers_only_the_winner_of_the_compare_and_set_writes_it(
    world: World,
) -> None:
    # Phase two acknowledged on instance p-0, which stalls before writing COMMITTED; p-1
    # (recovery, after the lease) finishes it; then p-0 wakes up and loses the CAS.
    gate = asyncio.Event()
    world.ledger.gates[("Commit", "credit")] = gate
    first = asyncio.create_task(
        send(world.coordinator(instance_id="p-0"), source=world.a0, target=world.b1)
    )
    arrived = world.ledger.arrival("Commit", "credit")
    await arrived.wait()
    arrived.clear()
    world.clock.advance(6)
    recovering = asyncio.create_task(world.recovery(world.coordinator(instance_id="p-1")).tick())
    await arrived.wait()  # recovery holds at the same gate: both will try to finish it
    gate.set()
    await recovering
    await first
    for coordinator in world.coordinators:
        await coordinator.settle()
    assert len(world.store.events) == 1
    (transfer,) = world.store.transfers.values()
    assert transfer.state is S.COMMITTED


def test_only_a_committed_transfer_has_the_event(world: World) -> None:
    preparing = new_transfer(
        from_account=world.a0, to_account=world.b1, amount_minor=1, currency="EUR",
        reference="", initiator="alice", required_owner="alice", same_shard=False,
        now=world.clock(), lease_owner="p-0", lease_s=5,
    )  # fmt: skip
    with pytest.raises(ValueError, match="not committed"):
        transfer_committed(preparing)
