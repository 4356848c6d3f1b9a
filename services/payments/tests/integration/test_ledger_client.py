"""The gRPC ledger client against fake shards on real servers (mutual TLS, token check):
what each answer, silence and refusal of the transport becomes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable

import pytest

from flotilla_kit.devservers import free_port
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_payments.adapters.ledger_client import GrpcLedgerClient, TokenSource
from flotilla_payments.domain import Branch, Refusal, Vote
from flotilla_payments.service_layer.ports import (
    BranchCall,
    LocalOutcome,
    LocalTransferCall,
    ParticipantUnavailable,
    PrepareCall,
    ProtocolViolation,
)
from services.payments.tests.integration.conftest import Ledger, StaticTokens, tls_of
from services.payments.tests.integration.ledger_server import FakeLedgerServicer, start_fake_shard

Observed = list[tuple[str, str]]
MakeClient = Callable[..., GrpcLedgerClient]


@pytest.fixture
async def make_client(
    ledger: Ledger, tokens: TokenMinter, dev_pki: Callable[[str], CertificatePaths]
) -> AsyncIterator[MakeClient]:
    made: list[GrpcLedgerClient] = []

    def make(
        *,
        targets: dict[int, list[str]] | None = None,
        token_source: TokenSource | None = None,
        timeout_s: float = 5.0,
        observed: Observed | None = None,
    ) -> GrpcLedgerClient:
        client = GrpcLedgerClient(
            ledger.targets if targets is None else targets,
            tls=tls_of(dev_pki("payments")),
            tokens=token_source
            or StaticTokens(tokens.mint("service:payments", ["service:payments"])),
            timeout_s=timeout_s,
            on_call=(lambda m, r: observed.append((m, r))) if observed is not None else None,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.close()


def prepare(
    shard: int, account: str, branch: Branch, amount: int = 100, owner: str = ""
) -> PrepareCall:
    return PrepareCall(
        shard=shard, transfer_id=str(uuid.uuid4()), branch=branch, account_id=account,
        amount_minor=amount, currency="EUR", required_owner=owner, reference="r",
    )  # fmt: skip


async def test_votes_commits_aborts_and_local_transfers_round_trip(
    make_client: MakeClient, ledger: Ledger, accounts: dict[str, str]
) -> None:
    observed: Observed = []
    client = make_client(observed=observed)
    debit = prepare(0, accounts["a0"], Branch.DEBIT, owner="alice")
    assert await client.prepare(debit) == Vote.yes()
    await client.commit(BranchCall(0, debit.transfer_id, Branch.DEBIT))
    await client.commit(BranchCall(0, debit.transfer_id, Branch.DEBIT))  # idempotent
    assert ledger.bank.shards[0].balance(accounts["a0"]) == 9_900
    refused = prepare(1, accounts["b1"], Branch.DEBIT, amount=1, owner="alice")  # Bob's
    assert await client.prepare(refused) == Vote.no(Refusal.ACCOUNT_NOT_FOUND)
    await client.abort(BranchCall(1, refused.transfer_id, Branch.DEBIT))  # a tombstone
    assert await client.prepare(refused) == Vote.no(Refusal.ALREADY_ABORTED)
    local = LocalTransferCall(
        0, str(uuid.uuid4()), accounts["a0"], accounts["b0"], 5, "EUR", "alice", "r"
    )
    assert await client.transfer(local) == LocalOutcome(applied=True)
    too_much = LocalTransferCall(
        0, str(uuid.uuid4()), accounts["a0"], accounts["b0"], 10**6, "EUR", "alice", "r"
    )
    assert await client.transfer(too_much) == LocalOutcome(False, Refusal.INSUFFICIENT_FUNDS)
    assert set(observed) == {(m, "ok") for m in ("Prepare", "Commit", "Abort", "Transfer")}


async def test_a_forbidden_answer_is_a_protocol_violation(make_client: MakeClient) -> None:
    observed: Observed = []
    client = make_client(observed=observed)
    with pytest.raises(ProtocolViolation, match="FAILED_PRECONDITION"):
        await client.commit(BranchCall(0, str(uuid.uuid4()), Branch.CREDIT))  # never prepared
    assert observed == [("Commit", "protocol_violation")]


async def test_silence_is_an_unknown_outcome(
    make_client: MakeClient, ledger: Ledger, accounts: dict[str, str]
) -> None:
    observed: Observed = []
    dead = {0: [ledger.targets[1][0]]}  # only the killed instance
    with pytest.raises(ParticipantUnavailable, match="UNAVAILABLE"):
        await make_client(targets=dead, observed=observed).prepare(
            prepare(0, accounts["a0"], Branch.DEBIT)
        )
    with pytest.raises(ParticipantUnavailable, match="no instances"):
        await make_client(observed=observed).prepare(prepare(5, accounts["a0"], Branch.DEBIT))
    ledger.servicers[0].stall = asyncio.Event()  # answers nothing: the deadline passes
    with pytest.raises(ParticipantUnavailable, match="DEADLINE_EXCEEDED"):
        await make_client(timeout_s=0.2, observed=observed).prepare(
            prepare(0, accounts["a0"], Branch.DEBIT)
        )
    ledger.servicers[0].stall.set()
    assert observed == [("Prepare", "unavailable")] * 3


async def test_no_usable_token_means_nothing_was_sent(
    make_client: MakeClient, ledger: Ledger, accounts: dict[str, str], tokens: TokenMinter
) -> None:
    class Broken:
        async def token(self) -> str:
            raise RuntimeError("no service token: auth is down")

    with pytest.raises(ParticipantUnavailable, match="auth is down"):
        await make_client(token_source=Broken()).prepare(prepare(0, accounts["a0"], Branch.DEBIT))
    # A token without `ledger:post` is refused by the shard before anything happens.
    customer = StaticTokens(tokens.mint("alice", ["customer"]))
    with pytest.raises(ParticipantUnavailable, match="PERMISSION_DENIED"):
        await make_client(token_source=customer).prepare(prepare(0, accounts["a0"], Branch.DEBIT))
    assert ledger.bank.shards[0].branches == {}


async def test_calls_are_spread_over_a_shards_instances_and_skip_a_dead_one(
    make_client: MakeClient,
    ledger: Ledger,
    accounts: dict[str, str],
    tokens: TokenMinter,
    dev_pki: Callable[[str], CertificatePaths],
) -> None:
    # A second instance of shard 0, on the same books; and a dead one, asked about first.
    twin = FakeLedgerServicer(ledger.bank.shards[0])
    server, port = await start_fake_shard(
        twin, tls=tls_of(dev_pki("accounts")), verifier=tokens.verifier()
    )
    dead = f"127.0.0.1:{free_port()}"
    try:
        observed: Observed = []
        client = make_client(
            targets={0: [dead, ledger.targets[0][0], f"127.0.0.1:{port}"]}, observed=observed
        )
        calls = [prepare(0, accounts["a0"], Branch.DEBIT, amount=1) for _ in range(40)]
        for batch in range(0, len(calls), 4):  # a few at a time, as concurrent transfers are
            votes = await asyncio.gather(*(client.prepare(c) for c in calls[batch : batch + 4]))
            assert votes == [Vote.yes()] * 4
        served = len(ledger.servicers[0].calls_of("Prepare")), len(twin.calls_of("Prepare"))
        assert sum(served) == 40
        assert min(served) >= 10, served  # both live instances take a share
        assert observed == [("Prepare", "ok")] * 40  # the dead one was passed over
    finally:
        await server.stop(None)
