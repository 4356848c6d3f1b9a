"""The same small service built on the kit once per framework, run as its own process by
the contract suite: `python contract_service.py KIND` (a key of `KINDS`), settings from
the environment (`FLOTILLA_*`), served as in production (`serve` for FastAPI,
`serve_wsgi` for Flask and Django REST framework), tracing installed, ECS log lines on
stdout.

Routes, the same in every kind:
- `GET /api/v1/public`: anyone; logs `contract route`; answers the request id and the
  `traceparent` an outgoing call would carry;
- `GET /api/v1/items/{item_id}`: needs `orders:read`; answers the item id and the caller;
- `POST /api/v1/items`: anyone; a validated body (`Item`; on Django, a DRF serializer
  validating with it, the view's `serializer_class`); 201 with the item; its body
  declared for the OpenAPI document (`documented` on Flask);
- `GET /api/v1/boom`: anyone; raises (a 500);
and one readiness check, failing while `FLOTILLA_UNREADY_FILE` exists.

Another framework joins the suite by adding a builder to `KINDS`.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI
from flask import Blueprint, Response, jsonify
from pydantic import Field

from flotilla_kit.app import create_service_app
from flotilla_kit.context import current_request_id
from flotilla_kit.flask import (
    create_flask_app,
    current_principal,
    documented,
    public,
    request_model,
    require_permission,
)
from flotilla_kit.logs import configure_logging, get_logger
from flotilla_kit.security import require_permission as fastapi_permission
from flotilla_kit.server import serve
from flotilla_kit.settings import ServiceSettings, load_settings
from flotilla_kit.text import ApiModel, Name
from flotilla_kit.tokens import Principal
from flotilla_kit.tracing import current_traceparent, install_tracing
from flotilla_kit.wsgi_server import serve_wsgi

_log = get_logger("contract")


class ContractSettings(ServiceSettings):
    unready_file: Path | None = None


class Item(ApiModel):
    name: Annotated[Name, Field(min_length=1, max_length=40)]
    quantity: int = Field(ge=1)


def _readiness(settings: ContractSettings) -> dict[str, Callable[[], Any]]:
    async def check() -> None:
        await asyncio.sleep(0)  # a check is a coroutine, as a database's would be
        if settings.unready_file is not None and settings.unready_file.exists():
            raise RuntimeError("told to be unready")

    return {"contract": check}


def _public_answer() -> dict[str, str | None]:
    _log.info("contract route")
    return {"request_id": current_request_id(), "traceparent": current_traceparent()}


def build_fastapi(settings: ContractSettings) -> FastAPI:
    router = APIRouter()

    @router.get("/api/v1/public")
    async def public_route() -> dict[str, str | None]:
        return _public_answer()

    @router.get("/api/v1/items/{item_id}")
    async def item(
        item_id: str, caller: Annotated[Principal, Depends(fastapi_permission("orders:read"))]
    ) -> dict[str, str]:
        return {"item_id": item_id, "subject": caller.subject}

    @router.post("/api/v1/items", status_code=201)
    async def add_item(body: Item) -> dict[str, Any]:
        return body.model_dump()

    @router.get("/api/v1/boom")
    async def boom() -> None:
        raise RuntimeError("secret-internal-detail")

    return create_service_app(
        settings, title="contract", routers=[router], readiness=_readiness(settings)
    )


def build_flask(settings: ContractSettings) -> Any:
    routes = Blueprint("contract", __name__)

    @routes.get("/api/v1/public")
    @public
    def public_route() -> Response:
        return jsonify(_public_answer())

    @routes.get("/api/v1/items/<item_id>")
    @require_permission("orders:read")
    def item(item_id: str) -> Response:
        return jsonify({"item_id": item_id, "subject": current_principal().subject})

    @routes.post("/api/v1/items")
    @public
    @documented(body=Item, status=201)
    def add_item() -> tuple[Response, int]:
        return jsonify(request_model(Item).model_dump()), 201

    @routes.get("/api/v1/boom")
    @public
    def boom() -> Response:
        raise RuntimeError("secret-internal-detail")

    return create_flask_app(
        settings, name="contract", blueprints=[routes], readiness=_readiness(settings)
    )


def build_django(settings: ContractSettings) -> Any:
    # Here, not at the top: REST framework's views read Django's settings when imported,
    # which `flotilla_kit.django` configures (a service's package imports it first).
    from flotilla_kit import django as kit  # noqa: PLC0415

    # isort: split
    from django.urls import path  # noqa: PLC0415
    from rest_framework.decorators import api_view, permission_classes  # noqa: PLC0415
    from rest_framework.request import Request  # noqa: PLC0415
    from rest_framework.response import Response as DrfResponse  # noqa: PLC0415
    from rest_framework.views import APIView  # noqa: PLC0415

    item_serializer = kit.model_serializer(Item)

    @api_view(["GET"])
    @permission_classes([kit.public])
    def public_route(request: Request) -> DrfResponse:
        return DrfResponse(_public_answer())

    @api_view(["GET"])
    @permission_classes([kit.require_permission("orders:read")])
    def item(request: Request, item_id: str) -> DrfResponse:
        return DrfResponse({"item_id": item_id, "subject": kit.current_principal(request).subject})

    class AddItem(APIView):  # the body declared as a view's `serializer_class`
        permission_classes = [kit.public]
        serializer_class = item_serializer

        @kit.documented(status=201)
        def post(self, request: Request) -> DrfResponse:
            return DrfResponse(kit.validated_body(request, item_serializer).data, status=201)

    @api_view(["GET"])
    @permission_classes([kit.public])
    def boom(request: Request) -> DrfResponse:
        raise RuntimeError("secret-internal-detail")

    return kit.create_django_app(
        settings,
        name="contract",
        urlpatterns=[
            path("api/v1/public", public_route),
            path("api/v1/items/<str:item_id>", item),
            path("api/v1/items", AddItem.as_view()),
            path("api/v1/boom", boom),
        ],
        readiness=_readiness(settings),
    )


# kind -> (build the app, serve it as in production)
KINDS: dict[str, tuple[Callable[[ContractSettings], Any], Callable[[Any, Any], None]]] = {
    "fastapi": (build_fastapi, serve),
    "flask": (build_flask, serve_wsgi),
    "django": (build_django, serve_wsgi),
}


def main() -> None:
    build, run = KINDS[sys.argv[1]]
    settings = load_settings(ContractSettings)
    configure_logging(settings.service_name, settings.instance_id, settings.log_level)
    install_tracing(settings)
    run(build(settings), settings)


if __name__ == "__main__":
    main()
