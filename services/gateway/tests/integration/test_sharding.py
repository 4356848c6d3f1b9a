"""Shard-aware routing to the sharded ledger, and the payments routes, end to end.

The topology lists accounts instances of shards 0 and 1, two of each; every request the
gateway forwards is checked against the instance (and so the shard) that answered.
"""

from __future__ import annotations

from typing import Any

import httpx
from fastapi import APIRouter

from flotilla_kit.problems import problem_type
from flotilla_kit.sharding import home_shard
from flotilla_kit.testing import TokenMinter

from .harness import Stack, Upstream

SHARDS = 2
HEX = "0123456789abcdef" * 2


def owner_on(shard: int, shards: int = SHARDS) -> str:
    """A subject whose home shard is `shard`, found with the kit's own function."""
    return next(f"user-{n}" for n in range(1000) if home_shard(f"user-{n}", shards) == shard)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


class Ledger:
    """auth, accounts shards 0 and 1 (two instances each), payments; gateway in front."""

    def __init__(self, stack: Stack, shards: dict[int, list[Upstream]], payments: Upstream):
        self.stack = stack
        self.shards = shards
        self.payments = payments

    @classmethod
    async def start(
        cls,
        stack: Stack,
        *,
        accounts_router: APIRouter | None = None,
        payments_router: APIRouter | None = None,
        **overrides: Any,
    ) -> Ledger:
        await stack.upstream("auth")
        shards = {
            shard: [
                await stack.upstream("accounts", shard=shard, router=accounts_router)
                for _ in range(2)
            ]
            for shard in range(SHARDS)
        }
        payments = await stack.upstream("payments", router=payments_router)
        # The shop's services, so that readiness is about the ledger alone.
        await stack.upstream("inventory")
        await stack.upstream("orders")
        await stack.upstream("billing")
        await stack.upstream("web")
        await stack.start_gateway(**overrides)
        return cls(stack, shards, payments)

    def names(self, shard: int) -> set[str]:
        return {u.name for u in self.shards[shard]}

    def proxied(self, shard: int) -> list[str]:
        return [request for u in self.shards[shard] for request in u.proxied]

    def accounts_proxied(self) -> list[str]:
        return [request for shard in self.shards for request in self.proxied(shard)]

    def shard_of_reply(self, response: httpx.Response) -> int:
        instance = response.headers["x-instance"]
        return next(shard for shard in self.shards if instance in self.names(shard))

    async def wait_shard_health(self, shard: int, healthy: bool) -> None:
        names = self.names(shard)
        instances = [i for i in self.stack.registry.instances() if i.name in names]
        await self.stack.wait_until(lambda: all(i.healthy is healthy for i in instances))


async def test_an_account_id_reaches_only_its_shard(stack: Stack, tokens: TokenMinter) -> None:
    ledger = await Ledger.start(stack)
    customer = bearer(tokens.mint(owner_on(0), ["customer"]))
    admin = bearer(tokens.mint("admin-1", ["admin"]))
    account = f"acc_1_{HEX}"
    async with stack.client() as client:
        answers = [
            *[await client.get(f"/api/v1/accounts/{account}", headers=customer) for _ in range(4)],
            await client.get(f"/api/v1/accounts/{account}/entries?limit=2", headers=customer),
            await client.head(f"/api/v1/accounts/{account}", headers=customer),
            await client.post(f"/api/v1/accounts/{account}/deposits", headers=admin, json={}),
            # The id is read as the service reads it: `%31` is `1`.
            await client.get(f"/api/v1/accounts/acc_%31_{HEX}", headers=customer),
        ]
    assert [r.status_code for r in answers] == [200] * len(answers)
    assert {ledger.shard_of_reply(r) for r in answers} == {1}
    # Both instances of shard 1 share its traffic; shard 0 saw nothing.
    assert {r.headers["x-instance"] for r in answers} == ledger.names(1)
    assert ledger.proxied(0) == []
    assert len(ledger.proxied(1)) == len(answers)
    assert answers[4].json()["query"] == "limit=2"


async def test_listing_and_opening_go_to_the_owners_home_shard(
    stack: Stack, tokens: TokenMinter
) -> None:
    ledger = await Ledger.start(stack)
    async with stack.client() as client:
        for shard in range(SHARDS):
            subject = owner_on(shard)
            token = bearer(tokens.mint(subject, ["customer"]))
            listed = [await client.get("/api/v1/accounts", headers=token) for _ in range(3)]
            opened = await client.post("/api/v1/accounts", headers=token, json={"name": "x"})
            for response in [*listed, opened]:
                assert response.status_code == 200
                assert ledger.shard_of_reply(response) == shard == home_shard(subject, SHARDS)
    assert len(ledger.proxied(0)) == len(ledger.proxied(1)) == 4


