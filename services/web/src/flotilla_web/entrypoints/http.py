"""The pages, put together: every router of the service, the error pages, the security
headers. bootstrap.py includes ROUTERS and calls `install`."""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

from flotilla_web.entrypoints import bank, console, login, orders, shop, static
from flotilla_web.entrypoints.errors import install_error_pages
from flotilla_web.entrypoints.headers import ClientAddress, SecurityHeaders

__all__ = ["ROUTERS", "install"]

ROUTERS: list[APIRouter] = [
    login.router,
    bank.router,
    shop.router,
    orders.router,
    static.router,
    console.router,
]


def install(app: FastAPI) -> None:
    install_error_pages(app)
    app.add_middleware(ClientAddress)
    app.add_middleware(SecurityHeaders)
