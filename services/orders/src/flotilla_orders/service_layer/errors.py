"""The orders service's exception tree; `entrypoints/http.py` maps it to problem types."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "CurrencyMismatch",
    "DependencyUnavailable",
    "IdempotencyKeyRequired",
    "IdempotencyKeyReused",
    "InvalidCursor",
    "InvalidOrder",
    "NotAllowed",
    "OrderNotFound",
    "OrderNotRefundable",
    "OrdersError",
    "PaymentAccountInvalid",
    "RefundRefused",
    "UnknownProducts",
]


class OrdersError(Exception):
    """Base of every error a use case raises on purpose."""


class NotAllowed(OrdersError):
    """The caller lacks a permission the use case needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this needs the permission {permission!r}")
        self.permission = permission


class IdempotencyKeyRequired(OrdersError):
    def __init__(self) -> None:
        super().__init__("an order needs an Idempotency-Key header, so it can be retried safely")


class IdempotencyKeyReused(OrdersError):
    def __init__(self) -> None:
        super().__init__("this Idempotency-Key was already used for a different order")


class InvalidOrder(OrdersError):
    """Lines no order may have (the HTTP layer's validation refuses them first)."""


class UnknownProducts(OrdersError):
    def __init__(self, product_ids: Sequence[str]) -> None:
        super().__init__("no such product: " + ", ".join(product_ids))
        self.product_ids = list(product_ids)


class PaymentAccountInvalid(OrdersError):
    """Not an account, or not the caller's: the same answer, so accounts cannot be probed."""

    def __init__(self) -> None:
        super().__init__("the payment account does not exist or is not yours")


class CurrencyMismatch(OrdersError):
    def __init__(self, account_currency: str, product_ids: Sequence[str]) -> None:
        super().__init__(
            f"the payment account holds {account_currency}; these products are priced in "
            "another currency: " + ", ".join(product_ids)
        )
        self.account_currency = account_currency
        self.product_ids = list(product_ids)


class DependencyUnavailable(OrdersError):
    """A service the order must be checked against did not answer: nothing was written."""

    def __init__(self, dependency: str, detail: str) -> None:
        super().__init__(f"the {dependency} service is unavailable: {detail}")
        self.dependency = dependency


class OrderNotFound(OrdersError):
    """No such order, or one the caller may not see (the two are indistinguishable)."""

    def __init__(self, order_id: str) -> None:
        super().__init__(f"order {order_id!r} not found")
        self.order_id = order_id


class InvalidCursor(OrdersError):
    def __init__(self) -> None:
        super().__init__("`after` must be the id of an order of the listed customer")


class OrderNotRefundable(OrdersError):
    """Only a CONFIRMED order can be refunded (a pending or cancelled one took no money
    that its saga does not give back itself)."""

    def __init__(self, order_id: str, state: str) -> None:
        super().__init__(f"order {order_id} is {state}; only a CONFIRMED order can be refunded")
        self.order_id = order_id
        self.state = state


class RefundRefused(OrdersError):
    """Payments refused the refund (nothing moved): the order stays CONFIRMED."""

    def __init__(self, order_id: str, refusal: str) -> None:
        super().__init__(
            f"payments refused the refund of order {order_id} ({refusal}); it stays CONFIRMED"
            " and may be refunded again once that is fixed"
        )
        self.order_id = order_id
        self.refusal = refusal
