"""flotilla_accounts: the ledger service (accounts, balances, double-entry postings)."""

__all__: list[str] = []
