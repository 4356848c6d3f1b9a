"""The chaos client's reading of answers: a 429 from the gateway's rate limit is not an
answer about the transfer. (Found by `make test`: the resend of a committed transfer,
sent on purpose with the same key, was rate-limited and recorded as refused, so the
reconciliation reported money moved for a refused transfer.)"""

from __future__ import annotations

import random
from collections import Counter

import httpx

from flotilla_cli.chaos.load import Bank, Customer, TransferResult, one_transfer


def _bank() -> Bank:
    return Bank([Customer("alice", "token", ["acc_a", "acc_b"])], deposited_minor=0)


async def _send(seed: int, answers: list[httpx.Response]) -> tuple[TransferResult, Counter[str]]:
    replies = iter(answers)
    transport = httpx.MockTransport(lambda _: next(replies))
    stats: Counter[str] = Counter()
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
        result = await one_transfer(client, _bank(), random.Random(seed), stats)
    return result, stats


def _committed() -> httpx.Response:
    return httpx.Response(201, json={"id": "t1", "state": "committed"})


async def test_a_rate_limited_resend_keeps_the_answer_the_transfer_got() -> None:
    # A seed whose transfer is resent on purpose, as by a client that did not hear.
    seed = 0
    while not (await _send(seed, [_committed(), _committed()]))[0].retried_on_purpose:
        seed += 1
    limited = httpx.Response(429, headers={"Retry-After": "0"}, json={"status": 429})
    result, stats = await _send(seed, [_committed(), limited, _committed()])
    assert (result.outcome, result.transfer_id) == ("committed", "t1")
    assert result.statuses == [201, 429, 201]
    assert stats["rate_limited"] == 1
