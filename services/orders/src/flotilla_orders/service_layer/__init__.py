"""Use cases of the orders service: placing an order, the saga that runs it, recovery, and
the reads."""

__all__: list[str] = []
