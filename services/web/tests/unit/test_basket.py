"""The basket's rules."""

from __future__ import annotations

import pytest

from flotilla_web.domain import MAX_LINES, MAX_QUANTITY, Basket, BasketLine, BasketRefused


def test_adding_merges_a_product_already_there_and_keeps_the_order() -> None:
    basket = Basket().add("apple", 2).add("pear", 1).add("apple", 3)
    assert basket.lines == (BasketLine("apple", 5), BasketLine("pear", 1))
    assert basket.remove("apple").lines == (BasketLine("pear", 1),)
    assert basket.remove("nothing") == basket


@pytest.mark.parametrize("quantity", [0, -1, MAX_QUANTITY + 1])
def test_a_quantity_out_of_range_is_refused(quantity: int) -> None:
    with pytest.raises(BasketRefused):
        Basket().add("apple", quantity)


def test_at_most_the_orders_apis_limits() -> None:
    with pytest.raises(BasketRefused, match="At most"):
        Basket().add("apple", MAX_QUANTITY).add("apple", 1)
    full = Basket(tuple(BasketLine(f"p{i}", 1) for i in range(MAX_LINES)))
    with pytest.raises(BasketRefused, match="at most 100 products"):
        full.add("one-more", 1)
    assert full.add("p0", 1).quantity_of("p0") == 2  # more of one already in it is fine


def test_checking_out_empties_it_and_remembers_the_order() -> None:
    basket = Basket().add("apple", 1).checked_out("key-1", "order-1")
    assert basket.lines == ()
    assert basket.checkout is not None
    assert (basket.checkout.key, basket.checkout.order_id) == ("key-1", "order-1")
    assert basket.add("pear", 1).checkout == basket.checkout


def test_what_was_added_while_ordering_stays_after_checkout() -> None:
    ordered = Basket().add("apple", 1)
    meanwhile = ordered.add("pear", 2)
    after = meanwhile.checked_out("key-1", "order-1", ordered.lines)
    assert after.lines == (BasketLine("pear", 2),)
