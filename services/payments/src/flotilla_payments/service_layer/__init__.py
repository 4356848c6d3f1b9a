"""Use cases of the payments service: the coordinator, recovery, and the reads."""

__all__: list[str] = []
