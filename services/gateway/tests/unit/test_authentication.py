from __future__ import annotations

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


async def test_verified_tokens_are_remembered_until_they_expire(tokens: TokenMinter) -> None:
    authenticator = Authenticator(tokens.verifier())
    token = tokens.mint("user-3")
    assert authenticator.cached(token) is None
    principal = await authenticator.verify(token)
    assert principal is not None
    assert principal.subject == "user-3"
    assert authenticator.cached(token) is principal

    expired = tokens.mint("user-4", ttl_s=-10)  # within the verifier's clock skew
    assert await authenticator.verify(expired) is not None
    assert authenticator.cached(expired) is None  # the synchronous view is strict


async def test_unacceptable_tokens_are_not_remembered(tokens: TokenMinter) -> None:
    authenticator = Authenticator(tokens.verifier())
    other = TokenMinter()  # same kid, different key: a forged signature
    forged = other.mint("admin")
    assert await authenticator.verify(forged) is None
    assert authenticator.cached(forged) is None
    assert await authenticator.verify("not-a-jwt") is None


async def test_a_new_verifier_forgets_what_the_old_one_accepted(tokens: TokenMinter) -> None:
    authenticator = Authenticator(tokens.verifier())
    token = tokens.mint()
    await authenticator.verify(token)
    authenticator.verifier = TokenMinter().verifier()
    assert authenticator.cached(token) is None


async def test_the_cache_is_bounded(tokens: TokenMinter) -> None:
    authenticator = Authenticator(tokens.verifier(), max_cached=3)
    minted = [tokens.mint(f"user-{i}") for i in range(5)]
    for token in minted:
        await authenticator.verify(token)
    remembered = [t for t in minted if authenticator.cached(t) is not None]
    assert remembered == minted[-3:]
