"""Settings of the auth service: the kit's common fields plus ours (`FLOTILLA_*`)."""

from __future__ import annotations

from pydantic import Field, SecretStr

from flotilla_auth.domain.token_policy import MAX_ACCESS_TOKEN_TTL_S, MIN_ACCESS_TOKEN_TTL_S
from flotilla_kit.settings import ServiceSettings

__all__ = ["AuthSettings"]

_DAY_S = 24 * 3600


class AuthSettings(ServiceSettings):
    service_name: str = Field(default="auth", description="Name in logs and metrics.")
    key_encryption_key: SecretStr = Field(
        # A placeholder on purpose: the kit refuses it outside the `dev` profile.
        default=SecretStr("dev-insecure-key-encryption-key"),
        min_length=1,
        max_length=1023,
        description=(
            "Secret that encrypts the signing keys' private halves at rest. Changing it "
            "makes the stored keys unreadable."
        ),
    )
    access_token_ttl_s: int = Field(
        default=600,
        ge=MIN_ACCESS_TOKEN_TTL_S,
        le=MAX_ACCESS_TOKEN_TTL_S,
        description="Lifetime of an access token in seconds (60-900; they cannot be revoked).",
    )
    refresh_token_ttl_s: int = Field(
        default=30 * _DAY_S,
        ge=60,
        le=365 * _DAY_S,
        description="Lifetime of a refresh token in seconds; each refresh starts a new one.",
    )
