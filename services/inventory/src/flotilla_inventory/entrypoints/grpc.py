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
from flotilla_kit.rpc import TokenAuthInterceptor, server_credentials
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tokens import TokenVerifier
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
        return kind.FromString(raw)
    except DecodeError as exc:
        raise _Unparseable(f"not a {kind.DESCRIPTOR.full_name}") from exc


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

    async def _stream_one(self, request: pb.ReserveRequest) -> pb.Reservation:
        started = time.perf_counter()
        code = "OK"
        try:
            return reservation_message(await self._desk.reserve(_reserve_call(request)))
        except Exception:
            code = "INTERNAL"
            raise
        finally:
            self._metrics.grpc_handled("ReserveStream", code, time.perf_counter() - started)

    async def reserve_stream(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[pb.Reservation]:
        if self._closing:
            await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
        stream = _Stream(self._stream_one, self._window)
        self._streams.add(stream.answers)
        try:
            async for answer in stream.run(requests, context):
                yield answer
        finally:
            self._streams.discard(stream.answers)


class _Stream:
    """One ReserveStream: a reader task takes requests off the wire (at most `window` in
    work at once), each request is answered by its own task, and the handler writes the
    answers in the order they are ready."""

    def __init__(
        self, answer: Callable[[pb.ReserveRequest], Awaitable[pb.Reservation]], window: int
    ) -> None:
        self._answer = answer
        self._window = asyncio.Semaphore(window)
        self._working: set[asyncio.Task[None]] = set()
        # Answers, and what ends the stream: _DONE, _CLOSING or an exception.
        self.answers: asyncio.Queue[object] = asyncio.Queue()

    async def _work(self, request: pb.ReserveRequest) -> None:
        try:
            self.answers.put_nowait(await self._answer(request))
        except Exception as exc:
            self.answers.put_nowait(exc)
        finally:
            self._window.release()

    async def _read(self, requests: AsyncIterator[bytes]) -> None:
        try:
            async for raw in requests:
                request = _parse(pb.ReserveRequest, raw)
                await self._window.acquire()
                task = asyncio.create_task(self._work(request))
                self._working.add(task)
                task.add_done_callback(self._working.discard)
        except _Unparseable as exc:
            self.answers.put_nowait(exc)
            return
        # The client is done writing: answer what is in hand, then end the stream.
        await asyncio.gather(*self._working)
        self.answers.put_nowait(_DONE)

    def _answered_so_far(self) -> list[pb.Reservation]:
        left = []
        while not self.answers.empty():
            item = self.answers.get_nowait()
            if isinstance(item, pb.Reservation):
                left.append(item)
        return left

    async def run(
        self, requests: AsyncIterator[bytes], context: Context
    ) -> AsyncIterator[pb.Reservation]:
        reader = asyncio.create_task(self._read(requests))
        try:
            while True:
                item = await self.answers.get()
                if isinstance(item, pb.Reservation):
                    yield item
                    continue
                if item is _CLOSING:
                    # Stop reading; finish and send what was started; then send the
                    # client elsewhere.
                    reader.cancel()
                    await asyncio.gather(reader, *self._working, return_exceptions=True)
                    for answer in self._answered_so_far():
                        yield answer
                    await context.abort(grpc.StatusCode.UNAVAILABLE, _SHUTTING_DOWN)
                if isinstance(item, _Unparseable):
                    await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(item))
                if isinstance(item, Exception):
                    _log.error("inventory stream call failed", error=repr(item))
                    await context.abort(grpc.StatusCode.INTERNAL, "internal error")
                return  # _DONE
        finally:
            # The client went away, or the stream ended: nothing is left running.
            reader.cancel()
            for task in list(self._working):
                task.cancel()
            await asyncio.gather(reader, *self._working, return_exceptions=True)


async def start_inventory_server(
    rpc: InventoryRpc, *, tls: TlsSettings, verifier: TokenVerifier, address: str
) -> tuple[aio.Server, int]:
    """Serve the API on `address` (`host:port`) over mutual TLS, in the running event
    loop; returns the server and the port it listens on."""
    server = aio.server(interceptors=[TokenAuthInterceptor(verifier, RESERVE_PERMISSION)])
    handlers = rpc.handlers()
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(_SERVICE, handlers)])
    server.add_registered_method_handlers(_SERVICE, handlers)
    port = server.add_secure_port(address, server_credentials(tls))
    await server.start()
    _log.info("inventory gRPC API listening", address=address, port=port)
    return server, port
