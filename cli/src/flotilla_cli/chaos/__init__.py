"""Fault injection against a real system: `flotilla chaos bank` and `flotilla chaos shop`
(`commands`), each a fresh system under killed processes, then its invariants checked."""

__all__: list[str] = []
