"""What the auth service plugs into its ports: SQL repositories, argon2, Ed25519 keys."""

from flotilla_auth.adapters.key_material import Ed25519KeyMaterial
from flotilla_auth.adapters.passwords import Argon2PasswordHasher
from flotilla_auth.adapters.tables import metadata
from flotilla_auth.adapters.token_signer import JwtSigner
from flotilla_auth.adapters.unit_of_work import SqlAuthUnitOfWork, SqlUnitOfWorkFactory

__all__ = [
    "Argon2PasswordHasher",
    "Ed25519KeyMaterial",
    "JwtSigner",
    "SqlAuthUnitOfWork",
    "SqlUnitOfWorkFactory",
    "metadata",
]
