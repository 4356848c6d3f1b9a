"""The user administration API: who may do what, and what each operation changes."""

from __future__ import annotations

from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from flotilla_auth.domain.users import User

from .helpers import (
    PASSWORD,
    access_token,
    add_user,
    audit_actions,
    bearer,
    changed_tables,
    password_grant,
    refresh_grant,
    table_rows,
    without_request_id,
)

USERS = "/api/v1/auth/users"


def session_of(access_token: str) -> str:
    sid: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return sid


NEW_PASSWORD = "velvet-harbour-lantern"


async def staff(app: FastAPI, client: httpx.AsyncClient) -> dict[str, Any]:
    """A customer, a support agent and an administrator, each with a fresh token."""
    people = {
        "alice": await add_user(app, "alice", roles=("customer",)),
        "sam": await add_user(app, "sam", roles=("support",)),
        "root": await add_user(app, "root", roles=("admin",)),
    }
    return {
        "users": people,
        "tokens": {name: await access_token(client, name) for name in people},
    }


def routes(target: User) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    """(method, path, JSON body, permission needed) for every admin route."""
    one = f"{USERS}/{target.id}"
    new = {"username": "newbie", "password": NEW_PASSWORD, "roles": ["customer"]}
    return [
        ("GET", USERS, None, "read"),
        ("GET", one, None, "read"),
        ("POST", USERS, new, "admin"),
        ("PUT", f"{one}/roles/support", None, "admin"),
        ("DELETE", f"{one}/roles/support", None, "admin"),
        ("POST", f"{one}/lock", None, "admin"),
        ("POST", f"{one}/unlock", None, "admin"),
    ]


