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
        description="Lifetime of an access token in seconds (300-900).",
    )
    refresh_token_ttl_s: int = Field(
        default=30 * _DAY_S,
        ge=60,
        le=365 * _DAY_S,
        description="Lifetime of a refresh token in seconds; each refresh starts a new one.",
    )

    # -- signing-key rotation ------------------------------------------------------------
    key_publish_delay_s: int = Field(
        default=600,
        # Short values are for tests that watch a rotation happen; in production keep it
        # above the verifiers' JWKS refetch interval plus the JWKS cache max-age (60 s), or
        # verifiers refuse the new key's tokens until they refetch (never worse than that).
        ge=1,
        le=7 * _DAY_S,
        description="A staged key signs only after it has been published this long.",
    )
    key_rotation_period_s: int = Field(
        default=30 * _DAY_S,
        ge=3600,
        le=365 * _DAY_S,
        description="The timer stages a successor once the active key has signed this long.",
    )
    key_check_interval_s: float = Field(
        default=30,
        gt=0,
        # A retired key stays published for the token lifetime plus 60 s; an instance may
        # sign with it for up to one interval after another instance retired it, and
        # verifiers allow 30 s of skew. 30 + 30 <= 60 keeps every token verifiable.
        le=30,
        description=(
            "How often each instance promotes due keys, stages on schedule, reloads its "
            "signer and JWKS, and forgets expired counters (seconds)."
        ),
    )

    # -- login protection ------------------------------------------------------------------
    login_account_max_failures: int = Field(
        default=5, ge=1, le=100, description="Failed logins of one username that lock it."
    )
    login_account_window_s: int = Field(
        default=900, ge=60, le=_DAY_S, description="Window those failures must fall in."
    )
    login_lockout_base_s: int = Field(
        default=60, ge=1, le=3600, description="First lockout; doubles with each failure after."
    )
    login_lockout_max_s: int = Field(default=900, ge=1, le=_DAY_S, description="Longest lockout.")
    login_ip_max_failures: int = Field(
        default=20,
        ge=1,
        le=100_000,
        description="Failed logins from one IP after which it gets 429 until the window ends.",
    )
    login_ip_window_s: int = Field(
        default=300, ge=10, le=_DAY_S, description="Window of the per-IP count."
    )
