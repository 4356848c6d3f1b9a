"""The SQL of rows driven under leases, against real SQLite and PostgreSQL: every write a
compare-and-set, and the kit's leases and recovery loop over it."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from typing import Self

import pytest
import structlog
from sqlalchemy import Column, Integer, MetaData, String, Table, bindparam, literal, select

from flotilla_kit.clock import ManualClock
from flotilla_kit.db import Database, Query, Row, Transaction, UnitOfWork, UtcDateTime
from flotilla_kit.leased_rows import LeaseStatements, SqlLeasedRows
from flotilla_kit.recovery import Leases, RecoveryLoop
from flotilla_kit.testing import database_with_tables

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)

metadata = MetaData()
jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("state", String(10), nullable=False),
    Column("tries", Integer, nullable=False),
    Column("next_attempt_at", UtcDateTime(), nullable=False),
    Column("lease_owner", String(40)),
    Column("lease_until", UtcDateTime()),
)
_j = jobs.c
_LEASES = LeaseStatements(
    jobs, unfinished=_j.state != literal("done"), attempts=_j.tries, expected=_j.state
)
_INSERT = Query(jobs.insert().values({c.name: bindparam(c.name) for c in _j}))
_BY_ID = Query(select(jobs).where(_j.id == bindparam("id")))
_FINISH = Query(jobs.update().where(_j.id == bindparam("id")).values(state="done"))


@dataclass(frozen=True, slots=True)
class Terms:
    instance_id: str
    lease_s: float
    retry_initial_s: float
    retry_max_s: float


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    state: str = "new"
    tries: int = 0
    next_attempt_at: dt.datetime = T0
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.state == "done"


def _job(row: Row) -> Job:
    return Job(row.id, row.state, row.tries, row.next_attempt_at, row.lease_owner, row.lease_until)


class SqlJobs(SqlLeasedRows[int, Job]):
    lease_statements = _LEASES

    def __init__(self, transaction: Transaction) -> None:
        self.transaction = transaction

    async def add(self, job: Job) -> None:
        await self.transaction.execute(
            _INSERT, id=job.id, state=job.state, tries=job.tries,
            next_attempt_at=job.next_attempt_at, lease_owner=job.lease_owner,
            lease_until=job.lease_until,
        )  # fmt: skip

    async def get(self, key: int, /) -> Job | None:
        row = await self.transaction.first(_BY_ID, id=key)
        return _job(row) if row is not None else None

    async def extend_lease(
        self, job: Job, *, owner: str, until: dt.datetime, next_attempt_at: dt.datetime
    ) -> Job | None:
        kept = replace(job, tries=job.tries + 1, next_attempt_at=next_attempt_at, lease_until=until)
        extended = await self._extend(
            job.id, expected=job.state, owner=owner, until=until, attempts=kept.tries,
            next_attempt_at=next_attempt_at,
        )  # fmt: skip
        return kept if extended else None

    async def release_lease(self, job: Job, *, owner: str, next_attempt_at: dt.datetime) -> bool:
        return await self._release(
            job.id, owner=owner, attempts=job.tries + 1, next_attempt_at=next_attempt_at
        )


class JobsUnitOfWork(UnitOfWork):
    jobs: SqlJobs

    async def __aenter__(self) -> Self:
        await super().__aenter__()
        self.jobs = SqlJobs(self.transaction)
        return self


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    async with database_with_tables(database_url, metadata) as found:
        yield found


async def _add(database: Database, *added: Job) -> None:
    async with JobsUnitOfWork(database) as uow:
        for job in added:
            await uow.jobs.add(job)
        await uow.commit()


async def _get(database: Database, key: int) -> Job:
    async with JobsUnitOfWork(database, write=False) as uow:
        found = await uow.jobs.get(key)
    assert found is not None
    return found


def _leases(database: Database, clock: ManualClock, owner: str) -> Leases[JobsUnitOfWork, int, Job]:
    def uow(*, write: bool = True) -> JobsUnitOfWork:
        return JobsUnitOfWork(database, write=write)

    terms = Terms(instance_id=owner, lease_s=5.0, retry_initial_s=1.0, retry_max_s=4.0)
    return Leases(
        uow=uow, rows=lambda u: u.jobs, attempts=lambda job: job.tries, id_field="job_id",
        terms=terms, clock=clock, draw=lambda: 1.0,
    )  # fmt: skip


async def test_due_claim_and_count_are_compare_and_sets(database: Database) -> None:
    until = T0 + dt.timedelta(seconds=5)
    await _add(
        database,
        Job(1, next_attempt_at=T0 - dt.timedelta(seconds=1)),
        Job(2),
        Job(3, next_attempt_at=T0 + dt.timedelta(seconds=1)),  # not due yet
        Job(4, lease_owner="i-1", lease_until=until),  # leased
        Job(5, state="done"),  # final
        Job(6, lease_owner="i-1", lease_until=T0),  # its lease has just expired
    )
    async with JobsUnitOfWork(database) as uow:
        assert await uow.jobs.due(now=T0, limit=10) == [1, 2, 6]  # longest due first
        assert await uow.jobs.due(now=T0, limit=1) == [1]
        claimed = await uow.jobs.claim(2, now=T0, owner="i-0", until=until)
        assert claimed == Job(2, lease_owner="i-0", lease_until=until)
        assert await uow.jobs.claim(2, now=T0, owner="i-1", until=until) is None
        assert await uow.jobs.claim(4, now=T0, owner="i-0", until=until) is None
        assert await uow.jobs.claim(5, now=T0, owner="i-0", until=until) is None
        assert await uow.jobs.count_unfinished() == 5
        await uow.commit()


async def test_extend_release_and_release_of_an_owner(database: Database) -> None:
    clock = ManualClock(T0)
    until = T0 + dt.timedelta(seconds=5)
    await _add(
        database,
        Job(1, lease_owner="i-0", lease_until=until),
        Job(2, lease_owner="i-0", lease_until=until),
        Job(3, lease_owner="i-1", lease_until=until),
        Job(4, state="done", lease_owner="i-0", lease_until=until),
    )
    ours = _leases(database, clock, "i-0")
    kept = await ours.extend(await _get(database, 1), 2.0)
    due = T0 + dt.timedelta(seconds=2)
    assert kept == Job(
        1,
        tries=1,
        next_attempt_at=due,
        lease_owner="i-0",
        lease_until=due + dt.timedelta(seconds=5),
    )
    assert await _get(database, 1) == kept
    # The row moved on (its state changed) since it was read: the extension is refused.
    stale = await _get(database, 2)
    async with JobsUnitOfWork(database) as uow:
        await uow.transaction.execute(_FINISH, id=2)
        await uow.commit()
    assert await ours.extend(stale, 2.0) is None
    # Not ours: neither extended nor released.
    theirs = await _get(database, 3)
    assert await ours.extend(theirs, 2.0) is None
    assert not await ours.release_for_retry(theirs)
    # Given back: free, one try more, due after the backoff (draw 1.0 of 1 * 2**1).
    assert await ours.release_for_retry(kept)
    assert await _get(database, 1) == Job(1, tries=2, next_attempt_at=T0 + dt.timedelta(seconds=2))
    assert await _leases(database, clock, "i-1").release_own() == 1
    assert (await _get(database, 3)).lease_owner is None
    assert (await _get(database, 4)).lease_owner == "i-0"  # final: left as it is


class Finisher(RecoveryLoop[JobsUnitOfWork, int, Job]):
    async def _resume(self, job: Job, now: dt.datetime) -> Job:
        async with self._uow() as uow:
            await uow.transaction.execute(_FINISH, id=job.id)
            await uow.commit()
        return replace(job, state="done")

    async def _unfinished(self, uow: JobsUnitOfWork) -> int:
        return await uow.jobs.count_unfinished()


async def test_two_instances_recovering_at_once_take_each_row_once(database: Database) -> None:
    clock = ManualClock(T0)
    await _add(database, *(Job(n) for n in range(20)))
    counted: list[str] = []
    loops = [
        Finisher(
            _leases(database, clock, owner),
            count=counted.append,
            log=structlog.get_logger("test"),
            noun="jobs",
            interval_s=1.0,
        )
        for owner in ("i-0", "i-1")
    ]
    reports = await asyncio.gather(*(loop.tick() for loop in loops))
    assert sum(r.claimed for r in reports) == sum(r.finished for r in reports) == 20
    assert counted == ["finished"] * 20
    async with JobsUnitOfWork(database, write=False) as uow:
        assert await uow.jobs.count_unfinished() == 0
