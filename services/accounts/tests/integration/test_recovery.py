"""A participant in doubt asks a (fake) coordinator over HTTPS with its own service token."""

from __future__ import annotations

import pytest

from flotilla_accounts.bootstrap import build_app
from flotilla_accounts.service_layer.recovery import Recovery
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.clock import ManualClock
from flotilla_kit.testing import TokenMinter
from flotilla_proto.ledger.v1 import ledger_pb2 as pb

from .harness import Pki, running_payments, running_shard, tls_of


async def test_recovery_asks_the_coordinator_and_applies_its_decision(
    database_url: str, tokens: TokenMinter, dev_pki: Pki
) -> None:
    clock = ManualClock()
    async with (
        running_payments(tokens, dev_pki) as payments,
        running_shard(
            database_url,
            tokens=tokens,
            dev_pki=dev_pki,
            clock=clock,
            payments_urls=["https://127.0.0.1:1", payments.url],  # the first is down
            auth_token_urls=[payments.url + "/api/v1/auth/token"],
            branch_in_doubt_after_s=10,
            recovery_interval_s=3600,  # the test ticks by hand
        ) as shard,
    ):
        recovery: Recovery = shard.app.state.recovery
        alice = await shard.open("alice", balance=100)
        bob = await shard.open("bob")
        payments.outcomes = {"go": "commit", "stop": "abort", "wait": "pending"}
        assert (await shard.prepare("go", alice, 10)).vote == pb.YES
        assert (await shard.prepare("go", bob, 10, pb.CREDIT)).vote == pb.YES
        assert (await shard.prepare("stop", alice, 20)).vote == pb.YES
        assert (await shard.prepare("wait", alice, 30)).vote == pb.YES
        assert (await shard.prepare("lost", alice, 5)).vote == pb.YES  # unknown to payments

        # Young branches are not in doubt: nobody is asked.
        report = await recovery.tick()
        assert (payments.asked, report.in_doubt) == ([], 0)

        clock.advance(11)
        await shard.prepare("young", alice, 1)
        report = await recovery.tick()
        assert sorted(payments.asked) == ["go", "lost", "stop", "wait"]
        assert sorted(report.committed) == [("go", "credit"), ("go", "debit")]
        assert report.aborted == [("stop", "debit")]
        assert (report.pending, report.errors) == (["wait"], ["lost"])
        assert report.in_doubt == 2
        assert payments.token_requests == 1
        assert await shard.state("go", "debit") == pb.COMMITTED
        assert await shard.state("stop", "debit") == pb.ABORTED
        assert await shard.state("wait", "debit") == pb.PREPARED
        account = await shard.account(alice)
        assert (account["balance_minor"], account["available_minor"]) == (90, 90 - 30 - 5 - 1)
        assert (await shard.account(bob))["balance_minor"] == 10

        metrics = (await shard.http.get("/metrics")).text
        assert 'flotilla_ledger_branches_in_doubt{service="accounts",shard="0"} 2.0' in metrics
        assert (
            'flotilla_ledger_recovery_actions_total{action="commit",service="accounts",shard="0"} 2.0'
            in metrics
        )

        # The coordinator decides; the coordinator's own phase two may come too.
        payments.outcomes |= {"wait": "abort", "lost": "abort"}
        clock.advance(11)
        assert (await shard.abort("wait", "debit")).status == pb.ABORTED
        report = await recovery.tick()
        assert report.aborted == [("lost", "debit")]
        assert sorted(report.committed) == []
        assert report.in_doubt == 1  # "young", whose transfer payments has never heard of
        assert payments.token_requests == 1  # the token is reused while it is fresh


def test_asking_the_coordinator_needs_tls() -> None:
    with pytest.raises(ValueError, match="TLS"):
        build_app(AccountsSettings(profile="test", payments_urls=["https://payments"]))


def test_asking_the_coordinator_needs_a_token_endpoint(dev_pki: Pki) -> None:
    settings = AccountsSettings(
        profile="test", payments_urls=["https://payments"], tls=tls_of(dev_pki("accounts"))
    )
    with pytest.raises(ValueError, match="TOKEN_URLS"):
        build_app(settings)


def test_a_shard_must_exist() -> None:
    with pytest.raises(ValueError, match="does not exist"):
        AccountsSettings(profile="test", shard=2, shards=2)
