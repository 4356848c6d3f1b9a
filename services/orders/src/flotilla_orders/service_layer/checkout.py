"""Placing an order: everything that can be checked is checked before anything is
written, then the order is written as RESERVING (once per Idempotency-Key) and its saga
starts on this instance.

Checked synchronously, nothing written on a refusal: the permission, the key, the lines,
the products (inventory's batched GetAvailability: each must exist) and the payment
account (the ledger shard its id names: it must exist and be the caller's, else the
same refusal, so that accounts cannot be probed), and that every product is priced in
the account's currency. A dependency that does not answer is a 503: the client tries
again later, with the same key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from flotilla_kit.clock import Clock
from flotilla_kit.resource_keys import DuplicateIdempotencyKey
from flotilla_kit.tokens import Principal
from flotilla_orders.domain import InvalidLines, Order, check_lines, new_order
from flotilla_orders.service_layer.errors import (
    CurrencyMismatch,
    DependencyUnavailable,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidOrder,
    NotAllowed,
    PaymentAccountInvalid,
    UnknownProducts,
)
from flotilla_orders.service_layer.faults import FaultPoint
from flotilla_orders.service_layer.ports import (
    AccountInfo,
    Accounts,
    AccountsUnavailable,
    Faults,
    Inventory,
    InventoryProtocolError,
    InventoryUnavailable,
    OrdersUnitOfWork,
    Product,
    SagaMetrics,
    UnitOfWorkFactory,
)
from flotilla_orders.service_layer.saga import Saga

__all__ = ["CREATE", "Checkout", "CheckoutConfig", "OrderRequest", "Placement"]

CREATE = "orders:create"


@dataclass(frozen=True, slots=True)
class CheckoutConfig:
    shop_account: str
    shop_owner: str
    reserve_within_s: float = 30.0
    answer_within_s: float = 0.0


@dataclass(frozen=True, slots=True)
class OrderRequest:
    lines: tuple[tuple[str, int], ...]  # (product id, quantity)
    payment_account: str


@dataclass(frozen=True, slots=True)
class Placement:
    order: Order  # as it stands when the caller is answered
    replayed: bool  # an earlier request with the same Idempotency-Key created it


class Checkout:
    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory,
        inventory: Inventory,
        accounts: Accounts,
        saga: Saga,
        clock: Clock,
        faults: Faults,
        metrics: SagaMetrics,
        config: CheckoutConfig,
    ) -> None:
        self._uow = uow
        self._inventory = inventory
        self._accounts = accounts
        self._saga = saga
        self._clock = clock
        self._faults = faults
        self._metrics = metrics
        self._config = config

    async def place(
        self,
        *,
        principal: Principal,
        request: OrderRequest,
        idempotency_key: str | None,
        fingerprint: str,
    ) -> Placement:
        if not principal.can(CREATE):
            raise NotAllowed(CREATE)
        if idempotency_key is None:
            raise IdempotencyKeyRequired()
        try:
            check_lines(request.lines)
        except InvalidLines as exc:
            raise InvalidOrder(str(exc)) from exc
        scope = f"{principal.subject}:orders"
        # A replay needs no checks: it answers with the order as it is now, even while
        # a dependency is down.
        earlier = await self._earlier(scope, idempotency_key, fingerprint)
        if earlier is not None:
            return Placement(earlier, replayed=True)
        currency = await self._check(principal.subject, request)
        saga = self._saga.config
        order = new_order(
            customer_id=principal.subject,
            lines=request.lines,
            currency=currency,
            payment_account=request.payment_account,
            shop_account=self._config.shop_account,
            shop_owner=self._config.shop_owner,
            now=self._clock(),
            reserve_within_s=self._config.reserve_within_s,
            lease_owner=saga.instance_id,
            lease_s=saga.lease_s,
        )
        earlier = await self._record(
            order, scope=scope, key=idempotency_key, fingerprint=fingerprint
        )
        if earlier is not None:
            return Placement(earlier, replayed=True)
        self._faults.hit(FaultPoint.AFTER_ORDER_RECORDED)
        task = self._saga.launch(order)
        answered = await self._saga.answer(order, task, self._config.answer_within_s)
        return Placement(answered, replayed=False)

    # -- the checks ------------------------------------------------------------------------

    async def _check(self, customer_id: str, request: OrderRequest) -> str:
        """The currency of the order (the paying account's), or the refusal."""
        product_ids = [product_id for product_id, _ in request.lines]
        products, account = await asyncio.gather(
            self._products(product_ids), self._account(request.payment_account)
        )
        # A definite answer about the request beats a dependency that did not answer:
        # the client can fix the first, not the second.
        if isinstance(products, list):
            unknown = [p.product_id for p in products if not p.found]
            if unknown:
                raise self._refused(UnknownProducts(unknown), "unknown-product")
        if account is None or (
            isinstance(account, AccountInfo) and account.owner_id != customer_id
        ):
            raise self._refused(PaymentAccountInvalid(), "payment-account-invalid")
        if isinstance(products, DependencyUnavailable):
            raise self._refused(products, "inventory-unavailable")
        if isinstance(account, DependencyUnavailable):
            raise self._refused(account, "accounts-unavailable")
        mismatched = [p.product_id for p in products if p.currency != account.currency]
        if mismatched:
            raise self._refused(CurrencyMismatch(account.currency, mismatched), "currency-mismatch")
        return account.currency

    def _refused(self, error: Exception, problem: str) -> Exception:
        self._metrics.order_refused(problem)
        return error

    async def _products(self, product_ids: Sequence[str]) -> list[Product] | DependencyUnavailable:
        try:
            products = await self._inventory.availability(product_ids)
        except (InventoryUnavailable, InventoryProtocolError) as exc:
            return DependencyUnavailable("inventory", str(exc))
        if [p.product_id for p in products] != list(product_ids):
            return DependencyUnavailable("inventory", "the availability reply names other products")
        return products

    async def _account(self, account_id: str) -> AccountInfo | DependencyUnavailable | None:
        try:
            return await self._accounts.account(account_id)
        except AccountsUnavailable as exc:
            return DependencyUnavailable("accounts", str(exc))

    # -- storage ---------------------------------------------------------------------------

    async def _earlier(self, scope: str, key: str, fingerprint: str) -> Order | None:
        async with self._uow(write=False) as uow:
            return await _replayed(uow, scope, key, fingerprint)

    async def _record(
        self, order: Order, *, scope: str, key: str, fingerprint: str
    ) -> Order | None:
        """Store the order and its Idempotency-Key in one transaction; or return the order
        an earlier request with this key created (one that won a race to it)."""
        for attempt in range(2):
            try:
                async with self._uow() as uow:
                    earlier = await _replayed(uow, scope, key, fingerprint)
                    if earlier is not None:
                        return earlier
                    await uow.orders.add(order)
                    await uow.idempotency.remember(
                        scope, key, fingerprint=fingerprint, resource_id=order.id,
                        at=order.created_at,
                    )  # fmt: skip
                    await uow.commit()
                    return None
            except DuplicateIdempotencyKey:
                # A concurrent request with the same key won; the next round replays it.
                if attempt == 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


async def _replayed(uow: OrdersUnitOfWork, scope: str, key: str, fingerprint: str) -> Order | None:
    stored = await uow.idempotency.find(scope, key)
    if stored is None:
        return None
    if stored.fingerprint != fingerprint:
        raise IdempotencyKeyReused()
    earlier = await uow.orders.get(stored.resource_id)
    if earlier is None:  # pragma: no cover - written together
        raise RuntimeError(f"key {key!r} names a missing order")
    return earlier
