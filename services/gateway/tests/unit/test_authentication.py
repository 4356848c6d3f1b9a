from __future__ import annotations

import asyncio
import socket

import pytest

from flotilla_gateway.authentication import Authenticator, bearer_token
from flotilla_kit.testing import TokenMinter


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (b"Bearer abc.def.ghi", "abc.def.ghi"),
        (b"bearer   abc ", "abc"),
        (b"BEARER abc", "abc"),
        (None, None),
        (b"Basic abc", None),
        (b"Bearer", None),
        (b"Bearer ", None),
        (b"Bearerabc", None),
        (b"Bearer \xc3\xa9t\xc3\xa9", None),
    ],
)
def test_bearer_tokens(header: bytes | None, token: str | None) -> None:
    assert bearer_token(header) == token


def closed_port_url() -> str:
    """A URL on which nothing listens (the port was just released): connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/internal/v1/revocations"


def authenticator(
    tokens: TokenMinter, *, revocation_urls: list[str] | None = None
) -> Authenticator:
    built = Authenticator(
        issuer=tokens.issuer,
        audience=tokens.audience,
        jwks_urls=[],
        revocation_urls=revocation_urls or [],
        ssl_context=None,
        revocation_refresh_s=60,
        first_fetch_wait_s=0.2,
    )
    built.verifier.jwks.load(tokens.jwks)
    return built


async def test_a_verified_token_is_then_known_without_awaiting(tokens: TokenMinter) -> None:
    checks = authenticator(tokens)
    token = tokens.mint("user-3", ["support"], sid="s-1")
    assert checks.verifier.cached(token) is None
    principal = await checks.verify(token)
    assert principal is not None
    assert principal.subject == "user-3"
    assert principal.session_id == "s-1"
    assert "users:read" in principal.permissions
    assert checks.verifier.cached(token) is principal


async def test_unacceptable_tokens_are_refused_and_not_remembered(tokens: TokenMinter) -> None:
    checks = authenticator(tokens)
    forged = TokenMinter().mint("admin", ["admin"])  # same kid, another key
    assert await checks.verify(forged) is None
    assert checks.verifier.cached(forged) is None
    assert await checks.verify("not-a-jwt") is None


async def test_a_revoked_session_is_refused_even_once_known(tokens: TokenMinter) -> None:
    checks = authenticator(tokens)
    token = tokens.mint("user-5", sid="s-5")
    assert await checks.verify(token) is not None
    checks.verifier.revocations.load(["s-5"])
    assert checks.verifier.cached(token) is None  # the hot path sees it at once
    assert await checks.verify(token) is None
    other = tokens.mint("user-6", sid="s-6")
    assert await checks.verify(other) is not None


async def test_keys_stay_when_no_source_is_left(tokens: TokenMinter) -> None:
    checks = authenticator(tokens)
    keys = checks.verifier.jwks
    checks.use_jwks([])
    assert checks.verifier.jwks is keys
    checks.use_jwks(["http://127.0.0.1:1/.well-known/jwks.json"])
    assert checks.verifier.jwks is not keys


async def test_a_list_that_answered_stays_until_the_new_sources_answer(
    tokens: TokenMinter,
) -> None:
    checks = authenticator(tokens)
    first = checks.verifier.revocations
    first.load(["s-old"])
    token = tokens.mint(sid="s-old")

    checks.use_revocations([closed_port_url()])
    await checks.refresh()  # the new source refuses the connection
    assert checks.verifier.revocations is first
    assert await checks.verify(token) is None

    checks.use_revocations([])  # every auth instance gone
    await checks.refresh()
    assert checks.verifier.revocations is first
    assert await checks.verify(token) is None


async def test_a_list_that_never_answered_is_replaced_at_once(tokens: TokenMinter) -> None:
    checks = authenticator(tokens, revocation_urls=[closed_port_url()])
    first = checks.verifier.revocations
    checks.use_revocations([closed_port_url()])
    assert checks.verifier.revocations is not first


async def test_the_first_token_waits_for_the_first_revocation_fetch(tokens: TokenMinter) -> None:
    checks = authenticator(tokens, revocation_urls=[closed_port_url()])
    token = tokens.mint(sid="s-1")
    verifying = asyncio.ensure_future(checks.verify(token))
    for _ in range(5):
        await asyncio.sleep(0)  # let it run as far as it can
    assert not verifying.done()
    # What the first fetch brings applies to the token that arrived before it.
    checks.verifier.revocations.load(["s-1"])
    await checks.refresh()  # the source refuses the connection: asked, all the same
    assert await verifying is None
    assert await checks.verify(tokens.mint(sid="s-2")) is not None


async def test_without_a_refresh_the_wait_is_bounded(tokens: TokenMinter) -> None:
    checks = authenticator(tokens, revocation_urls=[closed_port_url()])
    assert await checks.verify(tokens.mint()) is not None  # after `first_fetch_wait_s`