async def test_owner_id_in_the_query_overrides_the_subject(
    stack: Stack, tokens: TokenMinter
) -> None:
    ledger = await Ledger.start(stack)
    support = bearer(tokens.mint(owner_on(0), ["support"]))
    customer = owner_on(1)
    async with stack.client() as client:
        plain = await client.get("/api/v1/accounts", headers=support)
        asked = await client.get(f"/api/v1/accounts?owner_id={customer}", headers=support)
        # Decoded as Starlette decodes it, name and value alike.
        encoded = await client.get(
            f"/api/v1/accounts?limit=5&owner%5Fid={customer.replace('-', '%2D')}",
            headers=support,
        )
    assert ledger.shard_of_reply(plain) == 0
    assert ledger.shard_of_reply(asked) == 1
    assert ledger.shard_of_reply(encoded) == 1
    # The query reaches the service unchanged: it reads the same owner.
    assert asked.json()["query"] == f"owner_id={customer}"
    assert encoded.json()["query"] == f"limit=5&owner%5Fid={customer.replace('-', '%2D')}"


async def test_bad_owners_and_unknown_accounts_never_reach_a_service(
    stack: Stack, tokens: TokenMinter
) -> None:
    ledger = await Ledger.start(stack)
    support = bearer(tokens.mint("support-1", ["support"]))
    admin = bearer(tokens.mint("admin-1", ["admin"]))
    async with stack.client() as client:
        bad_owner = [
            await client.get("/api/v1/accounts?owner_id=", headers=support),
            await client.get("/api/v1/accounts?owner_id", headers=support),
            await client.get("/api/v1/accounts?owner_id=a&owner_id=b", headers=support),
            await client.post("/api/v1/accounts?owner_id=a&owner_id=a", headers=admin, json={}),
        ]
        unknown = [
            await client.get("/api/v1/accounts/acc-1", headers=support),
            await client.get("/api/v1/accounts/acc_x_1", headers=support),
            await client.get(f"/api/v1/accounts/acc_7_{HEX}/entries", headers=support),
            await client.get(f"/api/v1/accounts/usr_1_{HEX}", headers=support),
        ]
        # Access is decided first: no token, no shard lookup.
        anonymous = await client.get("/api/v1/accounts/acc-1")
        forbidden = await client.post("/api/v1/accounts/acc-1/deposits", headers=support, json={})
    for response in bad_owner:
        assert response.status_code == 400, response.request.url
        assert response.json()["type"] == problem_type("bad-request")
        assert "owner_id" in response.json()["detail"]
    for response in unknown:
        assert response.status_code == 404, response.request.url
        assert response.json()["type"] == problem_type("not-found")
        assert response.json()["detail"] == "No account has this id."
    assert anonymous.status_code == 401
    assert forbidden.status_code == 403
    assert ledger.accounts_proxied() == []


async def test_a_shard_without_a_healthy_instance_is_unavailable_while_the_other_serves(
    stack: Stack, tokens: TokenMinter
) -> None:
    ledger = await Ledger.start(stack)
    token = bearer(tokens.mint(owner_on(0), ["support"]))
    for upstream in ledger.shards[1]:
        upstream.ready = False
    await ledger.wait_shard_health(1, healthy=False)
    async with stack.client() as client:
        down = await client.get(f"/api/v1/accounts/acc_1_{HEX}", headers=token)
        home_down = await client.get(f"/api/v1/accounts?owner_id={owner_on(1)}", headers=token)
        up = await client.get(f"/api/v1/accounts/acc_0_{HEX}", headers=token)
        home_up = await client.get("/api/v1/accounts", headers=token)
        degraded = await client.get("/readyz")
        assert ledger.proxied(1) == []

        for upstream in ledger.shards[1]:
            upstream.ready = True
        await ledger.wait_shard_health(1, healthy=True)
        back = await client.get(f"/api/v1/accounts/acc_1_{HEX}", headers=token)
        ready = await client.get("/readyz")

    for response in (down, home_down):
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["type"] == problem_type("unavailable")
        assert (
            response.json()["detail"] == "No healthy instance of 'accounts' shard 1 is available."
        )
    assert (up.status_code, ledger.shard_of_reply(up)) == (200, 0)
    assert (home_up.status_code, ledger.shard_of_reply(home_up)) == (200, 0)

    # Still ready (shard 0 is served), with the missing shard named.
    assert degraded.status_code == 200
    assert degraded.json()["unavailable"] == {"services": ["accounts"], "shards": {"accounts": [1]}}

    assert (back.status_code, ledger.shard_of_reply(back)) == (200, 1)
    assert ready.status_code == 200
    assert "unavailable" not in ready.json()
    assert ready.json()["services"]["accounts"] == {
        "healthy": 4,
        "instances": 4,
        "shards": {"0": {"healthy": 2, "instances": 2}, "1": {"healthy": 2, "instances": 2}},
    }
    assert ready.json()["services"]["payments"] == {"healthy": 1, "instances": 1}


