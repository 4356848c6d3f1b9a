"""The basket: what a user means to buy, kept in their session until checkout."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

__all__ = ["MAX_LINES", "MAX_QUANTITY", "Basket", "BasketLine", "BasketRefused", "Checkout"]

# The orders API's own limits: at most 100 lines, 1..10,000 of each product.
MAX_LINES = 100
MAX_QUANTITY = 10_000


class BasketRefused(ValueError):
    """The change would break the basket's rules; the message says which."""


@dataclass(frozen=True, slots=True)
class BasketLine:
    product_id: str
    quantity: int


@dataclass(frozen=True, slots=True)
class Checkout:
    """The last order placed from this basket, by the idempotency key of its form: a
    second submission of that form (a double click) goes to the same order."""

    key: str
    order_id: str


@dataclass(frozen=True, slots=True)
class Basket:
    lines: tuple[BasketLine, ...] = ()
    checkout: Checkout | None = field(default=None)

    def quantity_of(self, product_id: str) -> int:
        return next((line.quantity for line in self.lines if line.product_id == product_id), 0)

    def add(self, product_id: str, quantity: int) -> Basket:
        """One more line, or more of a product already in it; BasketRefused past the limits."""
        if not 1 <= quantity <= MAX_QUANTITY:
            raise BasketRefused(f"Choose a quantity from 1 to {MAX_QUANTITY:,}.")
        total = self.quantity_of(product_id) + quantity
        if total > MAX_QUANTITY:
            raise BasketRefused(f"At most {MAX_QUANTITY:,} of one product.")
        if not self.quantity_of(product_id) and len(self.lines) >= MAX_LINES:
            raise BasketRefused(f"A basket holds at most {MAX_LINES} products.")
        kept = tuple(line for line in self.lines if line.product_id != product_id)
        if len(kept) == len(self.lines):
            return replace(self, lines=(*self.lines, BasketLine(product_id, total)))
        lines = tuple(
            BasketLine(product_id, total) if line.product_id == product_id else line
            for line in self.lines
        )
        return replace(self, lines=lines)

    def remove(self, product_id: str) -> Basket:
        return replace(
            self, lines=tuple(line for line in self.lines if line.product_id != product_id)
        )

    def checked_out(self, key: str, order_id: str, ordered: tuple[BasketLine, ...] = ()) -> Basket:
        """Without the lines `ordered` (all of them by default), remembering the order
        placed: what was added while the order was being placed stays."""
        gone = set(ordered or self.lines)
        kept = tuple(line for line in self.lines if line not in gone)
        return Basket(lines=kept, checkout=Checkout(key, order_id))
