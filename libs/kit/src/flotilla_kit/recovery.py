"""Work driven under leases, and the loop that finishes what a dead (or slow) driver left.

A service that runs long operations across crashes (the orders saga, the payments 2PC
coordinator) stores each one as a row with a lease (`lease_owner`, `lease_until`), an
attempt count and `next_attempt_at`. Whoever drives a row holds its lease:

- `Leases` is that bookkeeping, once: the backoff before the next attempt (full jitter,
  `flotilla_kit.pacing.full_jitter`, from the attempt count), extending the lease over a
  backoff (`extend`: due at `now + delay`, leased until `lease_s` after that), driving a
  row step after step under its lease until it is final (`drive`, in a task that `Drives`
  keeps), giving a row back to recovery, due again after a backoff
  (`release_for_retry`), and, at start, voiding the leases of this instance's previous
  life (`release_own`). Each write is a
  compare-and-set in a short transaction of its own; the service's repository says what
  "nothing changed" means (`LeasedRows`).
- `RecoveryLoop` runs in every instance, once at start and then paced
  (`flotilla_kit.pacing.Pace`): each `tick` claims the rows whose lease is free or expired
  and whose next attempt is due (one short transaction per claim, so of several instances
  exactly one takes each row), resumes them concurrently (one failing does not stop the
  others), gives back those still unfinished, due again after a backoff, and counts what is
  left. A service subclasses it with what "resume" means for its rows.
- `run_paced` is the loop itself, for any background pass (also the participant's
  recovery in accounts and the reservation sweeper in inventory): a failed pass is logged
  and the loop goes on, until it is cancelled.

Tests call `tick()` after moving their clock (`flotilla_kit.clock.ManualClock`); `run()`
is the lifespan's task.
"""

from __future__ import annotations

import abc
import asyncio
import datetime as dt
import random
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from structlog.typing import FilteringBoundLogger

from flotilla_kit.clock import Clock, Sleep
from flotilla_kit.pacing import Pace, full_jitter
from flotilla_kit.unit_of_work import UnitOfWork, UnitOfWorkFactory

__all__ = [
    "Drives",
    "LeaseTerms",
    "Leased",
    "LeasedRows",
    "Leases",
    "RecoveryLoop",
    "RecoveryReport",
    "run_paced",
]


U = TypeVar("U", bound=UnitOfWork)
K = TypeVar("K")  # a row's key


class Leased(Protocol):
    """What the kit reads of a row driven under a lease."""

    @property
    def id(self) -> object: ...

    @property
    def is_final(self) -> bool: ...


T = TypeVar("T", bound=Leased)  # the domain object a row holds


class LeasedRows(Protocol[K, T]):
    """A repository's rows driven under leases; each call runs in the caller's transaction
    and every write is a compare-and-set."""

    async def extend_lease(
        self, item: T, *, owner: str, until: dt.datetime, next_attempt_at: dt.datetime
    ) -> T | None:
        """Keep driving, one attempt more: only if `owner` still holds the lease and the
        row has not changed since `item` was read. The row as it now stands, or None."""

    async def release_lease(self, item: T, *, owner: str, next_attempt_at: dt.datetime) -> bool:
        """Give the row back to recovery, one attempt more, to be tried again at
        `next_attempt_at`: only if `owner` holds its lease and it is not final."""

    async def release_leases_of(self, owner: str) -> int:
        """At start: leases held by a previous life of this instance are void."""

    async def due(self, *, now: dt.datetime, limit: int) -> list[K]:
        """Unfinished rows whose lease is free or expired and whose next attempt has come,
        the longest due first."""

    async def claim(self, key: K, *, now: dt.datetime, owner: str, until: dt.datetime) -> T | None:
        """Compare-and-set on the lease: take it only if it is (still) free or expired."""


class LeaseTerms(Protocol):
    """How one instance holds leases and retries (a saga's or a coordinator's config)."""

    @property
    def instance_id(self) -> str:
        """The lease owner's name."""

    @property
    def lease_s(self) -> float:
        """How long a lease lasts past the moment it is taken or the next attempt is due."""

    @property
    def retry_initial_s(self) -> float: ...

    @property
    def retry_max_s(self) -> float: ...


