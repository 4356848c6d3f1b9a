"""The revocation list every verifier polls, and the hash-chained audit log."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable

import httpx
import jwt
import pytest
from fastapi import FastAPI
from sqlalchemy import text

from flotilla_auth.adapters.tables import audit_log
from flotilla_auth.bootstrap import Maintenance, create_app, migrate
from flotilla_auth.domain.audit_events import AuditAction
from flotilla_auth.entrypoints.cli import app as cli_app
from flotilla_auth.entrypoints.cli import seed_users
from flotilla_auth.service_layer.signing_keys import promote_staged_key, stage_signing_key
from flotilla_auth.service_layer.users import UserSpec
from flotilla_auth.settings import AuthSettings
from flotilla_kit.db import Database, DatabaseError, Query, is_sqlite
from flotilla_kit.service_identity import CLIENT_ASSERTION_TYPE, client_assertion
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tls import CertificatePaths
from flotilla_kit.tokens import JwksCache, TokenError, TokenVerifier

from .helpers import (
    LOGOUT_PATH,
    PASSWORD,
    TOKEN_PATH,
    MovableClock,
    access_token,
    add_user,
    audit_actions,
    bearer,
    cheap_hasher,
    cli_runner,
    components,
    password_grant,
    printed,
    refresh_grant,
    table_rows,
)

REVOCATIONS = "/internal/v1/revocations"


def sid(access_token: str) -> str:
    session: str = jwt.decode(access_token, options={"verify_signature": False})["sid"]
    return session


async def revoked(client: httpx.AsyncClient) -> list[str]:
    response = await client.get(REVOCATIONS)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    assert set(response.json()) == {"sessions", "generated_at"}
    sessions: list[str] = response.json()["sessions"]
    return sorted(sessions)


async def test_logout_and_refresh_reuse_put_the_session_on_the_revocation_list(
    app: FastAPI, client: httpx.AsyncClient, clock: MovableClock
) -> None:
    await add_user(app, "alice")
    first = (await password_grant(client)).json()
    second = (await password_grant(client)).json()
    assert await revoked(client) == []

    assert (
        await client.post(LOGOUT_PATH, data={"refresh_token": first["refresh_token"]})
    ).status_code == 204

    assert await revoked(client) == [sid(first["access_token"])]
    # The auth service itself refuses the session's access token at once.
    assert (
        await client.get("/api/v1/auth/me", headers=bearer(first["access_token"]))
    ).status_code == 401
    assert (
        await client.get("/api/v1/auth/me", headers=bearer(second["access_token"]))
    ).status_code == 200
    # Any verifier that polled the list refuses it too.
    cache = JwksCache([])
    cache.load((await client.get("/.well-known/jwks.json")).json())
    verifier = TokenVerifier(cache, issuer="flotilla-auth", audience="flotilla")
    verifier.revocations.load((await client.get(REVOCATIONS)).json()["sessions"])
    with pytest.raises(TokenError, match="revoked"):
        await verifier.verify(first["access_token"])
    await verifier.verify(second["access_token"])

    # Refresh-token reuse revokes the family: the second session joins the list.
    rotated = (await refresh_grant(client, second["refresh_token"])).json()
    assert sid(rotated["access_token"]) == sid(second["access_token"])  # one session
    assert (await refresh_grant(client, second["refresh_token"])).status_code == 400
    assert await revoked(client) == sorted(
        [sid(first["access_token"]), sid(second["access_token"])]
    )

    # The instance's own verifier learns the list on its timer.
    maintenance: Maintenance = app.state.maintenance
    await maintenance.tick()
    own: TokenVerifier = app.state.token_verifier
    assert own.revocations.revoked(sid(first["access_token"]))

    # Listed for the longest access-token lifetime plus 60 s, then no longer needed.
    clock.advance(900 + 60 - 1)
    assert len(await revoked(client)) == 2
    clock.advance(1)
    assert await revoked(client) == []


@pytest.fixture
def trusting(settings: AuthSettings, dev_pki: Callable[[str], CertificatePaths]) -> AuthSettings:
    return settings.model_copy(update={"tls": TlsSettings(ca_file=dev_pki("payments").ca)})


async def test_every_security_event_is_audited_and_the_chain_verifies(
    trusting: AuthSettings,
    database_url: str,
    clock: MovableClock,
    dev_pki: Callable[[str], CertificatePaths],
) -> None:
    app = create_app(trusting, password_hasher=cheap_hasher(), clock=clock)
    parts = components(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client,
    ):
        await add_user(app, "root", roles=("admin",))
        alice = await add_user(app, "alice")
        await add_user(app, "alice", roles=("customer", "support"))  # the seed changed her
        admin = bearer((await password_grant(client, "root")).json()["access_token"])
        for _ in range(5):
            await password_grant(client, "alice", "wrong password!")
        await client.post(f"/api/v1/auth/users/{alice.id}/unlock", headers=admin)
        session = (await password_grant(client, "alice")).json()
        await refresh_grant(client, session["refresh_token"])
        await refresh_grant(client, session["refresh_token"])  # reuse
        other = (await password_grant(client, "alice")).json()
        await client.post(LOGOUT_PATH, data={"refresh_token": other["refresh_token"]})
        created = await client.post(
            "/api/v1/auth/users",
            json={"username": "bob", "password": "velvet-harbour-lantern", "roles": []},
            headers=admin,
        )
        bob = created.json()["id"]
        await client.put(f"/api/v1/auth/users/{bob}/roles/customer", headers=admin)
        await client.delete(f"/api/v1/auth/users/{bob}/roles/customer", headers=admin)
        await client.post(f"/api/v1/auth/users/{bob}/lock", headers=admin)
        await client.post(f"/api/v1/auth/users/{bob}/unlock", headers=admin)
        await stage_signing_key(uow=parts.uow, keys=parts.keys, now=clock())
        await promote_staged_key(uow=parts.uow, now=clock(), schedule=None)
        paths = dev_pki("payments")
        assertion = client_assertion("payments", "flotilla-auth", paths.cert, paths.key)
        for _ in range(2):  # issued, then refused as a replay
            await client.post(
                TOKEN_PATH,
                data={
                    "grant_type": "client_credentials",
                    "client_assertion_type": CLIENT_ASSERTION_TYPE,
                    "client_assertion": assertion,
                },
            )

    actions = await audit_actions(database_url)
    assert set(actions) == {action.value for action in AuditAction}
    report = await audit_log.report(trusting.sqlalchemy_url, trusting.service_name)
    assert report["intact"] is True
    assert report["records"] == len(actions)
    assert report["head"] == (await table_rows(database_url))["audit_events"][-1]["hash"]
    # No password, right or wrong, ever reaches the log.
    details = " ".join(row["details"] for row in (await table_rows(database_url))["audit_events"])
    assert PASSWORD not in details
    assert "wrong password!" not in details


async def test_staff_read_the_audit_log_over_http(
    app: FastAPI, client: httpx.AsyncClient, settings: AuthSettings
) -> None:
    await add_user(app, "sam", roles=("support",))
    await add_user(app, "alice")
    await password_grant(client, "alice", "wrong password!")
    support = bearer(await access_token(client, "sam"))
    log = await client.get("/api/v1/audit/auth", params={"limit": 200}, headers=support)
    assert log.status_code == 200, log.text
    stored = await audit_log.newest(settings.sqlalchemy_url, 200)
    assert (log.json()["log"], log.json()["chain"]) == (
        "auth", {"intact": True, "records": len(stored), "first_broken": None, "reason": ""},
    )  # fmt: skip
    fields = ("seq", "actor", "action", "target", "outcome", "details")
    assert [{k: r[k] for k in fields} for r in log.json()["records"]] == [
        {k: r[k] for k in fields} for r in reversed(stored)
    ]
    assert "login.failure" in {r["action"] for r in log.json()["records"]}
    customer = bearer(await access_token(client, "alice"))
    refused = await client.get("/api/v1/audit/auth", headers=customer)
    assert (refused.status_code, refused.json()["type"].rsplit("/", 1)[1]) == (403, "forbidden")


async def _seed(settings: AuthSettings) -> None:
    await asyncio.to_thread(migrate, settings)
    await seed_users(settings, [UserSpec("alice", PASSWORD, ("customer",))])


async def _sql(url: str, *statements: str) -> None:
    database = Database(url)
    try:
        async with database.transaction() as transaction:
            for statement in statements:
                await transaction.execute(Query(text(statement)))
            await transaction.commit()
    finally:
        await database.dispose()


def test_the_audit_log_refuses_changes_and_audit_verify_finds_tampering(
    settings: AuthSettings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    asyncio.run(_seed(settings))
    runner = cli_runner(settings, monkeypatch)
    intact = runner.invoke(cli_app, ["audit-verify"])
    assert intact.exit_code == 0, intact.output
    report = printed(intact)
    assert report["service"] == "auth"
    assert (report["intact"], report["records"], report["first_broken_seq"]) == (True, 2, None)
    tail = runner.invoke(cli_app, ["audit-tail", "--limit", "1"])
    [record] = [json.loads(line) for line in tail.stdout.splitlines() if line.startswith('{"seq"')]
    assert (record["seq"], record["action"], record["hash"]) == (2, "user.created", report["head"])

    # The database refuses to change history ...
    for statement in (
        "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1",
        "DELETE FROM audit_events WHERE seq = 2",
    ):
        with pytest.raises(DatabaseError, match="append-only"):
            asyncio.run(_sql(database_url, statement))
    assert printed(runner.invoke(cli_app, ["audit-verify"]))["intact"] is True

    # ... unless its owner drops the triggers first; the chain still shows it.
    drop = (
        ["DROP TRIGGER audit_events_no_update"]
        if is_sqlite(database_url)
        else ["DROP TRIGGER audit_events_append_only ON audit_events"]
    )
    asyncio.run(
        _sql(database_url, *drop, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 1")
    )
    broken = runner.invoke(cli_app, ["audit-verify"])

    assert broken.exit_code == 1
    found = printed(broken)
    assert (found["intact"], found["first_broken_seq"]) == (False, 1)
    assert found["reason"] == "its content does not match its hash"


async def test_a_poll_of_an_unchanged_list_is_answered_304_without_a_body(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    await add_user(app, "alice")
    first = await client.get(REVOCATIONS)
    etag = first.headers["etag"]
    unchanged = await client.get(REVOCATIONS, headers={"If-None-Match": etag})
    assert (unchanged.status_code, unchanged.content, unchanged.headers["etag"]) == (304, b"", etag)

    session = (await password_grant(client)).json()
    await client.post(LOGOUT_PATH, data={"refresh_token": session["refresh_token"]})
    changed = await client.get(REVOCATIONS, headers={"If-None-Match": etag})
    assert changed.status_code == 200
    assert changed.headers["etag"] != etag
    assert changed.json()["sessions"] == [sid(session["access_token"])]
