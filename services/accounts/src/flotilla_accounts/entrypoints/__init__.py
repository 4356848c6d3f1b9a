"""How the world reaches the accounts service: HTTP (FastAPI) and the command line."""

__all__: list[str] = []
