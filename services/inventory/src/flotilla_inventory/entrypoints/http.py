"""The inventory REST API: the catalogue (public reads, admin writes) and the reservation
path (service to service, the same use cases as the gRPC API). Authentication and error
mapping happen here; decisions happen in the use cases."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Path, Query, Request
from fastapi.responses import Response

from flotilla_inventory.adapters.tables import idempotency_keys
from flotilla_inventory.adapters.unit_of_work import SqlInventoryUnitOfWork, SqlUnitOfWorkFactory
from flotilla_inventory.domain import Refusal, RequestedLine, Reservation
from flotilla_inventory.entrypoints.schemas import (
    ProductIn,
    ProductList,
    ProductOut,
    ProductPatch,
    ReservationIn,
    ReservationOut,
    StockAdjustmentIn,
)
from flotilla_inventory.service_layer import catalogue
from flotilla_inventory.service_layer.errors import (
    DuplicateSku,
    IdempotencyKeyRequired,
    InsufficientStock,
    InvalidCursor,
    InvalidProduct,
    InventoryError,
    NotAllowed,
    ProductNotFound,
    ReservationNotFound,
)
from flotilla_inventory.service_layer.reservations import ReservationDesk, ReserveCall
from flotilla_kit.app import app_state
from flotilla_kit.clock import Clock
from flotilla_kit.content_types import require_json
from flotilla_kit.db import Database
from flotilla_kit.idempotency import (
    IdempotentResult,
    request_fingerprint,
    run_idempotently,
    stored_answer,
    valid_idempotency_key,
)
from flotilla_kit.problems import Problem, ProblemTable, problem_response
from flotilla_kit.security import require_permission
from flotilla_kit.tokens import Principal

__all__ = ["PROBLEMS", "RESERVE_PERMISSION", "install_error_mapping", "products", "reservations"]

RESERVE_PERMISSION = "inventory:reserve"

_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, Idempotency-Key missing or unusable, bad cursor)",
    401: "Missing or invalid access token",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict with the current state (nothing changed)",
    413: "Body too large",
    415: "Wrong content type",
    422: "Validation failed (nothing changed)",
}


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: problem_response(_DESCRIPTIONS[status]) for status in statuses}


products = APIRouter(prefix="/api/v1/products", tags=["products"])
reservations = APIRouter(prefix="/internal/v1/reservations", tags=["reservations"])

# Required (documented so); a request without one gets the kit's 400
# idempotency-key-required, not a 422.
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description="Repeat the request with the same key to get the same answer; "
        "the change happens once.",
    ),
]
ProductId = Annotated[str, Path(max_length=64, description="The product's id (`prd_...`).")]
ReservationId = Annotated[str, Path(max_length=64, description="The caller's reservation id.")]

DatabaseDep = Annotated[Database, Depends(app_state("database"))]
UowDep = Annotated[SqlUnitOfWorkFactory, Depends(app_state("uow"))]
DeskDep = Annotated[ReservationDesk, Depends(app_state("desk"))]
ClockDep = Annotated[Clock, Depends(app_state("clock"))]
Writer = Annotated[Principal, Depends(require_permission(catalogue.WRITE_PERMISSION))]
Reserver = Annotated[Principal, Depends(require_permission(RESERVE_PERMISSION))]


async def _once_per_key(
    request: Request,
    principal: Principal,
    database: Database,
    operation: str,
    body: Any,
    key: str | None,
    action: Callable[[SqlInventoryUnitOfWork], Awaitable[tuple[int, Any]]],
) -> IdempotentResult:
    """Run a write in one transaction and store its answer under the Idempotency-Key
    (required); the same key and request replays it. Keys are per caller and operation."""
    checked = valid_idempotency_key(key)
    if checked is None:
        raise IdempotencyKeyRequired
    return await run_idempotently(
        database,
        SqlInventoryUnitOfWork,
        idempotency_keys,
        scope=f"{principal.subject}:{operation}",
        key=checked,
        fingerprint=request_fingerprint("POST", request.url.path, body),
        action=action,
    )


# The catalogue ------------------------------------------------------------------------


@products.get(
    "",
    response_model=ProductList,
    summary="The catalogue, in sku order (public)",
    responses=_problems(400, 422),
)
async def list_products(
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Products per page.")] = 20,
    after: Annotated[
        str | None, Query(max_length=64, description="`next_after` of the previous page.")
    ] = None,
) -> ProductList:
    async with uow(write=False) as u:
        page, next_after = await catalogue.list_products(u, limit=limit, after=after)
    return ProductList(items=[ProductOut.of(p) for p in page], next_after=next_after)


@products.get(
    "/{product_id}",
    response_model=ProductOut,
    summary="One product, with its price and stock (public)",
    responses=_problems(404, 422),
)
async def get_product(product_id: ProductId, uow: UowDep) -> ProductOut:
    async with uow(write=False) as u:
        product = await catalogue.get_product(u, product_id=product_id)
    return ProductOut.of(product)


@products.post(
    "",
    status_code=201,
    response_model=ProductOut,
    summary="Add a product to the catalogue (admin)",
    dependencies=[Depends(require_json)],
    responses=_problems(400, 401, 403, 409, 413, 415, 422),
)
async def create_product(
    body: ProductIn,
    request: Request,
    principal: Writer,
    database: DatabaseDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """201 with `Location`; 409 `duplicate-sku` when the sku is taken."""

    async def action(uow: SqlInventoryUnitOfWork) -> tuple[int, Any]:
        product = await catalogue.create_product(
            uow,
            principal=principal,
            sku=body.sku,
            name=body.name,
            price_minor=body.price_minor,
            currency=body.currency,
            on_hand=body.on_hand,
            now=clock(),
        )
        return 201, ProductOut.of(product).model_dump(mode="json")

    result = await _once_per_key(
        request, principal, database, "create-product", body.model_dump(mode="json"),
        idempotency_key, action,
    )  # fmt: skip
    return stored_answer(result, location=f"{products.prefix}/{result.body['id']}")


@products.patch(
    "/{product_id}",
    response_model=ProductOut,
    summary="Rename or reprice a product (admin); held reservations keep their price",
    dependencies=[Depends(require_json)],
    responses=_problems(400, 401, 403, 404, 413, 415, 422),
)
async def update_product(
    product_id: ProductId, body: ProductPatch, principal: Writer, uow: UowDep, clock: ClockDep
) -> ProductOut:
    async with uow() as u:
        product = await catalogue.update_product(
            u,
            principal=principal,
            product_id=product_id,
            name=body.name,
            price_minor=body.price_minor,
            now=clock(),
        )
        await u.commit()
    return ProductOut.of(product)


@products.post(
    "/{product_id}/stock-adjustments",
    response_model=ProductOut,
    summary="Goods in or out (admin); never below what is held",
    dependencies=[Depends(require_json)],
    responses=_problems(400, 401, 403, 404, 409, 413, 415, 422),
)
async def adjust_stock(
    product_id: ProductId,
    body: StockAdjustmentIn,
    request: Request,
    principal: Writer,
    database: DatabaseDep,
    clock: ClockDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """200 with the product as adjusted; 409 `insufficient-stock` (nothing changed) when
    stock on hand would drop below what is held for reservations."""

    async def action(uow: SqlInventoryUnitOfWork) -> tuple[int, Any]:
        product = await catalogue.adjust_stock(
            uow,
            principal=principal,
            product_id=product_id,
            delta=body.delta,
            reason=body.reason,
            now=clock(),
        )
        return 200, ProductOut.of(product).model_dump(mode="json")

    result = await _once_per_key(
        request, principal, database, "adjust-stock", body.model_dump(mode="json"),
        idempotency_key, action,
    )  # fmt: skip
    return stored_answer(result)


# Reservations (service to service) ------------------------------------------------------


def _answer(reservation: Reservation) -> ReservationOut:
    if reservation.refusal is Refusal.INVALID:
        # Malformed beyond what the schema checks (duplicate products, a hold too long):
        # bad input, so a problem, as everywhere in REST. Nothing was written.
        raise Problem(422, "invalid-reservation", "Invalid reservation", reservation.detail)
    return ReservationOut.of(reservation)


@reservations.post(
    "",
    response_model=ReservationOut,
    summary="Reserve stock, all lines or none (the gRPC Reserve)",
    dependencies=[Depends(require_json)],
    responses=_problems(400, 401, 403, 413, 415, 422),
)
async def reserve(body: ReservationIn, principal: Reserver, desk: DeskDep) -> ReservationOut:
    """200 with the reservation, whatever its state: held, or refused (out of stock, an
    unknown product, released before it was reserved), or as it already is for a
    reservation id seen before."""
    call = ReserveCall(
        reservation_id=body.reservation_id,
        lines=tuple(RequestedLine(line.product_id, line.quantity) for line in body.lines),
        hold_s=body.hold_s,
    )
    return _answer(await desk.reserve(call))


@reservations.post(
    "/{reservation_id}/commit",
    response_model=ReservationOut,
    summary="Sell the held stock (the gRPC Commit)",
    responses=_problems(401, 403, 404, 422),
)
async def commit(
    reservation_id: ReservationId, principal: Reserver, desk: DeskDep
) -> ReservationOut:
    """200 with the reservation: committed, or the state that prevents it (released,
    expired, refused); 404 when there is no such reservation."""
    answer = await desk.commit(reservation_id)
    if answer is None:
        raise ReservationNotFound(reservation_id)
    return _answer(answer)


@reservations.post(
    "/{reservation_id}/release",
    response_model=ReservationOut,
    summary="Give the held stock back (the gRPC Release)",
    responses=_problems(401, 403, 422),
)
async def release(
    reservation_id: ReservationId, principal: Reserver, desk: DeskDep
) -> ReservationOut:
    """200 with the reservation: released (for an unknown id, a tombstone that refuses a
    later Reserve), or the state that prevents it (committed, expired, refused)."""
    return _answer(await desk.release(reservation_id))


@reservations.get(
    "/{reservation_id}",
    response_model=ReservationOut,
    summary="One reservation",
    responses=_problems(401, 403, 404, 422),
)
async def get_reservation(
    reservation_id: ReservationId, principal: Reserver, desk: DeskDep
) -> ReservationOut:
    answer = await desk.get(reservation_id)
    if answer is None:
        raise ReservationNotFound(reservation_id)
    return ReservationOut.of(answer)


# Errors ---------------------------------------------------------------------------------

PROBLEMS = ProblemTable(
    {
        NotAllowed: (403, "forbidden", "Forbidden"),
        ProductNotFound: (404, "product-not-found", "Product not found"),
        ReservationNotFound: (404, "reservation-not-found", "Reservation not found"),
        DuplicateSku: (409, "duplicate-sku", "Duplicate sku"),
        InsufficientStock: (409, "insufficient-stock", "Insufficient stock"),
        InvalidProduct: (422, "invalid-product", "Invalid product"),
        IdempotencyKeyRequired: (400, "idempotency-key-required", "Idempotency-Key required"),
        InvalidCursor: (400, "invalid-cursor", "Invalid cursor"),
    }
)


def install_error_mapping(app: FastAPI) -> None:
    PROBLEMS.install(app, InventoryError)
