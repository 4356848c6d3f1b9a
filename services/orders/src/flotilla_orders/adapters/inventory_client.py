"""The inventory service over gRPC (`flotilla.inventory.v1.Inventory`), as the saga and
the order checks call it.

One channel per instance (`host:port`), over mutual TLS, with this service's own token on
every call and a deadline on every call. Each call goes first to the instance with the
fewest of our calls in flight (ties taken in turn). A call that gets no answer moves on to
the next instance: every call is idempotent per reservation id, so asking another
instance is safe, and a killed instance does not stop progress; it is asked last for a
while (`_SUSPECT_S`).

Errors: no answer from any instance (UNAVAILABLE, DEADLINE_EXCEEDED, our token refused,
...) means the outcome is unknown (`InventoryUnavailable`); an answer the contract rules
out (INVALID_ARGUMENT, an unset state, ...) is an `InventoryProtocolError`.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

import grpc
from grpc import aio

from flotilla_kit.rpc import ChannelFactory, Channels, bearer, secure_channel
from flotilla_kit.settings import TlsSettings
from flotilla_orders.adapters.tokens import TokenSource, trace_headers
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

# A target that did not answer is asked last for this long.
_SUSPECT_S = 2.0

# Whoever answers with these told us something the contract rules out; asking another
# instance would get the same answer.
_VIOLATIONS = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)

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
        self._channels: Channels[InventoryAsyncStub] = Channels(
            tls, pb_grpc.InventoryStub, channel_factory=channel_factory
        )
        self._in_flight: Counter[str] = Counter()
        self._suspect_until: dict[str, float] = {}  # target -> monotonic time
        self._turn = itertools.count()

    def _stub(self, target: str) -> InventoryAsyncStub:
        return self._channels.stub(target)

    async def close(self) -> None:
        await self._channels.close()

    async def _call(
        self, method: str, invoke: Callable[[InventoryAsyncStub, Metadata], Awaitable[_R]]
    ) -> _R:
        if not self._targets:
            self._on_call(method, "unavailable")
            raise InventoryUnavailable("no inventory instances are configured")
        try:
            metadata = bearer(await self._tokens.token()) + tuple(trace_headers().items())
        except Exception as exc:  # the auth service is down: nothing was sent
            self._on_call(method, "unavailable")
            raise InventoryUnavailable(f"no service token: {exc}") from exc
        failures: list[str] = []
        for target in self._in_order():
            self._in_flight[target] += 1
            try:
                response = await invoke(self._stub(target), metadata)
            except aio.AioRpcError as exc:
                code = exc.code()
                if code in _VIOLATIONS:
                    self._on_call(method, "protocol_error")
                    raise InventoryProtocolError(
                        f"{method} on {target}: {code.name}: {exc.details()}"
                    ) from exc
                failures.append(f"{target}: {code.name}")
                self._suspect_until[target] = time.monotonic() + _SUSPECT_S
                continue
            finally:
                self._in_flight[target] -= 1
            self._suspect_until.pop(target, None)
            self._on_call(method, "ok")
            return response
        self._on_call(method, "unavailable")
        raise InventoryUnavailable(f"{method}: " + "; ".join(failures))

    def _in_order(self) -> list[str]:
        """Healthy before suspect, then fewest calls in flight; ties in turn."""
        targets = self._targets
        now = time.monotonic()
        turn = next(self._turn)
        return sorted(
            targets,
            key=lambda t: (
                self._suspect_until.get(t, 0.0) > now,
                self._in_flight[t],
                (targets.index(t) - turn) % len(targets),
            ),
        )

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
