"""The ledger shards' account reads over HTTPS (mutual TLS), as the order checks call
them: `GET /api/v1/accounts/{id}` on the shard the id names (`acc_<shard>_...`), with this
service's own token (it has `accounts:read:any`).

200: the account (its owner and currency); 404: none (or someone else's, the shard does
not say). Anything else, or no answer, from every instance of the shard:
`AccountsUnavailable`. An id that names no shard we know is no account.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from urllib.parse import quote

from flotilla_kit.http_client import HttpClient, HttpClientError
from flotilla_kit.sharding import shard_of
from flotilla_orders.adapters.tokens import TokenSource
from flotilla_orders.service_layer.ports import AccountInfo, AccountsUnavailable

__all__ = ["HttpAccounts"]

_MAX_ACCOUNT_ID = 64  # as the ledger stores them


class HttpAccounts:
    def __init__(
        self,
        shards: Mapping[int, Sequence[str]],
        *,
        tokens: TokenSource,
        client: HttpClient,
        timeout_s: float,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self._shards = {shard: [u.rstrip("/") for u in urls] for shard, urls in shards.items()}
        self._tokens = tokens
        self._client = client
        self._timeout_s = timeout_s
        self._on_call = on_call or (lambda _method, _result: None)
        self._turn = itertools.count()

    def _urls_of(self, account_id: str) -> list[str] | None:
        # Only customer accounts pay; the bank's own (`sys_...`) never do.
        if not account_id.startswith("acc_") or len(account_id) > _MAX_ACCOUNT_ID:
            return None
        shard = shard_of(account_id)
        urls = self._shards.get(shard) if shard is not None else None
        if not urls:
            return None
        start = next(self._turn) % len(urls)
        return urls[start:] + urls[:start]

    async def account(self, account_id: str) -> AccountInfo | None:
        urls = self._urls_of(account_id)
        if urls is None:
            self._on_call("get_account", "not_found")
            return None
        try:
            token = await self._tokens.token()
        except Exception as exc:  # the auth service is down: nothing was sent
            self._on_call("get_account", "unavailable")
            raise AccountsUnavailable(f"no service token: {exc}") from exc
        path = f"/api/v1/accounts/{quote(account_id, safe='')}"
        failures: list[str] = []
        for url in urls:
            try:
                response = await self._client.get(
                    url + path,
                    headers={"Authorization": f"Bearer {token}"},
                    timeout_s=self._timeout_s,
                )
            except HttpClientError as exc:
                failures.append(f"{url}: {exc!r}")
                continue
            if response.status_code == 404:
                self._on_call("get_account", "not_found")
                return None
            if response.status_code == 200:
                try:
                    body = response.json()
                    found = AccountInfo(
                        id=str(body["id"]),
                        owner_id=str(body["owner_id"]),
                        currency=str(body["currency"]),
                    )
                except (ValueError, KeyError, TypeError) as exc:
                    failures.append(f"{url}: unusable answer ({exc!r})")
                    continue
                if found.id == account_id:
                    self._on_call("get_account", "ok")
                    return found
                failures.append(f"{url}: answered about another account")
                continue
            failures.append(f"{url}: HTTP {response.status_code}")
        self._on_call("get_account", "unavailable")
        raise AccountsUnavailable("; ".join(failures))
