"""Sessions over SQLAlchemy Core: each statement declared once, run with bound parameters.

The id a cookie carries never reaches the database: rows are keyed by its SHA-256, and
the tokens are sealed (AES-256-GCM) with a key derived from the id under another label,
so neither the key nor the tokens can be had from the table.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import String, bindparam, delete, insert, or_, select, update

from flotilla_kit.db import Query, Row, Transaction
from flotilla_web.adapters.tables import sessions
from flotilla_web.domain import Basket, BasketLine, Checkout, Session, Tokens

__all__ = ["SqlSessions", "lookup_key"]

_c = sessions.c
_ID = _c.id_hash == bindparam("id_hash", type_=String())

_ADD = Query(insert(sessions).values({c.name: bindparam(c.name) for c in sessions.c}))
_GET = Query(select(sessions).where(_ID))
_GET_FOR_UPDATE = Query(select(sessions).where(_ID).with_for_update())
_DELETE = Query(delete(sessions).where(_ID))
_TOUCH = Query(update(sessions).where(_ID).values(last_seen_at=bindparam("now")))
_SET_BASKET = Query(update(sessions).where(_ID).values(basket=bindparam("basket")))
_CLAIM = Query(
    update(sessions)
    .where(
        _ID,
        _c.refresh_token_hash == bindparam("refresh_token_hash"),
        or_(_c.refresh_claimed_until.is_(None), _c.refresh_claimed_until <= bindparam("now")),
    )
    .values(refresh_claimed_until=bindparam("until"))
)
_SET_TOKENS = Query(
    update(sessions)
    .where(_ID)
    .values(
        sealed_tokens=bindparam("sealed_tokens"),
        access_expires_at=bindparam("access_expires_at"),
        refresh_token_hash=bindparam("refresh_token_hash"),
        refresh_claimed_until=None,
        roles=bindparam("roles"),
    )
)
_DELETE_OVER = Query(
    delete(sessions).where(
        or_(_c.expires_at <= bindparam("now"), _c.last_seen_at <= bindparam("idle_since"))
    )
)


def lookup_key(session_id: str) -> str:
    """The row's key: the SHA-256 of the cookie's id (hex)."""
    return hashlib.sha256(session_id.encode()).hexdigest()


def _sealing_key(session_id: str) -> bytes:
    return hashlib.sha256(b"flotilla-web/session-seal\x00" + session_id.encode()).digest()


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _seal(session_id: str, tokens: Tokens) -> str:
    nonce = os.urandom(12)
    plain = json.dumps({"a": tokens.access_token, "r": tokens.refresh_token}).encode()
    sealed = AESGCM(_sealing_key(session_id)).encrypt(nonce, plain, lookup_key(session_id).encode())
    return base64.b64encode(nonce + sealed).decode()


def _unseal(session_id: str, sealed: str, expires_at: dt.datetime) -> Tokens | None:
    raw = base64.b64decode(sealed)
    try:
        plain = AESGCM(_sealing_key(session_id)).decrypt(
            raw[:12], raw[12:], lookup_key(session_id).encode()
        )
    except InvalidTag:
        return None  # not sealed for this id: the row was tampered with
    found = json.loads(plain)
    return Tokens(str(found["a"]), str(found["r"]), expires_at)


def _basket_json(basket: Basket) -> str:
    document: dict[str, Any] = {
        "lines": [[line.product_id, line.quantity] for line in basket.lines]
    }
    if basket.checkout is not None:
        document["checkout"] = [basket.checkout.key, basket.checkout.order_id]
    return json.dumps(document, separators=(",", ":"))


def _basket(text: str) -> Basket:
    document = json.loads(text)
    checkout = document.get("checkout")
    return Basket(
        lines=tuple(BasketLine(str(p), int(q)) for p, q in document.get("lines", ())),
        checkout=Checkout(str(checkout[0]), str(checkout[1])) if checkout else None,
    )


def _session(session_id: str, row: Row) -> Session | None:
    tokens = _unseal(session_id, row.sealed_tokens, row.access_expires_at)
    if tokens is None:
        return None
    return Session(
        user_id=row.user_id,
        username=row.username,
        roles=frozenset(json.loads(row.roles)),
        tokens=tokens,
        csrf_token=row.csrf_token,
        basket=_basket(row.basket),
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_seen_at=row.last_seen_at,
    )


def _roles(roles: frozenset[str]) -> str:
    return json.dumps(sorted(roles))


class SqlSessions:
    def __init__(self, transaction: Transaction) -> None:
        self._tx = transaction

    async def add(self, session_id: str, session: Session) -> None:
        await self._tx.execute(
            _ADD,
            id_hash=lookup_key(session_id),
            user_id=session.user_id,
            username=session.username,
            roles=_roles(session.roles),
            sealed_tokens=_seal(session_id, session.tokens),
            access_expires_at=session.tokens.access_expires_at,
            refresh_token_hash=_digest(session.tokens.refresh_token),
            refresh_claimed_until=None,
            csrf_token=session.csrf_token,
            basket=_basket_json(session.basket),
            created_at=session.created_at,
            expires_at=session.expires_at,
            last_seen_at=session.last_seen_at,
        )

    async def get(self, session_id: str, *, for_update: bool = False) -> Session | None:
        query = _GET_FOR_UPDATE if for_update else _GET
        row = await self._tx.first(query, id_hash=lookup_key(session_id))
        return None if row is None else _session(session_id, row)

    async def delete(self, session_id: str) -> bool:
        return await self._tx.execute(_DELETE, id_hash=lookup_key(session_id)) > 0

    async def touch(self, session_id: str, now: dt.datetime) -> None:
        await self._tx.execute(_TOUCH, id_hash=lookup_key(session_id), now=now)

    async def set_basket(self, session_id: str, basket: Basket) -> None:
        await self._tx.execute(
            _SET_BASKET, id_hash=lookup_key(session_id), basket=_basket_json(basket)
        )

    async def claim_refresh(
        self, session_id: str, *, refresh_token: str, now: dt.datetime, until: dt.datetime
    ) -> bool:
        claimed = await self._tx.execute(
            _CLAIM,
            id_hash=lookup_key(session_id),
            refresh_token_hash=_digest(refresh_token),
            now=now,
            until=until,
        )
        return claimed == 1

    async def set_tokens(self, session_id: str, tokens: Tokens, roles: frozenset[str]) -> None:
        await self._tx.execute(
            _SET_TOKENS,
            id_hash=lookup_key(session_id),
            sealed_tokens=_seal(session_id, tokens),
            access_expires_at=tokens.access_expires_at,
            refresh_token_hash=_digest(tokens.refresh_token),
            roles=_roles(roles),
        )

    async def delete_over(self, *, now: dt.datetime, idle_since: dt.datetime) -> int:
        return await self._tx.execute(_DELETE_OVER, now=now, idle_since=idle_since)
