"""The gateway, as the pages' one way to every API: one httpx connection pool per app
(closed when the app stops), TLS verified against the CA the settings name, a deadline
on every call, the request id and trace context passed on, and the user's access token
on each call made for them. Tokens go from here to the gateway and nowhere else."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import httpx

from flotilla_kit.context import current_request_id
from flotilla_kit.logs import get_logger
from flotilla_kit.tls import client_context
from flotilla_kit.tracing import current_traceparent
from flotilla_web.domain import ApiFailed, GatewayUnavailable, NotLoggedIn
from flotilla_web.service_layer.ports import (
    ApiAnswer,
    Grant,
    LoginRefused,
    RefreshRefused,
    StreamedAnswer,
    TooManyAttempts,
)
from flotilla_web.settings import WebSettings

__all__ = ["TOKEN_PATH", "GatewayClient", "GatewayUserApi", "client_address"]

TOKEN_PATH = "/api/v1/auth/token"  # noqa: S105 - a path, not a secret
LOGOUT_PATH = "/api/v1/auth/logout"
_log = get_logger("flotilla.web.gateway")


def _verify(settings: WebSettings) -> ssl.SSLContext | bool:
    ca = settings.gateway_ca_path
    if settings.gateway_url.startswith("https://") and ca is not None:
        return client_context(ca)
    return True  # the system's CAs (or plain HTTP, where nothing is verified)


def _body(response: httpx.Response) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _answer(response: httpx.Response) -> ApiAnswer:
    return ApiAnswer(response.status_code, _body(response), dict(response.headers))


# The browser's address, as the gateway told it to this service (its X-Forwarded-For),
# passed on in calls made for that browser: the gateway believes it only from the
# addresses its `trusted_proxies` setting names, and then throttles logins and rate-limits
# per browser rather than per web instance.
client_address: ContextVar[str | None] = ContextVar("flotilla_web_client_address", default=None)


def _context_headers() -> dict[str, str]:
    headers: dict[str, str] = {}
    address = client_address.get()
    if address:
        headers["X-Forwarded-For"] = address
    request_id = current_request_id()
    if request_id:
        headers["X-Request-Id"] = request_id
    traceparent = current_traceparent()
    if traceparent:
        headers["traceparent"] = traceparent
    return headers


class GatewayClient:
    """The auth service's token endpoints (the `AuthApi` port) and, through `as_user`,
    every other API as one user."""

    def __init__(self, settings: WebSettings) -> None:
        self._client = httpx.AsyncClient(
            base_url=settings.gateway_url,
            verify=_verify(settings),
            timeout=httpx.Timeout(
                settings.gateway_timeout_s, connect=settings.gateway_connect_timeout_s
            ),
            limits=httpx.Limits(
                max_connections=settings.gateway_max_connections,
                max_keepalive_connections=settings.gateway_max_connections,
            ),
            follow_redirects=False,
            trust_env=False,  # no proxy from the environment between us and the gateway
        )

    async def close(self) -> None:
        await self._client.aclose()

    def as_user(self, access_token: str) -> GatewayUserApi:
        return GatewayUserApi(self, access_token)

    async def send(
        self,
        method: str,
        path: str,
        *,
        token: str | None = None,
        params: Mapping[str, str | int] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One call; GatewayUnavailable when no answer came within the deadline."""
        sent = {**_context_headers(), "Accept": "application/json", **(headers or {})}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        try:
            return await self._client.request(
                method, path, params=params, json=json, data=data, headers=sent
            )
        except httpx.HTTPError as error:
            _log.warning("the gateway did not answer", path=path, error=repr(error))
            raise GatewayUnavailable(f"{method} {path}: {type(error).__name__}") from error

    async def stream(self, path: str, *, token: str, accept: str) -> StreamedAnswer:
        headers = {**_context_headers(), "Accept": accept, "Authorization": f"Bearer {token}"}
        request = self._client.build_request("GET", path, headers=headers)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise GatewayUnavailable(f"GET {path}: {type(error).__name__}") from error
        return StreamedAnswer(
            response.status_code, dict(response.headers), response.aiter_bytes(), response.aclose
        )

    async def _grant(self, form: dict[str, str]) -> Grant:
        response = await self.send("POST", TOKEN_PATH, data=form)
        body = _body(response)
        if response.status_code == 200 and isinstance(body, dict):
            access, refresh = body.get("access_token"), body.get("refresh_token")
            if isinstance(access, str) and isinstance(refresh, str):
                return Grant(access, refresh)
        refused = isinstance(body, dict) and body.get("error") == "invalid_grant"
        if response.status_code == 400 and refused:
            raise (LoginRefused if form["grant_type"] == "password" else RefreshRefused)()
        if response.status_code == 429:
            retry = response.headers.get("retry-after", "")
            raise TooManyAttempts(int(retry) if retry.isdigit() else None)
        detail = _answer(response).detail or "no detail"
        raise ApiFailed(response.status_code, f"token endpoint: {detail}")

    async def password_grant(self, username: str, password: str) -> Grant:
        return await self._grant(
            {"grant_type": "password", "username": username, "password": password}
        )

    async def refresh_grant(self, refresh_token: str) -> Grant:
        return await self._grant({"grant_type": "refresh_token", "refresh_token": refresh_token})

    async def logout(self, refresh_token: str) -> None:
        response = await self.send("POST", LOGOUT_PATH, data={"refresh_token": refresh_token})
        if response.status_code >= 300:
            raise ApiFailed(response.status_code, f"logout: {_answer(response).detail}")


class GatewayUserApi:
    """The `UserApi` port: the gateway's APIs called with one user's access token."""

    def __init__(self, gateway: GatewayClient, access_token: str) -> None:
        self._gateway = gateway
        self._token = access_token

    def __repr__(self) -> str:
        return "GatewayUserApi(<token>)"  # never the token, in a log or a traceback

    @staticmethod
    def _checked(response: httpx.Response) -> ApiAnswer:
        if response.status_code == 401:
            raise NotLoggedIn  # the token was refused: revoked, or the user locked
        return _answer(response)

    async def get(self, path: str, *, params: Mapping[str, str | int] | None = None) -> ApiAnswer:
        return self._checked(
            await self._gateway.send("GET", path, token=self._token, params=params)
        )

    async def post(
        self, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> ApiAnswer:
        return self._checked(
            await self._gateway.send("POST", path, token=self._token, json=json, headers=headers)
        )

    async def stream(self, path: str, *, accept: str) -> StreamedAnswer:
        answer = await self._gateway.stream(path, token=self._token, accept=accept)
        if answer.status == 401:
            await answer.close()
            raise NotLoggedIn
        return answer
