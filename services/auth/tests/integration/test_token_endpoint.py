"""POST /api/v1/auth/token: the password grant, and every way to get it wrong."""

from __future__ import annotations

from urllib.parse import urlencode

import httpx
import pytest
from fastapi import FastAPI

from flotilla_auth.settings import AuthSettings
from flotilla_kit.tokens import JwksCache, TokenVerifier

from .helpers import (
    PASSWORD,
    TOKEN_PATH,
    add_user,
    changed_tables,
    password_grant,
    table_rows,
    without_request_id,
)


async def test_password_grant_returns_tokens_the_kit_verifier_accepts(
    app: FastAPI, client: httpx.AsyncClient, settings: AuthSettings
) -> None:
    user = await add_user(app, "alice", roles=("customer", "support"))

    response = await password_grant(client, username="  ALICE ", scope="accounts:read")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["pragma"] == "no-cache"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "refresh_token", "scope"}
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == settings.access_token_ttl_s
    assert body["scope"] == "accounts:read"
    # A verifier that knows only what the service publishes accepts the token.
    cache = JwksCache([])
    cache.load((await client.get("/.well-known/jwks.json")).json())
    verifier = TokenVerifier(cache, issuer=settings.token_issuer, audience=settings.token_audience)
    principal = await verifier.verify(body["access_token"])
    assert principal.subject == user.id
    assert principal.roles == frozenset({"customer", "support"})
    assert principal.scopes == frozenset({"accounts:read"})


