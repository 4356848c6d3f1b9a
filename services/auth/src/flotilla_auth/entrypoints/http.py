"""HTTP API of the auth service: the OAuth 2.0 token endpoint, logout, /me, the revocation
list and the JWKS (the user administration API is in `users_api`), and the mapping of the
exception tree to problems.

The token endpoint speaks RFC 6749: form-encoded requests, and errors that carry the OAuth
`error` code next to the RFC 9457 problem members so both kinds of client understand them.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.responses import Response

from flotilla_auth.entrypoints._deps import ComponentsDep
from flotilla_auth.service_layer.errors import (
    AuthError,
    CannotChangeSelf,
    Forbidden,
    InvalidRequest,
    InvalidUserData,
    OAuthError,
    SigningKeyUnavailable,
    SigningKeyUnreadable,
    StorageConflict,
    TooManyLoginAttempts,
    UnknownSubject,
    UnsupportedGrantType,
    UsernameTaken,
    UserNotFound,
    WeakPassword,
)
from flotilla_auth.service_layer.service_tokens import ServiceTokenGrant, grant_client_credentials
from flotilla_auth.service_layer.sessions import revoked_sessions
from flotilla_auth.service_layer.signing_keys import published_signing_keys
from flotilla_auth.service_layer.tokens import (
    TokenGrant,
    grant_password,
    grant_refresh_token,
    revoke_refresh_family,
)
from flotilla_auth.service_layer.users import get_user
from flotilla_kit.app import PROBLEM_RESPONSES
from flotilla_kit.problems import Problem, ProblemRule, ProblemTable, problem_response
from flotilla_kit.security import Authenticated
from flotilla_kit.text import (
    MULTI_LINE_PATTERN,
    SINGLE_LINE_PATTERN,
    check_text,
    state_the_rule,
)

__all__ = ["PROBLEMS", "client_ip", "install_error_handlers", "internal", "router", "well_known"]

_FORM = "application/x-www-form-urlencoded"
_JSON = "application/json"
# RFC 6749 section 5.1: responses carrying tokens must not be cached anywhere.
_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_MAX_FORM_FIELDS = 16
_GRANT_TYPES = ("password", "refresh_token", "client_credentials")

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])
# Reached by our own services over mTLS only; the gateway never routes `/internal/...`.
internal = APIRouter(prefix="/internal/v1", tags=["internal"], include_in_schema=False)
well_known = APIRouter(tags=["keys"])


# -- models (for the OpenAPI document) ----------------------------------------------------
class TokenResponse(BaseModel):
    access_token: str
    token_type: str = Field(description="Always `Bearer`.")
    expires_in: int = Field(description="Seconds until the access token expires.")
    refresh_token: str | None = Field(
        default=None,
        description="Opaque, single use; spend it at this endpoint. Absent for services.",
    )
    scope: str = Field(description="The granted scope, space-separated (may be empty).")


class Me(BaseModel):
    id: str
    username: str
    roles: list[str]


class Revocations(BaseModel):
    sessions: list[str] = Field(description="Ids (`sid`) of recently revoked sessions.")
    generated_at: datetime


class Jwk(BaseModel):
    kty: str
    crv: str
    x: str
    kid: str
    alg: str
    use: str


class Jwks(BaseModel):
    keys: list[Jwk]


def _form_body(properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    for name, schema in properties.items():  # the kit's text rule, as `_form` applies it
        state_the_rule(schema, MULTI_LINE_PATTERN if name == "password" else SINGLE_LINE_PATTERN)
    return {
        "requestBody": {
            "required": True,
            "content": {
                _FORM: {
                    "schema": {"type": "object", "properties": properties, "required": required}
                }
            },
        }
    }


_TOKEN_BODY = _form_body(
    {
        "grant_type": {"type": "string", "enum": list(_GRANT_TYPES)},
        "username": {"type": "string", "description": "grant_type=password"},
        "password": {"type": "string", "format": "password", "description": "grant_type=password"},
        "refresh_token": {"type": "string", "description": "grant_type=refresh_token"},
        "scope": {"type": "string", "description": "Space-separated; may only narrow."},
        "client_assertion_type": {
            "type": "string",
            "description": "grant_type=client_credentials: "
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        },
        "client_assertion": {
            "type": "string",
            "description": "grant_type=client_credentials: ES256 JWT with the certificate in x5c",
        },
    },
    ["grant_type"],
)
_LOGOUT_BODY = _form_body({"refresh_token": {"type": "string"}}, ["refresh_token"])
_LOGOUT_BODY["requestBody"]["content"][_JSON] = _LOGOUT_BODY["requestBody"]["content"][_FORM]


_TOKEN_ERRORS: dict[int | str, dict[str, object]] = {
    **{s: PROBLEM_RESPONSES[s] for s in (400, 413, 415)},
    401: problem_response("Client authentication failed (client_credentials)"),
    429: problem_response("Too many failed logins from this address"),
    503: problem_response("No signing key loaded yet"),
}


# -- errors -------------------------------------------------------------------------------
_OAUTH_TITLES = {
    "invalid_request": "Invalid request",
    "invalid_grant": "Invalid grant",
    "invalid_client": "Invalid client",
    "invalid_scope": "Invalid scope",
    "unsupported_grant_type": "Unsupported grant type",
}


_CONFLICT = (409, "conflict", "Conflict")
_SIGNING_KEY_NOT_LOADED = ProblemRule[AuthError](
    503,
    "unavailable",
    "Service unavailable",
    detail="The signing key is not loaded.",
    headers={"Retry-After": "1"},
)

PROBLEMS = ProblemTable(
    {
        # The OAuth `error` code next to the problem members (RFC 6749 section 5.2).
        OAuthError: ProblemRule[OAuthError](
            lambda exc: exc.status,
            lambda exc: exc.code.replace("_", "-"),
            lambda exc: _OAUTH_TITLES[exc.code],
            headers=_NO_STORE,
            extensions=lambda exc: {"error": exc.code},
        ),
        TooManyLoginAttempts: ProblemRule[TooManyLoginAttempts](
            429,
            "too-many-login-attempts",
            "Too many requests",
            detail="Too many failed logins from this address; try again later.",
            headers=lambda exc: {**_NO_STORE, "Retry-After": str(exc.retry_after_s)},
        ),
        UnknownSubject: ProblemRule[UnknownSubject](
            401,
            "unauthenticated",
            "Authentication required",
            detail="The access token names no active user or session.",
            headers={"WWW-Authenticate": 'Bearer realm="flotilla"'},
        ),
        Forbidden: (403, "forbidden", "Forbidden"),
        UserNotFound: (404, "user-not-found", "User not found"),
        WeakPassword: ProblemRule[WeakPassword](
            422,
            "weak-password",
            "Password refused",
            extensions=lambda exc: {"rule": exc.rule.value},
        ),
        InvalidUserData: (422, "validation-error", "Request validation failed"),
        UsernameTaken: _CONFLICT,
        CannotChangeSelf: _CONFLICT,
        StorageConflict: ProblemRule[StorageConflict](
            *_CONFLICT, detail="A concurrent change won; try again."
        ),
        SigningKeyUnavailable: _SIGNING_KEY_NOT_LOADED,
        SigningKeyUnreadable: _SIGNING_KEY_NOT_LOADED,
    },
    default=ProblemRule[AuthError](
        500, "internal-error", "Internal server error", detail="The error was logged."
    ),
)


def install_error_handlers(app: FastAPI) -> None:
    PROBLEMS.install(app, AuthError)


# -- request parsing ----------------------------------------------------------------------
def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").partition(";")[0].strip().lower()


def _unsupported_media_type(*accepted: str) -> Problem:
    return Problem(
        415,
        "unsupported-media-type",
        "Unsupported media type",
        f"Send the parameters as {' or '.join(accepted)}.",
        headers=_NO_STORE,
        error="invalid_request",
    )


async def _form(request: Request) -> dict[str, str]:
    """The parameters of a form body; RFC 6749 section 3.1: each at most once, and one
    sent without a value counts as omitted."""
    body = await request.body()
    try:
        pairs = parse_qsl(
            body.decode("utf-8"),
            keep_blank_values=True,
            errors="strict",
            max_num_fields=_MAX_FORM_FIELDS,
        )
    except ValueError as exc:  # also UnicodeDecodeError
        raise InvalidRequest("The body is not valid UTF-8 form data.") from exc
    params: dict[str, str] = {}
    for name, value in pairs:
        if name in params:
            raise InvalidRequest(f"The parameter {name!r} is repeated.")
        # The kit's text rule (422 naming the field); a password may hold any printable
        # character, a tab or a line break included, but no other control character.
        check_text(name, "body", single_line=True)
        params[name] = check_text(value, f"body.{name}", single_line=name != "password")
    return {name: value for name, value in params.items() if value}


async def _json_object(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body())
    except ValueError as exc:
        raise InvalidRequest("The body is not valid JSON.") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("The body must be a JSON object.")
    return data


def _required(params: dict[str, str], *names: str) -> list[str]:
    missing = [name for name in names if name not in params]
    if missing:
        raise InvalidRequest(f"Missing parameter(s): {', '.join(missing)}.")
    return [params[name] for name in names]


def client_ip(request: Request) -> str:
    """The address failed logins are counted against.

    The first `X-Forwarded-For` value when there is one: services are reachable only over
    mTLS by our own components, and the gateway replaces whatever the client sent with the
    address it saw. Otherwise (a direct call) the peer address.
    """
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        first = forwarded.split(",", 1)[0].strip()
        try:
            return str(ipaddress.ip_address(first))
        except ValueError:
            pass  # not an address; fall back to the peer rather than count junk
    return request.client.host if request.client is not None else "unknown"


# -- token endpoint, logout, /me --------------------------------------------------------------
@router.post(
    "/token",
    summary="Issue tokens (OAuth 2.0 password, refresh_token and client_credentials grants)",
    response_model=TokenResponse,
    response_model_exclude_none=True,
    responses=_TOKEN_ERRORS,
    openapi_extra=_TOKEN_BODY,
)
async def token(request: Request, components: ComponentsDep) -> Response:
    if _media_type(request) != _FORM:
        raise _unsupported_media_type(_FORM)
    params = await _form(request)
    grant_type = params.get("grant_type")
    grant: TokenGrant | ServiceTokenGrant
    if grant_type is None:
        raise InvalidRequest("Missing parameter(s): grant_type.")
    if grant_type == "password":
        username, password = _required(params, "username", "password")
        grant = await grant_password(
            uow=components.uow,
            passwords=components.passwords,
            signer=components.signer,
            policy=components.policy,
            protection=components.protection,
            now=components.clock(),
            username=username,
            password=password,
            client_ip=client_ip(request),
            scope=params.get("scope"),
        )
    elif grant_type == "refresh_token":
        (refresh_token,) = _required(params, "refresh_token")
        grant = await grant_refresh_token(
            uow=components.uow,
            signer=components.signer,
            policy=components.policy,
            now=components.clock(),
            refresh_token=refresh_token,
            scope=params.get("scope"),
        )
    elif grant_type == "client_credentials":
        grant = await grant_client_credentials(
            uow=components.uow,
            assertions=components.client_assertions,
            signer=components.signer,
            policy=components.policy,
            now=components.clock(),
            assertion_type=params.get("client_assertion_type"),
            assertion=params.get("client_assertion"),
            client_id=params.get("client_id"),
        )
    else:
        raise UnsupportedGrantType(f"Supported grant types: {', '.join(_GRANT_TYPES)}.")
    body = TokenResponse(
        access_token=grant.access_token,
        token_type=grant.token_type,
        expires_in=grant.expires_in,
        refresh_token=grant.refresh_token if isinstance(grant, TokenGrant) else None,
        scope=grant.scope,
    )
    return JSONResponse(body.model_dump(exclude_none=True), headers=_NO_STORE)


@router.post(
    "/logout",
    summary="Revoke the refresh token's whole family",
    status_code=204,
    response_class=Response,
    responses={s: PROBLEM_RESPONSES[s] for s in (400, 413, 415)},
    openapi_extra=_LOGOUT_BODY,
)
async def logout(request: Request, components: ComponentsDep) -> Response:
    media_type = _media_type(request)
    if media_type == _FORM:
        value: object = (await _form(request)).get("refresh_token")
    elif media_type == _JSON:
        value = (await _json_object(request)).get("refresh_token")
    else:
        raise _unsupported_media_type(_FORM, _JSON)
    if not isinstance(value, str) or not value:
        raise InvalidRequest("Missing parameter(s): refresh_token.")
    check_text(value, "body.refresh_token")
    await revoke_refresh_family(uow=components.uow, now=components.clock(), refresh_token=value)
    return Response(status_code=204, headers=_NO_STORE)


@router.get(
    "/me",
    summary="The caller, as the access token names them",
    response_model=Me,
    responses={401: PROBLEM_RESPONSES[401]},
)
async def me(principal: Authenticated, components: ComponentsDep, response: Response) -> Me:
    user = await get_user(
        uow=components.uow, user_id=principal.subject, session_id=principal.session_id
    )
    response.headers["Cache-Control"] = "no-store"
    return Me(id=user.id, username=user.username, roles=list(user.roles))


# -- revocations and keys -----------------------------------------------------------------
@internal.get(
    "/revocations",
    summary="Sessions revoked within the longest access-token lifetime (polled by verifiers)",
    response_model=Revocations,
    responses={304: {"description": "Not modified: the list still has the ETag sent."}},
)
async def revocations(request: Request, components: ComponentsDep) -> Response:
    """Answered `304 Not Modified` (no body) when the list is the one whose ETag the
    verifier sends in `If-None-Match`: what every poll gets while nothing is revoked."""
    now = components.clock()
    sessions = await revoked_sessions(uow=components.uow, now=now)
    etag = '"' + hashlib.sha256("\n".join(sorted(sessions)).encode()).hexdigest()[:32] + '"'
    headers = {"Cache-Control": "no-store", "ETag": etag}
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    body = Revocations(sessions=sessions, generated_at=now)
    return JSONResponse(body.model_dump(mode="json"), headers=headers)


@well_known.get(
    "/.well-known/jwks.json",
    summary="Public keys that verify access tokens (RFC 7517)",
    response_model=Jwks,
)
async def jwks(components: ComponentsDep) -> Response:
    keys = await published_signing_keys(
        uow=components.uow, now=components.clock(), schedule=components.key_schedule
    )
    # Short enough that a staged key reaches verifiers well before it signs anything.
    return JSONResponse(
        {"keys": [key.jwk() for key in keys]}, headers={"Cache-Control": "public, max-age=60"}
    )
