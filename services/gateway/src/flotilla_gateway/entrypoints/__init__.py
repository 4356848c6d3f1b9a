"""How the gateway is started: the `flotilla-gateway` command."""

__all__: list[str] = []
