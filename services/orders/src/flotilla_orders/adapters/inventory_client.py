"""The inventory service over gRPC (`flotilla.inventory.v1.Inventory`), as the saga and
the order checks call it.

The instances are called through the kit's `FailoverCaller` (the least busy instance
first; one that does not answer is skipped and asked last for a while), with this service's
own token, the trace context and a deadline on every call. Every call is idempotent per
reservation id, so asking another instance is safe.

Errors: no answer from any instance (UNAVAILABLE, DEADLINE_EXCEEDED, our token refused,
...) means the outcome is unknown (`InventoryUnavailable`); an answer the contract rules
out (INVALID_ARGUMENT, an unset state, ...) is an `InventoryProtocolError`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from flotilla_kit.failover import FailoverCaller, NoInstanceAnswered, RpcViolation
from flotilla_kit.rpc import ChannelFactory, Channels, bearer, secure_channel
from flotilla_kit.settings import TlsSettings
from flotilla_orders.adapters.tokens import TokenSource
from flotilla_orders.service_layer.ports import (
    InventoryProtocolError,
    InventoryUnavailable,
    Product,
    Reservation,
    ReservationState,
    ReservedLine,
    StockRefusal,
)
from flotilla_proto.inventory.v1 import inventory_pb2 as pb
from flotilla_proto.inventory.v1 import inventory_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from flotilla_proto.inventory.v1.inventory_pb2_grpc import InventoryAsyncStub

__all__ = ["CallObserver", "GrpcInventoryClient"]

_R = TypeVar("_R")
Metadata = tuple[tuple[str, str], ...]

_STATES = {
    pb.HELD: ReservationState.HELD,
    pb.COMMITTED: ReservationState.COMMITTED,
    pb.RELEASED: ReservationState.RELEASED,
    pb.EXPIRED: ReservationState.EXPIRED,
    pb.REFUSED: ReservationState.REFUSED,
}
_REFUSALS = {
    pb.OUT_OF_STOCK: StockRefusal.OUT_OF_STOCK,
    pb.UNKNOWN_PRODUCT: StockRefusal.UNKNOWN_PRODUCT,
    pb.ALREADY_RELEASED: StockRefusal.ALREADY_RELEASED,
    pb.INVALID: StockRefusal.INVALID,
}


CallObserver = Callable[[str, str], None]  # (method, result)


def _reservation(reply: pb.Reservation) -> Reservation:
    state = _STATES.get(reply.state)
    if state is None:
        raise InventoryProtocolError(f"a reservation in no known state ({reply.state})")
    refusal = None
    if state is ReservationState.REFUSED:
        refusal = _REFUSALS.get(reply.refusal, StockRefusal.INVALID)
    return Reservation(
        reservation_id=reply.reservation_id,
        state=state,
        refusal=refusal,
        lines=tuple(
            ReservedLine(line.product_id, line.quantity, line.unit_price_minor, line.currency)
            for line in reply.lines
        ),
        short_products=tuple(reply.short_products),
        detail=reply.detail,
    )


class GrpcInventoryClient:
    def __init__(
        self,
        targets: Sequence[str],
        *,
        tls: TlsSettings,
        tokens: TokenSource,
        timeout_s: float,
        on_call: CallObserver | None = None,
        channel_factory: ChannelFactory = secure_channel,
    ) -> None:
        self._targets = list(targets)
        self._tokens = tokens
        self._timeout_s = timeout_s
        self._on_call = on_call or (lambda _method, _result: None)
        self._caller: FailoverCaller[InventoryAsyncStub] = FailoverCaller(
            Channels(tls, pb_grpc.InventoryStub, channel_factory=channel_factory)
        )

    async def close(self) -> None:
        await self._caller.close()

    async def _call(
        self, method: str, invoke: Callable[[InventoryAsyncStub, Metadata], Awaitable[_R]]
    ) -> _R:
        if not self._targets:
            self._on_call(method, "unavailable")
            raise InventoryUnavailable("no inventory instances are configured")
        try:
            metadata = bearer(await self._tokens.token())
        except Exception as exc:  # the auth service is down: nothing was sent
            self._on_call(method, "unavailable")
            raise InventoryUnavailable(f"no service token: {exc}") from exc
        try:
            response = await self._caller.call(self._targets, lambda stub: invoke(stub, metadata))
        except RpcViolation as exc:
            self._on_call(method, "protocol_error")
            raise InventoryProtocolError(f"{method} on {exc}") from exc
        except NoInstanceAnswered as exc:
            self._on_call(method, "unavailable")
            raise InventoryUnavailable(f"{method}: {exc}") from exc
        self._on_call(method, "ok")
        return response

    async def availability(self, product_ids: Sequence[str]) -> list[Product]:
        request = pb.AvailabilityRequest(product_ids=list(product_ids))
        reply = await self._call(
            "GetAvailability",
            lambda stub, md: stub.GetAvailability(request, timeout=self._timeout_s, metadata=md),
        )
        return [
            Product(
                product_id=p.product_id,
                found=p.found,
                available=p.available,
                unit_price_minor=p.unit_price_minor,
                currency=p.currency,
                name=p.name,
            )
            for p in reply.products
        ]

    async def reserve(
        self, *, reservation_id: str, lines: Sequence[tuple[str, int]], hold_s: int
    ) -> Reservation:
        request = pb.ReserveRequest(
            reservation_id=reservation_id,
            lines=[pb.Line(product_id=p, quantity=q) for p, q in lines],
            hold_s=hold_s,
        )
        reply = await self._call(
            "Reserve", lambda stub, md: stub.Reserve(request, timeout=self._timeout_s, metadata=md)
        )
        return _reservation(reply)

    async def commit(self, reservation_id: str) -> Reservation:
        request = pb.ReservationRef(reservation_id=reservation_id)
        reply = await self._call(
            "Commit", lambda stub, md: stub.Commit(request, timeout=self._timeout_s, metadata=md)
        )
        return _reservation(reply)

    async def release(self, reservation_id: str) -> Reservation:
        request = pb.ReservationRef(reservation_id=reservation_id)
        reply = await self._call(
            "Release", lambda stub, md: stub.Release(request, timeout=self._timeout_s, metadata=md)
        )
        return _reservation(reply)
