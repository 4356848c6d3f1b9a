"""The scale requests' file protocol (`flotilla_kit.scale_requests`): a requester and a
supervisor on one real folder; the answer taken once, a request withdrawn when nobody
answers, an unreadable request answered at once, and ids that cannot leave the folder."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest
from pydantic import ValidationError

from flotilla_kit.scale_requests import (
    ScaleRequest,
    ScaleResult,
    answer,
    answered,
    pending_requests,
    read_result,
    request_path,
    requests_dir,
    result_path,
    submit,
    take_result,
    wait_for_result,
    withdraw,
)


def test_requests_and_answers_go_through_the_folder(tmp_path: Path) -> None:
    folder = requests_dir(tmp_path / "run")
    assert folder == tmp_path / "run" / "scale"
    assert pending_requests(folder) == []  # no folder yet: nothing pending
    first = ScaleRequest(service="auth", instances=3)
    second = ScaleRequest(service="accounts", shard=1, instances=2)
    submit(folder, first)
    submit(folder, second)
    (folder / "broken.json").write_text("{not json")
    assert {r.id for r in pending_requests(folder)} == {first.id, second.id}
    refused = take_result(folder, "broken")  # answered at once, and gone
    assert refused is not None
    assert not refused.ok
    assert refused.detail.startswith("bad request:")
    assert not (folder / "broken.json").exists()

    done = ScaleResult(id=first.id, ok=True, detail="auth: 2 -> 3", counts={"auth": 3})
    answer(folder, done)
    assert not request_path(folder, first.id).exists()  # answered: no longer pending
    assert [r.id for r in pending_requests(folder)] == [second.id]
    assert take_result(folder, first.id) == done
    assert not result_path(folder, first.id).exists()  # taken once
    assert take_result(folder, first.id) is None
    assert read_result(folder, second.id) is None
    withdraw(folder, second.id)
    assert pending_requests(folder) == []
    assert sorted(p.name for p in folder.iterdir()) == []  # no temporary file left behind


async def test_a_requester_waits_for_the_supervisors_answer(tmp_path: Path) -> None:
    folder = requests_dir(tmp_path)
    request = ScaleRequest(service="inventory", instances=2)
    submit(folder, request)
    waiting = asyncio.create_task(wait_for_result(folder, request.id, timeout_s=30, poll_s=0.01))
    await asyncio.sleep(0)  # the requester looked once, found nothing, and waits
    assert not waiting.done()
    (seen,) = pending_requests(folder)  # the supervisor's round
    answer(folder, ScaleResult(id=seen.id, ok=False, detail=f"{seen.service}: no"))
    result = await waiting
    assert result == ScaleResult(id=request.id, ok=False, detail="inventory: no")
    assert list(folder.iterdir()) == []


async def test_a_request_nobody_answers_is_withdrawn(tmp_path: Path) -> None:
    request = ScaleRequest(service="orders", instances=1)
    submit(tmp_path, request)
    assert await wait_for_result(tmp_path, request.id, timeout_s=0.05, poll_s=0.01) is None
    assert pending_requests(tmp_path) == []


@pytest.mark.parametrize("bad", ["../state", "a/b", ".hidden", ""])
def test_an_id_cannot_name_a_file_outside_the_folder(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValidationError):
        ScaleRequest(id=bad, service="auth", instances=1)
    with pytest.raises(ValueError, match="not a scale request id"):
        result_path(tmp_path, bad)
    # A request file that says it is another file is refused, not followed.
    (tmp_path / "sneaky.json").write_text(
        ScaleRequest(service="auth", instances=1).model_dump_json().replace('"id":"', '"id":"../')
    )
    assert pending_requests(tmp_path) == []
    refused = take_result(tmp_path, "sneaky")
    assert refused is not None
    assert not refused.ok


def test_the_newest_answers_are_listed_and_left_in_place(tmp_path: Path) -> None:
    ids = ["older", "newer", "newest"]
    for n, request_id in enumerate(ids):
        answer(tmp_path, ScaleResult(id=request_id, ok=n != 1, detail=f"answer {n}"))
        written = result_path(tmp_path, request_id)
        os.utime(written, (1_000_000 + n, 1_000_000 + n))
    (tmp_path / "garbled.result.json").write_text("{not json")
    os.utime(tmp_path / "garbled.result.json", (999_999, 999_999))
    listed = answered(tmp_path, limit=2)
    assert [(moment.timestamp(), result.id) for moment, result in listed] == [
        (1_000_002, "newest"),
        (1_000_001, "newer"),
    ]
    assert not listed[1][1].ok
    assert [result.id for _, result in answered(tmp_path, limit=10)] == list(reversed(ids))
    assert read_result(tmp_path, "older") is not None  # listing takes nothing
    assert answered(tmp_path / "missing", limit=5) == []
