"""Helpers for tests of services built on the kit (imported by tests only)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Generic, Protocol, Self, TypeVar, cast

import jwt
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import MetaData, create_engine, make_url
from sqlalchemy.ext.asyncio import create_async_engine

from flotilla_kit.db import Database, is_sqlite
from flotilla_kit.rbac import permissions_of
from flotilla_kit.resource_keys import DuplicateIdempotencyKey, KeyedResource
from flotilla_kit.tokens import JwksCache, Principal, TokenVerifier

__all__ = [
    "JWT_ATTACKS",
    "REVOKED_SESSION",
    "InMemoryLeasedRows",
    "InMemoryResourceKeys",
    "InMemoryUnitOfWork",
    "ResourceKeyRows",
    "TokenMinter",
    "create_tables",
    "database_with_tables",
    "principal",
    "running_server",
    "serving_keys",
]


async def create_tables(url: str, metadata: MetaData) -> None:
    """`metadata.create_all` on the database at `url` (tests that need tables without
    running a service's migrations)."""
    if is_sqlite(url):
        engine = create_engine(make_url(url).set(drivername="sqlite"))
        try:
            await asyncio.to_thread(metadata.create_all, engine)
        finally:
            engine.dispose()
        return
    async_engine = create_async_engine(url)
    try:
        async with async_engine.begin() as connection:
            await connection.run_sync(metadata.create_all)
    finally:
        await async_engine.dispose()


@contextlib.asynccontextmanager
async def database_with_tables(url: str, metadata: MetaData) -> AsyncIterator[Database]:
    """The database at `url` with `metadata`'s tables created (`create_tables`), disposed
    of after the block."""
    await create_tables(url, metadata)
    database = Database(url)
    try:
        yield database
    finally:
        await database.dispose()


def principal(subject: str, *roles: str) -> Principal:
    """Who a use case is called by, as the kit's token check would say it: `subject`
    with `roles` and their permissions."""
    return Principal(
        subject=subject,
        roles=frozenset(roles),
        token_id="t",  # noqa: S106 - a token id, not a secret
        expires_at=0,
        permissions=permissions_of(roles),
    )


class InMemoryUnitOfWork:
    """The unit of work of a service's in-memory fakes: their writes land at once and
    append to `undo` how to take them back, which runs on exit unless `commit()` was
    called; a read-only one (`write=False`) must not commit. A subclass attaches the
    fake repositories, each given `undo`."""

    def __init__(self, *, write: bool) -> None:
        self.undo: list[Callable[[], object]] = []
        self._write = write
        self._committed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if not self._committed:
            for undo in reversed(self.undo):
                undo()
        self.undo.clear()

    async def commit(self) -> None:
        assert self._write, "a read-only unit of work must not commit"
        self._committed = True


class _LeasedRow(Protocol):
    """A dataclass row driven under a lease (`flotilla_kit.recovery`)."""

    @property
    def lease_owner(self) -> str | None: ...

    @property
    def lease_until(self) -> dt.datetime | None: ...

    @property
    def next_attempt_at(self) -> dt.datetime: ...

    @property
    def is_final(self) -> bool: ...


K = TypeVar("K")
R = TypeVar("R", bound=_LeasedRow)


class InMemoryLeasedRows(Generic[K, R]):
    """The lease half of an in-memory repository (`flotilla_kit.recovery.LeasedRows`)
    with the rules of the SQL one (`flotilla_kit.leased_rows`): every write is a
    compare-and-set. `rows` maps each row's `id` to the row (frozen dataclasses); a write
    lands in it at once (no await in between: atomic, like a row update) and appends to
    `undo` how to take it back, for the fake unit of work to run unless it commits.
    `attempts` names the field that counts attempts and `expected` the one an extension
    checks is unchanged. `add` and `get` are the plain writes and reads; a subclass adds
    the service's own (writing with `_put`)."""

    def __init__(
        self,
        rows: dict[K, R],
        undo: list[Callable[[], object]],
        *,
        attempts: str,
        expected: str,
    ) -> None:
        self._lease_rows = rows
        self._undo = undo
        self._attempts = attempts
        self._expected = expected

    def _put(self, row: R) -> None:
        rows, key = self._lease_rows, self._key(row)
        before = rows.get(key)
        rows[key] = row
        if before is None:
            self._undo.append(lambda: rows.pop(key))
        else:
            self._undo.append(lambda: rows.__setitem__(key, before))

    async def add(self, row: R) -> None:
        assert self._key(row) not in self._lease_rows, "added twice"
        self._put(row)

    async def get(self, key: K) -> R | None:
        return self._lease_rows.get(key)

    async def extend_lease(
        self, item: R, *, owner: str, until: dt.datetime, next_attempt_at: dt.datetime
    ) -> R | None:
        current = self._lease_rows.get(self._key(item))
        if (
            current is None
            or current.lease_owner != owner
            or getattr(current, self._expected) != getattr(item, self._expected)
        ):
            return None
        kept = self._retried(item, next_attempt_at=next_attempt_at, lease_until=until)
        stored = replace(  # type: ignore[type-var]
            current, lease_until=until, next_attempt_at=next_attempt_at,
            **{self._attempts: getattr(kept, self._attempts)},
        )  # fmt: skip
        self._put(stored)
        return kept

    async def release_lease(self, item: R, *, owner: str, next_attempt_at: dt.datetime) -> bool:
        current = self._lease_rows.get(self._key(item))
        if current is None or current.lease_owner != owner or current.is_final:
            return False
        attempts = getattr(item, self._attempts) + 1
        released = replace(  # type: ignore[type-var]
            current, lease_owner=None, lease_until=None, next_attempt_at=next_attempt_at,
            **{self._attempts: attempts},
        )  # fmt: skip
        self._put(released)
        return True

    async def release_leases_of(self, owner: str) -> int:
        mine = [r for r in self._lease_rows.values() if r.lease_owner == owner and not r.is_final]
        for row in mine:
            self._put(replace(row, lease_owner=None, lease_until=None))  # type: ignore[type-var]
        return len(mine)

    async def due(self, *, now: dt.datetime, limit: int) -> list[K]:
        due = [
            r
            for r in self._lease_rows.values()
            if not r.is_final and r.next_attempt_at <= now and _lease_free(r, now)
        ]
        due.sort(key=lambda r: (r.next_attempt_at, self._key(r)))
        return [self._key(r) for r in due[:limit]]

    async def claim(self, key: K, *, now: dt.datetime, owner: str, until: dt.datetime) -> R | None:
        current = self._lease_rows.get(key)
        if current is None or current.is_final or not _lease_free(current, now):
            return None
        claimed: R = replace(current, lease_owner=owner, lease_until=until)  # type: ignore[type-var]
        self._put(claimed)
        return claimed

    async def count_unfinished(self) -> int:
        return sum(1 for r in self._lease_rows.values() if not r.is_final)

    @staticmethod
    def _key(row: R) -> K:
        key: K = getattr(row, "id")  # noqa: B009 - every leased row's key is its `id`
        return key

    def _retried(self, row: R, **lease: dt.datetime) -> R:
        attempts = {self._attempts: getattr(row, self._attempts) + 1}
        retried: R = replace(row, **attempts, **lease)  # type: ignore[type-var]
        return retried


def _lease_free(row: _LeasedRow, now: dt.datetime) -> bool:
    return row.lease_until is None or row.lease_until <= now


class ResourceKeyRows(Protocol):
    """Where an in-memory store keeps its Idempotency-Keys (`InMemoryResourceKeys`): the
    keys by (scope, key), and `before_remember`, run once just before the next key is stored
    (then cleared), which lets a test slip a competing request in between."""

    keys: dict[tuple[str, str], KeyedResource]
    before_remember: Callable[[], None] | None


class InMemoryResourceKeys:
    """`flotilla_kit.resource_keys.ResourceKeys` over a fake store's `keys`, with the SQL
    one's rules: a key stored twice is a `DuplicateIdempotencyKey`; a stored key appends to
    `undo` how to take it back, for the fake unit of work to run unless it commits."""

    def __init__(self, store: ResourceKeyRows, undo: list[Callable[[], object]]) -> None:
        self._store = store
        self._undo = undo

    async def find(self, scope: str, key: str) -> KeyedResource | None:
        return self._store.keys.get((scope, key))

    async def remember(
        self, scope: str, key: str, *, fingerprint: str, resource_id: uuid.UUID, at: dt.datetime
    ) -> None:
        store = self._store
        if store.before_remember is not None:
            hook, store.before_remember = store.before_remember, None
            hook()
        if (scope, key) in store.keys:
            raise DuplicateIdempotencyKey(key)
        store.keys[(scope, key)] = KeyedResource(fingerprint, resource_id)
        self._undo.append(lambda: store.keys.pop((scope, key)))


class TokenMinter:
    """Signs access tokens with a fresh Ed25519 key, and publishes that key as a JWKS.

    Tests that are not about the auth service use it to act as a given user.
    """

    issuer = "flotilla-auth"
    audience = "flotilla"

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.kid = "test-key-1"
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self._key.public_key()))
        self.jwks: dict[str, Any] = {
            "keys": [{**public, "kid": self.kid, "alg": "EdDSA", "use": "sig"}]
        }

    def mint(
        self,
        subject: str = "user-1",
        roles: list[str] | None = None,
        *,
        ttl_s: int = 300,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "nbf": now,
            "exp": now + ttl_s,
            "jti": uuid.uuid4().hex,
            "roles": roles if roles is not None else ["customer"],
            "scope": "",
        }
        payload.update(claims)
        header = {"kid": self.kid, "typ": "at+jwt", **(headers or {})}
        return jwt.encode(payload, self._key, algorithm="EdDSA", headers=header)

    def verifier(self) -> TokenVerifier:
        cache = JwksCache([])
        cache.load(self.jwks)
        return TokenVerifier(cache, issuer=self.issuer, audience=self.audience)