async def test_retries_stay_within_the_shard(stack: Stack, tokens: TokenMinter) -> None:
    # Only requests notice deaths: health checks are too slow to get there first.
    ledger = await Ledger.start(stack, health_interval_s=5.0)
    token = bearer(tokens.mint(owner_on(0), ["customer"]))
    account = f"/api/v1/accounts/acc_1_{HEX}"
    first, second = ledger.shards[1]
    async with stack.client() as client:
        warm = [await client.get(account, headers=token) for _ in range(4)]
        assert {r.headers["x-instance"] for r in warm} == ledger.names(1)
        await first.stop()
        # Requests that met the dead instance were sent again to its shard sibling.
        after = [await client.get(account, headers=token) for _ in range(6)]
        assert [r.status_code for r in after] == [200] * 6
        assert {r.headers["x-instance"] for r in after} == {second.name}
        # With the whole shard gone, a GET fails rather than reaching another shard.
        await second.stop()
        gone = await client.get(account, headers=token)
    assert gone.status_code == 503
    assert gone.headers["retry-after"] == "1"
    assert ledger.proxied(0) == []


async def test_payments_routes_are_forwarded(stack: Stack, tokens: TokenMinter) -> None:
    ledger = await Ledger.start(stack)
    customer = bearer(tokens.mint(owner_on(1), ["customer"]))
    orders = bearer(tokens.mint("orders", ["service:orders"]))
    async with stack.client() as client:
        answers = [
            await client.post("/api/v1/transfers", headers=customer, json={"amount_minor": 1}),
            await client.get("/api/v1/transfers?limit=3", headers=customer),
            await client.get("/api/v1/transfers/t-1", headers=customer),
            await client.post("/api/v1/transfers", headers=orders, json={}),
        ]
        refused = await client.get("/api/v1/transfers", headers=orders)  # no payments:read
    assert [r.status_code for r in answers] == [200] * 4
    assert {r.headers["x-instance"] for r in answers} == {ledger.payments.name}
    assert ledger.payments.proxied == [
        "POST /api/v1/transfers",
        "GET /api/v1/transfers",
        "GET /api/v1/transfers/t-1",
        "POST /api/v1/transfers",
    ]
    assert answers[1].json()["query"] == "limit=3"
    assert refused.status_code == 403
    assert ledger.accounts_proxied() == []


def _accounts_router() -> APIRouter:
    router = APIRouter()

    @router.get("/api/v1/accounts/{account_id}/entries")
    async def entries(account_id: str) -> list[str]:
        return []

    return router


def _payments_router() -> APIRouter:
    router = APIRouter()

    @router.post("/api/v1/transfers")
    async def transfer() -> dict[str, str]:
        return {}

    @router.get("/api/v1/transfers/{transfer_id}")
    async def one(transfer_id: str) -> dict[str, str]:
        return {}

    return router


async def test_the_merged_api_fetches_a_sharded_service_once_and_includes_payments(
    stack: Stack,
) -> None:
    ledger = await Ledger.start(
        stack, accounts_router=_accounts_router(), payments_router=_payments_router()
    )
    async with stack.client() as client:
        merged = (await client.get("/openapi.json")).json()
    assert set(merged["paths"]) == {
        "/api/v1/accounts/{account_id}/entries",
        "/api/v1/transfers",
        "/api/v1/transfers/{transfer_id}",
    }
    # Every instance of a sharded service serves the same document: one was asked.
    fetches = [u.openapi_fetches for shard in ledger.shards.values() for u in shard]
    assert sum(fetches) == 1
    assert ledger.payments.openapi_fetches == 1


