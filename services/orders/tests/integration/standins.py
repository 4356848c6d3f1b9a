"""Real servers standing in for the orders service's dependencies, over mutual TLS:

- inventory: a `grpc.aio` server implementing `flotilla.inventory.v1.Inventory` over a
  `FakeStock`, behind the kit's token interceptor (`inventory:reserve`);
- payments: `POST /api/v1/transfers` over a `FakeBank`, with the answers its README
  documents (201, 202, 503 transfer-aborted, 404/422 refusals, 422
  idempotency-key-reused; a lost answer is a 500);
- accounts: `GET /api/v1/accounts/{id}`, one server per ledger shard;
- auth: the client-credentials token endpoint (`private_key_jwt`, as the kit's
  `ServiceTokenProvider` speaks it) and the JWKS of the test's `TokenMinter`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator
from typing import Any

import grpc
import jwt
import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, Response
from grpc import aio

from flotilla_kit.rpc import TokenAuthInterceptor, server_credentials
from flotilla_kit.settings import TlsSettings
from flotilla_kit.sharding import shard_of
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_kit.tokens import Principal, TokenError, TokenVerifier
from flotilla_orders.service_layer.ports import Reservation, ReservationState, StockRefusal
from flotilla_proto.inventory.v1 import inventory_pb2 as pb
from flotilla_proto.inventory.v1 import inventory_pb2_grpc as pb_grpc
from services.orders.tests.fakes import FakeBank, FakeStock, problem

Context = aio.ServicerContext[Any, Any]

_STATES = {
    ReservationState.HELD: pb.HELD,
    ReservationState.COMMITTED: pb.COMMITTED,
    ReservationState.RELEASED: pb.RELEASED,
    ReservationState.EXPIRED: pb.EXPIRED,
    ReservationState.REFUSED: pb.REFUSED,
}
_REFUSALS = {
    StockRefusal.OUT_OF_STOCK: pb.OUT_OF_STOCK,
    StockRefusal.UNKNOWN_PRODUCT: pb.UNKNOWN_PRODUCT,
    StockRefusal.ALREADY_RELEASED: pb.ALREADY_RELEASED,
    StockRefusal.INVALID: pb.INVALID,
}


def tls_of(paths: CertificatePaths) -> TlsSettings:
    return TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)


# -- inventory over gRPC -----------------------------------------------------------------


def _reply(reservation: Reservation) -> pb.Reservation:
    return pb.Reservation(
        reservation_id=reservation.reservation_id,
        state=_STATES[reservation.state],
        refusal=_REFUSALS[reservation.refusal] if reservation.refusal else pb.REFUSAL_UNSPECIFIED,
        lines=[
            pb.ReservedLine(
                product_id=line.product_id,
                quantity=line.quantity,
                unit_price_minor=line.unit_price_minor,
                currency=line.currency,
            )
            for line in reservation.lines
        ],
        short_products=list(reservation.short_products),
    )


class InventoryServicer(pb_grpc.InventoryServicer):
    def __init__(self, stock: FakeStock) -> None:
        self.stock = stock
        self.down = False
        # When set, Reserve waits for it: a test holds the saga before the stock is held.
        self.reserve_gate: asyncio.Event | None = None
        self.calls: list[tuple[str, str]] = []  # (method, reservation id or "")
        self.hold_seconds: list[int] = []
        self.traceparents: list[list[str]] = []  # per call: its traceparent metadata values

    def calls_of(self, method: str) -> list[str]:
        return [r for m, r in self.calls if m == method]

    async def _arrive(self, context: Context, method: str, reservation_id: str) -> None:
        self.calls.append((method, reservation_id))
        metadata = context.invocation_metadata() or ()
        self.traceparents.append([str(value) for key, value in metadata if key == "traceparent"])
        if self.down:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "inventory is down")

    async def Reserve(self, request: pb.ReserveRequest, context: Context) -> pb.Reservation:  # noqa: N802 - generated name
        await self._arrive(context, "Reserve", request.reservation_id)
        if self.reserve_gate is not None:
            await self.reserve_gate.wait()
        self.hold_seconds.append(request.hold_s)
        lines = [(line.product_id, line.quantity) for line in request.lines]
        return _reply(self.stock.reserve(request.reservation_id, lines))

    async def Release(self, request: pb.ReservationRef, context: Context) -> pb.Reservation:  # noqa: N802 - generated name
        await self._arrive(context, "Release", request.reservation_id)
        return _reply(self.stock.release(request.reservation_id))

    async def Commit(self, request: pb.ReservationRef, context: Context) -> pb.Reservation:  # noqa: N802 - generated name
        await self._arrive(context, "Commit", request.reservation_id)
        if request.reservation_id not in self.stock.reservations:
            await context.abort(grpc.StatusCode.NOT_FOUND, "no such reservation")
        return _reply(self.stock.commit(request.reservation_id))

    async def GetAvailability(  # noqa: N802 - generated name
        self, request: pb.AvailabilityRequest, context: Context
    ) -> pb.AvailabilityReply:
        await self._arrive(context, "GetAvailability", "")
        if not 1 <= len(request.product_ids) <= 100:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "1..100 product ids")
        return pb.AvailabilityReply(
            products=[
                pb.ProductAvailability(
                    product_id=p.product_id,
                    found=p.found,
                    available=p.available,
                    unit_price_minor=p.unit_price_minor,
                    currency=p.currency,
                    name=p.name,
                )
                for p in self.stock.availability(list(request.product_ids))
            ]
        )

    def ReserveStream(  # noqa: N802 - generated name
        self, request_iterator: Any, context: Context
    ) -> Any:
        """Not used by the orders service (its saga reserves one order at a time)."""
        raise NotImplementedError


async def start_inventory(
    servicer: InventoryServicer, *, tls: TlsSettings, verifier: TokenVerifier
) -> tuple[aio.Server, int]:
    server = aio.server(interceptors=[TokenAuthInterceptor(verifier, "inventory:reserve")])
    pb_grpc.add_InventoryServicer_to_server(servicer, server)
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    return server, port


# -- HTTPS stand-ins ---------------------------------------------------------------------


async def _principal(verifier: TokenVerifier, request: Request) -> Principal | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        return await verifier.verify(token)
    except TokenError:
        return None


def _problem(status: int, slug: str, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem(status, slug, **extra), status_code=status, media_type="application/problem+json"
    )


def payments_app(bank: FakeBank, verifier: TokenVerifier) -> FastAPI:
    app = FastAPI()
    app.state.on_behalf_of = []
    app.state.traceparents = []

    @app.post("/api/v1/transfers")
    async def transfer(request: Request) -> Response:
        principal = await _principal(verifier, request)
        if principal is None:
            return _problem(401, "unauthenticated")
        key = request.headers.get("idempotency-key")
        if key is None:
            return _problem(400, "idempotency-key-required")
        body = await request.json()
        app.state.on_behalf_of.append(body.get("on_behalf_of"))
        app.state.traceparents.append(request.headers.get("traceparent"))
        status, answer = bank.transfer(
            caller=principal.subject, permissions=principal.permissions, key=key, body=body
        )
        if status == 0:  # the transfer may have happened; the answer is lost
            return _problem(500, "internal-error")
        headers = {"Location": f"/api/v1/transfers/{answer['id']}"} if "id" in answer else {}
        if status == 503:
            headers["Retry-After"] = "1"
        media = "application/json" if status in (201, 202) else "application/problem+json"
        return JSONResponse(answer, status_code=status, headers=headers, media_type=media)

    return app


def accounts_app(bank: FakeBank, verifier: TokenVerifier, shard: int) -> FastAPI:
    app = FastAPI()
    app.state.asked = []

    @app.get("/api/v1/accounts/{account_id}")
    async def account(account_id: str, request: Request) -> Response:
        principal = await _principal(verifier, request)
        if principal is None:
            return _problem(401, "unauthenticated")
        app.state.asked.append(account_id)
        if bank.accounts_down:
            return _problem(503, "unavailable")
        found = bank.accounts.get(account_id)
        may_read = found is not None and (
            found.owner == principal.subject or principal.can("accounts:read:any")
        )
        if found is None or shard_of(account_id) != shard or not may_read:
            return _problem(404, "account-not-found")
        return JSONResponse(
            {
                "id": found.id,
                "owner_id": found.owner,
                "name": "Everyday",
                "currency": found.currency,
                "balance_minor": found.balance,
                "available_minor": found.balance,
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        )

    return app


def auth_app(tokens: TokenMinter) -> FastAPI:
    app = FastAPI()
    app.state.issued = 0

    @app.post("/api/v1/auth/token")
    async def token(grant_type: str = Form(), client_assertion: str = Form()) -> JSONResponse:
        # The real auth service checks the assertion's signature against the certificate
        # it carries; here it is enough that the client names itself.
        claims = jwt.decode(client_assertion, options={"verify_signature": False})
        if grant_type != "client_credentials" or claims["sub"] != "orders":
            return JSONResponse({"error": "invalid_client"}, status_code=401)
        app.state.issued += 1
        minted = tokens.mint("orders", ["service:orders"], ttl_s=600)
        return JSONResponse({"access_token": minted, "expires_in": 600})

    @app.get("/.well-known/jwks.json")
    async def jwks() -> JSONResponse:
        return JSONResponse(tokens.jwks)

    return app


@contextlib.asynccontextmanager
async def serving_https(app: FastAPI, certs: CertificatePaths) -> AsyncIterator[str]:
    """Serve `app` over HTTPS with client certificates required; yields its base URL."""
    # Listening before uvicorn starts: connections wait in the backlog, no polling needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    config = uvicorn.Config(
        app,
        lifespan="off",
        log_config=None,
        access_log=False,
        ssl_certfile=str(certs.cert),
        ssl_keyfile=str(certs.key),
        ssl_ca_certs=str(certs.ca),
        ssl_cert_reqs=ssl.CERT_REQUIRED,
        timeout_graceful_shutdown=1,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        yield f"https://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task
        sock.close()