@contextlib.contextmanager
def serving_keys(minter: TokenMinter, *, revoked_sessions: Sequence[str] = ()) -> Iterator[str]:
    """The minter's JWKS at `<url>/jwks` and the revoked sessions at `<url>/revocations`,
    over HTTP as the auth service serves them, for a service run as its own process (its
    FLOTILLA_JWKS_URLS and FLOTILLA_REVOCATION_URLS); the base URL."""
    documents: dict[str, Any] = {
        "/jwks": minter.jwks,
        "/revocations": {"sessions": list(revoked_sessions)},
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            document = documents.get(self.path)
            body = json.dumps(document).encode()
            self.send_response(200 if document is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextlib.asynccontextmanager
async def running_server(config: uvicorn.Config, timeout_s: float = 10.0) -> AsyncIterator[None]:
    """Serve an ASGI app with uvicorn on a real socket for the duration of the block."""
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    deadline = time.monotonic() + timeout_s
    # uvicorn exposes no "started" event, only this flag.
    while not server.started:
        if task.done() or time.monotonic() > deadline:
            raise RuntimeError("test server did not start")
        await asyncio.sleep(0.01)
    try:
        yield
    finally:
        server.should_exit = True
        await task


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, object], payload: dict[str, object]) -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}."


def _claims(minter: TokenMinter, **override: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": minter.issuer, "aud": minter.audience, "sub": "alice", "iat": now,
        "exp": now + 300, "jti": "j", "roles": ["customer"],
    }  # fmt: skip
    claims.update(override)
    return claims