async def test_instance_gauges_carry_the_shard(stack: Stack) -> None:
    await Ledger.start(stack)
    async with stack.client() as client:
        lines = (await client.get("/metrics")).text.splitlines()
    for shard in range(SHARDS):
        for n in range(2):
            labels = f'instance="accounts-s{shard}-{n}",service="accounts",shard="{shard}"'
            assert f"flotilla_gateway_upstream_healthy{{{labels}}} 1.0" in lines
            assert f"flotilla_gateway_upstream_in_flight{{{labels}}} 0.0" in lines
    assert (
        'flotilla_gateway_upstream_healthy{instance="payments-0",service="payments",shard=""} 1.0'
        in lines
    )


async def test_an_unsharded_accounts_service_ignores_shard_by(
    stack: Stack, tokens: TokenMinter
) -> None:
    await stack.upstream("auth")
    accounts = await stack.upstream("accounts")
    await stack.start_gateway()
    token = bearer(tokens.mint("user-1", ["support"]))
    async with stack.client() as client:
        by_id = await client.get("/api/v1/accounts/not-an-id", headers=token)
        by_owner = await client.get("/api/v1/accounts?owner_id=&owner_id=", headers=token)
    assert (by_id.status_code, by_owner.status_code) == (200, 200)
    assert accounts.proxied == ["GET /api/v1/accounts/not-an-id", "GET /api/v1/accounts"]


async def test_a_failing_shard_opens_only_its_own_breaker(
    stack: Stack, tokens: TokenMinter
) -> None:
    ledger = await Ledger.start(
        stack, breaker_consecutive_failures=3, breaker_open_s=30.0, outlier_consecutive_failures=99
    )
    token = bearer(tokens.mint(owner_on(0), ["support"]))
    for upstream in ledger.shards[1]:
        upstream.status = 500  # answers, but fails: ready, so never taken out by health checks
    async with stack.client() as client:
        failed = [
            await client.get(f"/api/v1/accounts/acc_1_{HEX}", headers=token) for _ in range(3)
        ]
        held_back = await client.get(f"/api/v1/accounts/acc_1_{HEX}", headers=token)
        other_shard = [
            await client.get(f"/api/v1/accounts/acc_0_{HEX}", headers=token) for _ in range(5)
        ]
        metrics = (await client.get("/metrics")).text
    assert [r.status_code for r in failed] == [500] * 3
    assert held_back.status_code == 503
    assert held_back.json()["type"] == problem_type("unavailable")
    assert "'accounts' shard 1" in held_back.json()["detail"]
    assert int(held_back.headers["retry-after"]) >= 1
    assert len(ledger.proxied(1)) == 3  # the fourth never left the gateway
    assert [r.status_code for r in other_shard] == [200] * 5
    assert {ledger.shard_of_reply(r) for r in other_shard} == {0}
    assert 'flotilla_gateway_upstream_breaker_state{service="accounts",shard="1"} 2.0' in metrics
    assert 'flotilla_gateway_upstream_breaker_state{service="accounts",shard="0"} 0.0' in metrics


async def test_a_shard_timing_out_opens_only_its_own_breaker(
    stack: Stack, tokens: TokenMinter
) -> None:
    # Transport failures (here timeouts; refused connections take the same path) count on
    # the breaker of the shard the request went to, as answered 500s do above: not on the
    # service-wide one, which a shard's requests never consult.
    ledger = await Ledger.start(
        stack,
        breaker_consecutive_failures=3,
        breaker_open_s=30.0,
        outlier_consecutive_failures=99,
        upstream_timeout_s=0.2,
    )
    token = bearer(tokens.mint(owner_on(0), ["support"]))
    for upstream in ledger.shards[1]:
        upstream.delay_s = 2.0  # its /readyz still answers at once: healthy throughout
    async with stack.client() as client:
        timed_out = [
            await client.get(f"/api/v1/accounts/acc_1_{HEX}", headers=token) for _ in range(3)
        ]
        held_back = await client.get(f"/api/v1/accounts/acc_1_{HEX}", headers=token)
        other_shard = await client.get(f"/api/v1/accounts/acc_0_{HEX}", headers=token)
        metrics = (await client.get("/metrics")).text
    for upstream in ledger.shards[1]:
        upstream.delay_s = 0.0
    assert [r.status_code for r in timed_out] == [504] * 3
    assert held_back.status_code == 503
    assert "'accounts' shard 1" in held_back.json()["detail"]
    assert (other_shard.status_code, ledger.shard_of_reply(other_shard)) == (200, 0)
    assert 'flotilla_gateway_upstream_breaker_state{service="accounts",shard="1"} 2.0' in metrics
    assert 'flotilla_gateway_upstream_breaker_state{service="accounts",shard="0"} 0.0' in metrics
