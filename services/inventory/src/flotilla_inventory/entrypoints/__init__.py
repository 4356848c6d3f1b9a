"""How the world reaches the inventory service: HTTP (FastAPI), gRPC and the command line."""

__all__: list[str] = []
