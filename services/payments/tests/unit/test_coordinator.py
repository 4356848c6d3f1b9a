"""The coordinator against fakes: every path a transfer can take, and what it leaves in
the transfer log, the audit trail, the metrics and the ledger."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid

import pytest

from flotilla_kit.resource_keys import KeyedResource
from flotilla_kit.testing import principal as who
from flotilla_payments.domain import Refusal, TransferPath, TransferState
from flotilla_payments.service_layer.coordinator import Outcome
from flotilla_payments.service_layer.errors import (
    AccountNotFound,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidTransfer,
    NotAllowed,
    SameAccount,
)
from services.payments.tests.unit.world import World, fingerprint_of, send

S = TransferState


def unknown_account(shard: int) -> str:
    return f"acc_{shard}_{uuid.uuid4().hex}"


async def test_a_local_transfer_is_one_ledger_call(world: World) -> None:
    coordinator = world.coordinator()
    total = world.bank.total()
    done = (await send(coordinator, source=world.a0, target=world.b0, amount=2_500)).transfer
    assert (done.state, done.path, done.refusal) == (S.COMMITTED, TransferPath.LOCAL, None)
    assert done.decided_at == done.completed_at is not None
    assert (done.lease_owner, done.lease_until) == (None, None)
    shard = world.bank.shards[0]
    assert (shard.balance(world.a0), shard.balance(world.b0)) == (7_500, 2_500)
    assert world.bank.total() == total
    assert [m for m, _, _ in world.ledger.calls] == ["Transfer"]
    assert world.store.transfers[done.id] == done
    assert [(e.action, e.actor, e.outcome) for e in world.store.audit] == [
        ("transfer.requested", "alice", "success"),
        ("transfer.committed", "system:payments-p-0", "success"),
    ]
    assert world.metric("flotilla_payments_transfers_total", path="local", outcome="committed") == 1
    assert world.metric("flotilla_payments_decision_duration_seconds_count", path="local") == 1


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("insufficient", Refusal.INSUFFICIENT_FUNDS),
        ("unknown target", Refusal.ACCOUNT_NOT_FOUND),
        ("someone else's source", Refusal.ACCOUNT_NOT_FOUND),
        ("other currency", Refusal.CURRENCY_MISMATCH),
    ],
)
async def test_a_refused_local_transfer_is_aborted_with_the_reason(
    world: World, case: str, refusal: Refusal
) -> None:
    coordinator = world.coordinator()
    source, target, amount, currency = world.a0, world.b0, 100, "EUR"
    match case:
        case "insufficient":
            amount = 10_001
        case "unknown target":
            target = unknown_account(0)
        case "someone else's source":
            source, target = world.b0, world.a0
        case "other currency":
            currency = "USD"
    money = world.bank.money()
    done = (
        await send(coordinator, source=source, target=target, amount=amount, currency=currency)
    ).transfer
    assert (done.state, done.refusal) == (S.ABORTED, refusal)
    assert world.bank.money() == money
    assert world.store.audit[-1].action == "transfer.aborted"
    assert world.store.audit[-1].details["refusal"] == refusal.value
    assert world.metric("flotilla_payments_transfers_total", path="local", outcome="refused") == 1


async def test_a_cross_shard_transfer_commits_by_two_phase_commit(world: World) -> None:
    coordinator = world.coordinator()
    total = world.bank.total()
    done = (await send(coordinator, source=world.a0, target=world.b1, amount=2_500)).transfer
    assert (done.state, done.path) == (S.COMMITTED, TransferPath.TWO_PHASE)
    assert done.decided_at is not None
    assert done.completed_at is not None
    assert world.bank.shards[0].balance(world.a0) == 7_500
    assert world.bank.shards[1].balance(world.b1) == 2_500
    assert world.bank.total() == total
    assert world.bank.statuses(done.id) == {"debit": "committed", "credit": "committed"}
    assert (
        sorted(world.ledger.calls_of("Prepare"))
        == sorted(world.ledger.calls_of("Commit"))
        == ["credit", "debit"]
    )
    assert world.ledger.calls_of("Abort") == []
    assert world.metric("flotilla_payments_transfers_total", path="2pc", outcome="committed") == 1
    for histogram in ("prepare", "phase_two"):
        assert world.metric(f"flotilla_payments_{histogram}_duration_seconds_count") == 1
    assert world.metric("flotilla_payments_decision_duration_seconds_count", path="2pc") == 1


async def test_the_debit_branch_requires_the_initiator_as_owner(world: World) -> None:
    # Alice asks to move money from Bob's account (on shard 1) to her own (on shard 0).
    done = (await send(world.coordinator(), source=world.b1, target=world.a0)).transfer
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.ACCOUNT_NOT_FOUND)
    assert world.ledger.calls_of("Commit") == []


@pytest.mark.parametrize(
    ("case", "refusal"),
    [
        ("insufficient", Refusal.INSUFFICIENT_FUNDS),
        ("someone else's source", Refusal.ACCOUNT_NOT_FOUND),
        ("unknown source", Refusal.ACCOUNT_NOT_FOUND),
        ("other currency", Refusal.CURRENCY_MISMATCH),
        ("unknown target", Refusal.ACCOUNT_NOT_FOUND),
    ],
)
async def test_a_no_vote_aborts_and_no_commit_is_sent(
    world: World, case: str, refusal: Refusal
) -> None:
    coordinator = world.coordinator()
    source, target, amount, currency = world.a0, world.b1, 100, "EUR"
    match case:
        case "insufficient":
            amount = 10_001
        case "someone else's source":
            source = world.bank.shards[0].open("carol", 5_000)
        case "unknown source":
            source = unknown_account(0)
        case "other currency":
            currency = "USD"
        case "unknown target":
            target = unknown_account(1)
    money = world.bank.money()
    submission = await send(
        coordinator, source=source, target=target, amount=amount, currency=currency
    )
    done = submission.transfer
    assert (done.state, done.refusal) == (S.ABORTED, refusal)
    assert world.bank.money() == money  # holds and pending credits released: nothing moved
    assert world.ledger.calls_of("Commit") == []
    assert sorted(world.ledger.calls_of("Abort")) == ["credit", "debit"]
    assert set(world.bank.statuses(done.id).values()) == {"aborted"}
    assert world.metric("flotilla_payments_transfers_total", path="2pc", outcome="refused") == 1


@pytest.mark.parametrize("down", [0, 1])
async def test_an_unreachable_participant_in_phase_one_aborts(world: World, down: int) -> None:
    coordinator = world.coordinator()
    world.ledger.down.add(down)
    money = world.bank.money()
    answered = (await send(coordinator, source=world.a0, target=world.b1)).transfer
    # The abort is decided and durable: that is the answer, although the shard that is
    # down has not acknowledged it yet.
    assert (answered.state, answered.refusal) == (S.ABORTING, Refusal.PARTICIPANT_UNAVAILABLE)
    assert world.ledger.calls_of("Commit") == []
    assert world.bank.money() == money  # the reachable side's hold is released already
    world.ledger.down.clear()
    world.clock.advance(await world.clock.next_sleep())
    await coordinator.settle()
    done = world.store.transfers[answered.id]
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.PARTICIPANT_UNAVAILABLE)
    assert set(world.bank.statuses(done.id).values()) == {
        "aborted"
    }  # a tombstone where it never prepared
    assert world.metric("flotilla_payments_transfers_total", path="2pc", outcome="aborted") == 1


async def test_phase_two_is_retried_with_backoff_until_acknowledged(world: World) -> None:
    coordinator = world.coordinator(answer_within_s=0, retry_initial_s=0.1, retry_max_s=0.5)
    world.ledger.fail[("Commit", "credit")] = 4
    answered = (await send(coordinator, source=world.a0, target=world.b1)).transfer
    assert answered.state in (S.PREPARING, S.COMMITTING)  # not final: the client gets 202
    delays = []
    for attempt in range(4):
        delay = await world.clock.next_sleep()
        assert 0 <= delay <= min(0.5, 0.1 * 2**attempt)
        stored = world.store.transfers[answered.id]
        assert (stored.state, stored.attempts, stored.lease_owner) == (
            S.COMMITTING,
            attempt + 1,
            "p-0",
        )
        # The lease covers the wait: recovery elsewhere leaves the transfer alone.
        assert stored.lease_until is not None
        assert stored.lease_until > world.clock()
        delays.append(delay)
        world.clock.advance(delay)
    await coordinator.settle()
    done = world.store.transfers[answered.id]
    assert (done.state, done.attempts, done.lease_owner) == (S.COMMITTED, 4, None)
    assert world.ledger.calls_of("Commit").count("debit") == 1  # only the silent side again
    assert world.ledger.calls_of("Commit").count("credit") == 5
    assert world.bank.shards[1].balance(world.b1) == 2_500
    assert len(set(delays)) > 1  # jittered


async def test_a_lost_answer_is_asked_again_and_applied_once(world: World) -> None:
    coordinator = world.coordinator(answer_within_s=0)
    # Prepared, but the answer is lost: no vote is no vote, so the transfer aborts, and
    # the abort releases what the credit side recorded.
    world.ledger.lose[("Prepare", "credit")] = 1
    first = await send(coordinator, source=world.a0, target=world.b1, key="k-1")
    await coordinator.settle()
    done = world.store.transfers[first.transfer.id]
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.PARTICIPANT_UNAVAILABLE)
    assert world.bank.statuses(done.id) == {"debit": "aborted", "credit": "aborted"}
    # Committed, but the answer is lost: asked again, applied once.
    world.ledger.lose[("Commit", "debit")] = 1
    second = await send(coordinator, source=world.a0, target=world.b1, key="k-2")
    world.clock.advance(await world.clock.next_sleep())
    await coordinator.settle()
    assert world.store.transfers[second.transfer.id].state is S.COMMITTED
    assert world.ledger.calls_of("Commit", second.transfer.id).count("debit") == 2
    assert world.bank.shards[0].balance(world.a0) == 7_500  # once, not twice
    assert world.bank.shards[1].balance(world.b1) == 2_500


async def test_a_protocol_violation_is_not_taken_for_an_acknowledgement(world: World) -> None:
    coordinator = world.coordinator(answer_within_s=0)
    world.ledger.violate.add(("Commit", "credit"))
    answered = (await send(coordinator, source=world.a0, target=world.b1)).transfer
    world.clock.advance(await world.clock.next_sleep())
    second_wait = await world.clock.next_sleep()  # the second attempt was refused, too
    stored = world.store.transfers[answered.id]
    assert (stored.state, stored.attempts) == (S.COMMITTING, 2)
    world.ledger.violate.clear()
    world.clock.advance(second_wait)
    await coordinator.settle()
    assert world.store.transfers[answered.id].state is S.COMMITTED


async def test_a_protocol_violation_in_prepare_aborts(world: World) -> None:
    world.ledger.violate.add(("Prepare", "credit"))
    done = (await send(world.coordinator(), source=world.a0, target=world.b1)).transfer
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.PROTOCOL_VIOLATION)


async def test_an_unanswered_local_transfer_stays_preparing_and_is_sent_again(world: World) -> None:
    coordinator = world.coordinator(answer_within_s=0)
    world.ledger.lose[("Transfer", "local")] = 1  # applied; we cannot know
    answered = (await send(coordinator, source=world.a0, target=world.b0)).transfer
    assert answered.state is S.PREPARING
    world.clock.advance(await world.clock.next_sleep())
    await coordinator.settle()
    assert world.store.transfers[answered.id].state is S.COMMITTED
    assert world.ledger.calls_of("Transfer") == ["local", "local"]
    assert world.bank.shards[0].balance(world.b0) == 2_500  # applied once


async def test_the_same_key_and_body_replay_the_transfer_as_it_is_now(world: World) -> None:
    coordinator = world.coordinator()
    first = await send(coordinator, source=world.a0, target=world.b1, key="k-1")
    calls = list(world.ledger.calls)
    again = await send(coordinator, source=world.a0, target=world.b1, key="k-1")
    assert again.replayed
    assert not first.replayed
    assert again.transfer == first.transfer
    assert world.ledger.calls == calls  # nothing sent twice
    with pytest.raises(IdempotencyKeyReused):
        await send(coordinator, source=world.a0, target=world.b1, key="k-1", amount=1)
    # Keys belong to their user: Bob's "k-1" is another transfer.
    bobs = await send(
        coordinator,
        source=world.b1,
        target=world.a0,
        key="k-1",
        amount=1,
        principal=who("bob", "customer"),
    )
    assert not bobs.replayed
    assert bobs.transfer.id != first.transfer.id
    assert len(world.store.transfers) == 2
    assert world.bank.shards[0].balance(world.a0) == 7_501


async def test_a_request_racing_on_the_same_key_replays_the_winner(world: World) -> None:
    coordinator = world.coordinator()
    winner: list[uuid.UUID] = []

    def competing_request() -> None:
        # Another instance stores the same key (and its own transfer) between our
        # look-up and our insert: our transaction must roll back and replay the winner.
        ours = next(iter(world.store.transfers.values()))
        theirs = dataclasses.replace(ours, id=uuid.uuid4())
        world.store.transfers[theirs.id] = theirs
        fingerprint = fingerprint_of(source=world.a0, target=world.b1)
        world.store.keys[("alice:transfer", "k-1")] = KeyedResource(fingerprint, theirs.id)
        winner.append(theirs.id)

    world.store.before_remember = competing_request
    submission = await send(coordinator, source=world.a0, target=world.b1, key="k-1")
    assert submission.replayed
    assert submission.transfer.id == winner[0]
    assert list(world.store.transfers) == winner  # ours was rolled back
    assert world.store.audit == []
    assert world.ledger.calls == []


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("no permission", NotAllowed),
        ("no key", IdempotencyKeyRequired),
        ("same account", SameAccount),
        ("not an account id", AccountNotFound),
        ("unknown shard", AccountNotFound),
        ("a bank system account", AccountNotFound),
        ("zero amount", InvalidTransfer),
        ("unknown currency", InvalidTransfer),
    ],
)
async def test_a_bad_request_is_refused_before_anything_is_written(
    world: World, case: str, error: type[Exception]
) -> None:
    coordinator = world.coordinator()
    kwargs: dict[str, object] = {"source": world.a0, "target": world.b1}
    match case:
        case "no permission":
            kwargs["principal"] = who("sam", "support")
        case "no key":
            kwargs["key"] = None
        case "same account":
            kwargs["target"] = world.a0
        case "not an account id":
            kwargs["target"] = "bob's account"
        case "unknown shard":
            kwargs["target"] = unknown_account(7)
        case "a bank system account":
            kwargs["target"] = "sys_1_cash_eur"
        case "zero amount":
            kwargs["amount"] = 0
        case "unknown currency":
            kwargs["currency"] = "XYZ"
    with pytest.raises(error):
        await send(coordinator, **kwargs)  # type: ignore[arg-type]
    assert world.store.transfers == {}
    assert world.store.keys == {}
    assert world.store.audit == []
    assert world.ledger.calls == []


async def test_a_transfer_not_final_in_time_is_answered_then_finished(world: World) -> None:
    coordinator = world.coordinator(answer_within_s=0)
    gate = world.ledger.gates[("Prepare", "credit")] = asyncio.Event()
    answered = (await send(coordinator, source=world.a0, target=world.b1)).transfer
    assert answered.state is S.PREPARING
    gate.set()
    await coordinator.settle()
    assert world.store.transfers[answered.id].state is S.COMMITTED


async def test_payments_transfer_any_lifts_the_owner_check(world: World) -> None:
    operator = dataclasses.replace(
        who("ops", "admin"), permissions=frozenset({"payments:transfer", "payments:transfer:any"})
    )
    done = (
        await send(
            world.coordinator(), source=world.b0, target=world.b1, amount=1, principal=operator
        )
    ).transfer
    assert done.required_owner is None
    # Bob's shard-0 account is empty: the ledger refuses on funds, not on ownership.
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.INSUFFICIENT_FUNDS)
    alices = (await send(world.coordinator(), source=world.a0, target=world.b1, key="k-2")).transfer
    assert alices.required_owner == "alice"


async def test_an_abort_presumed_while_votes_are_out_wins_the_compare_and_set(world: World) -> None:
    coordinator = world.coordinator(answer_within_s=0, prepare_timeout_s=10)
    gate = world.ledger.gates[("Prepare", "credit")] = asyncio.Event()
    money = world.bank.money()
    answered = (await send(coordinator, source=world.a0, target=world.b1)).transfer
    await world.ledger.arrival("Prepare", "credit").wait()  # the driver waits for a vote
    world.clock.advance(11)
    ledger_shard = who("service:accounts", "service:accounts")
    assert (
        await coordinator.outcome(principal=ledger_shard, transfer_id=str(answered.id))
        is Outcome.ABORT
    )
    assert world.store.transfers[answered.id].state is S.ABORTING
    gate.set()  # the credit side votes YES, too late: the driver's commit loses
    await coordinator.settle()
    done = world.store.transfers[answered.id]
    assert (done.state, done.refusal) == (S.ABORTED, Refusal.PREPARE_TIMEOUT)
    assert world.ledger.calls_of("Commit") == []
    assert world.bank.money() == money
