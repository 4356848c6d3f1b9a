"""Access tokens an attacker might send, crafted by hand so that each flaw is plain to see.

A JWS compact token is `base64url(header) . base64url(claims) . base64url(signature)`,
where the signature covers the first two parts as they are written. `Forge` builds tokens
part by part rather than through a JWT library, because a library refuses to produce
most of these (`alg: none`, HMAC keyed with a public key, a missing `exp`).

`Forge.trusted` is the key the gateway trusts (its JWKS is what the fake auth service
publishes); `Forge.attacker` is a key nobody published, under the same `kid`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = ["Attack", "Forge", "Signer", "attacks"]

ISSUER = "flotilla-auth"
AUDIENCE = "flotilla"
KID = "test-key-1"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def part(document: dict[str, Any]) -> str:
    return b64url(json.dumps(document, separators=(",", ":")).encode())


class Signer:
    """An Ed25519 key, and the JWKS that would publish it under `kid`."""

    def __init__(self, kid: str = KID) -> None:
        self.kid = kid
        self.key = Ed25519PrivateKey.generate()
        public = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(self.key.public_key()))
        self.jwk: dict[str, Any] = {**public, "kid": kid, "alg": "EdDSA", "use": "sig"}
        self.jwks: dict[str, Any] = {"keys": [self.jwk]}

    @property
    def public_pem(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    @property
    def public_raw(self) -> bytes:
        return self.key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, header: dict[str, Any], claims: dict[str, Any]) -> str:
        signing_input = f"{part(header)}.{part(claims)}"
        signature = self.key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{b64url(signature)}"


def _merge(base: dict[str, Any], changes: dict[str, Any] | None) -> dict[str, Any]:
    """`base` with `changes` applied; a change to None removes the field."""
    merged = dict(base)
    for name, value in (changes or {}).items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


class Forge:
    def __init__(self) -> None:
        self.trusted = Signer()
        self.attacker = Signer()  # same kid as the trusted key, never published

    def header(self, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        return _merge({"alg": "EdDSA", "typ": "at+jwt", "kid": self.trusted.kid}, changes)

    def claims(self, changes: dict[str, Any] | None = None) -> dict[str, Any]:
        now = int(time.time())
        base = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "user-1",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": uuid.uuid4().hex,
            "roles": ["customer"],
            "scope": "",
            "sid": "session-1",
        }
        return _merge(base, changes)

    def token(
        self,
        *,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        signer: Signer | None = None,
    ) -> str:
        """A token signed with `signer` (the trusted key by default); valid unless changed."""
        return (signer or self.trusted).sign(self.header(header), self.claims(claims))

    # the attacks

    def alg_none(self) -> str:
        """No signature at all, and a header saying none is needed."""
        return f"{part(self.header({'alg': 'none'}))}.{part(self.claims())}."

    def hs256_keyed_with(self, secret: bytes) -> str:
        """HMAC "signed" with the public key, hoping the verifier uses it as a shared secret."""
        signing_input = f"{part(self.header({'alg': 'HS256'}))}.{part(self.claims())}"
        mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
        return f"{signing_input}.{b64url(mac)}"

    def unknown_kid(self) -> str:
        return self.token(header={"kid": "no-such-key"})

    def unpublished_key(self) -> str:
        """Signed with a key the auth service never published, under the published `kid`."""
        return self.token(signer=self.attacker)

    def tampered_payload(self) -> str:
        """A genuine token whose claims were swapped for better ones, signature kept."""
        header, _, signature = self.token().split(".")
        escalated = part(self.claims({"sub": "admin", "roles": ["admin"]}))
        return f"{header}.{escalated}.{signature}"

    def expired(self) -> str:
        now = int(time.time())
        # Well past the verifier's clock-skew allowance (30 s).
        return self.token(claims={"iat": now - 600, "nbf": now - 600, "exp": now - 120})

    def not_yet_valid(self) -> str:
        now = int(time.time())
        return self.token(claims={"nbf": now + 300, "exp": now + 900})

    def wrong_issuer(self) -> str:
        return self.token(claims={"iss": "https://evil.example"})

    def wrong_audience(self) -> str:
        return self.token(claims={"aud": "some-other-api"})

    def missing_exp(self) -> str:
        return self.token(claims={"exp": None})

    def wrong_typ(self) -> str:
        """An ID token or other JWT presented as an access token (RFC 9068, section 4)."""
        return self.token(header={"typ": "JWT"})

    def foreign_jku(self, jwks_url: str) -> str:
        """Signed with the attacker's key, naming where that key can be found."""
        return self.token(
            header={"jku": jwks_url, "kid": "attacker-key"}, signer=Signer("attacker-key")
        )

    def embedded_jwk(self) -> str:
        """Signed with the attacker's key, and carrying that key in the header."""
        public = {k: v for k, v in self.attacker.jwk.items() if k in ("kty", "crv", "x")}
        return self.token(header={"jwk": public}, signer=self.attacker)

    def oversized(self) -> str:
        """Genuine, but over the 4096 bytes a verifier accepts to parse."""
        return self.token(claims={"pad": "x" * 4200})

    def revoked(self, session_id: str) -> str:
        """Genuine, from a session the auth service has since revoked (logout, reuse)."""
        return self.token(claims={"sid": session_id})


@dataclass(frozen=True)
class Attack:
    name: str
    make: Callable[[Forge], str]
    # A fragment of the reason the gateway logs when it refuses the token (any case).
    reason: str


def attacks(*, jku_url: str, revoked_session: str) -> list[Attack]:
    return [
        Attack("alg none", Forge.alg_none, "algorithm 'none'"),
        Attack(
            "HS256 keyed with the public key (PEM)",
            lambda f: f.hs256_keyed_with(f.trusted.public_pem),
            "algorithm 'HS256'",
        ),
        Attack(
            "HS256 keyed with the public key (raw)",
            lambda f: f.hs256_keyed_with(f.trusted.public_raw),
            "algorithm 'HS256'",
        ),
        Attack("unknown kid", Forge.unknown_kid, "unknown kid"),
        Attack("key not in the JWKS under a known kid", Forge.unpublished_key, "signature"),
        Attack("tampered payload", Forge.tampered_payload, "signature"),
        Attack("expired", Forge.expired, "expired"),
        Attack("nbf in the future", Forge.not_yet_valid, "not yet valid"),
        Attack("wrong iss", Forge.wrong_issuer, "issuer"),
        Attack("wrong aud", Forge.wrong_audience, "audience"),
        Attack("missing exp", Forge.missing_exp, '"exp"'),
        Attack("typ not at+jwt", Forge.wrong_typ, "typ"),
        Attack("jku pointing elsewhere", lambda f: f.foreign_jku(jku_url), "key source"),
        Attack("jwk embedded in the header", Forge.embedded_jwk, "key source"),
        Attack("oversized token", Forge.oversized, "too large"),
        Attack("revoked session", lambda f: f.revoked(revoked_session), "revoked"),
    ]
