"""Roles and what they may do: the one declarative policy the gateway and services share.

A permission is `resource:action` (`accounts:read`) or `resource:action:any` when it
reaches beyond the caller's own resources. Ownership itself is checked by the service that
owns the data.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["ROLES", "ROLE_PERMISSIONS", "permissions_of"]

ROLE_PERMISSIONS: Mapping[str, frozenset[str]] = {
    "customer": frozenset(
        {
            "accounts:read",
            "accounts:open",
            "payments:transfer",
            "payments:read",
            "orders:create",
            "orders:read",
            "invoices:read",
            # flotilla new service: customer
        }
    ),
    "support": frozenset(
        {
            "accounts:read",
            "accounts:read:any",
            "users:read",
            "payments:read",
            "payments:read:any",
            "orders:read",
            "orders:read:any",
            # A confirmed order's money back, in full (the orders service).
            "orders:refund",
            "invoices:read",
            "invoices:read:any",
            # The operator console (the web service): the system's state, the audit logs.
            "system:read",
            "audit:read",
            # flotilla new service: support
        }
    ),
    "admin": frozenset(
        {
            "accounts:read",
            "accounts:read:any",
            "accounts:open",
            "accounts:open:any",
            "accounts:deposit",
            "payments:transfer",
            "payments:read",
            "payments:read:any",
            "users:read",
            "users:admin",
            "inventory:write",
            "orders:read",
            "orders:read:any",
            "orders:refund",
            "invoices:read",
            "invoices:read:any",
            "system:read",
            "audit:read",
            # Acting on the system from the console: requeue dead letters, scale services.
            "system:operate",
            # flotilla new service: admin
        }
    ),
    # Grants nothing: a tier, held next to another role by the identities of a load test
    # (`flotilla bench cost`), which a gateway may exempt from per-identity rate limits
    # (FLOTILLA_RATE_LIMIT_EXEMPT_ROLES) while everyone else keeps them.
    "load-test": frozenset(),
    # Service identities: what a service may do with its own (client-credentials) token.
    "service:payments": frozenset({"accounts:read:any", "ledger:post"}),
    # A ledger shard asking the coordinator how an in-doubt transfer ended.
    "service:accounts": frozenset({"payments:outcome:read"}),
    # The checkout saga: holds and sells stock, checks the paying account, and moves the
    # money of the customer who placed the order (and refunds it from the shop's account).
    "service:orders": frozenset(
        {
            "payments:transfer",
            "payments:transfer:on-behalf",
            "payments:read:any",
            "inventory:reserve",
            "accounts:read:any",
        }
    ),
}

# The services that may obtain a token of their own, and the role it carries.
SERVICE_ROLES: Mapping[str, str] = {
    "payments": "service:payments",
    "accounts": "service:accounts",
    "orders": "service:orders",
}

ROLES = frozenset(ROLE_PERMISSIONS)
# Roles a person can hold (the admin API refuses to give a user a service role).
USER_ROLES = ROLES - frozenset(SERVICE_ROLES.values())


def permissions_of(roles: Iterable[str]) -> frozenset[str]:
    """The union of the permissions of `roles`; unknown roles grant nothing."""
    granted: set[str] = set()
    for role in roles:
        granted |= ROLE_PERMISSIONS.get(role, frozenset())
    return frozenset(granted)
