"""Asking a running system's supervisor to change a service's number of instances, through
files: the protocol `flotilla scale` and the web console share with the supervisor.

A request is a JSON file `<folder>/<id>.json` (under `flotilla up`, the folder is
`var/run/scale`: `requests_dir(var/run)`). The supervisor looks for requests on every
second, carries them out one at a time, and answers in
`<folder>/<id>.result.json`, removing the request; the requester reads the answer and
removes it. Each file is written whole (a temporary file renamed over it), so a reader
never sees half of one.

Which services may scale and how far is the launcher's to say (it knows the plan): the
supervisor checks every request and answers one it refuses with `ok: false` and the
reason, so a requester needs no rules of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import tempfile
import time
import uuid
from pathlib import Path

from pydantic import BaseModel, Field

__all__ = [
    "ScaleRequest",
    "ScaleResult",
    "answer",
    "answered",
    "pending_requests",
    "read_result",
    "request_path",
    "requests_dir",
    "result_path",
    "submit",
    "take_result",
    "wait_for_result",
    "withdraw",
]

_RESULT_SUFFIX = ".result.json"


class ScaleRequest(BaseModel):
    """`instances` instances of `service` wanted (of one ledger shard, or of each)."""

    # The file's name: letters, digits, `-` and `_` only, so no id reaches outside the folder.
    id: str = Field(default_factory=lambda: uuid.uuid4().hex, pattern=r"^[0-9A-Za-z_-]{1,64}$")
    service: str
    shard: int | None = Field(default=None, description="For the ledger: one shard; None: all.")
    instances: int


class ScaleResult(BaseModel):
    """The supervisor's answer: done (`ok`) or why not (`detail`), and the instance
    counts per service (per ledger shard: `accounts-s0`) after it."""

    id: str
    ok: bool
    detail: str
    counts: dict[str, int] = Field(default_factory=dict)


def requests_dir(run_dir: Path) -> Path:
    """The folder of the requests and answers, in a running system's `run` folder
    (`var/run` under `flotilla up`)."""
    return run_dir / "scale"


def _checked(request_id: str) -> str:
    if not request_id or "/" in request_id or request_id.startswith("."):
        raise ValueError(f"not a scale request id: {request_id!r}")
    return request_id


def request_path(directory: Path, request_id: str) -> Path:
    return directory / f"{_checked(request_id)}.json"


def result_path(directory: Path, request_id: str) -> Path:
    return directory / f"{_checked(request_id)}{_RESULT_SUFFIX}"


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def submit(directory: Path, request: ScaleRequest) -> None:
    """Hand `request` to the supervisor (the folder is made if missing)."""
    _write_atomically(request_path(directory, request.id), request.model_dump_json())


def answer(directory: Path, result: ScaleResult) -> None:
    """The supervisor's side: write the answer, then remove the request it answers."""
    _write_atomically(result_path(directory, result.id), result.model_dump_json())
    request_path(directory, result.id).unlink(missing_ok=True)


def read_result(directory: Path, request_id: str) -> ScaleResult | None:
    """The answer to a request, or None while there is none."""
    try:
        return ScaleResult.model_validate_json(result_path(directory, request_id).read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def answered(directory: Path, limit: int) -> list[tuple[dt.datetime, ScaleResult]]:
    """The newest `limit` answers still in the folder (none is taken), newest first, each
    with the time it was written; unreadable ones are left out."""
    dated: list[tuple[float, Path]] = []
    try:
        for path in directory.glob(f"*{_RESULT_SUFFIX}"):
            with contextlib.suppress(OSError):
                dated.append((path.stat().st_mtime, path))
    except OSError:
        return []
    found = []
    for moment, path in sorted(dated, reverse=True)[:limit]:
        result = read_result(directory, path.name.removesuffix(_RESULT_SUFFIX))
        if result is not None:
            found.append((dt.datetime.fromtimestamp(moment, dt.UTC), result))
    return found


def take_result(directory: Path, request_id: str) -> ScaleResult | None:
    """The answer to a request, removed from the folder once read; None while there is none."""
    result = read_result(directory, request_id)
    if result is not None:
        result_path(directory, request_id).unlink(missing_ok=True)
    return result


def withdraw(directory: Path, request_id: str) -> None:
    """Take back a request nobody answered (the supervisor is gone, or the requester gave
    up waiting). One the supervisor had already started is still carried out."""
    request_path(directory, request_id).unlink(missing_ok=True)


async def wait_for_result(
    directory: Path, request_id: str, *, timeout_s: float, poll_s: float = 0.2
) -> ScaleResult | None:
    """The answer to a submitted request, taken from the folder, or None (and the request
    withdrawn) if none came within `timeout_s`. The answer is a file written by another
    process, so it is looked for every `poll_s`. Adding instances takes as long as they
    take to become ready (seconds); removing them, as long as they take to drain."""
    deadline = time.monotonic() + timeout_s
    while (result := take_result(directory, request_id)) is None:
        if time.monotonic() >= deadline:
            withdraw(directory, request_id)
            return None
        await asyncio.sleep(poll_s)
    return result


def pending_requests(directory: Path) -> list[ScaleRequest]:
    """The supervisor's side: requests not answered yet, oldest first; an unreadable one
    is answered at once (not ok, saying why)."""
    found: list[tuple[float, ScaleRequest]] = []
    if not directory.is_dir():
        return []
    for path in directory.glob("*.json"):
        if path.name.endswith(_RESULT_SUFFIX) or path.name.startswith("."):
            continue
        try:
            request = ScaleRequest.model_validate_json(path.read_bytes())
            found.append((path.stat().st_mtime, request))
        except FileNotFoundError:
            continue
        except ValueError as exc:
            answer(directory, ScaleResult(id=path.stem, ok=False, detail=f"bad request: {exc}"))
    return [request for _, request in sorted(found, key=lambda pair: pair[0])]
