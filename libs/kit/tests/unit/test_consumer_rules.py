"""The consumer's rules that need no broker: when a failing event is dead-lettered, and
which names and subjects a consumer accepts."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData

from flotilla_kit.db import Database, Transaction
from flotilla_kit.events import CloudEvent, Consumer, Verdict, inbox_table, verdict


@pytest.mark.parametrize(
    ("deliveries", "database_answers", "expected"),
    [
        (1, True, Verdict.RETRY),
        (4, True, Verdict.RETRY),
        (5, True, Verdict.DEAD_LETTER),
        (9, True, Verdict.DEAD_LETTER),  # redelivered past the limit (crashes in between)
        (5, False, Verdict.RETRY),  # the database is down: not the event's fault
        (50, False, Verdict.RETRY),
    ],
)
def test_a_failing_event_is_dead_lettered_only_after_max_deliver_with_the_database_up(
    deliveries: int, database_answers: bool, expected: Verdict
) -> None:
    assert (
        verdict(deliveries=deliveries, max_deliver=5, database_answers=database_answers) is expected
    )


async def _noop(event: CloudEvent, transaction: Transaction) -> None:
    return None


@pytest.mark.parametrize(
    ("name", "subjects", "max_deliver", "message"),
    [
        ("orders.stock", ["flotilla.inventory.stock_changed"], 5, "consumer name"),
        ("orders stock", ["flotilla.inventory.stock_changed"], 5, "consumer name"),
        ("o" * 65, ["flotilla.inventory.stock_changed"], 5, "consumer name"),
        ("orders-stock", [], 5, "subjects"),
        ("orders-stock", ["flotilla-dlq.x"], 5, "subjects"),
        ("orders-stock", ["flotilla.inventory.stock_changed"], 0, "max_deliver"),
    ],
)
def test_consumer_refuses_names_subjects_and_limits_it_cannot_work_with(
    name: str, subjects: list[str], max_deliver: int, message: str
) -> None:
    database = Database("sqlite+aiosqlite:///:memory:")
    with pytest.raises(ValueError, match=message):
        Consumer(
            database=database, inbox=inbox_table(MetaData()), nats_url="nats://x",
            name=name, subjects=subjects, handler=_noop, max_deliver=max_deliver,
        )  # fmt: skip
