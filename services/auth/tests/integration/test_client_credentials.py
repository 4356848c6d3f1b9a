"""The client-credentials grant: services sign in with an assertion signed by the key of
their TLS certificate (RFC 7523, `x5c`)."""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from fastapi import FastAPI

from flotilla_auth.bootstrap import create_app
from flotilla_auth.settings import AuthSettings
from flotilla_kit.service_identity import CLIENT_ASSERTION_TYPE, client_assertion
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tls import CertificatePaths, ensure_dev_pki
from flotilla_kit.tokens import JwksCache, TokenVerifier

from .helpers import TOKEN_PATH, MovableClock, changed_tables, cheap_hasher, table_rows

Pki = Callable[[str], CertificatePaths]


@pytest.fixture
def trusting(settings: AuthSettings, dev_pki: Pki) -> AuthSettings:
    return settings.model_copy(update={"tls": TlsSettings(ca_file=dev_pki("payments").ca)})


@pytest.fixture
async def service_client(
    trusting: AuthSettings, clock: MovableClock
) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = create_app(trusting, password_hasher=cheap_hasher(), clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://auth.test"
        ) as client,
    ):
        yield client


async def client_credentials(
    client: httpx.AsyncClient, assertion: str, **extra: str
) -> httpx.Response:
    return await client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": CLIENT_ASSERTION_TYPE,
            "client_assertion": assertion,
            **extra,
        },
    )


def signed(
    paths: CertificatePaths,
    *,
    claims: dict[str, Any] | None = None,
    key: ec.EllipticCurvePrivateKey | None = None,
    cert: x509.Certificate | None = None,
    name: str = "payments",
) -> str:
    """An assertion like the kit's, with any claim, key or certificate replaced."""
    now = int(time.time())
    body = {
        "iss": name,
        "sub": name,
        "aud": "flotilla-auth",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **(claims or {}),
    }
    certificate = cert or x509.load_pem_x509_certificate(paths.cert.read_bytes())
    signer = key or serialization.load_pem_private_key(paths.key.read_bytes(), password=None)
    chain = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]
    return jwt.encode(body, signer, algorithm="ES256", headers={"x5c": chain})  # type: ignore[arg-type]


