"""What the auth service plugs into its ports: SQL repositories, the audit trail, argon2,
Ed25519 keys, the client-assertion verifier, the common-password list."""

from flotilla_auth.adapters.client_assertions import X509ClientAssertionVerifier
from flotilla_auth.adapters.common_passwords import default_password_policy
from flotilla_auth.adapters.key_material import Ed25519KeyMaterial
from flotilla_auth.adapters.passwords import Argon2PasswordHasher
from flotilla_auth.adapters.tables import audit_log, metadata
from flotilla_auth.adapters.token_signer import JwtSigner
from flotilla_auth.adapters.unit_of_work import SqlAuthUnitOfWork, SqlUnitOfWorkFactory

__all__ = [
    "Argon2PasswordHasher",
    "Ed25519KeyMaterial",
    "JwtSigner",
    "SqlAuthUnitOfWork",
    "SqlUnitOfWorkFactory",
    "X509ClientAssertionVerifier",
    "audit_log",
    "default_password_policy",
    "metadata",
]
