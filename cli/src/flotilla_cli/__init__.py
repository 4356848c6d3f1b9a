"""flotilla_cli: the `flotilla` command that runs, inspects and exercises a whole system."""

__all__: list[str] = []
