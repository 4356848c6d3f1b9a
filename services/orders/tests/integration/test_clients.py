"""The outbound clients against the real stand-ins: moving on from a dead instance,
what each answer means, and that no answer is never taken for one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest

from flotilla_kit.context import RequestContext, reset_context, set_context
from flotilla_kit.devservers.ports import free_port
from flotilla_kit.http_client import HttpClient
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths, client_context
from flotilla_orders.adapters.accounts_client import HttpAccounts
from flotilla_orders.adapters.inventory_client import GrpcInventoryClient
from flotilla_orders.adapters.payments_client import HttpPayments
from flotilla_orders.service_layer.ports import (
    AccountInfo,
    AccountsUnavailable,
    InventoryProtocolError,
    InventoryUnavailable,
    PaymentsProtocolError,
    PaymentsUnavailable,
    ReservationState,
    TransferCall,
    TransferOutcome,
)
from services.orders.tests.integration.conftest import Pki, World
from services.orders.tests.integration.standins import tls_of


class StaticTokens:
    def __init__(self, token: str) -> None:
        self._token = token

    async def token(self) -> str:
        return self._token


def orders_token(tokens: TokenMinter, role: str = "service:orders") -> StaticTokens:
    return StaticTokens(tokens.mint("orders", [role], ttl_s=600))


def inventory_client(
    world: World, tokens: TokenMinter, dev_pki: Pki, *, targets: list[str] | None = None,
    role: str = "service:orders", on_call: Callable[[str, str], None] | None = None,
) -> GrpcInventoryClient:  # fmt: skip
    return GrpcInventoryClient(
        targets if targets is not None else world.inventory_targets,
        tls=tls_of(dev_pki("orders")),
        tokens=orders_token(tokens, role),
        timeout_s=5.0,
        on_call=on_call,
    )


async def test_inventory_over_grpc_moves_on_from_a_dead_instance(
    world: World, tokens: TokenMinter, dev_pki: Pki
) -> None:
    calls: list[tuple[str, str]] = []
    client = inventory_client(
        world, tokens, dev_pki, on_call=lambda method, result: calls.append((method, result))
    )
    try:
        products = await client.availability(["apple", "kiwi"])
        assert [(p.product_id, p.found, p.unit_price_minor, p.currency) for p in products] == [
            ("apple", True, 150, "EUR"), ("kiwi", False, 0, ""),
        ]  # fmt: skip
        for _ in range(2):  # the second Reserve answers the same hold, holding nothing more
            held = await client.reserve(reservation_id="r-1", lines=[("apple", 3)], hold_s=30)
            assert held.state is ReservationState.HELD
            assert [
                (line.product_id, line.quantity, line.unit_price_minor) for line in held.lines
            ] == [("apple", 3, 150)]
        assert world.stock.holds == ["r-1"]
        assert world.inventory.hold_seconds == [30, 30]
        assert (await client.commit("r-1")).state is ReservationState.COMMITTED
        tombstone = await client.release("r-2")
        assert tombstone.state is ReservationState.RELEASED
        late = await client.reserve(reservation_id="r-2", lines=[("apple", 1)], hold_s=30)
        assert (late.state, late.refusal) == (ReservationState.REFUSED, "already-released")
        with pytest.raises(InventoryProtocolError, match="NOT_FOUND"):
            await client.commit("never-reserved")
    finally:
        await client.close()
    assert ("Reserve", "ok") in calls


async def test_inventory_calls_carry_the_trace_context_once(
    world: World, tokens: TokenMinter, dev_pki: Pki
) -> None:
    """Inside a request, a call to inventory carries that request's traceparent, exactly
    once; outside any request (recovery) none."""
    client = inventory_client(world, tokens, dev_pki)
    context = RequestContext(request_id="r", trace_id="4bf92f3577b34da6a3ce929d0e0e4736",
                             span_id="00f067aa0ba902b7", sampled=False)  # fmt: skip
    token = set_context(context)
    try:
        await client.availability(["apple"])
    finally:
        reset_context(token)
    try:
        await client.availability(["apple"])
    finally:
        await client.close()
    assert world.inventory.traceparents == [[context.traceparent()], []]


async def test_inventory_that_does_not_answer_is_unavailable(
    world: World, tokens: TokenMinter, dev_pki: Pki
) -> None:
    dead = inventory_client(world, tokens, dev_pki, targets=[f"127.0.0.1:{free_port()}"])
    refused = inventory_client(world, tokens, dev_pki, role="service:payments")  # no permission
    try:
        with pytest.raises(InventoryUnavailable):
            await dead.reserve(reservation_id="r-1", lines=[("apple", 1)], hold_s=30)
        with pytest.raises(InventoryUnavailable, match="PERMISSION_DENIED"):
            await refused.reserve(reservation_id="r-1", lines=[("apple", 1)], hold_s=30)
        world.inventory.down = True
        with pytest.raises(InventoryUnavailable, match="UNAVAILABLE"):
            await inventory_client(world, tokens, dev_pki).availability(["apple"])
    finally:
        await dead.close()
        await refused.close()
    assert world.stock.holds == []
    with pytest.raises(InventoryUnavailable, match="no inventory instances"):
        await inventory_client(world, tokens, dev_pki, targets=[]).release("r-1")


@asynccontextmanager
async def _client(certs: CertificatePaths) -> AsyncIterator[HttpClient]:
    client = HttpClient(ssl_context=client_context(certs.ca, certs.cert, certs.key))
    try:
        yield client
    finally:
        await client.aclose()


def call(world: World, key: str, amount: int = 500, **changes: str) -> TransferCall:
    values = {
        "idempotency_key": key, "from_account": world.wallet, "to_account": world.shop,
        "amount_minor": amount, "currency": "EUR", "reference": "order x", "on_behalf_of": "alice",
    } | changes  # fmt: skip
    return TransferCall(**values)  # type: ignore[arg-type]


async def test_payments_answers_mean_what_its_readme_says(
    world: World, tokens: TokenMinter, dev_pki: Pki
) -> None:
    certs = dev_pki("orders")
    async with _client(certs) as http:
        payments = HttpPayments(
            world.payments_urls, tokens=orders_token(tokens), client=http, timeout_s=5.0
        )
        committed = await payments.transfer(call(world, "k-1"))
        assert committed.outcome is TransferOutcome.COMMITTED
        assert committed.transfer_id == world.bank.applied[0]
        again = await payments.transfer(call(world, "k-1"))  # a replay: the same transfer
        assert (again.outcome, again.transfer_id) == (
            TransferOutcome.COMMITTED,
            committed.transfer_id,
        )
        world.bank.pend_next = 1
        assert (await payments.transfer(call(world, "k-2", 1))).outcome is TransferOutcome.PENDING
        world.bank.abort_next = 1
        aborted = await payments.transfer(call(world, "k-3", 1))
        assert (aborted.outcome, aborted.problem) == (TransferOutcome.ABORTED, "transfer-aborted")
        poor = await payments.transfer(call(world, "k-4", 1_000_000))
        assert (poor.outcome, poor.problem) == (TransferOutcome.REFUSED, "insufficient-funds")
        nobody = await payments.transfer(call(world, "k-5", to_account="acc_0_" + "0" * 32))
        assert (nobody.outcome, nobody.problem) == (TransferOutcome.REFUSED, "account-not-found")
        with pytest.raises(PaymentsProtocolError, match="idempotency-key-reused"):
            await payments.transfer(call(world, "k-1", 501))
        world.bank.lose_next = 1  # applied, answered with a 500 (the other instance is dead)
        with pytest.raises(PaymentsUnavailable, match="500"):
            await payments.transfer(call(world, "k-6", 1))
        unknown_role = HttpPayments(
            world.payments_urls, tokens=orders_token(tokens, "customer"), client=http, timeout_s=5.0
        )
        with pytest.raises(PaymentsUnavailable, match="403"):  # no verdict on the transfer
            await unknown_role.transfer(call(world, "k-7", 1))
        dead = HttpPayments(
            [f"https://127.0.0.1:{free_port()}"], tokens=orders_token(tokens), client=http,
            timeout_s=5.0,
        )  # fmt: skip
        with pytest.raises(PaymentsUnavailable, match="HttpConnectFailed"):
            await dead.transfer(call(world, "k-8", 1))
    # k-2 is still pending (nobody asked again); k-6 moved, though its answer was lost.
    assert [t.amount_minor for t in world.bank.applied_transfers()] == [500, 1]


async def test_accounts_are_asked_on_the_shard_their_id_names(
    world: World, tokens: TokenMinter, dev_pki: Pki
) -> None:
    certs = dev_pki("orders")
    async with _client(certs) as http:
        accounts = HttpAccounts(
            world.accounts_shards, tokens=orders_token(tokens), client=http, timeout_s=5.0
        )
        assert await accounts.account(world.wallet) == AccountInfo(world.wallet, "alice", "EUR")
        assert world.accounts[1].state.asked == [world.wallet]  # past the dead instance
        assert await accounts.account(world.shop) == AccountInfo(world.shop, "shop", "EUR")
        assert await accounts.account("acc_1_" + "0" * 32) is None
        assert await accounts.account("acc_5_" + "0" * 32) is None  # a shard nobody serves
        assert await accounts.account("sys_0_cash_eur") is None
        assert await accounts.account("acc_0_" + "f" * 80) is None
        world.bank.accounts_down = True
        with pytest.raises(AccountsUnavailable, match="503"):
            await accounts.account(world.wallet)
