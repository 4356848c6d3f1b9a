"""The client-credentials grant: a service proves who it is with an RFC 7523 assertion
signed by the key of its TLS certificate, and gets an access token for its own role."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flotilla_auth.domain.access_tokens import SERVICE_SUBJECT_PREFIX, AccessTokenClaims
from flotilla_auth.domain.audit_events import AuditAction, Outcome
from flotilla_auth.domain.service_clients import ASSERTION_LEEWAY_S
from flotilla_auth.domain.token_policy import TokenPolicy
from flotilla_auth.service_layer.errors import InvalidClient
from flotilla_auth.service_layer.ports import (
    ClientAssertionVerifier,
    TokenSigner,
    UnitOfWorkFactory,
)
from flotilla_kit.logs import get_logger
from flotilla_kit.rbac import SERVICE_ROLES
from flotilla_kit.service_identity import CLIENT_ASSERTION_TYPE

__all__ = ["CLIENT_ASSERTION_TYPE", "ServiceTokenGrant", "grant_client_credentials"]

_log = get_logger("flotilla.auth.services")


@dataclass(frozen=True, slots=True)
class ServiceTokenGrant:
    """What the token endpoint answers a service: no refresh token (RFC 6749 4.4.3); the
    service signs a new assertion when it needs a new token."""

    access_token: str
    expires_in: int
    scope: str = ""
    token_type: str = "Bearer"  # noqa: S105 - RFC 6750 token type, not a secret


async def _issue(
    *,
    uow: UnitOfWorkFactory,
    assertions: ClientAssertionVerifier,
    signer: TokenSigner,
    policy: TokenPolicy,
    now: datetime,
    assertion_type: str | None,
    assertion: str | None,
    client_id: str | None,
) -> ServiceTokenGrant:
    if assertion_type != CLIENT_ASSERTION_TYPE:
        raise InvalidClient("client_assertion_type missing or unsupported", client_id=client_id)
    if not assertion:
        raise InvalidClient("client_assertion missing", client_id=client_id)
    verified = assertions.verify(assertion, now=now)
    name = verified.client_id
    if client_id is not None and client_id != name:
        raise InvalidClient("client_id is not the assertion's subject", client_id=client_id)
    role = SERVICE_ROLES.get(name)
    if role is None:
        raise InvalidClient(f"{name!r} is not a service that may sign in", client_id=name)
    async with uow() as writer:
        remembered = await writer.client_assertions.remember(
            client_id=name,
            jti=verified.jti,
            expires_at=verified.expires_at + timedelta(seconds=ASSERTION_LEEWAY_S),
        )
        if not remembered:
            raise InvalidClient("assertion replayed (jti seen before)", client_id=name)
        claims = AccessTokenClaims.for_service(name, role=role, policy=policy, now=now)
        grant = ServiceTokenGrant(
            access_token=signer.sign(claims.to_jwt()), expires_in=claims.expires_in
        )
        await writer.audit.record(
            actor=claims.subject,
            action=AuditAction.CLIENT_CREDENTIALS_ISSUED,
            at=now,
            target=claims.subject,
            details={
                "role": role,
                "jti": verified.jti,
                "certificate_serial": verified.certificate_serial,
                "token_id": claims.token_id,
            },
        )
        await writer.commit()
    _log.info("service token issued", client_id=name, role=role)
    return grant


async def grant_client_credentials(
    *,
    uow: UnitOfWorkFactory,
    assertions: ClientAssertionVerifier,
    signer: TokenSigner,
    policy: TokenPolicy,
    now: datetime,
    assertion_type: str | None,
    assertion: str | None,
    client_id: str | None = None,
) -> ServiceTokenGrant:
    """A service's own access token (`sub` `service:<name>`, its role, no session, no
    refresh token). Every refusal is `InvalidClient`, audited in its own transaction."""
    try:
        return await _issue(
            uow=uow,
            assertions=assertions,
            signer=signer,
            policy=policy,
            now=now,
            assertion_type=assertion_type,
            assertion=assertion,
            client_id=client_id,
        )
    except InvalidClient as refused:
        claimed = refused.client_id
        async with uow() as writer:
            await writer.audit.record(
                # Unverified: what the request claimed, for the investigator to weigh.
                actor=SERVICE_SUBJECT_PREFIX + claimed if claimed else "anonymous",
                action=AuditAction.CLIENT_CREDENTIALS_REFUSED,
                at=now,
                outcome=Outcome.FAILURE,
                details={"reason": refused.reason},
            )
            await writer.commit()
        _log.info("service token refused", client_id=claimed, reason=refused.reason)
        raise
