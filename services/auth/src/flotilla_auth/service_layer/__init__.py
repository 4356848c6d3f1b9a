"""Use cases of the auth service, the ports they need, and its exception tree."""

from flotilla_auth.service_layer.components import Components
from flotilla_auth.service_layer.service_tokens import ServiceTokenGrant, grant_client_credentials
from flotilla_auth.service_layer.sessions import forget_expired_records, revoked_sessions
from flotilla_auth.service_layer.signing_keys import (
    KeyRing,
    ensure_active_signing_key,
    promote_staged_key,
    published_signing_keys,
    rotate_signing_keys,
    stage_signing_key,
)
from flotilla_auth.service_layer.tokens import (
    TokenGrant,
    grant_password,
    grant_refresh_token,
    revoke_refresh_family,
)
from flotilla_auth.service_layer.users import UserSpec, ensure_users, get_user

__all__ = [
    "Components",
    "KeyRing",
    "ServiceTokenGrant",
    "TokenGrant",
    "UserSpec",
    "ensure_active_signing_key",
    "ensure_users",
    "forget_expired_records",
    "get_user",
    "grant_client_credentials",
    "grant_password",
    "grant_refresh_token",
    "promote_staged_key",
    "published_signing_keys",
    "revoke_refresh_family",
    "revoked_sessions",
    "rotate_signing_keys",
    "stage_signing_key",
]
