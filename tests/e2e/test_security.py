"""Identity and access, end to end: the real auth service, gateway and accounts service."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from flotilla_kit.rbac import permissions_of
from flotilla_kit.service_identity import ServiceTokenProvider
from flotilla_kit.sharding import home_shard, shard_of
from flotilla_kit.tls import client_context, ensure_dev_pki
from tests.e2e.system import RunningSystem, start_system

pytestmark = pytest.mark.e2e
PROBLEM = "application/problem+json"
ROLE_USERS = {"customer": "alice", "support": "sam", "admin": "ada"}


# Short key-rotation and revocation intervals, so the tests can watch them happen.
FAST = {
    "FLOTILLA_KEY_PUBLISH_DELAY_S": "2",
    "FLOTILLA_KEY_CHECK_INTERVAL_S": "1",
    "FLOTILLA_REVOCATION_REFRESH_S": "1",
}


@pytest.fixture(scope="module")
def system() -> Iterator[RunningSystem]:
    yield from start_system("sqlite", env=FAST)


def _eventually(check: Any, timeout_s: float = 20.0) -> None:
    """Poll another process's state (nothing to subscribe to) until `check()` is true."""
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not in time"
        time.sleep(0.25)


def _direct_accounts(system: RunningSystem, user_id: str | None = None) -> httpx.Client:
    """Straight over mTLS, past the gateway, to an instance of the ledger shard where the
    user's (alice's by default) accounts live."""
    shard = home_shard(user_id or system.user_id("alice"), system.status()["shards"])
    url = system.instance_urls("accounts", shard)[0]
    return httpx.Client(base_url=url, verify=system.operator_tls())


def _new_user(system: RunningSystem, roles: list[str] | None = None) -> tuple[str, str, str]:
    """(id, username, password) of a fresh user made through the admin API."""
    username, password = f"u{uuid.uuid4().hex[:10]}", f"Pw-{uuid.uuid4().hex}"
    with system.client() as client:
        created = client.post(
            "/api/v1/auth/users",
            json={"username": username, "password": password, "roles": roles or ["customer"]},
            headers=_bearer(system.token("ada")),
        )
    assert created.status_code == 201, created.text
    return created.json()["id"], username, password


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _login(client: httpx.Client, username: str, password: str) -> httpx.Response:
    return client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": username, "password": password},
    )


# -- RBAC ----------------------------------------------------------------------------------


def _fill(path: str) -> str:
    """Ids that exist nowhere: an allowed request reaches the service and gets its 404 or
    422, and no probe changes anything."""
    return (
        path.replace("{account_id}", "acc_0_" + "0" * 32)
        .replace("{user_id}", str(uuid.UUID(int=0)))
        .replace("{role}", "support")
        .replace("{shard}", "0")
    )


def test_every_service_route_has_a_gateway_policy(system: RunningSystem) -> None:
    """A route added to a service without a policy entry at the gateway fails here.

    The web front end's pages are not API operations (not in its OpenAPI document), and
    the gateway answers its own; both are checked by tests of their own."""
    with system.client() as client:
        policy = client.get("/policy.json").json()
    listed = {
        (entry["method"], entry["path"])
        for entry in policy
        if not entry["page"] and entry["service"] != "gateway"
    }
    offered: set[tuple[str, str]] = set()
    for instance in system.status()["instances"]:
        if instance["service"] == "gateway" or not instance["name"].endswith("-0"):
            continue
        with httpx.Client(verify=system.operator_tls()) as direct:
            spec = direct.get(f"{instance['url']}/openapi.json").json()
        for path, operations in spec["paths"].items():
            for method in operations:
                if method in {"get", "post", "put", "patch", "delete"} and not path.startswith(
                    "/internal/"
                ):
                    offered.add((method.upper(), path))
    assert offered - listed == set(), "service routes the gateway has no policy for"
    assert listed - offered == set(), "policy entries for routes no service offers"


def test_rbac_matrix(system: RunningSystem) -> None:
    """Every route x every role (and no token): the gateway's answer follows the policy."""
    with system.client() as client:
        policy = client.get("/policy.json").json()
        tokens = {role: system.token(user) for role, user in ROLE_USERS.items()}
        mismatches: list[str] = []
        checked = 0
        for entry in policy:
            if entry["page"]:
                # Public at the gateway; the web service's own session and CSRF checks
                # decide (services/web/tests, tests/browser).
                continue
            path = _fill(entry["path"])
            for role in [None, *ROLE_USERS]:
                headers = _bearer(tokens[role]) if role else {}
                # Read-only probes: bodies that can never be valid keep writes from happening.
                response = client.request(
                    entry["method"], path, headers={**headers, "content-type": "application/json"},
                    content=b"{}" if entry["method"] in {"POST", "PUT"} else None,
                )  # fmt: skip
                checked += 1
                access = entry["access"]
                if access == "public":
                    allowed = True
                elif role is None:
                    allowed = False
                elif access == "authenticated":
                    allowed = True
                else:
                    allowed = access in permissions_of([role])
                if allowed:
                    ok = response.status_code not in {401, 403}
                else:
                    ok = response.status_code == (401 if role is None else 403)
                if not ok:
                    mismatches.append(f"{entry['method']} {path} as {role}: {response.status_code}")
    assert checked == len([entry for entry in policy if not entry["page"]]) * 4
    assert mismatches == []


