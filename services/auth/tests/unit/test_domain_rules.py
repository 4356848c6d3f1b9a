"""Pure rules: usernames, scopes, refresh-token states."""

from __future__ import annotations

from datetime import timedelta

import pytest

from flotilla_auth.domain.refresh_tokens import (
    RefreshToken,
    RefreshTokenState,
    hash_refresh_token,
    new_refresh_token,
)
from flotilla_auth.domain.scopes import format_scope, parse_scope
from flotilla_auth.domain.usernames import is_valid_username, normalise_username

from .fakes import T0


@pytest.mark.parametrize(
    ("raw", "stored"),
    [
        ("alice", "alice"),
        ("  Alice\t", "alice"),
        ("ALICE", "alice"),
        ("\uff21lice", "alice"),  # full-width A: reads the same, so it is the same name
        ("Zoë", "zoë"),
    ],
)
def test_usernames_are_stored_in_one_spelling(raw: str, stored: str) -> None:
    assert normalise_username(raw) == stored


@pytest.mark.parametrize(
    ("name", "valid"),
    [("alice", True), ("a" * 64, True), ("", False), ("a" * 65, False), ("al ice", False)],
)
def test_username_validity(name: str, valid: bool) -> None:
    assert is_valid_username(name) is valid


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        (None, ()),
        ("", ()),
        ("a b", ("a", "b")),
        ("b  a b", ("b", "a")),
        ("accounts:read", ("accounts:read",)),
        ('a "b"', None),
        ("a\\b", None),
        ("caf\u00e9", None),
        ("x" * 129, None),
        (" ".join(f"s{i}" for i in range(65)), None),
    ],
)
def test_scope_parsing(raw: str | None, parsed: tuple[str, ...] | None) -> None:
    assert parse_scope(raw) == parsed


def test_scope_formatting() -> None:
    assert format_scope(("a", "b")) == "a b"
    assert format_scope(()) == ""


def test_refresh_tokens_are_random_and_stored_as_sha256() -> None:
    token, token_hash = new_refresh_token()
    other, _ = new_refresh_token()
    assert token != other
    assert len(token) >= 43  # 32 random bytes, base64url
    assert token_hash == hash_refresh_token(token)
    assert len(token_hash) == 64
    assert token not in token_hash


def test_refresh_token_states() -> None:
    _, token = RefreshToken.issue(user_id="u", scope=(), now=T0, ttl_s=60)
    just_before = T0 + timedelta(seconds=59)
    at_expiry = T0 + timedelta(seconds=60)

    assert token.state(just_before) is RefreshTokenState.USABLE
    assert token.state(at_expiry) is RefreshTokenState.EXPIRED
    assert token.spent(T0).state(T0) is RefreshTokenState.SPENT
    # A spent token is reuse even once expired: its live successor may be in a thief's hands.
    assert token.spent(T0).state(at_expiry) is RefreshTokenState.SPENT
    assert token.spent(T0).revoked(T0).state(T0) is RefreshTokenState.REVOKED
    assert token.revoked(T0).revoked(at_expiry).revoked_at == T0


def test_successor_stays_in_the_family() -> None:
    _, token = RefreshToken.issue(user_id="u", scope=("a",), now=T0, ttl_s=60)
    later = T0 + timedelta(seconds=30)
    _, successor = token.successor(now=later, ttl_s=60)
    assert successor.family_id == token.family_id
    assert successor.id != token.id
    assert successor.scope == ("a",)
    assert successor.expires_at == later + timedelta(seconds=60)
