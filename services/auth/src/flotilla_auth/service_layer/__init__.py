"""Use cases of the auth service, the ports they need, and its exception tree."""

from flotilla_auth.service_layer.components import Components
from flotilla_auth.service_layer.signing_keys import (
    ensure_active_signing_key,
    published_signing_keys,
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
    "TokenGrant",
    "UserSpec",
    "ensure_active_signing_key",
    "ensure_users",
    "get_user",
    "grant_password",
    "grant_refresh_token",
    "published_signing_keys",
    "revoke_refresh_family",
]