# -- tokens: attacks with the real keys -----------------------------------------------------


def _forgeries(system: RunningSystem, genuine: str) -> dict[str, str]:
    header, payload, signature = genuine.split(".")
    claims = json.loads(_unb64(payload))
    kid = json.loads(_unb64(header))["kid"]
    with system.client() as client:
        jwk = next(
            k for k in client.get("/.well-known/jwks.json").json()["keys"] if k["kid"] == kid
        )
    admin = _b64(json.dumps({**claims, "roles": ["admin"]}).encode())
    none_header = _b64(json.dumps({"alg": "none", "typ": "at+jwt", "kid": kid}).encode())
    hs_header = _b64(json.dumps({"alg": "HS256", "typ": "at+jwt", "kid": kid}).encode())
    hs_mac = hmac.new(jwk["x"].encode(), f"{hs_header}.{admin}".encode(), hashlib.sha256).digest()
    return {
        "tampered payload (roles: admin)": f"{header}.{admin}.{signature}",
        "alg none": f"{none_header}.{admin}.",
        "HS256 signed with the published key": f"{hs_header}.{admin}.{_b64(hs_mac)}",
        "signature cut off": f"{header}.{payload}.",
        "oversized": genuine + "." + "A" * 5000,
    }


def test_forged_tokens_are_refused_at_the_gateway_and_by_the_service(
    system: RunningSystem,
) -> None:
    genuine = system.token("alice")
    refused: dict[str, tuple[int, int]] = {}
    with system.client() as gateway, _direct_accounts(system) as direct:
        assert gateway.get("/api/v1/accounts", headers=_bearer(genuine)).status_code == 200
        assert direct.get("/api/v1/accounts", headers=_bearer(genuine)).status_code == 200
        for name, forged in _forgeries(system, genuine).items():
            via_gateway = gateway.get("/api/v1/accounts", headers=_bearer(forged))
            directly = direct.get("/api/v1/accounts", headers=_bearer(forged))
            refused[name] = (via_gateway.status_code, directly.status_code)
            assert via_gateway.headers["content-type"] == PROBLEM
    assert set(refused.values()) == {(401, 401)}, refused


def test_logout_revokes_the_session_everywhere(system: RunningSystem) -> None:
    user_id, username, password = _new_user(system)
    with system.client() as client, _direct_accounts(system, user_id) as direct:
        login = _login(client, username, password).json()
        access = _bearer(login["access_token"])
        assert client.get("/api/v1/accounts", headers=access).status_code == 200
        assert direct.get("/api/v1/accounts", headers=access).status_code == 200
        out = client.post("/api/v1/auth/logout", data={"refresh_token": login["refresh_token"]})
        assert out.status_code == 204
        _eventually(lambda: client.get("/api/v1/accounts", headers=access).status_code == 401)
        _eventually(lambda: direct.get("/api/v1/accounts", headers=access).status_code == 401)


def test_refresh_token_reuse_kills_the_whole_family(system: RunningSystem) -> None:
    _, username, password = _new_user(system)
    with system.client() as client:
        first = _login(client, username, password).json()
        refresh = {"grant_type": "refresh_token"}
        second = client.post(
            "/api/v1/auth/token", data={**refresh, "refresh_token": first["refresh_token"]}
        )
        assert second.status_code == 200
        rotated = second.json()
        replay = client.post(
            "/api/v1/auth/token", data={**refresh, "refresh_token": first["refresh_token"]}
        )
        assert replay.status_code == 400
        assert replay.json()["error"] == "invalid_grant"
        thief_or_victim = client.post(
            "/api/v1/auth/token", data={**refresh, "refresh_token": rotated["refresh_token"]}
        )
        assert thief_or_victim.status_code == 400
        access = _bearer(rotated["access_token"])
        _eventually(lambda: client.get("/api/v1/accounts", headers=access).status_code == 401)


# -- login protection ----------------------------------------------------------------------


def test_repeated_failures_lock_the_account_without_revealing_it(system: RunningSystem) -> None:
    _, username, password = _new_user(system)
    with system.client() as client:
        failures = [_login(client, username, "wrong-password-123") for _ in range(5)]
        assert {r.status_code for r in failures} == {400}
        locked = _login(client, username, password)  # the right password, while locked out
        unknown = _login(client, f"nobody-{uuid.uuid4().hex[:6]}", "wrong-password-123")

        def visible(response: httpx.Response) -> dict[str, Any]:
            body: dict[str, Any] = response.json()
            return {k: v for k, v in body.items() if k not in {"request_id", "instance"}}

        assert locked.status_code == unknown.status_code == 400
        assert visible(locked) == visible(unknown) == visible(failures[0])


# -- keys ----------------------------------------------------------------------------------


