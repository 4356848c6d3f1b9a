"""Fault injection against a real system: `flotilla chaos bank`."""

__all__: list[str] = []
