"""The payments service over HTTPS (mutual TLS), as the saga pays and refunds:
`POST /api/v1/transfers` with this service's own token and an Idempotency-Key.

Its answers (services/payments/README.md) and what the saga makes of them:

- 201: COMMITTED, the money moved (the body is the transfer).
- 202: PENDING; ask again with the same key until it is final.
- 503 `transfer-aborted`: ABORTED, nothing moved; a new attempt needs a new key.
- 404 / 422 refusals (`insufficient-funds`, `account-not-found`, `currency-mismatch`,
  `transfer-refused`, `validation-error`, ...): REFUSED, nothing moved.
- 422 `idempotency-key-reused`, another 4xx (400, 405, 413, 415, ...): a protocol
  error, our request is wrong.
- No answer, a timeout, 401/403/408/429, another 5xx, an unreadable body: unknown; the
  next instance is asked with the same key, then `PaymentsUnavailable`.

Every instance shares the transfer log, so asking another one with the same key is safe:
it answers with the transfer as it stands.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import Any

from flotilla_kit.http_client import HttpClient, HttpClientError, HttpResponse
from flotilla_orders.adapters.tokens import TokenSource
from flotilla_orders.service_layer.ports import (
    PaymentsProtocolError,
    PaymentsUnavailable,
    TransferAnswer,
    TransferCall,
    TransferOutcome,
)

__all__ = ["HttpPayments"]

_TRANSFERS = "/api/v1/transfers"
# Not a verdict on the request: the next instance, or a later try, may answer.
_NO_VERDICT = frozenset({401, 403, 408, 429})


def _slug(response: HttpResponse) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    kind = body.get("type") if isinstance(body, dict) else None
    return kind.rsplit("/", 1)[-1] if isinstance(kind, str) else None


def _transfer_id(response: HttpResponse) -> str | None:
    try:
        body: Any = response.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    found = body.get("id", body.get("transfer_id"))
    return found if isinstance(found, str) and found else None


class HttpPayments:
    def __init__(
        self,
        base_urls: Sequence[str],
        *,
        tokens: TokenSource,
        client: HttpClient,
        timeout_s: float,
        on_call: Callable[[str, str], None] | None = None,
    ) -> None:
        self._urls = [url.rstrip("/") for url in base_urls]
        self._tokens = tokens
        self._client = client
        self._timeout_s = timeout_s
        self._on_call = on_call or (lambda _method, _result: None)
        self._turn = itertools.count()

    def _in_turn(self) -> list[str]:
        start = next(self._turn) % len(self._urls)
        return self._urls[start:] + self._urls[:start]

    async def transfer(self, call: TransferCall) -> TransferAnswer:
        if not self._urls:
            self._on_call("transfer", "unavailable")
            raise PaymentsUnavailable("no payments instances are configured")
        try:
            token = await self._tokens.token()
        except Exception as exc:  # the auth service is down: nothing was sent
            self._on_call("transfer", "unavailable")
            raise PaymentsUnavailable(f"no service token: {exc}") from exc
        body = {
            "from_account": call.from_account,
            "to_account": call.to_account,
            "amount_minor": call.amount_minor,
            "currency": call.currency,
            "reference": call.reference,
            "on_behalf_of": call.on_behalf_of,
        }
        headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": call.idempotency_key}
        failures: list[str] = []
        for url in self._in_turn():
            try:
                response = await self._client.post(
                    url + _TRANSFERS, json=body, headers=headers, timeout_s=self._timeout_s
                )
            except HttpClientError as exc:
                failures.append(f"{url}: {exc!r}")
                continue
            answer = self._verdict(response)
            if answer is None:
                failures.append(f"{url}: HTTP {response.status_code} {_slug(response) or ''}")
                continue
            self._on_call("transfer", answer.outcome.value)
            return answer
        self._on_call("transfer", "unavailable")
        raise PaymentsUnavailable("; ".join(failures))

    def _verdict(self, response: HttpResponse) -> TransferAnswer | None:
        """What the answer says about the transfer under our key; None when it says
        nothing (ask again)."""
        status = response.status_code
        if status in (201, 202):
            transfer_id = _transfer_id(response)
            if transfer_id is None:
                return None  # an unreadable body; a replay of the key will tell
            outcome = TransferOutcome.COMMITTED if status == 201 else TransferOutcome.PENDING
            return TransferAnswer(outcome, transfer_id)
        slug = _slug(response)
        if status == 503 and slug == "transfer-aborted":
            return TransferAnswer(TransferOutcome.ABORTED, _transfer_id(response), slug)
        if status >= 500 or status in _NO_VERDICT:
            return None
        if slug == "idempotency-key-reused" or status not in (404, 422):
            self._on_call("transfer", "protocol_error")
            raise PaymentsProtocolError(f"HTTP {status} {slug}: {response.text[:200]}")
        return TransferAnswer(TransferOutcome.REFUSED, _transfer_id(response), slug)
