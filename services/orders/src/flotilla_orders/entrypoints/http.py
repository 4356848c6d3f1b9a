"""The orders REST API. Authentication and error mapping happen here; decisions happen
in the checkout, the saga and the use cases."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse, Response

from flotilla_kit.app import PROBLEM_RESPONSES, app_state
from flotilla_kit.content_types import require_json
from flotilla_kit.idempotency import answer_headers, request_fingerprint, valid_idempotency_key
from flotilla_kit.problems import ProblemRule, ProblemTable, problem_response
from flotilla_kit.security import Authenticated, require_permission
from flotilla_orders.domain import Order, OrderState
from flotilla_orders.entrypoints.schemas import (
    HistoryEntryOut,
    HistoryList,
    OrderIn,
    OrderList,
    OrderOut,
)
from flotilla_orders.service_layer import history, use_cases
from flotilla_orders.service_layer.checkout import CREATE, Checkout, OrderRequest
from flotilla_orders.service_layer.errors import (
    CurrencyMismatch,
    DependencyUnavailable,
    IdempotencyKeyRequired,
    IdempotencyKeyReused,
    InvalidCursor,
    InvalidOrder,
    NotAllowed,
    OrderNotFound,
    OrderNotRefundable,
    OrdersError,
    PaymentAccountInvalid,
    RefundRefused,
    UnknownProducts,
)
from flotilla_orders.service_layer.ports import UnitOfWorkFactory
from flotilla_orders.service_layer.refunds import REFUND, Refunds

__all__ = ["PROBLEMS", "RETRY_AFTER_S", "history_router", "install_error_mapping", "router"]

router = APIRouter(prefix="/api/v1/orders", tags=["orders"], responses=PROBLEM_RESPONSES)
history_router = APIRouter(
    prefix="/api/v1/order-history", tags=["order history"], responses=PROBLEM_RESPONSES
)

# A dependency that did not answer usually comes back within seconds (a restart).
RETRY_AFTER_S = 1

_POST_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: problem_response("Inventory or accounts did not answer; nothing written."),
}

# Required (documented so); a request without one gets the kit's 400
# idempotency-key-required, not a 422.
IdempotencyKey = Annotated[
    str,
    Header(
        alias="Idempotency-Key",
        description="Repeat the request with the same key to get the order as it "
        "is now; the order is placed at most once. Keys are per customer.",
    ),
]


CheckoutDep = Annotated[Checkout, Depends(app_state("checkout"))]
RefundsDep = Annotated[Refunds, Depends(app_state("refunds"))]
UowDep = Annotated[UnitOfWorkFactory, Depends(app_state("uow"))]


def _location(order: Order) -> str:
    return f"{router.prefix}/{order.id}"


@router.post(
    "",
    status_code=202,
    response_model=OrderOut,
    summary="Place an order, paid from one of your accounts",
    responses=_POST_RESPONSES,
    dependencies=[Depends(require_permission(CREATE)), Depends(require_json)],
)
async def create_order(
    body: OrderIn,
    request: Request,
    principal: Authenticated,
    checkout: CheckoutDep,
    idempotency_key: IdempotencyKey,
) -> Response:
    """Always 202 with `Location`: the order as it stands (PENDING until its saga ends;
    poll `Location`). Refused, with nothing written, when it cannot be placed."""
    placement = await checkout.place(
        principal=principal,
        request=OrderRequest(
            lines=tuple((line.product_id, line.quantity) for line in body.lines),
            payment_account=body.payment_account,
        ),
        idempotency_key=valid_idempotency_key(idempotency_key),
        fingerprint=request_fingerprint("POST", request.url.path, body.model_dump(mode="json")),
    )
    headers = answer_headers(replayed=placement.replayed, location=_location(placement.order))
    body_out = OrderOut.of(placement.order).model_dump(mode="json")
    return JSONResponse(body_out, status_code=202, headers=headers)


_REFUND_RESPONSES: dict[int | str, dict[str, Any]] = {
    404: problem_response("No such order."),
    409: problem_response(
        "`order-not-refundable`: the order is not CONFIRMED; `refund-refused`: payments "
        "refused the refund (`refusal` says why), the order stays CONFIRMED."
    ),
}


@router.post(
    "/{order_id}/refund",
    status_code=202,
    response_model=OrderOut,
    summary="Refund a confirmed order in full (support)",
    responses=_REFUND_RESPONSES,
    dependencies=[Depends(require_permission(REFUND))],
)
async def refund_order(order_id: str, principal: Authenticated, refunds: RefundsDep) -> Response:
    """202 with `Location`: the order as it stands (REFUNDING until payments has moved the
    money back, then REFUNDED). No body and no Idempotency-Key: an order is refunded at
    most once, so asking again answers the order as it stands and starts nothing."""
    refund = await refunds.refund(principal=principal, order_id=order_id)
    headers = {"Location": _location(refund.order)}
    return JSONResponse(OrderOut.of(refund.order).model_dump(mode="json"), 202, headers=headers)


@router.get("", response_model=OrderList, summary="Your orders, newest first")
async def list_orders(
    principal: Authenticated,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    after: Annotated[
        str | None, Query(max_length=64, description="`next_after` of the previous page.")
    ] = None,
    customer_id: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="Staff (`orders:read:any`): whose."),
    ] = None,
    status: Annotated[
        OrderState | None,
        Query(
            description="Only orders in this state. Staff (`orders:read:any`) giving it "
            "without `customer_id` get everyone's orders in it."
        ),
    ] = None,
) -> OrderList:
    """The caller's own orders; staff may name a `customer_id`, or ask for everyone's
    orders in a `status` (e.g. the sagas still PENDING)."""
    async with uow(write=False) as u:
        page = await use_cases.list_orders(
            u, principal=principal, limit=limit, after=after, customer_id=customer_id,
            status=status,
        )  # fmt: skip
    return OrderList(items=[OrderOut.of(o) for o in page.items], next_after=page.next_after)


@router.get("/{order_id}", response_model=OrderOut, summary="One order (its customer or staff)")
async def get_order(order_id: str, principal: Authenticated, uow: UowDep) -> OrderOut:
    async with uow(write=False) as u:
        order = await use_cases.get_order(u, principal=principal, order_id=order_id)
    return OrderOut.of(order)


@history_router.get(
    "",
    response_model=HistoryList,
    summary="Your finished orders and their payment state, newest first (built from events)",
)
async def order_history(
    principal: Authenticated,
    uow: UowDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    after: Annotated[
        str | None, Query(max_length=64, description="`next_after` of the previous page.")
    ] = None,
    customer_id: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="Staff (`orders:read:any`): whose."),
    ] = None,
) -> HistoryList:
    async with uow(write=False) as u:
        page = await history.order_history(
            u, principal=principal, limit=limit, after=after, customer_id=customer_id
        )
    return HistoryList(
        items=[HistoryEntryOut.of(entry) for entry in page.items], next_after=page.next_after
    )


PROBLEMS = ProblemTable(
    {
        NotAllowed: (403, "forbidden", "Forbidden"),
        IdempotencyKeyRequired: (400, "idempotency-key-required", "Idempotency-Key required"),
        IdempotencyKeyReused: (422, "idempotency-key-reused", "Idempotency-Key reused"),
        InvalidOrder: (422, "validation-error", "Request validation failed"),
        PaymentAccountInvalid: (422, "payment-account-invalid", "Payment account invalid"),
        OrderNotFound: (404, "order-not-found", "Order not found"),
        InvalidCursor: (400, "invalid-cursor", "Invalid cursor"),
        OrderNotRefundable: ProblemRule[OrderNotRefundable](
            409,
            "order-not-refundable",
            "Order not refundable",
            extensions=lambda exc: {"state": exc.state},
        ),
        RefundRefused: ProblemRule[RefundRefused](
            409,
            "refund-refused",
            "Refund refused",
            extensions=lambda exc: {"refusal": exc.refusal},
        ),
        UnknownProducts: ProblemRule[UnknownProducts](
            422,
            "unknown-product",
            "Unknown product",
            extensions=lambda exc: {"products": exc.product_ids},
        ),
        CurrencyMismatch: ProblemRule[CurrencyMismatch](
            422,
            "currency-mismatch",
            "Currency mismatch",
            extensions=lambda exc: {
                "account_currency": exc.account_currency,
                "products": exc.product_ids,
            },
        ),
        DependencyUnavailable: ProblemRule[DependencyUnavailable](
            503,
            lambda exc: f"{exc.dependency}-unavailable",
            "Service unavailable",
            detail=lambda exc: (
                f"The {exc.dependency} service did not answer; nothing was "
                "written. Try again with the same Idempotency-Key."
            ),
            headers={"Retry-After": str(RETRY_AFTER_S)},
            extensions=lambda exc: {"dependency": exc.dependency},
        ),
    }
)


def install_error_mapping(app: FastAPI) -> None:
    PROBLEMS.install(app, OrdersError)
