"""The ledger's gRPC API (the 2PC participant) for real: in-process server on a real port,
mutual TLS, service tokens, SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import grpc
import pytest
from grpc import aio
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from flotilla_accounts.adapters.audit import AUDIT_LOG
from flotilla_accounts.adapters.unit_of_work import AccountsUnitOfWork
from flotilla_accounts.domain import settlement_account_id
from flotilla_kit.db import CheckViolation, Query
from flotilla_kit.devservers import EmbeddedPostgres
from flotilla_kit.rpc import bearer
from flotilla_kit.testing import TokenMinter
from flotilla_proto.ledger.v1 import ledger_pb2 as pb
from flotilla_proto.ledger.v1 import ledger_pb2_grpc as pb_grpc

from .conftest import take_snapshot
from .harness import Pki, Shard, owner_on, running_shard

TIMEOUT_S = 10.0


@pytest.fixture
async def shard(database_url: str, tokens: TokenMinter, dev_pki: Pki) -> AsyncIterator[Shard]:
    async with running_shard(database_url, tokens=tokens, dev_pki=dev_pki) as running:
        yield running


async def test_prepare_commit_and_abort_over_mutual_tls(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    bob = await shard.open("bob")

    yes = await shard.prepare("t1", alice, 30, owner="alice")
    assert (yes.vote, yes.refusal) == (pb.YES, pb.REFUSAL_UNSPECIFIED)
    assert (await shard.prepare("t1", bob, 30, pb.CREDIT)).vote == pb.YES
    assert await shard.state("t1", "debit") == pb.PREPARED
    held = await shard.account(alice)
    assert (held["balance_minor"], held["available_minor"]) == (100, 70)

    assert (await shard.commit("t1", "debit")).status == pb.COMMITTED
    assert (await shard.commit("t1", "credit")).status == pb.COMMITTED
    assert await shard.state("t1", "credit") == pb.COMMITTED
    after = await shard.account(alice)
    assert (after["balance_minor"], after["available_minor"]) == (70, 70)
    assert (await shard.account(bob))["balance_minor"] == 30

    assert (await shard.prepare("t2", alice, 50)).vote == pb.YES
    assert (await shard.account(alice))["available_minor"] == 20
    assert (await shard.abort("t2", "debit")).status == pb.ABORTED
    assert (await shard.account(alice))["available_minor"] == 70
    assert await shard.state("t2", "debit") == pb.ABORTED
    assert await shard.state("never", "debit") == pb.UNKNOWN

    total, accounts = await shard.ledger_totals()
    assert total == 0
    assert all(balance == entries for balance, entries in accounts.values())
    # Both sides of t1 on this shard: its settlement account is back to zero.
    assert accounts[settlement_account_id(0, "EUR")] == (0, 0)


async def test_no_votes_carry_the_reason(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    usd = await shard.open("carol", currency="USD", balance=100)
    cases = [
        (await shard.prepare("n1", alice, 101), pb.INSUFFICIENT_FUNDS),
        (await shard.prepare("n2", alice, 10, owner="mallory"), pb.ACCOUNT_NOT_FOUND),
        (await shard.prepare("n3", "acc_0_missing", 10), pb.ACCOUNT_NOT_FOUND),
        (await shard.prepare("n4", usd, 10), pb.CURRENCY_MISMATCH),
        (await shard.prepare("n5", "acc_7_elsewhere", 10), pb.WRONG_SHARD),
        (await shard.prepare("n6", alice, 0), pb.INVALID),
        (await shard.prepare("n7", alice, 10, pb.DIRECTION_UNSPECIFIED, branch_id="x"), pb.INVALID),
        (await shard.prepare("n8", alice, 10, currency="XYZ"), pb.INVALID),
    ]
    for answer, refusal in cases:
        assert (answer.vote, answer.refusal) == (pb.NO, refusal)
        assert answer.detail
    assert (await shard.account(alice))["available_minor"] == 100


async def test_without_a_valid_service_token_nothing_happens(
    shard: Shard, tokens: TokenMinter
) -> None:
    alice = await shard.open("alice", balance=100)
    before = await take_snapshot(shard.database)
    request = pb.PrepareRequest(
        transfer_id="t", branch_id="debit", account_id=alice, direction=pb.DEBIT,
        amount_minor=10, currency="EUR",
    )  # fmt: skip
    refusals = {
        "no token": ((), grpc.StatusCode.UNAUTHENTICATED),
        "not a jwt": (bearer("not-a-jwt"), grpc.StatusCode.UNAUTHENTICATED),
        "expired": (
            bearer(tokens.mint("service:payments", ["service:payments"], ttl_s=-120)),
            grpc.StatusCode.UNAUTHENTICATED,
        ),
        "basic auth": ((("authorization", "Basic cGF5OnB3"),), grpc.StatusCode.UNAUTHENTICATED),
        "a customer": (
            bearer(tokens.mint("alice", ["customer"])),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
        "an admin": (bearer(tokens.mint("ada", ["admin"])), grpc.StatusCode.PERMISSION_DENIED),
        "another service": (
            bearer(tokens.mint("service:orders", ["service:orders"])),
            grpc.StatusCode.PERMISSION_DENIED,
        ),
    }
    ref = pb.BranchRef(transfer_id="t", branch_id="debit")
    for name, (metadata, code) in refusals.items():
        for call in (
            shard.ledger.Prepare(request, metadata=metadata, timeout=TIMEOUT_S),
            shard.ledger.Abort(ref, metadata=metadata, timeout=TIMEOUT_S),
            shard.ledger.Transfer(pb.LocalTransferRequest(), metadata=metadata, timeout=TIMEOUT_S),
        ):
            with pytest.raises(aio.AioRpcError) as refused:
                await call
            assert refused.value.code() == code, name
    assert await take_snapshot(shard.database) == before


async def test_a_client_without_a_certificate_cannot_connect(
    shard: Shard, dev_pki: Pki, tokens: TokenMinter
) -> None:
    ca = await asyncio.to_thread(dev_pki("payments").ca.read_bytes)
    credentials = grpc.ssl_channel_credentials(root_certificates=ca)
    options = [("grpc.ssl_target_name_override", "localhost")]
    async with aio.secure_channel(
        f"127.0.0.1:{shard.app.state.grpc_port}", credentials, options=options
    ) as channel:
        stub = pb_grpc.LedgerStub(channel)
        with pytest.raises(aio.AioRpcError) as refused:
            await stub.GetBranch(
                pb.BranchRef(transfer_id="t", branch_id="debit"),
                metadata=bearer(tokens.mint("service:payments", ["service:payments"])),
                timeout=TIMEOUT_S,
            )
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_concurrent_holds_never_spend_the_same_money_twice(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    answers = await asyncio.gather(*(shard.prepare(f"c{i}", alice, 10) for i in range(20)))
    votes = [a.vote for a in answers]
    assert votes.count(pb.YES) == 10
    assert {a.refusal for a in answers if a.vote == pb.NO} == {pb.INSUFFICIENT_FUNDS}
    account = await shard.account(alice)
    assert (account["balance_minor"], account["available_minor"]) == (100, 0)
    # Commit the winners, abort the losers (as the coordinator would): exactly 100 left.
    await asyncio.gather(
        *(
            shard.commit(f"c{i}", "debit") if a.vote == pb.YES else shard.abort(f"c{i}", "debit")
            for i, a in enumerate(answers)
        )
    )
    account = await shard.account(alice)
    assert (account["balance_minor"], account["available_minor"]) == (0, 0)


async def test_the_database_refuses_a_hold_beyond_the_balance(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    for statement in (
        "UPDATE accounts SET held_minor = 101 WHERE id = :id",
        "UPDATE accounts SET held_minor = -1 WHERE id = :id",
        "UPDATE accounts SET held_minor = 60, balance_minor = 50 WHERE id = :id",
    ):
        with pytest.raises(CheckViolation):
            async with shard.database.transaction() as tx:
                await tx.execute(Query(text(statement)), id=alice)


async def test_a_refused_hold_leaves_the_transaction_usable(shard: Shard) -> None:
    # The CHECK alone, with no Python check in front of it: the second hold is refused
    # and the first one still commits (a savepoint keeps PostgreSQL's transaction alive).
    alice = await shard.open("alice", balance=100)
    async with AccountsUnitOfWork(shard.database) as uow:
        assert await uow.ledger.hold(alice, 60)
        assert not await uow.ledger.hold(alice, 60)
        assert not await uow.ledger.hold(alice, 41)
        assert await uow.ledger.hold(alice, 40)
        await uow.commit()
    account = await shard.account(alice)
    assert (account["balance_minor"], account["available_minor"]) == (100, 0)


async def test_a_tombstone_refuses_a_late_prepare(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    assert (await shard.abort("late", "debit")).status == pb.ABORTED
    answer = await shard.prepare("late", alice, 10)
    assert (answer.vote, answer.refusal) == (pb.NO, pb.ALREADY_ABORTED)
    assert (await shard.account(alice))["available_minor"] == 100
    assert await shard.state("late", "debit") == pb.ABORTED


async def test_phase_two_is_idempotent_and_refuses_what_no_coordinator_asks(
    shard: Shard,
) -> None:
    alice = await shard.open("alice", balance=100)
    await shard.prepare("p1", alice, 10)
    await shard.prepare("p2", alice, 20)
    for _ in range(3):
        assert (await shard.commit("p1", "debit")).status == pb.COMMITTED
        assert (await shard.abort("p2", "debit")).status == pb.ABORTED
    account = await shard.account(alice)
    assert (account["balance_minor"], account["available_minor"]) == (90, 90)
    assert (await shard.prepare("p1", alice, 10)).vote == pb.YES  # the vote it gave

    before = await take_snapshot(shard.database)
    for call, code in (
        (shard.abort("p1", "debit"), grpc.StatusCode.FAILED_PRECONDITION),
        (shard.commit("p2", "debit"), grpc.StatusCode.FAILED_PRECONDITION),
        (shard.commit("nobody-prepared", "debit"), grpc.StatusCode.FAILED_PRECONDITION),
        (shard.prepare("p1", alice, 11), grpc.StatusCode.FAILED_PRECONDITION),
        (shard.commit("", "debit"), grpc.StatusCode.INVALID_ARGUMENT),
        (shard.abort("t" * 65, "debit"), grpc.StatusCode.INVALID_ARGUMENT),
    ):
        with pytest.raises(aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == code
    assert await take_snapshot(shard.database) == before


async def test_text_the_kit_refuses_is_invalid_argument_naming_the_field(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    bob = await shard.open("bob")
    before = await take_snapshot(shard.database)
    for call, field in (
        (shard.prepare("t\x00", alice, 10), "transfer_id"),
        (shard.prepare("t1", alice + "\x00", 10), "account_id"),
        (shard.prepare("t1", alice, 10, owner="ali\u202ece"), "required_owner"),
        (shard.commit("t1", "debit\n"), "branch_id"),
        (shard.abort("t\x1b", "debit"), "transfer_id"),
        (shard.transfer("l\x00", alice, bob, 5), "transfer_id"),
    ):
        with pytest.raises(aio.AioRpcError) as refused:
            await call
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, field
        assert (refused.value.details() or "").startswith(f"{field} holds"), field
    assert await take_snapshot(shard.database) == before


async def test_commits_and_aborts_are_audited(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    bob = await shard.open("bob")
    await shard.prepare("a1", alice, 10)
    await shard.commit("a1", "debit")
    await shard.commit("a1", "debit")  # a repeat records nothing
    await shard.prepare("a2", alice, 10)
    await shard.abort("a2", "debit")
    await shard.abort("a3", "credit")  # a tombstone
    await shard.transfer("l1", alice, bob, 5, owner="alice")
    await shard.transfer("l2", alice, bob, 500)
    async with AccountsUnitOfWork(shard.database, write=False) as uow:
        records = await AUDIT_LOG.tail(uow.transaction, 5)
        report = await AUDIT_LOG.verify(uow.transaction)
    assert [(r.actor, r.action, r.target) for r in records] == [
        ("service:payments", "branch.committed", alice),
        ("service:payments", "branch.aborted", alice),
        ("service:payments", "branch.aborted", "a3/credit"),
        ("service:payments", "transfer.applied", alice),
        ("service:payments", "transfer.refused", alice),
    ]
    assert records[0].details["transfer_id"] == "a1"
    assert records[3].details["on_behalf_of"] == "alice"
    assert records[4].details["refusal"] == "insufficient_funds"
    assert report.intact


async def test_a_local_transfer_is_applied_once_and_refuses_an_overdraft(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    bob = await shard.open("bob")
    for _ in range(3):
        answer = await shard.transfer("l1", alice, bob, 60, owner="alice")
        assert answer.applied
    assert (await shard.account(alice))["balance_minor"] == 40
    assert (await shard.account(bob))["balance_minor"] == 60

    over = await shard.transfer("l2", alice, bob, 41, owner="alice")
    assert (over.applied, over.refusal) == (False, pb.INSUFFICIENT_FUNDS)
    stolen = await shard.transfer("l3", bob, alice, 10, owner="alice")
    assert (stolen.applied, stolen.refusal) == (False, pb.ACCOUNT_NOT_FOUND)
    elsewhere = await shard.transfer("l4", alice, "acc_3_x", 10)
    assert (elsewhere.applied, elsewhere.refusal) == (False, pb.WRONG_SHARD)

    # Concurrent repeats of one new transfer: applied once.
    answers = await asyncio.gather(*(shard.transfer("l5", bob, alice, 7) for _ in range(8)))
    assert all(a.applied for a in answers)
    assert (await shard.account(alice))["balance_minor"] == 47
    # A refused transfer keeps its answer, even once the money is there.
    assert (await shard.transfer("l2", alice, bob, 41, owner="alice")).applied is False
    total, accounts = await shard.ledger_totals()
    assert total == 0
    assert all(balance == entries for balance, entries in accounts.values())


async def test_a_local_transfer_names_the_missing_side(shard: Shard) -> None:
    # Both accounts are read in one statement: each side must still be told apart.
    alice = await shard.open("alice", balance=100)
    for transfer_id, source, target, detail in (
        ("n1", "acc_0_missing", alice, "no such source account"),
        ("n2", alice, "acc_0_missing", "no such target account"),
    ):
        answer = await shard.transfer(transfer_id, source, target, 10)
        assert (answer.applied, answer.refusal, answer.detail) == (
            False,
            pb.ACCOUNT_NOT_FOUND,
            detail,
        )
    assert (await shard.account(alice))["balance_minor"] == 100


async def test_metrics_count_votes_commits_and_aborts(shard: Shard) -> None:
    alice = await shard.open("alice", balance=100)
    await shard.prepare("m1", alice, 10)
    await shard.prepare("m2", alice, 1_000)
    await shard.commit("m1", "debit")
    await shard.commit("m1", "debit")
    await shard.abort("m3", "debit")
    await shard.transfer("m4", alice, alice, 1)
    sample = await scrape(shard)
    assert sample("flotilla_ledger_prepares_total", vote="yes", refusal="") == 1
    assert sample("flotilla_ledger_prepares_total", vote="no", refusal="insufficient_funds") == 1
    assert sample("flotilla_ledger_commits_total", outcome="applied") == 1
    assert sample("flotilla_ledger_commits_total", outcome="repeated") == 1
    assert sample("flotilla_ledger_aborts_total", outcome="tombstone") == 1
    assert (
        sample("flotilla_ledger_local_transfers_total", outcome="refused", refusal="invalid") == 1
    )
    assert sample("flotilla_ledger_branches_in_doubt") == 0


async def scrape(shard: Shard) -> Callable[..., float | None]:
    """Look up a sample of this shard's /metrics by name and labels (service and shard
    implied); None when there is none."""
    text = (await shard.http.get("/metrics")).text
    found = {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }

    def sample(name: str, **labels: str) -> float | None:
        key = frozenset({**labels, "service": "accounts", "shard": str(shard.number)}.items())
        return found.get((name, key))

    return sample


@pytest.fixture
async def second_database_url(
    database_url: str, tmp_path: Path, request: pytest.FixtureRequest
) -> AsyncIterator[str]:
    """Another empty database on the same backend, for a second shard."""
    if database_url.startswith("sqlite"):
        yield f"sqlite+aiosqlite:///{tmp_path / 'shard1.db'}"
        return
    server: EmbeddedPostgres = request.getfixturevalue("postgres_server")
    name = f"second_{tmp_path.name}"[:60].replace("-", "_").lower()
    server.create_database(name)
    yield server.url(name)
    server.drop_database(name)


async def test_the_ledger_stays_balanced_across_shards(
    database_url: str, second_database_url: str, tokens: TokenMinter, dev_pki: Pki
) -> None:
    async with (
        running_shard(database_url, tokens=tokens, dev_pki=dev_pki, shard=0, shards=2) as s0,
        running_shard(second_database_url, tokens=tokens, dev_pki=dev_pki, shard=1, shards=2) as s1,
    ):
        a0, b0 = owner_on(0, 2, "a"), owner_on(0, 2, "b")
        c1 = owner_on(1, 2, "c")
        acc_a = await s0.open(a0, balance=500)
        acc_b = await s0.open(b0, balance=50)
        acc_c = await s1.open(c1, balance=300)

        async def cross(
            transfer_id: str, source: tuple[Shard, str], target: tuple[Shard, str], amount: int
        ) -> bool:
            (debit_shard, debit_account), (credit_shard, credit_account) = source, target
            votes = [
                await debit_shard.prepare(transfer_id, debit_account, amount),
                await credit_shard.prepare(transfer_id, credit_account, amount, pb.CREDIT),
            ]
            decide = all(v.vote == pb.YES for v in votes)
            for participant, branch in ((debit_shard, "debit"), (credit_shard, "credit")):
                if decide:
                    await participant.commit(transfer_id, branch)
                else:
                    await participant.abort(transfer_id, branch)
            return decide

        assert await cross("x1", (s0, acc_a), (s1, acc_c), 120)
        assert await cross("x2", (s1, acc_c), (s0, acc_b), 200)
        assert not await cross("x3", (s0, acc_b), (s1, acc_c), 10_000)  # refused: aborted
        assert await cross("x4", (s1, acc_c), (s0, acc_a), 220)
        assert (await s0.transfer("l1", acc_a, acc_b, 100)).applied
        assert not (await s0.transfer("l2", acc_b, acc_a, 10_000)).applied
        await s1.abort("x5", "debit")  # the coordinator gave up before preparing
        assert (await s1.prepare("x5", acc_c, 1)).refusal == pb.ALREADY_ABORTED

        settlement: dict[int, int] = {}
        for shard in (s0, s1):
            total, accounts = await shard.ledger_totals()
            assert total == 0, f"shard {shard.number} entries do not sum to zero"
            for account_id, (balance, entries) in accounts.items():
                assert balance == entries, account_id
            settlement[shard.number] = accounts[settlement_account_id(shard.number, "EUR")][0]
            for account_id in accounts:
                if account_id.startswith("acc_"):
                    assert (await shard.account(account_id))["available_minor"] >= 0
        # Money left shard 0 through its settlement account and arrived through shard 1's.
        assert settlement == {0: 120 - 200 - 220, 1: -120 + 200 + 220}
        assert sum(settlement.values()) == 0
        balances = (
            (await s0.account(acc_a))["balance_minor"],
            (await s0.account(acc_b))["balance_minor"],
            (await s1.account(acc_c))["balance_minor"],
        )
        assert balances == (500 - 120 + 220 - 100, 50 + 200 + 100, 300 + 120 - 200 - 220)
        assert sum(balances) == 500 + 50 + 300