async def test_each_role_on_each_admin_route(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    target = people["users"]["alice"]
    expected: dict[str, dict[str, int | None]] = {
        "customer": {"read": 403, "admin": 403},
        "support": {"read": 200, "admin": 403},
        "admin": {"read": 200, "admin": None},  # None: the route's own success status
    }
    success = {"GET": 200, "POST": 204, "PUT": 204, "DELETE": 204}

    for name, role in (("alice", "customer"), ("sam", "support"), ("root", "admin")):
        for method, path, body, needs in routes(target):
            before = await table_rows(database_url)
            response = await client.request(
                method, path, json=body, headers=bearer(people["tokens"][name])
            )
            status = expected[role][needs] or (201 if body else success[method])
            assert response.status_code == status, (name, method, path, response.text)
            if status == 403:
                assert response.headers["content-type"] == "application/problem+json"
                assert response.json()["type"].endswith("/forbidden")
                assert await table_rows(database_url) == before
    # Without a token: 401 everywhere, nothing written.
    before = await table_rows(database_url)
    for method, path, body, _ in routes(target):
        response = await client.request(method, path, json=body)
        assert response.status_code == 401, (method, path)
    assert await table_rows(database_url) == before


async def test_create_read_and_list_users(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    admin = bearer(people["tokens"]["root"])

    created = await client.post(
        USERS,
        json={"username": " Newbie ", "password": NEW_PASSWORD, "roles": ["support", "customer"]},
        headers=admin,
    )

    assert created.status_code == 201
    body = created.json()
    assert created.headers["location"] == f"{USERS}/{body['id']}"
    assert set(body) == {"id", "username", "roles", "locked", "disabled", "created_at"}
    assert (body["username"], body["roles"], body["locked"]) == (
        "newbie",
        ["customer", "support"],
        False,
    )
    assert (await client.get(created.headers["location"], headers=admin)).json() == body
    assert (await password_grant(client, "newbie", NEW_PASSWORD)).status_code == 200
    [event] = [
        e
        for e in (await table_rows(database_url))["audit_events"]
        if e["action"] == "user.created" and e["actor"] == people["users"]["root"].id
    ]
    assert event["target"] == body["id"]
    assert NEW_PASSWORD not in event["details"]

    # Pages of two, by id, until `next` is null.
    seen: list[str] = []
    after: str | None = None
    while True:
        params = {"limit": "2", **({"after": after} if after else {})}
        page = (await client.get(USERS, params=params, headers=admin)).json()
        assert len(page["items"]) <= 2
        seen += [item["id"] for item in page["items"]]
        after = page["next"]
        if after is None:
            break
    assert seen == sorted(row["id"] for row in (await table_rows(database_url))["users"])
    assert len(seen) == 4
    assert (await client.get(USERS, params={"limit": "0"}, headers=admin)).status_code == 422


REFUSED_CREATIONS = {
    "short": ({"username": "newbie", "password": "short-pass1", "roles": []}, 422, "length"),
    "too-long": ({"username": "newbie", "password": "x" * 1025, "roles": []}, 422, "length"),
    "contains-username": (
        {"username": "newbie", "password": "the-NEWBIE-horse", "roles": []},
        422,
        "contains-username",
    ),
    "equals-username": (
        {"username": "newbie-newbie", "password": "Newbie-Newbie", "roles": []},
        422,
        "contains-username",
    ),
    "common": (
        {"username": "newbie", "password": "Password1234", "roles": []},
        422,
        "common-password",
    ),
    "unknown-role": (
        {"username": "newbie", "password": NEW_PASSWORD, "roles": ["wizard"]},
        422,
        None,
    ),
    "service-role": (
        {"username": "newbie", "password": NEW_PASSWORD, "roles": ["service:payments"]},
        422,
        None,
    ),
    "bad-username": ({"username": "new bie", "password": NEW_PASSWORD, "roles": []}, 422, None),
    "nul-in-username": ({"username": "new\u0000bie", "password": NEW_PASSWORD}, 422, None),
    "nul-in-password": ({"username": "newbie", "password": NEW_PASSWORD + "\u0000"}, 422, None),
    "nul-in-role": (
        {"username": "newbie", "password": NEW_PASSWORD, "roles": ["a\u0000"]},
        422,
        None,
    ),
    "taken": ({"username": "ALICE", "password": NEW_PASSWORD, "roles": []}, 409, None),
    "unknown-field": ({"username": "newbie", "password": NEW_PASSWORD, "extra": 1}, 422, None),
}


async def test_refused_creations_name_the_rule_and_write_nothing(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    before = await table_rows(database_url)

    for case, (body, status, rule) in REFUSED_CREATIONS.items():
        response = await client.post(USERS, json=body, headers=bearer(people["tokens"]["root"]))

        assert response.status_code == status, (case, response.text)
        assert response.headers["content-type"] == "application/problem+json"
        if rule is not None:
            assert response.json()["type"].endswith("/weak-password"), case
            assert response.json()["rule"] == rule, case
    text = await client.post(
        USERS,
        content=b"username=newbie",
        headers={
            **bearer(people["tokens"]["root"]),
            "content-type": "application/x-www-form-urlencoded",
        },
    )
    assert text.status_code == 415
    assert await table_rows(database_url) == before


async def test_role_changes_are_idempotent_and_checked(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    admin = bearer(people["tokens"]["root"])
    alice = people["users"]["alice"]
    role_path = f"{USERS}/{alice.id}/roles"

    assert (await client.put(f"{role_path}/support", headers=admin)).status_code == 204
    before = await table_rows(database_url)
    assert (await client.put(f"{role_path}/support", headers=admin)).status_code == 204
    assert await table_rows(database_url) == before  # already held: nothing changes
    user = (await client.get(f"{USERS}/{alice.id}", headers=admin)).json()
    assert user["roles"] == ["customer", "support"]

    session = (await password_grant(client, "alice")).json()
    assert (await client.delete(f"{role_path}/support", headers=admin)).status_code == 204
    # Taking a role away ends the sessions: the old token's session is revoked.
    assert (await refresh_grant(client, session["refresh_token"])).status_code == 400
    before = await table_rows(database_url)
    assert (await client.delete(f"{role_path}/support", headers=admin)).status_code == 204
    assert await table_rows(database_url) == before

    refusals = [
        (await client.put(f"{role_path}/wizard", headers=admin), 422),
        (await client.put(f"{role_path}/service:orders", headers=admin), 422),
        (await client.delete(f"{role_path}/wizard", headers=admin), 422),
        (await client.put(f"{USERS}/no-such-user/roles/support", headers=admin), 404),
        (await client.delete(f"{USERS}/no-such-user/roles/support", headers=admin), 404),
        (await client.get(f"{USERS}/no-such-user", headers=admin), 404),
        (await client.post(f"{USERS}/no-such-user/lock", headers=admin), 404),
        (await client.post(f"{USERS}/no-such-user/unlock", headers=admin), 404),
    ]
    for response, status in refusals:
        assert response.status_code == status, response.text
        assert response.headers["content-type"] == "application/problem+json"
    assert await table_rows(database_url) == before
    actions = await audit_actions(database_url)
    assert actions.count("role.assigned") == 1
    assert actions.count("role.removed") == 1


async def test_an_admin_cannot_lock_themselves_or_drop_their_own_admin_role(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    root = people["users"]["root"]
    admin = bearer(people["tokens"]["root"])
    before = await table_rows(database_url)

    for response in (
        await client.delete(f"{USERS}/{root.id}/roles/admin", headers=admin),
        await client.post(f"{USERS}/{root.id}/lock", headers=admin),
    ):
        assert response.status_code == 409
        assert response.json()["type"].endswith("/conflict")
    assert await table_rows(database_url) == before


async def test_locking_ends_sessions_and_logins_until_unlocked(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    admin = bearer(people["tokens"]["root"])
    alice = people["users"]["alice"]
    session = (await password_grant(client, "alice")).json()
    wrong_password = without_request_id((await password_grant(client, "alice", "nope")).json())

    assert (await client.post(f"{USERS}/{alice.id}/lock", headers=admin)).status_code == 204

    assert (await client.get(f"{USERS}/{alice.id}", headers=admin)).json()["locked"] is True
    locked_login = await password_grant(client, "alice", PASSWORD)
    assert locked_login.status_code == 400
    assert without_request_id(locked_login.json()) == wrong_password
    assert (await refresh_grant(client, session["refresh_token"])).status_code == 400
    me = await client.get("/api/v1/auth/me", headers=bearer(session["access_token"]))
    assert me.status_code == 401
    revoked = (await client.get("/internal/v1/revocations")).json()["sessions"]
    assert sorted(revoked) == sorted(
        session_of(token) for token in (people["tokens"]["alice"], session["access_token"])
    )

    assert (await client.post(f"{USERS}/{alice.id}/unlock", headers=admin)).status_code == 204
    assert (await password_grant(client, "alice", PASSWORD)).status_code == 200
    actions = await audit_actions(database_url)
    assert actions.count("user.locked") == actions.count("user.unlocked") == 1


async def test_unlock_also_lifts_a_failed_login_lockout(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    for _ in range(5):
        await password_grant(client, "alice", "wrong password!")
    assert (await password_grant(client, "alice")).status_code == 400

    unlocked = await client.post(
        f"{USERS}/{people['users']['alice'].id}/unlock", headers=bearer(people["tokens"]["root"])
    )

    assert unlocked.status_code == 204
    assert (await password_grant(client, "alice")).status_code == 200


async def test_a_demoted_admins_token_no_longer_administers(
    app: FastAPI, client: httpx.AsyncClient, database_url: str
) -> None:
    people = await staff(app, client)
    still_signed = people["tokens"]["root"]
    await add_user(app, "root", roles=("customer",))  # the seed file changed meanwhile
    before = await table_rows(database_url)

    response = await client.post(
        f"{USERS}/{people['users']['alice'].id}/lock", headers=bearer(still_signed)
    )

    assert response.status_code == 403
    assert changed_tables(before, await table_rows(database_url)) == set()
