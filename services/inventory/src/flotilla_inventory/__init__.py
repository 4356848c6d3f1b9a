"""flotilla_inventory: the shop's products, their stock, and reservations of it."""

__all__: list[str] = []