def issued_by_dev_ca(
    paths: CertificatePaths,
    *,
    usages: list[x509.ObjectIdentifier],
    valid_days: tuple[int, int] = (-1, 30),
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A certificate for `payments` from the trusted CA, with the usages and validity given."""
    ca_cert = x509.load_pem_x509_certificate(paths.ca.read_bytes())
    ca_key = serialization.load_pem_private_key(
        (paths.ca.parent / "ca-key.pem").read_bytes(), password=None
    )
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "payments")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_days[0]))
        .not_valid_after(now + dt.timedelta(days=valid_days[1]))
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def unsigned(paths: CertificatePaths, alg: str, signature: bytes = b"") -> str:
    def part(value: Any) -> str:
        raw = value if isinstance(value, bytes) else json.dumps(value).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    cert = x509.load_pem_x509_certificate(paths.cert.read_bytes())
    chain = [base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()]
    now = int(time.time())
    claims = {
        "iss": "payments",
        "sub": "payments",
        "aud": "flotilla-auth",
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    return f"{part({'alg': alg, 'x5c': chain})}.{part(claims)}.{part(signature)}"


async def test_a_service_gets_a_token_for_its_role(
    service_client: httpx.AsyncClient, dev_pki: Pki, trusting: AuthSettings, database_url: str
) -> None:
    paths = dev_pki("payments")
    assertion = client_assertion("payments", "flotilla-auth", paths.cert, paths.key)

    response = await client_credentials(service_client, assertion, client_id="payments")

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert set(body) == {"access_token", "token_type", "expires_in", "scope"}  # no refresh
    assert body["expires_in"] == trusting.access_token_ttl_s
    cache = JwksCache([])
    cache.load((await service_client.get("/.well-known/jwks.json")).json())
    verifier = TokenVerifier(cache, issuer="flotilla-auth", audience="flotilla")
    principal = await verifier.verify(body["access_token"])
    assert principal.subject == "service:payments"
    assert principal.roles == frozenset({"service:payments"})
    assert principal.session_id is None
    assert principal.can("ledger:post")
    rows = await table_rows(database_url)
    [issued] = [e for e in rows["audit_events"] if e["action"] == "client_credentials.issued"]
    assert issued["actor"] == "service:payments"
    assert len(rows["client_assertions"]) == 1


async def test_bad_assertions_are_all_invalid_client(
    service_client: httpx.AsyncClient, dev_pki: Pki, tmp_path: Path, database_url: str
) -> None:
    paths = dev_pki("payments")
    foreign = ensure_dev_pki(tmp_path / "other-ca", ["payments"])["payments"]
    server_only, server_key = issued_by_dev_ca(paths, usages=[ExtendedKeyUsageOID.SERVER_AUTH])
    expired_cert, expired_key = issued_by_dev_ca(
        paths, usages=[ExtendedKeyUsageOID.CLIENT_AUTH], valid_days=(-30, -1)
    )
    now = int(time.time())
    replayed = client_assertion("payments", "flotilla-auth", paths.cert, paths.key)
    assert (await client_credentials(service_client, replayed)).status_code == 200
    cases = {
        "replayed-jti": replayed,
        "another-ca": client_assertion("payments", "flotilla-auth", foreign.cert, foreign.key),
        "unknown-service": client_assertion(
            "gateway", "flotilla-auth", dev_pki("gateway").cert, dev_pki("gateway").key
        ),
        "no-client-auth-usage": signed(paths, cert=server_only, key=server_key),
        "certificate-expired": signed(paths, cert=expired_cert, key=expired_key),
        "expired": signed(paths, claims={"iat": now - 400, "exp": now - 60}),
        "lives-too-long": signed(paths, claims={"exp": now + 600}),
        "wrong-audience": signed(paths, claims={"aud": "flotilla"}),
        "audience-list": signed(paths, claims={"aud": ["flotilla-auth", "other"]}),
        "issuer-not-cn": signed(paths, claims={"iss": "orders", "sub": "orders"}),
        "subject-not-cn": signed(paths, claims={"sub": "orders"}),
        "no-jti": signed(paths, claims={"jti": None}),
        "signed-by-another-key": signed(paths, key=ec.generate_private_key(ec.SECP256R1())),
        "hs256": unsigned(paths, "HS256", b"0" * 32),
        "none": unsigned(paths, "none"),
        "garbage": "not.a.jwt",
    }
    before = await table_rows(database_url)

    for case, assertion in cases.items():
        response = await client_credentials(service_client, assertion)

        assert response.status_code == 401, (case, response.text)
        body = response.json()
        assert body["error"] == "invalid_client", case
        assert body["type"].endswith("/invalid-client"), case
        assert body["detail"] == "Client authentication failed.", case  # says nothing more

    wrong_type = await service_client.post(
        TOKEN_PATH,
        data={
            "grant_type": "client_credentials",
            "client_assertion_type": "password",
            "client_assertion": replayed,
        },
    )
    missing = await service_client.post(TOKEN_PATH, data={"grant_type": "client_credentials"})
    other_client = await client_credentials(
        service_client,
        client_assertion("payments", "flotilla-auth", paths.cert, paths.key),
        client_id="orders",
    )
    assert {r.status_code for r in (wrong_type, missing, other_client)} == {401}
    after = await table_rows(database_url)
    # Each refusal is audited, in its own transaction; nothing else changes.
    assert changed_tables(before, after) == {"audit_events"}
    refused = [e for e in after["audit_events"] if e["action"] == "client_credentials.refused"]
    assert len(refused) == len(cases) + 3
    reasons = [json.loads(e["details"])["reason"] for e in refused]
    # Each case was refused for its own reason (the audit trail keeps it; the client
    # never sees it).
    expected = {
        "replayed-jti": "replayed",
        "another-ca": "not issued by the trusted CA",
        "unknown-service": "not a service",
        "no-client-auth-usage": "does not allow client authentication",
        "certificate-expired": "certificate not valid now",
        "expired": "assertion expired",
        "lives-too-long": "longer than 5 minutes",
        "wrong-audience": "Audience doesn't match",
        "audience-list": "Invalid claim format",
        "issuer-not-cn": "Invalid issuer",
        "subject-not-cn": "sub is not",
        "no-jti": "jti",
        "signed-by-another-key": "Signature verification failed",
        "hs256": "'HS256' not allowed",
        "none": "'none' not allowed",
        "garbage": "malformed",
        "wrong-type": "client_assertion_type",
        "missing": "client_assertion_type",
        "other-client-id": "client_id",
    }
    assert list(expected) == [*cases, "wrong-type", "missing", "other-client-id"]
    for (case, fragment), reason in zip(expected.items(), reasons, strict=True):
        assert fragment in reason, (case, reason)


async def test_without_a_trusted_ca_no_service_can_sign_in(
    settings: AuthSettings, dev_pki: Pki, clock: MovableClock
) -> None:
    assert settings.tls.ca_file is None
    app: FastAPI = create_app(settings, password_hasher=cheap_hasher(), clock=clock)
    paths = dev_pki("payments")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://a") as client,
    ):
        response = await client_credentials(
            client, client_assertion("payments", "flotilla-auth", paths.cert, paths.key)
        )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
