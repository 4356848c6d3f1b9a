"""Calls to whichever instance of a gRPC service answers: the one failover client that
services use to call another service's instances (payments -> ledger shards, orders ->
inventory).

Each call goes first to a healthy instance with the fewest of our calls in flight (ties
taken in turn, so the instances share the load). A call that gets no answer moves on to the
next instance, and the silent one is asked last for `suspect_s`: a killed instance does
not stop progress. This is only safe for calls that are idempotent (per transfer branch,
per reservation: every call of the two services that use it), which is why the caller
names the instances and says what a call is.

Outcomes: an answer; `RpcViolation` when an instance answered with a code the contract
rules out (asking another would get the same answer); `NoInstanceAnswered` when none did
(UNAVAILABLE, DEADLINE_EXCEEDED, a token refused, ...), so the outcome is unknown.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Final, Generic, TypeVar

import grpc
from grpc import aio

from flotilla_kit.rpc import Channels

__all__ = ["VIOLATIONS", "FailoverCaller", "NoInstanceAnswered", "RpcViolation"]

_Stub = TypeVar("_Stub")
_R = TypeVar("_R")

# Codes by which an instance told us something the contract rules out.
VIOLATIONS: Final = frozenset(
    {
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.OUT_OF_RANGE,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.ALREADY_EXISTS,
    }
)


class RpcViolation(Exception):
    """An instance answered with a code the contract rules out."""

    def __init__(self, target: str, code: grpc.StatusCode, details: str | None) -> None:
        super().__init__(f"{target}: {code.name}: {details}")
        self.target = target
        self.code = code


class NoInstanceAnswered(Exception):
    """No instance answered: the outcome of the call is unknown."""

    def __init__(self, failures: Sequence[str]) -> None:
        super().__init__("; ".join(failures) or "no instance is configured")
        self.failures = list(failures)


class FailoverCaller(Generic[_Stub]):
    def __init__(self, channels: Channels[_Stub], *, suspect_s: float = 2.0) -> None:
        self._channels = channels
        self._suspect_s = suspect_s
        self._in_flight: Counter[str] = Counter()
        self._suspect_until: dict[str, float] = {}  # target -> monotonic time
        self._turn = itertools.count()

    async def call(self, targets: Sequence[str], invoke: Callable[[_Stub], Awaitable[_R]]) -> _R:
        """`invoke` on one instance after another until one answers (see the module)."""
        failures: list[str] = []
        for target in self._in_order(targets):
            self._in_flight[target] += 1
            try:
                response = await invoke(self._channels.stub(target))
            except aio.AioRpcError as error:
                code = error.code()
                if code in VIOLATIONS:
                    raise RpcViolation(target, code, error.details()) from error
                failures.append(f"{target}: {code.name}")
                self._suspect_until[target] = time.monotonic() + self._suspect_s
                continue
            finally:
                self._in_flight[target] -= 1
            self._suspect_until.pop(target, None)
            return response
        raise NoInstanceAnswered(failures)

    def _in_order(self, targets: Sequence[str]) -> list[str]:
        """Healthy before suspect, then fewest calls in flight; ties in turn."""
        now = time.monotonic()
        turn = next(self._turn)
        count = len(targets)
        ranked = sorted(
            range(count),
            key=lambda i: (
                self._suspect_until.get(targets[i], 0.0) > now,
                self._in_flight[targets[i]],
                (i - turn) % count,
            ),
        )
        return [targets[i] for i in ranked]

    async def close(self) -> None:
        await self._channels.close()