class Leases(Generic[U, K, T]):
    """The leases and retries of one service's rows, as seen by one instance
    (`terms.instance_id`): `rows` finds them in a unit of work (`lambda uow: uow.orders`),
    `attempts` reads a row's attempt count, `id_field` names a row in a log line
    (`order_id`), `draw` is the uniform draw of the jitter."""

    def __init__(
        self,
        *,
        uow: UnitOfWorkFactory[U],
        rows: Callable[[U], LeasedRows[K, T]],
        attempts: Callable[[T], int],
        id_field: str,
        terms: LeaseTerms,
        clock: Clock,
        sleep: Sleep = asyncio.sleep,
        draw: Callable[[], float] = random.random,
    ) -> None:
        self._uow = uow
        self._rows = rows
        self._attempts = attempts
        self._id_field = id_field
        self._owner = terms.instance_id
        self._lease_s = terms.lease_s
        self._retry_initial_s = terms.retry_initial_s
        self._retry_max_s = terms.retry_max_s
        self._clock = clock
        self._sleep = sleep
        self._draw = draw

    @property
    def owner(self) -> str:
        return self._owner

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def uow(self) -> UnitOfWorkFactory[U]:
        return self._uow

    @property
    def rows(self) -> Callable[[U], LeasedRows[K, T]]:
        return self._rows

    def fields(self, item: T) -> dict[str, object]:
        """What names a row in a log line (`{"order_id": "..."}`)."""
        return {self._id_field: str(item.id)}

    def until(self, now: dt.datetime) -> dt.datetime:
        """When a lease taken or renewed at `now` ends."""
        return now + dt.timedelta(seconds=self._lease_s)

    def delay(self, attempts: int) -> float:
        """Seconds before the next attempt of a row tried `attempts` times already."""
        return full_jitter(
            attempts, initial_s=self._retry_initial_s, max_s=self._retry_max_s, draw=self._draw()
        )

    async def extend(self, item: T, delay: float) -> T | None:
        """Keep the lease over a backoff of `delay` seconds: the next attempt is due after
        it, and the lease lasts `lease_s` beyond. None when the lease was lost."""
        next_attempt_at = self._clock() + dt.timedelta(seconds=delay)
        async with self._uow() as uow:
            kept = await self._rows(uow).extend_lease(
                item, owner=self._owner, until=self.until(next_attempt_at),
                next_attempt_at=next_attempt_at,
            )  # fmt: skip
            if kept is not None:
                await uow.commit()
        return kept

    async def drive(
        self,
        item: T,
        step: Callable[[T], Awaitable[T]],
        *,
        log: FilteringBoundLogger,
        failed: str,
        stepped: Callable[[T], None] | None = None,
    ) -> T | None:
        """Hold the lease and retry until the row is final (or the lease is lost): `step`
        advances it as far as it goes now; between steps, the lease is kept over a
        backoff. `stepped` sees the row after each step. The row as it ends; None when a
        step raised (logged as `failed`: the lease will expire and recovery resumes it)."""
        try:
            while True:
                item = await step(item)
                if stepped is not None:
                    stepped(item)
                if item.is_final:
                    return item
                delay = self.delay(self._attempts(item))
                kept = await self.extend(item, delay)
                if kept is None:
                    log.info("lease lost; another driver has it", **self.fields(item))
                    return item
                item = kept
                await self._sleep(delay)
        except Exception:  # the lease will expire and recovery will resume it
            log.exception(failed, **self.fields(item))
            return None

    async def release_for_retry(self, item: T) -> bool:
        """Hand an unfinished row back to recovery, due again after a backoff."""
        next_attempt_at = self._clock() + dt.timedelta(seconds=self.delay(self._attempts(item)))
        async with self._uow() as uow:
            released = await self._rows(uow).release_lease(
                item, owner=self._owner, next_attempt_at=next_attempt_at
            )
            if released:
                await uow.commit()
        return released

    async def release_own(self) -> int:
        """Void the leases held under our owner name (by a previous life of this instance,
        which is gone): their rows become due at once."""
        async with self._uow() as uow:
            released = await self._rows(uow).release_leases_of(self._owner)
            await uow.commit()
        return released


class Drives(Generic[T]):
    """The rows this process drives right now, each in a task of its own (`Leases.drive`
    in it)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[T | None]] = set()

    @property
    def running(self) -> frozenset[asyncio.Task[T | None]]:
        return frozenset(self._tasks)

    def start(
        self, drive: Coroutine[object, object, T | None], *, name: str
    ) -> asyncio.Task[T | None]:
        task = asyncio.create_task(drive, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait until every drive has stopped (tests, shutdown)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def close(self) -> None:
        """Stop driving; recovery (here after a restart, or on another instance) resumes."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    claimed: int
    finished: int
    unfinished: int  # rows not final after the tick, across all instances


