"""Checks RFC 7523 client assertions signed with a service's TLS key (`private_key_jwt`
with the certificate in `x5c`).

The certificate must be issued directly by the CA that signs our mTLS peers, be valid now,
allow client authentication, and not be a CA itself; the assertion must be ES256, signed
by that certificate's key, name the certificate's CN as `iss` and `sub`, be addressed to
us, and expire within five minutes. Which CNs are services, and whether the `jti` was seen
before, are the use case's business.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flotilla_auth.domain.service_clients import (
    ASSERTION_LEEWAY_S,
    ASSERTION_MAX_LIFETIME_S,
    VerifiedAssertion,
)
from flotilla_auth.service_layer.errors import InvalidClient

__all__ = ["X509ClientAssertionVerifier"]

_ALGORITHM = "ES256"
# An assertion carries one certificate (about 700 bytes, base64); anything this big is not
# ours, and is refused before it is parsed.
_MAX_ASSERTION_BYTES = 8192
_MAX_JTI_LENGTH = 128
_LEEWAY = timedelta(seconds=ASSERTION_LEEWAY_S)


def _certificate(header: dict[str, Any]) -> x509.Certificate:
    chain = header.get("x5c")
    if not isinstance(chain, list) or not chain or not isinstance(chain[0], str):
        raise InvalidClient("x5c missing or not a list of certificates")
    try:
        der = base64.b64decode(chain[0], validate=True)
        return x509.load_der_x509_certificate(der)
    except (binascii.Error, ValueError) as exc:
        raise InvalidClient("x5c[0] is not a DER certificate") from exc


def _common_name(cert: x509.Certificate) -> str:
    names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str) or not names[0].value:
        raise InvalidClient("certificate subject has no single CN")
    return names[0].value


def _allows_client_auth(cert: x509.Certificate) -> bool:
    try:
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in usage


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def _instant(claims: dict[str, Any], name: str) -> datetime | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidClient(f"claim {name!r} is not a number")
    try:
        return datetime.fromtimestamp(value, UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise InvalidClient(f"claim {name!r} is out of range") from exc


class X509ClientAssertionVerifier:
    def __init__(self, trusted_cas: Sequence[x509.Certificate], *, audience: str) -> None:
        self._cas = list(trusted_cas)
        self._audience = audience

    @classmethod
    def from_ca_file(cls, ca_file: Path | None, *, audience: str) -> X509ClientAssertionVerifier:
        """With no CA configured nobody can authenticate: every assertion is refused."""
        if ca_file is None:
            return cls([], audience=audience)
        return cls(x509.load_pem_x509_certificates(ca_file.read_bytes()), audience=audience)

    def verify(self, assertion: str, *, now: datetime) -> VerifiedAssertion:
        if not self._cas:
            raise InvalidClient("no CA is configured for client certificates")
        if len(assertion) > _MAX_ASSERTION_BYTES:
            raise InvalidClient("assertion too large")
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise InvalidClient(f"malformed assertion: {exc}") from exc
        # Pinned before anything else: never `none`, never an HMAC keyed with public data.
        if header.get("alg") != _ALGORITHM:
            raise InvalidClient(f"algorithm {header.get('alg')!r} not allowed")
        cert = _certificate(header)
        client_id = _common_name(cert)
        try:
            self._check_certificate(cert, now)
            return self._verify_signed(assertion, cert, client_id, now)
        except InvalidClient as exc:
            exc.client_id = exc.client_id or client_id
            raise

    def _verify_signed(
        self, assertion: str, cert: x509.Certificate, client_id: str, now: datetime
    ) -> VerifiedAssertion:
        public_key = cert.public_key()
        if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
            public_key.curve, ec.SECP256R1
        ):
            raise InvalidClient("certificate key is not a P-256 key")
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                key=public_key,
                algorithms=[_ALGORITHM],
                audience=self._audience,
                issuer=client_id,
                # Times are checked below against our clock, not the process's.
                options={
                    "require": ["iss", "sub", "aud", "exp", "jti"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                    "strict_aud": True,
                },
            )
        except jwt.PyJWTError as exc:
            raise InvalidClient(f"assertion refused: {exc}") from exc
        if claims["sub"] != client_id:
            raise InvalidClient("sub is not the certificate's CN")
        expires_at = self._check_times(claims, now)
        jti = claims["jti"]
        if not isinstance(jti, str) or not 0 < len(jti) <= _MAX_JTI_LENGTH:
            raise InvalidClient("jti must be a string of 1 to 128 characters")
        return VerifiedAssertion(
            client_id=client_id,
            jti=jti,
            expires_at=expires_at,
            certificate_serial=format(cert.serial_number, "x"),
        )

    def _check_certificate(self, cert: x509.Certificate, now: datetime) -> None:
        if not any(self._issued_by(cert, ca) for ca in self._cas):
            raise InvalidClient("certificate not issued by the trusted CA")
        if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
            raise InvalidClient("certificate not valid now")
        if _is_ca(cert):
            raise InvalidClient("certificate is a CA certificate")
        if not _allows_client_auth(cert):
            raise InvalidClient("certificate does not allow client authentication")

    @staticmethod
    def _issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
        try:
            cert.verify_directly_issued_by(ca)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True

    @staticmethod
    def _check_times(claims: dict[str, Any], now: datetime) -> datetime:
        expires_at = _instant(claims, "exp")
        assert expires_at is not None  # required above
        if expires_at + _LEEWAY <= now:
            raise InvalidClient("assertion expired")
        if expires_at > now + timedelta(seconds=ASSERTION_MAX_LIFETIME_S):
            raise InvalidClient("assertion lives longer than 5 minutes")
        not_before = _instant(claims, "nbf")
        if not_before is not None and not_before > now + _LEEWAY:
            raise InvalidClient("assertion not valid yet")
        issued_at = _instant(claims, "iat")
        if issued_at is not None and issued_at > now + _LEEWAY:
            raise InvalidClient("assertion issued in the future")
        return expires_at
