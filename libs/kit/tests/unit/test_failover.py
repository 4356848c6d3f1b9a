"""FailoverCaller: which instance is asked, in what order, and what a failure means."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from grpc import aio

from flotilla_kit.failover import FailoverCaller, NoInstanceAnswered, RpcViolation
from flotilla_kit.rpc import Channels
from flotilla_kit.settings import TlsSettings


def _error(code: grpc.StatusCode) -> aio.AioRpcError:
    return aio.AioRpcError(code, aio.Metadata(), aio.Metadata(), details="told so")


def _caller(**options: Any) -> FailoverCaller[str]:
    # A "stub" here is the target's name: what each call did is decided by the test.
    channels: Channels[str] = Channels(
        TlsSettings(cert_file=None, key_file=None, ca_file=None),
        make_stub=lambda channel: channel,  # type: ignore[arg-type,return-value]
        channel_factory=lambda target, tls: target,  # type: ignore[arg-type,return-value]
    )
    return FailoverCaller(channels, **options)


async def test_calls_take_the_instances_in_turn() -> None:
    caller = _caller()
    asked = [await caller.call(["a", "b", "c"], _answer) for _ in range(6)]
    assert asked == ["a", "b", "c", "a", "b", "c"]


async def test_an_instance_that_does_not_answer_is_skipped_then_asked_last() -> None:
    caller = _caller(suspect_s=60.0)
    tried: list[str] = []

    async def b_is_down(target: str) -> str:
        tried.append(target)
        if target == "b":
            raise _error(grpc.StatusCode.UNAVAILABLE)
        return target

    answers = [await caller.call(["a", "b", "c"], b_is_down) for _ in range(4)]
    assert answers == ["a", "c", "c", "a"]
    # b is tried once, on the second call, then put last while suspect.
    assert tried == ["a", "b", "c", "c", "a"]


async def test_a_code_the_contract_rules_out_stops_at_once() -> None:
    caller = _caller()
    tried: list[str] = []

    async def refuses(target: str) -> str:
        tried.append(target)
        raise _error(grpc.StatusCode.INVALID_ARGUMENT)

    with pytest.raises(RpcViolation, match="a: INVALID_ARGUMENT: told so") as raised:
        await caller.call(["a", "b"], refuses)
    assert raised.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert tried == ["a"]  # another instance would say the same


async def test_when_no_instance_answers_each_failure_is_named() -> None:
    caller = _caller()

    async def silent(target: str) -> str:
        raise _error(grpc.StatusCode.DEADLINE_EXCEEDED)

    with pytest.raises(NoInstanceAnswered) as raised:
        await caller.call(["a", "b"], silent)
    assert raised.value.failures == ["a: DEADLINE_EXCEEDED", "b: DEADLINE_EXCEEDED"]
    with pytest.raises(NoInstanceAnswered, match="no instance is configured"):
        await caller.call([], silent)


async def _answer(target: str) -> str:
    return target
