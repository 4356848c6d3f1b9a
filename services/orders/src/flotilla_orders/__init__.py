"""flotilla_orders: the checkout saga (reserve stock -> pay -> commit) and the order history."""

__all__: list[str] = []