def test_key_rotation_keeps_old_tokens_working(system: RunningSystem) -> None:
    old_token = system.token("alice")
    old_kid = json.loads(_unb64(old_token.split(".")[0]))["kid"]
    rotated = system.flotilla("auth", "rotate-keys")
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    with system.client() as client:
        published = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
        staged = published - {old_kid}
        assert len(staged) == 1, "the new key is published before it signs"

        def new_key_signs() -> bool:
            header = system.token("alice").split(".")[0]
            return bool(json.loads(_unb64(header))["kid"] in staged)

        _eventually(new_key_signs, 30)
        new_token = system.token("alice")
        with _direct_accounts(system) as direct:
            for token in (old_token, new_token):
                assert client.get("/api/v1/accounts", headers=_bearer(token)).status_code == 200
                assert direct.get("/api/v1/accounts", headers=_bearer(token)).status_code == 200
        kids = {k["kid"] for k in client.get("/.well-known/jwks.json").json()["keys"]}
        assert old_kid in kids, "the old key stays published while its tokens live"


# -- audit ---------------------------------------------------------------------------------


def test_audit_chains_verify_and_tampering_is_found(system: RunningSystem) -> None:
    _new_user(system)
    report = system.flotilla("audit", "verify", "--json")
    assert report.returncode == 0, report.stdout + report.stderr
    services = {r["service"]: r for r in json.loads(report.stdout)["services"]}
    assert services["auth"]["intact"]
    assert services["auth"]["records"] > 0
    # One audit log per database: each ledger shard keeps its own, payments and inventory
    # (the catalogue's admin actions) their own.
    assert set(services) == {"auth", "accounts-s0", "accounts-s1", "payments", "inventory"}
    assert services["inventory"]["records"] > 0  # the demo catalogue was created by an admin
    assert all(r["intact"] for r in services.values())
    tail = system.flotilla("audit", "tail", "--service", "auth", "--json", "--limit", "200")
    actions = {json.loads(line)["action"] for line in tail.stdout.splitlines()}
    assert {"login.success", "user.created"} <= actions

    # Someone with the database owner's rights edits history: the chain shows it.
    with sqlite3.connect(system.var_dir / "auth.db") as db:
        db.execute("DROP TRIGGER audit_events_no_update")
        db.execute("UPDATE audit_events SET actor = 'nobody' WHERE seq = 2")
    broken = system.flotilla("audit", "verify", "--json")
    assert broken.returncode == 1
    auth = next(r for r in json.loads(broken.stdout)["services"] if r["service"] == "auth")
    assert (auth["intact"], auth["first_broken_seq"]) == (False, 2)


# -- HTTP hygiene ---------------------------------------------------------------------------


def test_security_headers_and_no_cors(system: RunningSystem) -> None:
    with system.client() as client:
        token = client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": system.password("alice"),
            },
        )
        accounts = client.get("/api/v1/accounts", headers=_bearer(token.json()["access_token"]))
        missing = client.get("/nowhere")
        for response in (token, accounts, missing):
            assert response.headers["strict-transport-security"].startswith("max-age=")
            assert response.headers["x-content-type-options"] == "nosniff"
            assert "access-control-allow-origin" not in response.headers
        assert token.headers["cache-control"] == "no-store"
        preflight = client.options(
            "/api/v1/accounts",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
        assert preflight.status_code in {404, 405}
        assert not [h for h in preflight.headers if h.startswith("access-control-")]


# -- service identity ------------------------------------------------------------------------


async def test_a_service_calls_another_with_its_own_token_over_mtls(system: RunningSystem) -> None:
    tls = system.var_dir / "tls"
    payments = ensure_dev_pki(tls, ["payments"])["payments"]  # signed by the system's CA
    auth_urls = [
        f"{i['url']}/api/v1/auth/token"
        for i in system.status()["instances"]
        if i["service"] == "auth"
    ]
    mtls = client_context(payments.ca, payments.cert, payments.key)
    provider = ServiceTokenProvider(
        "payments", auth_urls, cert_file=payments.cert, key_file=payments.key, ssl_context=mtls
    )
    token = await provider.token()
    assert await provider.token() == token  # cached until shortly before it expires
    claims = json.loads(_unb64(token.split(".")[1]))
    assert (claims["sub"], claims["roles"]) == ("service:payments", ["service:payments"])

    with system.client() as gateway:
        alices = gateway.get("/api/v1/accounts", headers=_bearer(system.token("alice")))
    account_id = alices.json()["items"][0]["id"]
    url = system.instance_urls("accounts", shard_of(account_id))[0]
    async with httpx.AsyncClient(base_url=url, verify=mtls) as direct:
        # service:payments holds accounts:read:any
        assert (
            await direct.get(f"/api/v1/accounts/{account_id}", headers=_bearer(token))
        ).status_code == 200
        assert (await direct.get(f"/api/v1/accounts/{account_id}")).status_code == 401

    # A certificate from another CA does not make a service.
    stranger = ensure_dev_pki(system.var_dir / "stranger-ca", ["payments"])["payments"]
    impostor = ServiceTokenProvider(
        "payments", auth_urls, cert_file=stranger.cert, key_file=stranger.key, ssl_context=mtls
    )
    with pytest.raises(RuntimeError, match="invalid-client"):
        await impostor.token()
