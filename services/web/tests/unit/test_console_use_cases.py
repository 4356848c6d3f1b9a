"""The console's use cases around the APIs, against a fake of the user's API: what a
section shows when the gateway does not answer or answers what it should not, how the
audit tail is merged, what the scale form takes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from flotilla_web.domain import GatewayUnavailable, InvalidForm
from flotilla_web.domain.console_metrics import SnapshotHistory
from flotilla_web.service_layer import console
from flotilla_web.service_layer.ports import ApiAnswer, StreamedAnswer


class FakeApi:
    """Answers by path; a path mapped to an exception raises it."""

    def __init__(self, answers: Mapping[str, ApiAnswer | Exception]) -> None:
        self.answers = dict(answers)
        self.asked: list[tuple[str, Mapping[str, str | int] | None]] = []

    async def get(self, path: str, *, params: Mapping[str, str | int] | None = None) -> ApiAnswer:
        self.asked.append((path, params))
        answer = self.answers.get(path, ApiAnswer(404, {"detail": "no such route"}))
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def post(
        self, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None
    ) -> ApiAnswer:
        raise AssertionError("the console posts nothing to the APIs")

    async def stream(self, path: str, *, accept: str) -> StreamedAnswer:
        raise AssertionError("the console streams nothing")


def _picture(*instances: dict[str, Any], at: float = 100.0) -> ApiAnswer:
    return ApiAnswer(200, {"gateway": "gateway-1", "at": at, "services": [
        {"name": "accounts", "sharded": True, "instances": list(instances)}]})  # fmt: skip


def _instance(name: str, shard: int, requests: int = 0) -> dict[str, Any]:
    return {"name": name, "shard": shard, "healthy": True, "in_flight": 0,
            "requests": requests, "errors": 0, "buckets": [[0.01, requests]]}  # fmt: skip


async def test_a_gateway_that_does_not_answer_makes_every_section_say_so() -> None:
    api = FakeApi({console.SYSTEM_INSTANCES: GatewayUnavailable("timeout"),
                   console.IN_DOUBT: GatewayUnavailable("timeout"),
                   console.PENDING_ORDERS: GatewayUnavailable("timeout")})  # fmt: skip
    picture = await console.system_picture(api, SnapshotHistory())
    assert not picture.available
    assert "did not answer" in picture.reason
    work = await console.pending_work(api)
    assert (work.transfers.available, work.orders.available) == (False, False)
    assert (console.IN_DOUBT, {"older_than": console.IN_DOUBT_AFTER_S}) in api.asked
    assert (console.PENDING_ORDERS, {"status": "PENDING", "limit": 50}) in api.asked
    view = await console.audit_logs(api, shards=None)
    assert {log.status for log in view.logs} == {"unavailable"}


@pytest.mark.parametrize(
    "body",
    [None, [], {"gateway": "g"}, {"gateway": 1, "at": 1, "services": []},
     {"gateway": "g", "at": "soon", "services": []}],
)  # fmt: skip
async def test_an_answer_that_is_no_system_picture_is_said_to_be_one(body: Any) -> None:
    api = FakeApi({console.SYSTEM_INSTANCES: ApiAnswer(200, body)})
    picture = await console.system_picture(api, SnapshotHistory())
    assert not picture.available
    assert picture.reason == "The gateway's answer is not a system picture."


async def test_an_instance_with_unreadable_counts_is_shown_without_figures() -> None:
    broken = {**_instance("accounts-s0-2", 0), "buckets": "many"}
    history = SnapshotHistory()
    api = FakeApi({console.SYSTEM_INSTANCES: _picture(_instance("accounts-s0-1", 0, 5), broken)})
    await console.system_picture(api, history)
    api.answers[console.SYSTEM_INSTANCES] = _picture(
        _instance("accounts-s0-1", 0, 25), broken, at=102.0
    )
    picture = await console.system_picture(api, history)
    rows = {row.name: row for row in picture.instances}
    assert rows["accounts-s0-1"].requests_per_s == "10.0"
    assert rows["accounts-s0-2"].requests_per_s == "\u2013"
    assert picture.shard_count() == 1


async def test_the_audit_tail_asks_each_shard_and_merges_newest_first() -> None:
    def log(name: str, *records: tuple[int, str]) -> ApiAnswer:
        return ApiAnswer(200, {"log": name, "chain": {"intact": True, "records": 9,
                                                      "first_broken": None},
                               "records": [{"seq": s, "at": at, "actor": "a", "action": "x",
                                            "target": None, "outcome": "success",
                                            "details": {}} for s, at in records]})  # fmt: skip

    api = FakeApi({
        "/api/v1/audit/auth": log("auth", (3, "2026-12-07T10:00:05+00:00"),
                                  (2, "2026-12-07T10:00:01+00:00")),
        "/api/v1/audit/accounts/2": log("accounts-s2", (8, "2026-12-07T10:00:03Z")),
        "/api/v1/audit/payments": log("payments", (1, "not a time")),
    })  # fmt: skip
    view = await console.audit_logs(api, shards=3)
    asked = [path for path, _ in api.asked]
    assert sorted(asked) == sorted(
        ["/api/v1/audit/auth", "/api/v1/audit/payments", "/api/v1/audit/inventory"]
        + [f"/api/v1/audit/accounts/{n}" for n in range(3)]
    )
    assert {params["limit"] for _, params in api.asked if params} == {console.AUDIT_LIMIT}
    assert [(r.log, r.seq) for r in view.records] == [
        ("auth", 3), ("accounts-s2", 8), ("auth", 2), ("payments", 1)
    ]  # fmt: skip
    assert [log.status for log in view.logs] == [
        "intact", "intact", "unavailable", "unavailable", "unavailable", "intact"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("service", "instances", "wrong"),
    [("", "2", {"service"}), ("orders", "", {"instances"}), ("Orders", "2", {"service"}),
     ("orders", "0", {"instances"}), ("orders", "65", {"instances"}),
     ("orders", "2.5", {"instances"}), ("orders", "\u0663", {"instances"}),
     ("../x", "-1", {"service", "instances"})],
)  # fmt: skip
def test_the_scale_form_refuses_what_is_no_service_or_no_count(
    service: str, instances: str, wrong: set[str]
) -> None:
    with pytest.raises(InvalidForm) as refused:
        console.scale_form(service, instances)
    assert set(refused.value.errors) == wrong


def test_the_scale_form_takes_a_service_and_a_count() -> None:
    assert console.scale_form(" orders ", " 3 ") == ("orders", 3)


@pytest.mark.parametrize(
    ("text", "found"),
    [("4BF92F3577B34DA6A3CE929D0E0E4736 ", "4bf92f3577b34da6a3ce929d0e0e4736"),
     ("4bf92f3577b34da6a3ce929d0e0e473", None), ("x" * 32, None), ("", None)],
)  # fmt: skip
def test_a_trace_id_is_32_hex_digits(text: str, found: str | None) -> None:
    if found is None:
        with pytest.raises(console.MalformedTraceId):
            console.checked_trace_id(text)
    else:
        assert console.checked_trace_id(text) == found
