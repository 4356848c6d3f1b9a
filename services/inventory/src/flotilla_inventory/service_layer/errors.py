"""The inventory service's exception tree; `entrypoints/http.py` maps it to problem types.
Reservations do not raise for what the caller asked badly: they answer with a refusal
(the gRPC contract has no other way), and the REST edge turns an INVALID one into a 422."""

from __future__ import annotations

__all__ = [
    "DuplicateSku",
    "IdempotencyKeyRequired",
    "InsufficientStock",
    "InvalidCursor",
    "InvalidProduct",
    "InventoryError",
    "NotAllowed",
    "ProductNotFound",
    "ReservationNotFound",
]


class InventoryError(Exception):
    """Base of every error a use case raises on purpose."""


class NotAllowed(InventoryError):
    """The caller lacks a permission the use case needs."""

    def __init__(self, permission: str) -> None:
        super().__init__(f"this needs the permission {permission!r}")
        self.permission = permission


class ProductNotFound(InventoryError):
    def __init__(self, product_id: str) -> None:
        super().__init__(f"product {product_id!r} not found")
        self.product_id = product_id


class ReservationNotFound(InventoryError):
    def __init__(self, reservation_id: str) -> None:
        super().__init__(f"reservation {reservation_id!r} not found")
        self.reservation_id = reservation_id


class DuplicateSku(InventoryError):
    def __init__(self, sku: str) -> None:
        super().__init__(f"a product with sku {sku!r} exists already")
        self.sku = sku


class InvalidProduct(InventoryError):
    """A product, a change of it or a stock adjustment the rules refuse (the message says
    which rule)."""


class InsufficientStock(InventoryError):
    """An adjustment would take the stock on hand below what is held (or below zero)."""

    def __init__(self, product_id: str, *, on_hand: int, held: int, delta: int) -> None:
        super().__init__(
            f"product {product_id!r} has {on_hand} on hand, {held} of them held: an "
            f"adjustment of {delta} would leave {on_hand + delta}, less than is held"
        )
        self.on_hand = on_hand
        self.held = held


class IdempotencyKeyRequired(InventoryError):
    def __init__(self) -> None:
        super().__init__("this request needs an Idempotency-Key header")


class InvalidCursor(InventoryError):
    def __init__(self) -> None:
        super().__init__("the cursor is not one this service handed out")