class RecoveryLoop(abc.ABC, Generic[U, K, T]):
    """Claims due rows under a lease and resumes each. A subclass says what resuming one
    means (`_resume`), what is left (`_unfinished`, with its gauges), and may record a
    claim in its transaction (`_claimed`). `count` receives the recovery actions `finished` and
    `retry_scheduled` (a metric); `noun` names the rows in the log (`orders`)."""

    def __init__(
        self,
        leases: Leases[U, K, T],
        *,
        count: Callable[[str], None],
        log: FilteringBoundLogger,
        noun: str,
        interval_s: float,
        batch: int = 100,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._leases = leases
        self._uow = leases.uow
        self._rows = leases.rows
        self._count = count
        self._log = log
        self._noun = noun
        self._interval_s = interval_s
        self._batch = batch
        self._sleep = sleep

    async def release_own_leases(self) -> int:
        """At start, before serving: leases held under our instance id belong to a previous
        life of this instance, which is gone. Their rows become due at once."""
        released = await self._leases.release_own()
        if released:
            self._log.info("released the leases of a previous life", **{self._noun: released})
        return released

    async def tick(self) -> RecoveryReport:
        now = self._leases.clock()
        async with self._uow(write=False) as uow:
            due = await self._rows(uow).due(now=now, limit=self._batch)
        claimed: list[T] = []
        until = self._leases.until(now)
        for key in due:
            # One short transaction per claim: no lock is held across rows.
            async with self._uow() as uow:
                item = await self._rows(uow).claim(
                    key, now=now, owner=self._leases.owner, until=until
                )
                if item is not None:
                    await self._claimed(uow, item, now)
                    await uow.commit()
            if item is not None:
                claimed.append(item)
        finished = sum(await asyncio.gather(*(self._recover(item, now) for item in claimed)))
        async with self._uow(write=False) as uow:
            unfinished = await self._unfinished(uow)
        return RecoveryReport(claimed=len(claimed), finished=finished, unfinished=unfinished)

    async def run(self) -> None:
        """Tick now, then every `interval_s` while rows are unfinished, less often while
        none is (`flotilla_kit.pacing`), until cancelled."""

        async def found_work() -> bool:
            report = await self.tick()
            return report.claimed > 0 or report.unfinished > 0

        await run_paced(
            found_work, every_s=self._interval_s, log=self._log, failed="recovery tick failed",
            sleep=self._sleep,
        )  # fmt: skip

    async def _recover(self, item: T, now: dt.datetime) -> bool:
        try:
            after = await self._resume(item, now)
        except Exception:  # one bad row must not stop the others
            self._log.exception("recovery step failed", **self._leases.fields(item))
            after = item
        if after.is_final:
            self._count("finished")
            return True
        if await self._leases.release_for_retry(after):
            self._count("retry_scheduled")
        return False

    async def _claimed(self, uow: U, item: T, now: dt.datetime) -> None:
        """Called in the claim's transaction, before it commits."""

    @abc.abstractmethod
    async def _resume(self, item: T, now: dt.datetime) -> T:
        """Advance a claimed row as far as it goes now; the row as it then stands."""

    @abc.abstractmethod
    async def _unfinished(self, uow: U) -> int:
        """How many rows are not final, across all instances; sets the gauges."""


async def run_paced(
    found_work: Callable[[], Awaitable[bool]],
    *,
    every_s: float,
    log: FilteringBoundLogger,
    failed: str,
    sleep: Sleep = asyncio.sleep,
    at_once: bool = True,
) -> None:
    """Call `found_work` now (or after `every_s` when not `at_once`), then every `every_s`
    while it finds work, less often while it finds none (`flotilla_kit.pacing.Pace`),
    until cancelled. A pass that fails (a database hiccup) is logged as `failed` and
    counts as work found: the loop must outlive it."""
    pace = Pace(every_s)
    if not at_once:
        await sleep(every_s)
    while True:
        try:
            found = await found_work()
        except Exception as exc:
            log.exception(failed, error=repr(exc))
            found = True
        await sleep(pace.after(found_work=found))
