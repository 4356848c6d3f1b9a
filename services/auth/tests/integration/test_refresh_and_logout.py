"""The refresh grant (single use, rotation, reuse detection) and logout."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from fastapi import FastAPI

from flotilla_auth.settings import AuthSettings

from .helpers import (
    LOGOUT_PATH,
    MovableClock,
    add_user,
    password_grant,
    refresh_grant,
    table_rows,
)


async def login(app: FastAPI, client: httpx.AsyncClient) -> dict[str, str]:
    await add_user(app, "alice")
    response = await password_grant(client, scope="accounts:read")
    assert response.status_code == 200
    body: dict[str, str] = response.json()
    return body


def assert_invalid_grant(response: httpx.Response) -> None:
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.headers["cache-control"] == "no-store"


async def test_refresh_rotates_the_token_within_its_family(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    first = await login(app, client)

    response = await refresh_grant(client, first["refresh_token"])

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    second = response.json()
    assert second["refresh_token"] != first["refresh_token"]
    assert second["access_token"] != first["access_token"]
    assert second["scope"] == "accounts:read"
    rows = (await table_rows(database_url))["refresh_tokens"]
    assert len(rows) == 2
    assert len({row["family_id"] for row in rows}) == 1
    spent = [row for row in rows if row["used_at"] is not None]
    assert len(spent) == 1
    assert spent[0]["used_at"].tzinfo is not None
    assert all(row["revoked_at"] is None for row in rows)
    # The successor works in turn.
    assert (await refresh_grant(client, second["refresh_token"])).status_code == 200


async def test_reuse_revokes_the_family_including_the_newer_token(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    first = await login(app, client)
    second = (await refresh_grant(client, first["refresh_token"])).json()

    assert_invalid_grant(await refresh_grant(client, first["refresh_token"]))

    rows = (await table_rows(database_url))["refresh_tokens"]
    assert all(row["revoked_at"] is not None for row in rows)
    assert_invalid_grant(await refresh_grant(client, second["refresh_token"]))


async def test_racing_refreshes_with_one_token_admit_one_and_revoke_the_family(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    first = await login(app, client)

    responses = await asyncio.gather(
        refresh_grant(client, first["refresh_token"]),
        refresh_grant(client, first["refresh_token"]),
    )

    assert sorted(r.status_code for r in responses) == [200, 400]
    winner = next(r for r in responses if r.status_code == 200).json()
    assert_invalid_grant(await refresh_grant(client, winner["refresh_token"]))
    rows = (await table_rows(database_url))["refresh_tokens"]
    assert len(rows) == 2
    assert all(row["revoked_at"] is not None for row in rows)


async def test_expired_refresh_token_is_refused_and_not_consumed(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    clock: MovableClock,
    settings: AuthSettings,
) -> None:
    first = await login(app, client)
    clock.advance(settings.refresh_token_ttl_s)
    before = await table_rows(database_url)

    assert_invalid_grant(await refresh_grant(client, first["refresh_token"]))

    assert await table_rows(database_url) == before


@pytest.mark.parametrize("token", ["never-issued", "x" * 600])
async def test_unknown_refresh_token_is_refused_without_writing(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, token: str
) -> None:
    await login(app, client)
    before = await table_rows(database_url)

    assert_invalid_grant(await refresh_grant(client, token))

    assert await table_rows(database_url) == before


async def test_refresh_for_a_disabled_user_is_refused_without_consuming(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    first = await login(app, client)
    # Disabling through the seed path also ends the sessions when the password changes;
    # keep the password so only the disabled flag is under test.
    await add_user(app, "alice", disabled=True)
    before = await table_rows(database_url)

    assert_invalid_grant(await refresh_grant(client, first["refresh_token"]))

    assert await table_rows(database_url) == before


@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_logout_revokes_the_family(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, encoding: str
) -> None:
    first = await login(app, client)
    second = (await refresh_grant(client, first["refresh_token"])).json()
    other_session = (await password_grant(client)).json()

    payload = {"refresh_token": second["refresh_token"]}
    response = await (
        client.post(LOGOUT_PATH, data=payload)
        if encoding == "form"
        else client.post(LOGOUT_PATH, json=payload)
    )

    assert response.status_code == 204
    assert response.content == b""
    assert_invalid_grant(await refresh_grant(client, second["refresh_token"]))
    rows = (await table_rows(database_url))["refresh_tokens"]
    assert sum(row["revoked_at"] is not None for row in rows) == 2
    # Logging out one session leaves the others alone.
    assert (await refresh_grant(client, other_session["refresh_token"])).status_code == 200


async def test_logout_with_an_unknown_token_is_204_and_writes_nothing(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    await login(app, client)
    before = await table_rows(database_url)

    response = await client.post(LOGOUT_PATH, data={"refresh_token": "never-issued"})

    assert response.status_code == 204
    assert await table_rows(database_url) == before


@pytest.mark.parametrize(
    ("content", "content_type", "status"),
    [
        (b"", "application/x-www-form-urlencoded", 400),
        (b"{}", "application/json", 400),
        (b'{"refresh_token": 42}', "application/json", 400),
        (b"[1]", "application/json", 400),
        (b"{not json", "application/json", 400),
        (b"refresh_token=abc", "text/plain", 415),
    ],
    ids=["empty-form", "empty-json", "number", "array", "malformed-json", "text"],
)
async def test_bad_logout_requests_are_refused_without_writing(
    app: FastAPI,
    client: httpx.AsyncClient,
    database_url: str,
    content: bytes,
    content_type: str,
    status: int,
) -> None:
    await login(app, client)
    before = await table_rows(database_url)

    response = await client.post(
        LOGOUT_PATH, content=content, headers={"content-type": content_type}
    )

    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert await table_rows(database_url) == before
