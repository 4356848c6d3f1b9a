"""Failed-login lockout per account and throttling per client address, shared by every
instance through the database."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI

from flotilla_auth.domain.login_protection import account_key
from flotilla_auth.settings import AuthSettings

from .helpers import (
    PASSWORD,
    MovableClock,
    add_user,
    audit_actions,
    changed_tables,
    password_grant,
    table_rows,
    without_request_id,
)

WRONG = "not the password at all"


async def attempt(
    client: httpx.AsyncClient,
    username: str = "alice",
    password: str = WRONG,
    ip: str = "198.51.100.7",
) -> httpx.Response:
    return await password_grant(client, username, password, headers={"x-forwarded-for": ip})


def refusal(response: httpx.Response) -> tuple[int, dict[str, object]]:
    return response.status_code, without_request_id(response.json())


async def test_five_failures_lock_the_account_with_doubling_lockouts(
    app: FastAPI, client: httpx.AsyncClient, clock: MovableClock, database_url: str
) -> None:
    await add_user(app, "alice")
    wrong_password = refusal(await attempt(client))
    for _ in range(4):
        assert refusal(await attempt(client)) == wrong_password

    # Locked for 60 s: the right password gets exactly the wrong-password answer.
    assert refusal(await attempt(client, password=PASSWORD)) == wrong_password
    clock.advance(59)
    assert refusal(await attempt(client, password=PASSWORD)) == wrong_password

    # One more failure after the lockout doubles it to 120 s, then 240 s.
    clock.advance(1)
    assert refusal(await attempt(client)) == wrong_password
    clock.advance(119)
    assert refusal(await attempt(client, password=PASSWORD)) == wrong_password
    clock.advance(1)
    assert refusal(await attempt(client)) == wrong_password
    clock.advance(239)
    assert refusal(await attempt(client, password=PASSWORD)) == wrong_password
    clock.advance(1)

    # A success ends the lockout and resets the count.
    assert (await attempt(client, password=PASSWORD)).status_code == 200
    rows = await table_rows(database_url)
    assert account_key("alice") not in {row["key"] for row in rows["login_throttles"]}
    actions = await audit_actions(database_url)
    assert actions.count("login.lockout") == 3
    assert actions[-1] == "login.success"
    assert (await attempt(client)).status_code == 400  # a fresh count: one failure, no lock
    assert (await attempt(client, password=PASSWORD)).status_code == 200


async def test_lockout_reveals_nothing_about_which_usernames_exist(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    await add_user(app, "alice")
    await add_user(app, "dave", disabled=True)
    answers = []
    for number, name in enumerate(("alice", "ghost", "dave")):
        ip = f"198.51.100.{number}"  # one address each: stay below the per-IP limit
        for _ in range(6):
            answers.append(refusal(await attempt(client, name, ip=ip)))
        answers.append(refusal(await attempt(client, name, PASSWORD, ip=ip)))

    assert len(set(map(repr, answers))) == 1  # one status, title and detail for everything
    rows = await table_rows(database_url)
    # A counter for the name that does not exist too (its key is a hash, not the name).
    assert {account_key(n) for n in ("alice", "ghost", "dave")} <= {
        row["key"] for row in rows["login_throttles"]
    }
    assert "ghost" not in {row["key"] for row in rows["login_throttles"]}
    lockouts = [e for e in rows["audit_events"] if e["action"] == "login.lockout"]
    assert [e["actor"] for e in lockouts] == ["alice", "ghost", "dave"]


async def test_too_many_failures_from_one_address_get_429_until_the_window_ends(
    app: FastAPI,
    client: httpx.AsyncClient,
    clock: MovableClock,
    settings: AuthSettings,
    database_url: str,
) -> None:
    await add_user(app, "alice")
    first_failure = clock()
    for number in range(settings.login_ip_max_failures):
        # Different names, so no account lockout gets in the way.
        assert (await attempt(client, f"user{number}")).status_code == 400
    clock.advance(10)
    before = await table_rows(database_url)

    throttled = await attempt(client, "alice", PASSWORD)

    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    # The window runs from the first failure; the clock runs with real time between the
    # moves (a busy machine takes a second or more for the failures above).
    window_left = settings.login_ip_window_s - (clock() - first_failure).total_seconds()
    assert window_left - 1 <= int(throttled.headers["retry-after"]) <= window_left + 1
    assert await table_rows(database_url) == before  # throttled before anything is checked
    # Others are not throttled; the gateway sets X-Forwarded-For, the first value counts.
    other = await attempt(client, "alice", PASSWORD, ip="203.0.113.9, 198.51.100.7")
    assert other.status_code == 200
    # When the window has passed, the address may try again.
    clock.advance(settings.login_ip_window_s - 10)
    assert (await attempt(client, "alice", PASSWORD)).status_code == 200


@pytest.mark.parametrize(
    ("header", "counted_as"),
    [("192.0.2.10", "192.0.2.10"), ("192.0.2.10, 10.0.0.1", "192.0.2.10"), ("junk", "127.0.0.1")],
    ids=["single", "first-of-many", "not-an-address"],
)
async def test_failures_count_against_the_first_forwarded_address(
    app: FastAPI, client: httpx.AsyncClient, database_url: str, header: str, counted_as: str
) -> None:
    await attempt(client, "alice", ip=header)

    keys = {row["key"] for row in (await table_rows(database_url))["login_throttles"]}
    assert f"ip:{counted_as}" in keys
    [event] = (await table_rows(database_url))["audit_events"][-1:]
    assert f'"ip":"{counted_as}"' in event["details"]


async def test_a_refused_login_writes_only_its_trace(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    await add_user(app, "alice")
    before = await table_rows(database_url)

    await attempt(client)

    assert changed_tables(before, await table_rows(database_url)) == {
        "audit_events",
        "login_throttles",
    }
