"""flotilla_web: items, each with a name and a quantity (a fastapi service)."""

__all__: list[str] = []
