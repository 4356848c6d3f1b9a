"""`python -m flotilla_web` (or `flotilla-web`): serve and migrate."""

from __future__ import annotations

from flotilla_kit.service_cli import service_cli
from flotilla_web.bootstrap import build_app, migrate
from flotilla_web.settings import WebSettings

__all__ = ["app", "main"]

app = service_cli(
    WebSettings,
    help="The Flotilla web service. Settings come from FLOTILLA_* environment variables.",
    serve_help="Run one instance (migrating the database first) until SIGTERM (which drains "
    "first) or SIGINT.",
    build_app=build_app,
    migrate=migrate,
)


def main() -> None:
    app()
