"""flotilla_payments: the transfer coordinator (two-phase commit across ledger shards)."""

__all__: list[str] = []
