"""The payments coordinator over HTTPS (mutual TLS), as a participant in doubt asks it:
`GET /internal/v1/transfers/{id}/outcome` with this service's own token."""

from __future__ import annotations

import ssl
from collections.abc import Sequence
from types import TracebackType
from typing import Protocol, Self
from urllib.parse import quote

from flotilla_accounts.domain import Outcome
from flotilla_accounts.service_layer.errors import CoordinatorUnreachable
from flotilla_kit.http_client import HttpClient, HttpClientError

__all__ = ["HttpCoordinator", "TokenSource"]


class TokenSource(Protocol):
    """This service's own access token (the kit's `ServiceTokenProvider`)."""

    async def token(self) -> str: ...


class HttpCoordinator:
    """Use as `async with`: the connection pool lives from enter to exit."""

    def __init__(
        self,
        base_urls: Sequence[str],
        tokens: TokenSource,
        *,
        ssl_context: ssl.SSLContext,
        timeout_s: float = 3.0,
    ) -> None:
        if not base_urls:
            raise ValueError("at least one coordinator URL is needed")
        self._urls = [url.rstrip("/") for url in base_urls]
        self._tokens = tokens
        self._ssl_context = ssl_context
        self._timeout_s = timeout_s
        self._client: HttpClient | None = None
        self._next = 0

    async def __aenter__(self) -> Self:
        self._client = HttpClient(ssl_context=self._ssl_context, timeout_s=self._timeout_s)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def outcome(self, transfer_id: str) -> Outcome:
        client = self._client
        if client is None:
            raise CoordinatorUnreachable("the coordinator client is not open")
        try:
            token = await self._tokens.token()
        except (RuntimeError, HttpClientError) as exc:
            raise CoordinatorUnreachable(f"no service token: {exc}") from exc
        headers = {"Authorization": f"Bearer {token}"}
        path = f"/internal/v1/transfers/{quote(transfer_id, safe='')}/outcome"
        errors: list[str] = []
        # Instances share the coordinator's database: any of them knows. Start at the
        # next one each time, and move on when one does not answer.
        start, self._next = self._next, (self._next + 1) % len(self._urls)
        for url in self._urls[start:] + self._urls[:start]:
            try:
                response = await client.get(url + path, headers=headers)
            except HttpClientError as exc:
                errors.append(f"{url}: {exc!r}")
                continue
            if response.status_code != 200:
                errors.append(f"{url}: HTTP {response.status_code}")
                continue
            try:
                return Outcome(response.json()["outcome"])
            except (ValueError, KeyError, TypeError) as exc:
                errors.append(f"{url}: unusable answer {response.text[:100]!r} ({exc!r})")
        raise CoordinatorUnreachable("; ".join(errors))
