"""Leases, retries and the recovery loop, over the kit's in-memory leased rows (the same
compare-and-set rules as the SQL ones, which `tests/integration/test_leased_rows.py`
checks on both databases)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import pytest
import structlog
from structlog.testing import capture_logs

from flotilla_kit.clock import ManualClock
from flotilla_kit.recovery import Drives, Leases, RecoveryLoop, RecoveryReport, run_paced
from flotilla_kit.testing import InMemoryLeasedRows, InMemoryUnitOfWork

T0 = dt.datetime(2030, 1, 1, 12, 0, tzinfo=dt.UTC)


@dataclass(frozen=True, slots=True)
class Job:
    id: int
    steps_left: int = 1
    version: int = 0
    attempts: int = 0
    next_attempt_at: dt.datetime = T0
    lease_owner: str | None = None
    lease_until: dt.datetime | None = None

    @property
    def is_final(self) -> bool:
        return self.steps_left == 0


@dataclass(frozen=True, slots=True)
class Terms:
    instance_id: str
    lease_s: float
    retry_initial_s: float
    retry_max_s: float


@dataclass
class Store:
    jobs: dict[int, Job] = field(default_factory=dict)


class Jobs(InMemoryLeasedRows[int, Job]):
    def __init__(self, store: Store, undo: list[Callable[[], object]]) -> None:
        super().__init__(store.jobs, undo, attempts="attempts", expected="version")


class Uow(InMemoryUnitOfWork):
    def __init__(self, store: Store, *, write: bool = True) -> None:
        super().__init__(write=write)
        self.jobs = Jobs(store, self.undo)


def leases(store: Store, clock: ManualClock, owner: str = "i-0") -> Leases[Uow, int, Job]:
    def uow(*, write: bool = True) -> Uow:
        return Uow(store, write=write)

    terms = Terms(instance_id=owner, lease_s=5.0, retry_initial_s=1.0, retry_max_s=4.0)
    return Leases(
        uow=uow, rows=lambda u: u.jobs, attempts=lambda job: job.attempts, id_field="job_id",
        terms=terms, clock=clock, sleep=clock.sleep, draw=lambda: 0.5,
    )  # fmt: skip


class JobRecovery(RecoveryLoop[Uow, int, Job]):
    """Resuming a job runs one of its steps; a job whose id is in `broken` raises."""

    def __init__(self, leases: Leases[Uow, int, Job], sleep: ManualClock) -> None:
        self.actions: list[str] = []
        self.claimed_in_transaction: list[int] = []
        self.broken: set[int] = set()
        self.fail_next_ticks = 0
        super().__init__(
            leases, count=self.actions.append, log=structlog.get_logger("test.recovery"),
            noun="jobs", interval_s=1.0, sleep=sleep.sleep,
        )  # fmt: skip

    async def tick(self) -> RecoveryReport:
        if self.fail_next_ticks:
            self.fail_next_ticks -= 1
            raise RuntimeError("database down")
        return await super().tick()

    async def _claimed(self, uow: Uow, job: Job, now: dt.datetime) -> None:
        self.claimed_in_transaction.append(job.id)

    async def _resume(self, job: Job, now: dt.datetime) -> Job:
        if job.id in self.broken:
            raise RuntimeError("boom")
        after = replace(job, steps_left=job.steps_left - 1, version=job.version + 1)
        async with self._uow() as uow:
            uow.jobs._put(after)
            await uow.commit()
        return after

    async def _unfinished(self, uow: Uow) -> int:
        return await uow.jobs.count_unfinished()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


# -- leases -------------------------------------------------------------------------------


async def test_the_delay_is_full_jitter_of_the_attempt_count(clock: ManualClock) -> None:
    kept = leases(Store(), clock)
    # draw 0.5 of min(4, 1 * 2**attempts)
    assert [kept.delay(n) for n in range(4)] == [0.5, 1.0, 2.0, 2.0]


async def test_extending_keeps_the_lease_over_the_backoff_and_counts_the_attempt(
    clock: ManualClock,
) -> None:
    store = Store({1: Job(1, lease_owner="i-0", lease_until=T0)})
    kept = await leases(store, clock).extend(store.jobs[1], 2.0)
    due = T0 + dt.timedelta(seconds=2)
    expected = replace(
        store.jobs[1], attempts=1, next_attempt_at=due, lease_until=due + dt.timedelta(seconds=5)
    )
    assert kept == expected == store.jobs[1]


@pytest.mark.parametrize(
    "stored", [Job(1, lease_owner="i-1", lease_until=T0), Job(1, version=1, lease_owner="i-0")]
)
async def test_an_extension_is_refused_when_the_lease_or_the_row_changed_hands(
    clock: ManualClock, stored: Job
) -> None:
    store = Store({1: stored})
    assert await leases(store, clock).extend(Job(1, lease_owner="i-0"), 2.0) is None
    assert store.jobs[1] == stored


async def test_released_for_retry_a_row_is_due_after_a_backoff_and_free(
    clock: ManualClock,
) -> None:
    store = Store({1: Job(1, attempts=2, lease_owner="i-0", lease_until=T0)})
    assert await leases(store, clock).release_for_retry(store.jobs[1])
    assert store.jobs[1] == Job(1, attempts=3, next_attempt_at=T0 + dt.timedelta(seconds=2))
    # Not ours any more: a second release changes nothing.
    assert not await leases(store, clock).release_for_retry(store.jobs[1])


async def test_at_start_only_our_own_unfinished_leases_are_voided(clock: ManualClock) -> None:
    until = T0 + dt.timedelta(seconds=5)
    store = Store(
        {
            1: Job(1, lease_owner="i-0", lease_until=until),
            2: Job(2, lease_owner="i-1", lease_until=until),
            3: Job(3, steps_left=0, lease_owner="i-0", lease_until=until),
        }
    )
    assert await leases(store, clock).release_own() == 1
    assert (store.jobs[1].lease_owner, store.jobs[2].lease_owner) == (None, "i-1")
    assert store.jobs[3].lease_owner == "i-0"  # final: nobody drives it again anyway


async def test_the_in_memory_rows_claim_only_a_free_or_expired_lease() -> None:
    # The fake keeps the SQL rules (`test_leased_rows.py` checks those on both databases).
    until = T0 + dt.timedelta(seconds=5)
    store = Store({1: Job(1, lease_owner="i-1", lease_until=until), 2: Job(2, steps_left=0)})
    async with Uow(store) as uow:
        assert await uow.jobs.claim(1, now=T0, owner="i-0", until=until) is None
        assert await uow.jobs.claim(2, now=T0, owner="i-0", until=until) is None  # final
        taken = await uow.jobs.claim(1, now=until, owner="i-0", until=until)
        await uow.commit()
    assert taken == store.jobs[1] == Job(1, lease_owner="i-0", lease_until=until)


async def test_a_drive_steps_until_final_keeping_its_lease_over_each_backoff(
    clock: ManualClock,
) -> None:
    store = Store({1: Job(1, steps_left=3, lease_owner="i-0", lease_until=T0)})
    kept = leases(store, clock)
    seen: list[int] = []

    async def step(job: Job) -> Job:
        after = replace(job, steps_left=job.steps_left - 1, version=job.version + 1)
        async with Uow(store) as uow:
            uow.jobs._put(replace(after, attempts=store.jobs[1].attempts))
            await uow.commit()
        return after

    drive = asyncio.create_task(
        kept.drive(store.jobs[1], step, log=structlog.get_logger("t"), failed="x",
                   stepped=lambda job: seen.append(job.steps_left))
    )  # fmt: skip
    for _ in range(2):
        delay = await clock.next_sleep()
        # Asleep over the backoff, still holding the lease beyond it.
        assert store.jobs[1].next_attempt_at == clock() + dt.timedelta(seconds=delay)
        assert store.jobs[1].lease_until == store.jobs[1].next_attempt_at + dt.timedelta(seconds=5)
        clock.advance(delay)
    done = await asyncio.wait_for(drive, timeout=1)
    assert done is not None
    assert done.is_final
    assert seen == [2, 1, 0]
    assert clock.sleeps == [0.5, 1.0]  # full jitter of attempts 0 and 1


async def test_a_drive_stops_when_its_lease_is_lost_or_a_step_fails(clock: ManualClock) -> None:
    store = Store({1: Job(1, steps_left=2, lease_owner="i-1", lease_until=T0)})

    async def step(job: Job) -> Job:
        return replace(job, steps_left=job.steps_left - 1)

    async def broken(job: Job) -> Job:
        raise RuntimeError("boom")

    log = structlog.get_logger("t")
    with capture_logs() as logs:
        lost = await leases(store, clock).drive(store.jobs[1], step, log=log, failed="x")
        failed = await leases(store, clock).drive(
            store.jobs[1], broken, log=log, failed="driving a job failed"
        )
    assert lost == replace(store.jobs[1], steps_left=1)  # not final: another instance has it
    assert failed is None
    assert [(e["event"], e["job_id"], e["log_level"]) for e in logs] == [
        ("lease lost; another driver has it", "1", "info"),
        ("driving a job failed", "1", "error"),
    ]
    assert clock.sleeps == []


async def test_drives_are_tracked_until_they_end_and_closed_on_shutdown() -> None:
    drives: Drives[Job] = Drives()
    gate = asyncio.Event()

    async def waiting() -> Job:
        await gate.wait()
        return Job(1, steps_left=0)

    first = drives.start(waiting(), name="job-1")
    second = drives.start(waiting(), name="job-2")
    assert drives.running == {first, second}
    gate.set()
    await drives.settle()
    assert drives.running == frozenset()
    gate.clear()
    third = drives.start(waiting(), name="job-3")
    await drives.close()
    assert third.cancelled()
    assert drives.running == frozenset()


# -- the loop ------------------------------------------------------------------------------


async def test_a_tick_claims_what_is_due_resumes_it_and_gives_back_what_is_left(
    clock: ManualClock,
) -> None:
    later = T0 + dt.timedelta(seconds=30)
    store = Store(
        {
            1: Job(1),  # done after one step
            2: Job(2, steps_left=2),  # one step left after this tick
            3: Job(3, next_attempt_at=later),  # not due yet
            4: Job(4, lease_owner="i-1", lease_until=later),  # another instance drives it
        }
    )
    recovery = JobRecovery(leases(store, clock), clock)
    report = await recovery.tick()
    assert (report.claimed, report.finished, report.unfinished) == (2, 1, 3)
    assert recovery.actions == ["finished", "retry_scheduled"]
    assert sorted(recovery.claimed_in_transaction) == [1, 2]
    assert store.jobs[2].lease_owner is None
    assert store.jobs[2].attempts == 1
    assert store.jobs[2].next_attempt_at == T0 + dt.timedelta(seconds=0.5)


async def test_one_failing_row_does_not_stop_the_others(clock: ManualClock) -> None:
    store = Store({1: Job(1), 2: Job(2)})
    recovery = JobRecovery(leases(store, clock), clock)
    recovery.broken = {1}
    with capture_logs() as logs:
        report = await recovery.tick()
    assert (report.claimed, report.finished) == (2, 1)
    assert store.jobs[2].is_final
    assert store.jobs[1].attempts == 1  # back, to be retried
    assert store.jobs[1].lease_owner is None
    failed = [e for e in logs if e["event"] == "recovery step failed"]
    assert [(e["job_id"], e["log_level"]) for e in failed] == [("1", "error")]


async def test_two_instances_ticking_at_once_take_each_row_once(clock: ManualClock) -> None:
    store = Store({n: Job(n) for n in range(10)})
    first = JobRecovery(leases(store, clock, "i-0"), clock)
    second = JobRecovery(leases(store, clock, "i-1"), clock)
    reports = await asyncio.gather(first.tick(), second.tick())
    assert sum(r.claimed for r in reports) == sum(r.finished for r in reports) == 10
    assert sorted(first.claimed_in_transaction + second.claimed_in_transaction) == list(range(10))


async def test_an_expired_lease_is_taken_over(clock: ManualClock) -> None:
    store = Store({1: Job(1, lease_owner="i-1", lease_until=T0 + dt.timedelta(seconds=5))})
    recovery = JobRecovery(leases(store, clock), clock)
    assert (await recovery.tick()).claimed == 0
    clock.advance(5)
    assert (await recovery.tick()).finished == 1


async def test_release_own_leases_at_start_logs_how_many(clock: ManualClock) -> None:
    store = Store({1: Job(1, lease_owner="i-0", lease_until=T0 + dt.timedelta(seconds=5))})
    recovery = JobRecovery(leases(store, clock), clock)
    with capture_logs() as logs:
        assert await recovery.release_own_leases() == 1
        assert await recovery.release_own_leases() == 0
    assert [(e["event"], e["jobs"]) for e in logs] == [
        ("released the leases of a previous life", 1)
    ]


async def test_run_ticks_at_once_then_at_its_pace_and_outlives_a_failed_tick(
    clock: ManualClock,
) -> None:
    store = Store({1: Job(1, steps_left=3)})
    recovery = JobRecovery(leases(store, clock), clock)
    recovery.fail_next_ticks = 1
    with capture_logs() as logs:
        loop = asyncio.create_task(recovery.run())
        try:
            waits = []
            for _ in range(6):
                waits.append(await clock.next_sleep())
                clock.advance(waits[-1])
        finally:
            loop.cancel()
            with pytest.raises(asyncio.CancelledError):
                await loop
    # A failed tick counts as work; then work for a while; then none: the pace slows down.
    assert waits == [1.0, 1.0, 1.0, 1.0, 2.0, 4.0]
    assert store.jobs[1].is_final
    failed = [e for e in logs if e["event"] == "recovery tick failed"]
    assert [e["error"] for e in failed] == ["RuntimeError('database down')"]


async def test_run_paced_may_wait_before_its_first_pass(clock: ManualClock) -> None:
    passes = itertools.count()

    async def found_work() -> bool:
        next(passes)
        return False

    loop = asyncio.create_task(
        run_paced(
            found_work,
            every_s=3.0,
            log=structlog.get_logger("test"),
            failed="x",
            sleep=clock.sleep,
            at_once=False,
        )
    )
    try:
        assert await clock.next_sleep() == 3.0
        assert next(passes) == 0  # nothing ran yet
        clock.advance(3.0)
        assert await clock.next_sleep() == 6.0  # found nothing: twice as long
    finally:
        loop.cancel()
        with pytest.raises(asyncio.CancelledError):
            await loop
