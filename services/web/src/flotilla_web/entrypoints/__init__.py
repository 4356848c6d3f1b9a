"""The web service's entrypoints: the HTTP API (fastapi) and the command line."""
