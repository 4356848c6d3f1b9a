"""A stand-in for the gateway and the services behind it: a small real HTTPS server
(FastAPI under uvicorn, certificate of the tests' dev CA) answering the few API calls
the pages make, the way the services' READMEs document them:

- auth: the password and refresh grants (refresh tokens single use, rotated; a spent one
  presented again revokes the whole session, as the real auth does) and logout;
- every other call needs a bearer token of a live session (401 otherwise);
- accounts (each user's own; someone else's is a 404), the statement, transfers (with
  Idempotency-Key replay), products, orders (with Idempotency-Key replay), invoices and
  their PDF.

Every call is recorded (`calls`), with the token it carried, so a test can say that a
refused form reached no API.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt
import uvicorn
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse, Response

from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths

PDF = b"%PDF-1.4\n% a stand-in document\n" + b"0" * 20_000 + b"\n%%EOF\n"


@dataclass
class Call:
    method: str
    path: str
    token: str | None
    idempotency_key: str | None = None
    forwarded_for: str | None = None


@dataclass
class User:
    id: str
    password: str
    roles: list[str]


@dataclass
class Account:
    id: str
    owner: str
    name: str
    currency: str
    balance_minor: int
    entries: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class World:
    """What the stand-in services hold; tests read and change it."""

    minter: TokenMinter
    # The tests' clock: tokens expire `access_ttl_s` after its now (which may run ahead of
    # the real time; `iat` and `nbf` stay real, so a token is never "not yet valid").
    clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.UTC)
    access_ttl_s: int = 300
    users: dict[str, User] = field(default_factory=dict)
    accounts: dict[str, Account] = field(default_factory=dict)
    products: dict[str, dict[str, Any]] = field(default_factory=dict)
    orders: dict[str, dict[str, Any]] = field(default_factory=dict)
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: list[Call] = field(default_factory=list)
    # refresh token -> (user name, session id); spent ones are kept to spot a reuse
    refresh_tokens: dict[str, tuple[str, str]] = field(default_factory=dict)
    spent: set[str] = field(default_factory=set)
    revoked_sessions: set[str] = field(default_factory=set)
    issued_tokens: list[str] = field(default_factory=list)
    transfers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    order_keys: dict[tuple[str, str], str] = field(default_factory=dict)
    # When set, a refresh grant waits for it (a test holds a refresh half-way).
    refresh_gate: asyncio.Event | None = None
    # Set when a refresh grant arrives (before it waits for `refresh_gate`).
    refreshing: asyncio.Event = field(default_factory=asyncio.Event)
    # The status the next transfers get instead of being applied (e.g. 202, 503).
    transfer_answer: int | None = None

    def calls_to(self, method: str, path: str) -> list[Call]:
        return [c for c in self.calls if c.method == method and c.path == path]

    def api_calls(self) -> list[Call]:
        return [c for c in self.calls if not c.path.startswith("/api/v1/auth/")]

    def grant(self, username: str, session_id: str | None = None) -> dict[str, Any]:
        user = self.users[username]
        session_id = session_id or uuid.uuid4().hex
        expires = int(self.clock().timestamp()) + self.access_ttl_s
        access = self.minter.mint(user.id, user.roles, exp=expires, sid=session_id)
        refresh = f"rt-{uuid.uuid4().hex}"
        self.refresh_tokens[refresh] = (username, session_id)
        self.issued_tokens += [access, refresh]
        return {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.access_ttl_s,
            "refresh_token": refresh,
            "scope": "",
        }

    def open(self, owner: str, name: str, balance_minor: int, currency: str = "EUR") -> str:
        account_id = f"acc_0_{uuid.uuid4().hex}"
        self.accounts[account_id] = Account(account_id, owner, name, currency, balance_minor)
        return account_id


def _problem(status: int, slug: str, detail: str, **extra: Any) -> JSONResponse:
    body = {
        "type": f"https://flotilla.dev/problems/{slug}",
        "title": slug.replace("-", " ").capitalize(),
        "status": status,
        "detail": detail,
        **extra,
    }
    return JSONResponse(body, status_code=status, media_type="application/problem+json")


def _account_json(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "owner_id": account.owner,
        "name": account.name,
        "currency": account.currency,
        "balance_minor": account.balance_minor,
        "available_minor": account.balance_minor,
        "created_at": "2026-12-01T12:00:00+00:00",
    }


def gateway_app(world: World, extra: Sequence[APIRouter] = ()) -> FastAPI:
    """The stand-in; `extra`: more routes (behind the same token check)."""
    app = FastAPI()
    for router in extra:
        app.include_router(router)
    verifier = world.minter.verifier()

    @app.middleware("http")
    async def record(request: Request, call_next: Any) -> Response:
        authorization = request.headers.get("authorization", "")
        token = authorization.removeprefix("Bearer ") if authorization else None
        world.calls.append(
            Call(
                request.method,
                request.url.path,
                token,
                request.headers.get("idempotency-key"),
                request.headers.get("x-forwarded-for"),
            )
        )
        if not request.url.path.startswith("/api/v1/auth/"):
            try:
                principal = await verifier.verify(token or "")
            except Exception:
                return _problem(401, "unauthenticated", "The access token is invalid or expired.")
            if principal.session_id in world.revoked_sessions:
                return _problem(401, "unauthenticated", "The session was revoked.")
            request.state.user = principal.subject
        response: Response = await call_next(request)
        return response

    def user_of(request: Request) -> str:
        return str(request.state.user)

    @app.post("/api/v1/auth/token")
    async def token(request: Request) -> Response:
        form = await request.form()
        grant_type = form.get("grant_type")
        if grant_type == "password":
            user = world.users.get(str(form.get("username")))
            if user is None or user.password != form.get("password"):
                return _problem(400, "invalid-grant", "Bad credentials.", error="invalid_grant")
            return JSONResponse(world.grant(str(form.get("username"))))
        if grant_type == "refresh_token":
            world.refreshing.set()
            if world.refresh_gate is not None:
                await world.refresh_gate.wait()
            presented = str(form.get("refresh_token"))
            found = world.refresh_tokens.get(presented)
            if found is None:
                return _problem(400, "invalid-grant", "Unknown token.", error="invalid_grant")
            username, session_id = found
            if presented in world.spent or session_id in world.revoked_sessions:
                world.revoked_sessions.add(session_id)  # reuse: the whole session dies
                return _problem(400, "invalid-grant", "Token reused.", error="invalid_grant")
            world.spent.add(presented)
            return JSONResponse(world.grant(username, session_id))
        return _problem(400, "unsupported-grant-type", "No.", error="unsupported_grant_type")

    @app.post("/api/v1/auth/logout")
    async def logout(request: Request) -> Response:
        form = await request.form()
        found = world.refresh_tokens.get(str(form.get("refresh_token")))
        if found is not None:
            world.revoked_sessions.add(found[1])
        return Response(status_code=204)

    @app.get("/api/v1/accounts")
    async def accounts(request: Request) -> Response:
        owner = user_of(request)
        mine = [_account_json(a) for a in world.accounts.values() if a.owner == owner]
        return JSONResponse({"items": mine})

    def own_account(request: Request, account_id: str) -> Account | None:
        found = world.accounts.get(account_id)
        return found if found is not None and found.owner == user_of(request) else None

    @app.get("/api/v1/accounts/{account_id}")
    async def account(request: Request, account_id: str) -> Response:
        found = own_account(request, account_id)
        if found is None:
            return _problem(404, "account-not-found", "No such account.")
        return JSONResponse(_account_json(found))

    @app.get("/api/v1/accounts/{account_id}/entries")
    async def entries(request: Request, account_id: str) -> Response:
        found = own_account(request, account_id)
        if found is None:
            return _problem(404, "account-not-found", "No such account.")
        return JSONResponse({"items": list(reversed(found.entries)), "next": None})

    @app.post("/api/v1/transfers")
    async def transfer(request: Request) -> Response:  # noqa: PLR0911 - one answer per case
        key = request.headers.get("idempotency-key")
        if not key:
            return _problem(400, "idempotency-key-required", "Send an Idempotency-Key.")
        caller = user_of(request)
        replay = world.transfers.get((caller, key))
        if replay is not None:
            return JSONResponse(replay[1], status_code=replay[0])
        body = await request.json()
        source = own_account(request, body["from_account"])
        target = world.accounts.get(body["to_account"])
        if source is None or target is None:
            return _problem(404, "account-not-found", "No such account.")
        amount = body["amount_minor"]
        transfer_id = f"trf_{uuid.uuid4().hex}"
        state = {
            "id": transfer_id,
            "from_account": source.id,
            "to_account": target.id,
            "amount_minor": amount,
            "currency": body["currency"],
            "state": "committed",
        }
        if world.transfer_answer == 503:
            return _problem(503, "transfer-aborted", "A shard did not answer.")
        if source.balance_minor < amount:
            return _problem(422, "insufficient-funds", "The account lacks the funds.")
        if world.transfer_answer == 202:
            state["state"] = "committing"
            world.transfers[(caller, key)] = (202, state)
            return JSONResponse(state, status_code=202)
        source.balance_minor -= amount
        target.balance_minor += amount
        source.entries.append(
            {
                "id": len(source.entries) + 1,
                "posting_id": transfer_id,
                "kind": "transfer",
                "amount_minor": -amount,
                "currency": source.currency,
                "reference": "",
                "created_at": dt.datetime.now(dt.UTC).isoformat(),
            }
        )
        world.transfers[(caller, key)] = (201, state)
        return JSONResponse(state, status_code=201)

    @app.get("/api/v1/products")
    async def products() -> Response:
        return JSONResponse({"items": list(world.products.values()), "next_after": None})

    @app.get("/api/v1/products/{product_id}")
    async def product(product_id: str) -> Response:
        found = world.products.get(product_id)
        if found is None:
            return _problem(404, "product-not-found", "No such product.")
        return JSONResponse(found)

    @app.post("/api/v1/orders")
    async def place_order(request: Request) -> Response:
        key = request.headers.get("idempotency-key")
        if not key:
            return _problem(400, "idempotency-key-required", "Send an Idempotency-Key.")
        caller = user_of(request)
        known = world.order_keys.get((caller, key))
        if known is not None:
            return JSONResponse(world.orders[known], status_code=202)
        body = await request.json()
        if own_account(request, body["payment_account"]) is None:
            return _problem(422, "payment-account-invalid", "Not an account of yours.")
        order_id = str(uuid.uuid4())
        world.orders[order_id] = {
            "id": order_id,
            "customer_id": caller,
            "state": "PENDING",
            "reason": None,
            "lines": [{**line, "unit_price_minor": None} for line in body["lines"]],
            "total_minor": None,
            "currency": "EUR",
            "payment_account": body["payment_account"],
            "created_at": dt.datetime.now(dt.UTC).isoformat(),
        }
        world.order_keys[(caller, key)] = order_id
        return JSONResponse(world.orders[order_id], status_code=202)

    @app.get("/api/v1/orders")
    async def order_list(request: Request) -> Response:
        caller = user_of(request)
        mine = [o for o in world.orders.values() if o["customer_id"] == caller]
        return JSONResponse({"items": mine, "next_after": None})

    @app.get("/api/v1/orders/{order_id}")
    async def order(request: Request, order_id: str) -> Response:
        found = world.orders.get(order_id)
        if found is None or found["customer_id"] != user_of(request):
            return _problem(404, "order-not-found", "No such order.")
        return JSONResponse(found)

    @app.get("/api/v1/invoices")
    async def invoices(request: Request) -> Response:
        caller = user_of(request)
        mine = [i for i in world.invoices.values() if i["customer_id"] == caller]
        return JSONResponse({"items": mine, "next_after": None})

    @app.get("/api/v1/invoices/{invoice_id}")
    async def invoice(request: Request, invoice_id: str) -> Response:
        found = world.invoices.get(invoice_id)
        if found is None or found["customer_id"] != user_of(request):
            return _problem(404, "invoice-not-found", "No such invoice.")
        if request.headers.get("accept") == "application/pdf":
            return Response(
                PDF,
                media_type="application/pdf",
                headers={"Content-Disposition": f'inline; filename="{found["number"]}.pdf"'},
            )
        return JSONResponse(found)

    return app


def access_claims(token: str) -> dict[str, Any]:
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    return claims


@contextlib.asynccontextmanager
async def serving_https(app: FastAPI, certs: CertificatePaths) -> AsyncIterator[str]:
    """Serve `app` over HTTPS (no client certificate asked: the gateway is public);
    yields its base URL."""
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
