from __future__ import annotations

import base64
from collections.abc import Callable

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from flotilla_kit.service_identity import client_assertion
from flotilla_kit.tls import CertificatePaths


def test_the_assertion_is_signed_with_the_tls_key_and_carries_the_certificate(
    dev_pki: Callable[[str], CertificatePaths],
) -> None:
    certs = dev_pki("payments")
    assertion = client_assertion("payments", "flotilla-auth", certs.cert, certs.key)
    header = jwt.get_unverified_header(assertion)
    assert header["alg"] == "ES256"
    leaf = x509.load_der_x509_certificate(base64.b64decode(header["x5c"][0]))
    assert leaf == x509.load_pem_x509_certificate(certs.cert.read_bytes())
    public_key = leaf.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    claims = jwt.decode(assertion, public_key, algorithms=["ES256"], audience="flotilla-auth")
    assert claims["iss"] == claims["sub"] == "payments"
    assert claims["exp"] - claims["iat"] <= 60
    again = jwt.decode(
        client_assertion("payments", "flotilla-auth", certs.cert, certs.key),
        options={"verify_signature": False},
    )
    assert again["jti"] != claims["jti"]
