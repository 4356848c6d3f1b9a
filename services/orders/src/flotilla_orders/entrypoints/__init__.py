"""Entrypoints: the HTTP API (`http`) and the command line (`cli`)."""

__all__: list[str] = []
