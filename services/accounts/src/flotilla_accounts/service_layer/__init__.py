"""Use cases of the accounts service and the unit of work they run in."""

__all__: list[str] = []
