"""`flotilla events tail`, `dlq` and `requeue` as real processes against a real NATS
JetStream, with events published the way the services publish them and dead letters
made by a real consumer."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

from sqlalchemy import MetaData
from typer.testing import CliRunner

from flotilla_cli.main import app
from flotilla_kit.db import Database, Transaction
from flotilla_kit.events import (
    DEAD_REASON,
    DLQ_STREAM,
    EVENTS_STREAM,
    ORIGINAL_SUBJECT,
    CloudEvent,
    Consumer,
    EventMetrics,
    Outcome,
    connect,
    dlq_subject,
    ensure_streams,
    inbox_table,
)
from flotilla_kit.testing import create_tables

_ENV = {k: v for k, v in os.environ.items() if k != "FLOTILLA_NATS_URL"}


async def flotilla(*args: str, timeout_s: float = 30) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_cli", *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_ENV,
    )  # fmt: skip
    async with asyncio.timeout(timeout_s):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def publish(url: str, *events: CloudEvent, subject: str | None = None) -> None:
    client = await connect(url, name="test", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        for event in events:
            await js.publish(
                subject or event.type, event.to_json(), stream=EVENTS_STREAM,
                headers={"Nats-Msg-Id": event.id},
            )  # fmt: skip
    finally:
        await client.close()


class DeadLetterCount(EventMetrics):
    def __init__(self) -> None:
        super().__init__()
        self.dead = 0
        self.two = asyncio.Event()

    def consumed_one(self, consumer: str, outcome: Outcome) -> None:
        super().consumed_one(consumer, outcome)
        self.dead += outcome is Outcome.DEAD_LETTERED
        if self.dead == 2:
            self.two.set()


def shop_event(n: int) -> CloudEvent:
    return CloudEvent.new("shop", "thing_done", {"n": n, "sku": "mug"}, subject=f"thing-{n}")


async def test_tail_follows_new_events_on_its_subject(nats_url: str) -> None:
    await publish(nats_url, shop_event(0))  # before the tail started: not shown
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_cli", "events", "tail", "--subject", "flotilla.shop.>",
        "--limit", "2", "--nats-url", nats_url,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_ENV,
    )  # fmt: skip
    assert process.stderr is not None
    async with asyncio.timeout(30):
        ready = await process.stderr.readline()  # subscribed: what comes now is shown
    assert ready.decode().startswith("following flotilla.shop.> on nats://")
    other = CloudEvent.new("elsewhere", "thing_done", {"n": 9})
    shown = [shop_event(1), shop_event(2)]
    await publish(nats_url, shown[0], other, shown[1])
    async with asyncio.timeout(30):
        out, _ = await process.communicate()
    assert process.returncode == 0
    lines = out.decode().splitlines()
    assert len(lines) == 2
    for line, event in zip(lines, shown, strict=True):
        moment, kind, subject, event_id, summary = line.split(" ", 4)
        assert (kind, subject, event_id) == (event.type, event.subject, event.id)
        assert moment == event.time.isoformat(timespec="milliseconds")[:-6] + "Z"
        assert summary == f'n={event.data["n"]} sku="mug"'


async def test_tail_from_the_start_as_json_finds_nats_in_the_state_file(
    nats_url: str, tmp_path: Path
) -> None:
    events = [shop_event(n) for n in range(3)]
    await publish(nats_url, *events)
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "state.json").write_text(json.dumps({"nats_url": nats_url}))
    code, out, err = await flotilla(
        "events", "tail", "--from-start", "--limit", "3", "--json", "--var-dir", str(tmp_path)
    )
    assert code == 0, err
    assert [CloudEvent.from_json(line.encode()) for line in out.splitlines()] == events


async def test_dlq_lists_each_dead_letter_with_why_and_exits_0(
    nats_url: str, sqlite_url: str
) -> None:
    code, out, _ = await flotilla("events", "dlq", "--nats-url", nats_url)
    assert (code, out.strip()) == (0, "No dead letters.")

    poison = shop_event(13)

    async def refuse(event: CloudEvent, transaction: Transaction) -> None:
        raise LookupError(f"no product for {event.subject}")

    metadata = MetaData()
    inbox = inbox_table(metadata)
    await create_tables(sqlite_url, metadata)
    database = Database(sqlite_url)
    metrics = DeadLetterCount()
    consumer = Consumer(
        database=database, inbox=inbox, nats_url=nats_url, name="shop-books",
        subjects=["flotilla.shop.>"], handler=refuse, max_deliver=1, metrics=metrics,
    )  # fmt: skip
    task = asyncio.create_task(consumer.run())
    try:
        await publish(nats_url, poison)
        await publish(nats_url, shop_event(14), subject="flotilla.shop.other")  # type != subject
        async with asyncio.timeout(30):
            await metrics.two.wait()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await database.dispose()

    code, out, err = await flotilla("events", "dlq", "--json", "--nats-url", nats_url)
    assert code == 0, err
    letters = [json.loads(line) for line in out.splitlines()]
    assert [
        (d["consumer"], d["event_id"], d["event_type"], d["original_subject"], d["deliveries"])
        for d in letters
    ] == [
        ("shop-books", poison.id, poison.type, poison.type, 1),
        (
            "shop-books",
            letters[1]["event_id"],
            "flotilla.shop.thing_done",
            "flotilla.shop.other",
            1,
        ),
    ]
    assert letters[0]["reason"] == (
        "handler failed, delivery 1 of 1: LookupError: no product for thing-13"
    )
    assert letters[1]["reason"] == "malformed: type is not the subject it arrived on"
    assert CloudEvent.from_json(letters[0]["payload"].encode()) == poison

    code, out, err = await flotilla("events", "dlq", "--nats-url", nats_url)
    assert code == 0, err
    assert "Dead letters (2)" in out
    for shown in ("LookupError:", "thing-13", "malformed:", "flotilla.shop.other", poison.id):
        assert shown in out  # words of each reason, wherever the table wraps them


async def test_an_unreachable_broker_is_reported_without_a_traceback() -> None:
    code, out, err = await flotilla("events", "dlq", "--nats-url", "nats://127.0.0.1:1")
    assert code == 1
    assert "Cannot read the streams at nats://127.0.0.1:1" in err
    assert "Traceback" not in err + out


async def test_requeue_puts_a_dead_letter_back_once_and_says_when_there_is_none(
    nats_url: str, sqlite_url: str
) -> None:
    event, later = shop_event(21), shop_event(22)
    fixed = asyncio.Event()  # the operator deployed the fix
    applied: list[CloudEvent] = []
    changed = asyncio.Event()
    dead = DeadLetterCount()

    async def handle(received: CloudEvent, transaction: Transaction) -> None:
        if not fixed.is_set():
            raise LookupError(f"no product for {received.subject}")
        applied.append(received)
        changed.set()

    async def until_applied(count: int) -> None:
        async with asyncio.timeout(30):
            while len(applied) < count:
                changed.clear()
                await changed.wait()

    metadata = MetaData()
    inbox = inbox_table(metadata)
    await create_tables(sqlite_url, metadata)
    database = Database(sqlite_url)
    consumer = Consumer(
        database=database, inbox=inbox, nats_url=nats_url, name="shop-books",
        subjects=["flotilla.shop.>"], handler=handle, max_deliver=1, metrics=dead,
    )  # fmt: skip
    task = asyncio.create_task(consumer.run())
    try:
        await publish(nats_url, event, later)  # both given up
        async with asyncio.timeout(30):
            await dead.two.wait()
        code, out, err = await flotilla("events", "dlq", "--json", "--nats-url", nats_url)
        assert code == 0, err
        first, second = (json.loads(line)["sequence"] for line in out.splitlines())
        fixed.set()
        code, out, err = await flotilla("events", "requeue", str(first), "--nats-url", nats_url)
        assert code == 0, err
        assert out.strip() == (
            f"Requeued dead letter #{first} ({event.type} {event.id}, given up by "
            f"shop-books) onto {event.type}."
        )
        await until_applied(1)
        code, out, err = await flotilla(
            "events", "requeue", str(second), "--json", "--nats-url", nats_url
        )
        assert code == 0, err
        done = json.loads(out)
        assert (done["sequence"], done["consumer"], done["duplicate"]) == (
            second, "shop-books", False,
        )  # fmt: skip
        await until_applied(2)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await database.dispose()
    assert applied == [event, later]  # each once
    code, out, _ = await flotilla("events", "dlq", "--nats-url", nats_url)
    assert (code, out.strip()) == (0, "No dead letters.")

    code, out, err = await flotilla("events", "requeue", str(first), "--nats-url", nats_url)
    assert code == 1
    assert f"Not requeued: no dead letter #{first} in FLOTILLA_DLQ" in err
    assert "Traceback" not in out + err
    for bad in ("0", "seven"):  # refused before anything runs: in this process
        refused = CliRunner().invoke(app, ["events", "requeue", bad, "--nats-url", nats_url])
        assert refused.exit_code == 2, refused.output
    code, _, err = await flotilla("events", "requeue", "1", "--nats-url", "nats://127.0.0.1:1")
    assert code == 1
    assert "Cannot read the streams at nats://127.0.0.1:1" in err
    assert "Traceback" not in err


async def test_requeue_refuses_a_letter_that_would_only_come_back(nats_url: str) -> None:
    client = await connect(nats_url, name="test", persistent=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        await js.publish(
            dlq_subject("shop-books"), b"{not json", stream=DLQ_STREAM,
            headers={ORIGINAL_SUBJECT: "flotilla.shop.thing_done", DEAD_REASON: "malformed"},
        )  # fmt: skip
    finally:
        await client.close()
    code, out, err = await flotilla("events", "requeue", "1", "--nats-url", nats_url)
    assert code == 1
    assert "cannot be requeued: it is not a valid event for flotilla.shop.thing_done" in err
    assert "Traceback" not in out + err
    code, out, _ = await flotilla("events", "dlq", "--json", "--nats-url", nats_url)
    assert [json.loads(line)["sequence"] for line in out.splitlines()] == [1]  # kept
