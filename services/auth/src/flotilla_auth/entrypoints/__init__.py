"""How the world reaches the auth service: HTTP (`http`, `users_api`) and the command line
(`cli`)."""

__all__: list[str] = []