async def test_refused_logins_are_indistinguishable_and_write_nothing(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    await add_user(app, "alice")
    await add_user(app, "dave", disabled=True)
    before = await table_rows(database_url)

    wrong_password = await password_grant(client, "alice", "not the password")
    unknown_user = await password_grant(client, "mallory", PASSWORD)
    disabled_user = await password_grant(client, "dave", PASSWORD)

    bodies = [without_request_id(r.json()) for r in (wrong_password, unknown_user, disabled_user)]
    assert bodies[0] == bodies[1] == bodies[2]
    assert bodies[0]["type"].endswith("/invalid-grant")
    assert bodies[0]["error"] == "invalid_grant"
    assert {r.status_code for r in (wrong_password, unknown_user, disabled_user)} == {400}
    assert {r.headers["content-type"] for r in (wrong_password, unknown_user)} == {
        "application/problem+json"
    }
    after = await table_rows(database_url)
    # Only the refusals' own trace: three audit events and the failed-login counters.
    assert changed_tables(before, after) == {"audit_events", "login_throttles"}
    assert [(e["action"], e["actor"]) for e in after["audit_events"][-3:]] == [
        ("login.failure", "alice"),
        ("login.failure", "mallory"),
        ("login.failure", "dave"),
    ]
    assert all(PASSWORD not in e["details"] for e in after["audit_events"])


@pytest.mark.parametrize(
    ("content", "headers"),
    [
        (b'{"grant_type": "password", "username": "alice"}', {"content-type": "application/json"}),
        (b"grant_type=password", {"content-type": "text/plain"}),
        (b"grant_type=password", {}),
        (
            b"--b\r\nContent-Disposition: form-data; name=grant_type\r\n\r\npassword\r\n--b--\r\n",
            {"content-type": "multipart/form-data; boundary=b"},
        ),
    ],
    ids=["json", "text", "no-content-type", "multipart"],
)
async def test_anything_but_a_form_is_415(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    content: bytes,
    headers: dict[str, str],
) -> None:
    await add_user(app, "alice")
    before = await table_rows(database_url)

    response = await client.post(TOKEN_PATH, content=content, headers=headers)

    assert response.status_code == 415
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"].endswith("/unsupported-media-type")
    assert await table_rows(database_url) == before


async def _post_form(client: httpx.AsyncClient, content: str | bytes) -> httpx.Response:
    """POST `content` to the token endpoint as an HTML form (however garbled it is)."""
    return await client.post(
        TOKEN_PATH, content=content, headers={"content-type": "application/x-www-form-urlencoded"}
    )


@pytest.mark.parametrize(
    ("form", "slug", "error"),
    [
        ({}, "invalid-request", "invalid_request"),
        ({"grant_type": "password", "username": "alice"}, "invalid-request", "invalid_request"),
        ({"grant_type": "password", "password": PASSWORD}, "invalid-request", "invalid_request"),
        (
            {"grant_type": "password", "username": "alice", "password": ""},
            "invalid-request",
            "invalid_request",
        ),
        ({"grant_type": "refresh_token"}, "invalid-request", "invalid_request"),
        (
            {"grant_type": "authorization_code", "username": "alice", "password": PASSWORD},
            "unsupported-grant-type",
            "unsupported_grant_type",
        ),
        (
            {"grant_type": "password", "username": "alice", "password": PASSWORD, "scope": '"'},
            "invalid-scope",
            "invalid_scope",
        ),
    ],
    ids=[
        "nothing",
        "no-password",
        "no-username",
        "empty-password",
        "no-refresh-token",
        "unknown-grant",
        "bad-scope",
    ],
)
async def test_malformed_requests_are_400_with_the_oauth_error(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    form: dict[str, str],
    slug: str,
    error: str,
) -> None:
    await add_user(app, "alice")
    before = await table_rows(database_url)

    response = await _post_form(client, urlencode(form))

    assert response.status_code == 400
    body = response.json()
    assert body["type"].endswith(f"/{slug}")
    assert body["error"] == error
    assert await table_rows(database_url) == before


@pytest.mark.parametrize(
    "content",
    [
        b"grant_type=password&grant_type=refresh_token&username=alice&password=x",
        b"grant_type=password&username=%ff&password=x",
        b"\xff\xfe",
    ],
    ids=["repeated-parameter", "bad-percent-encoding", "not-utf8"],
)
async def test_garbled_forms_are_invalid_requests(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, content: bytes
) -> None:
    await add_user(app, "alice")
    before = await table_rows(database_url)

    response = await _post_form(client, content)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert await table_rows(database_url) == before


@pytest.mark.parametrize(
    ("form", "field"),
    [
        ({"grant_type": "password", "username": "ali\u0000ce", "password": PASSWORD}, "username"),
        ({"grant_type": "password", "username": "\u202ealice", "password": PASSWORD}, "username"),
        ({"grant_type": "password", "username": "alice", "password": "pass\u0000word"}, "password"),
        ({"grant_type": "refresh_token", "refresh_token": "a\u0000b"}, "refresh_token"),
        ({"grant_type": "password\n", "username": "alice", "password": PASSWORD}, "grant_type"),
    ],
    ids=["nul-in-username", "bidi-in-username", "nul-in-password", "nul-in-refresh", "newline"],
)
async def test_refused_text_in_a_form_is_a_422_naming_the_field_that_writes_nothing(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    form: dict[str, str],
    field: str,
) -> None:
    await add_user(app, "alice")
    before = await table_rows(database_url)

    response = await _post_form(client, urlencode(form))

    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    assert [error["location"] for error in problem["errors"]] == [["body", field]]
    # Refused before the login is tried: not even a failed-login counter moves.
    assert await table_rows(database_url) == before


async def test_a_password_may_hold_a_tab(app: FastAPI, client: httpx.AsyncClient) -> None:
    await add_user(app, "alice")
    response = await password_grant(client, "alice", "tab\there")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"  # tried, and wrong; not refused


async def test_every_login_opens_its_own_refresh_family(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    await add_user(app, "alice")

    first = (await password_grant(client)).json()
    second = (await password_grant(client)).json()

    tokens = (await table_rows(database_url))["refresh_tokens"]
    assert len(tokens) == 2
    assert tokens[0]["family_id"] != tokens[1]["family_id"]
    # Only hashes are stored.
    stored = {row["token_hash"] for row in tokens}
    assert not {first["refresh_token"], second["refresh_token"]} & stored
    assert all(len(token_hash) == 64 for token_hash in stored)
