"""The reservation gRPC API (`flotilla.inventory.v1.Inventory`), spoken by the orders
service. Thin: parse, call the reservation desk, translate back.

Every call arrives over mutual TLS and has passed `TokenAuthInterceptor` (a valid token
granting `inventory:reserve`) before a handler runs. What a caller asks badly is an
answer (`REFUSED` with `INVALID` and a detail), never a crash; status codes are kept for
what is not an answer: UNAUTHENTICATED and PERMISSION_DENIED (the interceptor),
INVALID_ARGUMENT for a message that does not parse (the handlers parse the bytes
themselves, so grpc's own UNKNOWN with a Python exception text never reaches a client),
UNAVAILABLE while the instance shuts down, INTERNAL (logged, without its message) for a
bug.

`ReserveStream` is the high-volume path: one stream per client connection, up to
`stream_window` of its requests worked on at once, answers written as they are ready
(possibly out of order; each carries its reservation_id).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc
from google.protobuf.message import DecodeError, Message
from grpc import aio

from flotilla_inventory.adapters.metrics import PrometheusInventoryMetrics
from flotilla_inventory.domain import (
    MAX_LINES,
    Refusal,
    RequestedLine,
    Reservation,
    ReservationState,
)
from flotilla_inventory.entrypoints.http import RESERVE_PERMISSION
from flotilla_inventory.service_layer.reservations import ReservationDesk, ReserveCall
from flotilla_kit.logs import get_logger
from flotilla_kit.rpc import TokenAuthInterceptor, server_credentials, text_refusal
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tokens import TokenVerifier
from flotilla_kit.tracing import TracingServerInterceptor
from flotilla_proto.inventory.v1 import inventory_pb2 as pb

__all__ = ["InventoryRpc", "start_inventory_server"]

_log = get_logger("flotilla.inventory.grpc")

Context = aio.ServicerContext[Any, Any]
_M = TypeVar("_M", bound=Message)
_SERVICE = pb.DESCRIPTOR.services_by_name["Inventory"].full_name

_STATES = {
    ReservationState.HELD: pb.HELD,
    ReservationState.COMMITTED: pb.COMMITTED,
    ReservationState.RELEASED: pb.RELEASED,
    ReservationState.EXPIRED: pb.EXPIRED,
    ReservationState.REFUSED: pb.REFUSED,
}
_REFUSALS = {
    Refusal.OUT_OF_STOCK: pb.OUT_OF_STOCK,
    Refusal.UNKNOWN_PRODUCT: pb.UNKNOWN_PRODUCT,
    Refusal.ALREADY_RELEASED: pb.ALREADY_RELEASED,
    Refusal.INVALID: pb.INVALID,
}
_SHUTTING_DOWN = "the instance is shutting down; ask another one"
# Queued to a stream's answers: the instance is closing / the reader stopped.
_CLOSING = object()
_DONE = object()


def reservation_message(reservation: Reservation) -> pb.Reservation:
    message = pb.Reservation(
        reservation_id=reservation.id,
        state=_STATES[reservation.state],
        detail=reservation.detail,
        lines=[
            pb.ReservedLine(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                currency=line.currency,
            )
            for line in reservation.lines
        ],
        short_products=reservation.short_products,
    )
    if reservation.refusal is not None:
        message.refusal = _REFUSALS[reservation.refusal]
    if reservation.expires_at is not None:
        message.expires_at_unix_ms = int(reservation.expires_at.timestamp() * 1000)
    return message


def _reserve_call(request: pb.ReserveRequest) -> ReserveCall:
    return ReserveCall(
        reservation_id=request.reservation_id,
        lines=tuple(RequestedLine(line.product_id, line.quantity) for line in request.lines),
        hold_s=request.hold_s,
    )


def _unknown(reservation_id: str) -> pb.Reservation:
    """Commit of a reservation that does not exist: state UNSPECIFIED, nothing written."""
    return pb.Reservation(reservation_id=reservation_id, detail="no such reservation")


class _Unparseable(Exception):
    pass


def _parse(kind: type[_M], raw: bytes) -> _M:
    try:
        message = kind.FromString(raw)
    except DecodeError as exc:
        raise _Unparseable(f"not a {kind.DESCRIPTOR.full_name}") from exc
    problem = text_refusal(message)
    if problem is not None:
        raise _Unparseable(problem)
    return message


_T = TypeVar("_T")


class InventoryRpc:
    """The handlers of `flotilla.inventory.v1.Inventory`."""

    def __init__(
        self, desk: ReservationDesk, metrics: PrometheusInventoryMetrics, *, window: int
    ) -> None:
        self._desk = desk
        self._metrics = metrics
        self._window = window
        self._closing = False
        self._streams: set[asyncio.Queue[object]] = set()

    def close(self) -> None:
        """Shutting down: refuse new calls with UNAVAILABLE; open streams answer what
        they have started, then end with UNAVAILABLE (the client moves to another
        instance)."""
        self._closing = True
        for answers in self._streams:
            answers.put_nowait(_CLOSING)

    def handlers(self) -> dict[str, grpc.RpcMethodHandler[Any, Any]]:
        """Request bytes are parsed by the handlers (see the module's docstring)."""
        serialize = pb.Reservation.SerializeToString
        return {
            "Reserve": grpc.unary_unary_rpc_method_handler(
                self.reserve, response_serializer=serialize
            ),
            "Release": grpc.unary_unary_rpc_method_handler(
                self.release, response_serializer=serialize
            ),
            "Commit": grpc.unary_unary_rpc_method_handler(
                self.commit, response_serializer=serialize
            ),
            "GetAvailability": grpc.unary_unary_rpc_method_handler(
                self.get_availability, response_serializer=pb.AvailabilityReply.SerializeToString
            ),
            "ReserveStream": grpc.stream_stream_rpc_method_handler(
                self.reserve_stream, response_serializer=serialize
            ),
        }

    async def _unary(self, method: str, context: Context, call: Callable[[], Awaitable[_T]]) -> _T:
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        started = time.perf_counter()
        code = "OK"
        try:
            return await call()
        except _Unparseable as exc:
            code = "INVALID_ARGUMENT"
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        except Exception:
            code = "INTERNAL"
            _log.exception("inventory call failed", method=method)
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            self._metrics.grpc_handled(method, code, time.perf_counter() - started)

    async def reserve(self, raw: bytes, context: Context) -> pb.Reservation:
        async def call() -> pb.Reservation:
            request = _parse(pb.ReserveRequest, raw)
            return reservation_message(await self._desk.reserve(_reserve_call(request)))

        return await self._unary("Reserve", context, call)

    async def release(self, raw: bytes, context: Context) -> pb.Reservation:
        async def call() -> pb.Reservation:
            request = _parse(pb.ReservationRef, raw)
            return reservation_message(await self._desk.release(request.reservation_id))

        return await self._unary("Release", context, call)

    async def commit(self, raw: bytes, context: Context) -> pb.Reservation:
        async def call() -> pb.Reservation:
            request = _parse(pb.ReservationRef, raw)
            answer = await self._desk.commit(request.reservation_id)
            if answer is None:
                return _unknown(request.reservation_id)
            return reservation_message(answer)

        return await self._unary("Commit", context, call)

    async def get_availability(self, raw: bytes, context: Context) -> pb.AvailabilityReply:
        async def call() -> pb.AvailabilityReply:
            request = _parse(pb.AvailabilityRequest, raw)
            ids = list(request.product_ids)
            if not 1 <= len(ids) <= MAX_LINES:
                # The reply has no refusal to carry this: not an answer, a bad request.
                raise _Unparseable(f"ask for 1 to {MAX_LINES} products")
            found = await self._desk.availability(ids)
            reply = pb.AvailabilityReply()
            for item in found:
                product = item.product
                if product is None:
                    reply.products.add(product_id=item.product_id, found=False)
                else:
                    reply.products.add(
                        product_id=product.id,
                        found=True,
                        available=product.available,
                        unit_price_minor=product.price_minor,
                        currency=product.currency,
                        name=product.name,
                    )
            return reply

        return await self._unary("GetAvailability", context, call)

    async def _stream_batch(self, requests: list[pb.ReserveRequest]) -> list[pb.Reservation]:
        started = time.perf_counter()
        code = "OK"
        try:
            answers = await self._desk.reserve_batch([_reserve_call(r) for r in requests])
            return [reservation_message(answer) for answer in answers]
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            seconds = time.perf_counter() - started
            for _ in requests:
                self._metrics.grpc_handled("ReserveStream", code, seconds)

    async def reserve_stream(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[pb.Reservation]:
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        stream = _Stream(self._stream_batch, self._window)
        self._streams.add(stream.inbox)
        try:
            async for answer in stream.run(requests, context):
                yield answer
        finally:
            self._streams.discard(stream.inbox)


class _Stream:
    """One ReserveStream. A reader task takes requests off the wire into the inbox (at
    most `window` taken and not yet answered); the handler takes whatever the inbox holds
    as one batch, answers it (one transaction for the batch), writes the answers, and
    takes the next batch: the more requests arrive at once, the less each one costs, and
    a lone request waits for nothing."""

    def __init__(
        self,
        answer: Callable[[list[pb.ReserveRequest]], Awaitable[list[pb.Reservation]]],
        window: int,
    ) -> None:
        self._answer = answer
        self._size = window
        self._window = asyncio.Semaphore(window)
        # Requests, and what ends the stream: _DONE, _CLOSING or an unparseable message.
        self.inbox: asyncio.Queue[object] = asyncio.Queue()

    async def _read(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                request = _parse(pb.ReserveRequest, raw)
                await self._window.acquire()
                self.inbox.put_nowait(request)
        except _Unparseable as exc:
            self.inbox.put_nowait(exc)
            return
        self.inbox.put_nowait(_DONE)  # the client is done writing

    async def _next_batch(self) -> tuple[list[pb.ReserveRequest], object | None]:
        """The requests in hand (at least one, unless the stream ends), and what ends the
        stream if that came next."""
        batch: list[pb.ReserveRequest] = []
        item = await self.inbox.get()
        while isinstance(item, pb.ReserveRequest):
            batch.append(item)
            if len(batch) >= self._size or self.inbox.empty():
                return batch, None
            item = self.inbox.get_nowait()
        return batch, item

    async def run(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[pb.Reservation]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                batch, end = await self._next_batch()
                if batch:
                    for answer in await self._answer(batch):
                        yield answer
                    for _ in batch:
                        self._window.release()
                if end is None:
                    continue
                if end is _CLOSING:
                    # What was taken is answered; the rest was never worked on: send the
                    # client elsewhere with it.
                    await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
                if isinstance(end, _Unparseable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(end))
                return  # _DONE
        except Exception as exc:
            if isinstance(exc, aio.AbortError):
                raise
            _log.error("inventory stream failed", error=repr(exc))
            await context.abort(grpc.StatusCode.INTERNAL, "internal error")
        finally:
            reader.cancel()
            await asyncio.gather(reader, return_exceptions=True)


async def start_inventory_server(
    rpc: InventoryRpc, *, tls: TlsSettings, verifier: TokenVerifier, address: str
) -> tuple[aio.Server, int]:
    """Serve the API on `address` (`host:port`) over mutual TLS, in the running event
    loop; returns the server and the port it listens on."""
    # Tracing first: a refused call is traced too.
    server = aio.server(
        interceptors=[
            TracingServerInterceptor(),
            TokenAuthInterceptor(verifier, RESERVE_PERMISSION),
        ]
    )
    handlers = rpc.handlers()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_SERVICE, handlers)])
    server.add_registered_method_handlers(_SERVICE, handlers)
    port = server.add_secure_port(address, server_credentials(tls))
    await server.start()
    _log.info("inventory gRPC API listening", address=address, port=port)
    return server, port
