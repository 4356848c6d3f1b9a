"""How the world reaches the auth service: HTTP (`http`) and the command line (`cli`)."""

__all__: list[str] = []