def _hs256_with_public_key(minter: TokenMinter) -> str:
    public = minter.jwks["keys"][0]["x"]
    header = {"alg": "HS256", "typ": "at+jwt", "kid": minter.kid}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(minter)).encode())}"
    )
    mac = hmac.new(public.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(mac)}"


def _foreign_key_same_kid(minter: TokenMinter) -> str:
    other = Ed25519PrivateKey.generate()
    return jwt.encode(
        _claims(minter), other, algorithm="EdDSA", headers={"kid": minter.kid, "typ": "at+jwt"}
    )


def _tampered(minter: TokenMinter) -> str:
    header, _, signature = minter.mint("alice").split(".")
    forged = _b64(json.dumps(_claims(minter, roles=["admin"])).encode())
    return f"{header}.{forged}.{signature}"


def _without(minter: TokenMinter, claim: str) -> str:
    token = minter.mint("alice")
    payload = jwt.decode(token, options={"verify_signature": False})
    payload.pop(claim)
    return jwt.encode(
        payload, minter._key, algorithm="EdDSA", headers={"kid": minter.kid, "typ": "at+jwt"}
    )


# An access token every verifier must refuse, by name: the RFC 8725 checklist as data.
# `REVOKED_SESSION` must be on the verifier's revocation list for the last case.
REVOKED_SESSION = "revoked-session"
JWT_ATTACKS: dict[str, Callable[[TokenMinter], str]] = {
    "alg none": lambda t: _unsigned({"alg": "none", "typ": "at+jwt", "kid": t.kid}, _claims(t)),
    "HS256 signed with the public key": _hs256_with_public_key,
    "unknown kid": lambda t: t.mint(headers={"kid": "nobody"}),
    "key not in JWKS under a known kid": _foreign_key_same_kid,
    "tampered payload": _tampered,
    "expired": lambda t: t.mint(ttl_s=-120),
    "nbf in the future": lambda t: t.mint(nbf=int(time.time()) + 3600),
    "wrong issuer": lambda t: t.mint(iss="someone-else"),
    "wrong audience": lambda t: t.mint(aud="another-api"),
    "missing exp": lambda t: _without(t, "exp"),
    "missing sub": lambda t: _without(t, "sub"),
    "missing iat": lambda t: _without(t, "iat"),
    "typ not at+jwt": lambda t: t.mint(headers={"typ": "JWT"}),
    "jku pointing elsewhere": lambda t: t.mint(headers={"jku": "https://evil.example/jwks"}),
    "embedded jwk": lambda t: t.mint(headers={"jwk": t.jwks["keys"][0]}),
    "oversized token": lambda t: t.mint(padding="x" * 5000),
    "not a JWT at all": lambda t: "hello.world",
    "roles not a list": lambda t: t.mint(roles=cast(list[str], "admin")),
    "revoked session": lambda t: t.mint(sid=REVOKED_SESSION),
}
