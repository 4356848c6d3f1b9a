"""Accounts shards running for real in the test's event loop: the HTTP API (through an
ASGI transport), the gRPC ledger API on a real port over mutual TLS, and a fake payments
coordinator (with a fake token endpoint) on a real HTTPS socket."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import socket
import ssl
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import uvicorn
from fastapi import FastAPI, Form, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy import func, select

from flotilla_accounts.adapters.tables import accounts, entries
from flotilla_accounts.bootstrap import build_app
from flotilla_accounts.settings import AccountsSettings
from flotilla_kit.db import Database, Query
from flotilla_kit.devservers.ports import free_port
from flotilla_kit.rpc import bearer, secure_channel
from flotilla_kit.settings import TlsSettings
from flotilla_kit.sharding import home_shard
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths
from flotilla_kit.tokens import TokenError
from flotilla_proto.ledger.v1 import ledger_pb2 as pb
from flotilla_proto.ledger.v1 import ledger_pb2_grpc as pb_grpc

Pki = Callable[[str], CertificatePaths]
TIMEOUT_S = 10.0

_ENTRY_TOTAL = Query(select(func.coalesce(func.sum(entries.c.amount_minor), 0).label("total")))
_BALANCES = Query(select(accounts.c.id, accounts.c.balance_minor, accounts.c.held_minor))
_ENTRY_TOTALS = Query(
    select(entries.c.account_id, func.sum(entries.c.amount_minor).label("total")).group_by(
        entries.c.account_id
    )
)


def tls_of(paths: CertificatePaths) -> TlsSettings:
    return TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)


def owner_on(shard: int, shards: int, prefix: str = "user") -> str:
    """A user whose accounts live on `shard` among `shards`."""
    return next(
        f"{prefix}-{i}" for i in range(10_000) if home_shard(f"{prefix}-{i}", shards) == shard
    )


@dataclass
class Shard:
    number: int
    app: FastAPI
    http: httpx.AsyncClient
    ledger: pb_grpc.LedgerAsyncStub
    service_auth: tuple[tuple[str, str], ...]
    tokens: TokenMinter

    @property
    def database(self) -> Database:
        database: Database = self.app.state.database
        return database

    def as_user(self, subject: str, *roles: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens.mint(subject, list(roles) or ['customer'])}"}

    async def open(self, owner: str, *, currency: str = "EUR", balance: int = 0) -> str:
        """An account of `owner` (opened and funded by an admin); its id."""
        admin = self.as_user("ada", "admin")
        opened = await self.http.post(
            "/api/v1/accounts",
            params={"owner_id": owner},
            json={"name": f"acct-{owner}", "currency": currency},
            headers=admin,
        )
        assert opened.status_code == 201, opened.text
        account_id: str = opened.json()["id"]
        if balance:
            deposited = await self.http.post(
                f"/api/v1/accounts/{account_id}/deposits",
                json={"amount_minor": balance, "currency": currency},
                headers=admin,
            )
            assert deposited.status_code == 201, deposited.text
        return account_id

    async def account(self, account_id: str) -> dict[str, Any]:
        response = await self.http.get(
            f"/api/v1/accounts/{account_id}", headers=self.as_user("sam", "support")
        )
        assert response.status_code == 200, response.text
        found: dict[str, Any] = response.json()
        return found

    async def prepare(
        self,
        transfer_id: str,
        account_id: str,
        amount: int,
        direction: pb.Direction.ValueType = pb.DEBIT,
        *,
        branch_id: str | None = None,
        currency: str = "EUR",
        owner: str = "",
    ) -> pb.PrepareResponse:
        return await self.ledger.Prepare(
            pb.PrepareRequest(
                transfer_id=transfer_id,
                branch_id=branch_id or ("debit" if direction == pb.DEBIT else "credit"),
                account_id=account_id,
                direction=direction,
                amount_minor=amount,
                currency=currency,
                required_owner=owner,
                reference=f"transfer {transfer_id}",
            ),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )

    async def commit(self, transfer_id: str, branch_id: str) -> pb.BranchState:
        return await self.ledger.Commit(
            pb.BranchRef(transfer_id=transfer_id, branch_id=branch_id),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )

    async def abort(self, transfer_id: str, branch_id: str) -> pb.BranchState:
        return await self.ledger.Abort(
            pb.BranchRef(transfer_id=transfer_id, branch_id=branch_id),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )

    async def state(self, transfer_id: str, branch_id: str) -> pb.BranchStatus.ValueType:
        answer = await self.ledger.GetBranch(
            pb.BranchRef(transfer_id=transfer_id, branch_id=branch_id),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )
        return answer.status

    async def transfer(
        self, transfer_id: str, source: str, target: str, amount: int, *, owner: str = ""
    ) -> pb.LocalTransferResponse:
        return await self.ledger.Transfer(
            pb.LocalTransferRequest(
                transfer_id=transfer_id,
                from_account=source,
                to_account=target,
                amount_minor=amount,
                currency="EUR",
                required_owner=owner,
                reference="local",
            ),
            metadata=self.service_auth,
            timeout=TIMEOUT_S,
        )

    async def ledger_totals(self) -> tuple[int, dict[str, tuple[int, int]]]:
        """(sum of all entries, {account: (balance, sum of its entries)})."""
        async with self.database.transaction(write=False) as tx:
            total = await tx.scalar(_ENTRY_TOTAL)
            per_account = await tx.all(_BALANCES)
            sums = {row.account_id: row.total for row in await tx.all(_ENTRY_TOTALS)}
        return int(total), {
            row.id: (int(row.balance_minor), int(sums.get(row.id, 0))) for row in per_account
        }


@contextlib.asynccontextmanager
async def running_shard(
    database_url: str,
    *,
    tokens: TokenMinter,
    dev_pki: Pki,
    shard: int = 0,
    shards: int = 1,
    clock: Callable[[], dt.datetime] | None = None,
    **overrides: Any,
) -> AsyncIterator[Shard]:
    settings = AccountsSettings(
        database_url=database_url,
        profile="test",
        shard=shard,
        shards=shards,
        grpc_port=free_port(),
        tls=tls_of(dev_pki("accounts")),
        **overrides,
    )
    extra = {"clock": clock} if clock is not None else {}
    app = build_app(settings, verifier=tokens.verifier(), **extra)
    async with app.router.lifespan_context(app):
        channel = secure_channel(f"127.0.0.1:{app.state.grpc_port}", tls_of(dev_pki("payments")))
        transport = httpx.ASGITransport(app=app)
        try:
            async with httpx.AsyncClient(transport=transport, base_url="http://accounts") as http:
                yield Shard(
                    number=shard,
                    app=app,
                    http=http,
                    ledger=pb_grpc.LedgerStub(channel),
                    service_auth=bearer(tokens.mint("service:payments", ["service:payments"])),
                    tokens=tokens,
                )
        finally:
            await channel.close()


@dataclass
class FakePayments:
    """The coordinator's outcome endpoint and the auth service's token endpoint, over
    HTTPS with client certificates required."""

    tokens: TokenMinter
    outcomes: dict[str, str] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)
    token_requests: int = 0
    url: str = ""

    def app(self) -> FastAPI:
        app = FastAPI()
        verifier = self.tokens.verifier()

        @app.post("/api/v1/auth/token")
        async def token(grant_type: str = Form(), client_assertion: str = Form()) -> JSONResponse:
            self.token_requests += 1
            claims = jwt.decode(client_assertion, options={"verify_signature": False})
            if grant_type != "client_credentials" or claims["sub"] != "accounts":
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            minted = self.tokens.mint("accounts", ["service:accounts"])
            return JSONResponse({"access_token": minted, "expires_in": 300})

        @app.get("/internal/v1/transfers/{transfer_id}/outcome")
        async def outcome(transfer_id: str, request: Request) -> Response:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            try:
                principal = await verifier.verify(token)
            except TokenError:
                return Response(status_code=401)
            if scheme.lower() != "bearer" or not principal.can("payments:outcome:read"):
                return Response(status_code=403)
            self.asked.append(transfer_id)
            if transfer_id not in self.outcomes:
                return Response(status_code=404)
            return JSONResponse({"outcome": self.outcomes[transfer_id]})

        return app


@contextlib.asynccontextmanager
async def running_payments(tokens: TokenMinter, dev_pki: Pki) -> AsyncIterator[FakePayments]:
    payments = FakePayments(tokens)
    certs = dev_pki("payments")
    # Listening before uvicorn starts: connections wait in the backlog, no polling needed.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    payments.url = f"https://127.0.0.1:{sock.getsockname()[1]}"
    config = uvicorn.Config(
        payments.app(),
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
        yield payments
    finally:
        server.should_exit = True
        await task
        sock.close()
