"""The audit log over HTTP (`flotilla_kit.audit_api`) against real SQLite and PostgreSQL:
who may read it, what it answers, and that the chain's state it reports is honest while
it walks only what is new."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import MetaData, text

from flotilla_kit.app import create_service_app
from flotilla_kit.audit import AuditLog, append_only_ddl, audit_table
from flotilla_kit.audit_api import ChainWatch, audit_router
from flotilla_kit.clock import ManualClock
from flotilla_kit.db import Database, Query, UnitOfWork
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter, create_tables

metadata = MetaData()
table = audit_table(metadata)
LOG = AuditLog(table)
PATH = "/api/v1/audit/demo"
SHARD_PATH = "/api/v1/audit/ledger/{shard}"
FULL_WALK_EVERY_S = 60.0


@pytest.fixture
async def database(database_url: str) -> AsyncIterator[Database]:
    await create_tables(database_url, metadata)
    db = Database(database_url)
    async with db.transaction() as tx:
        for statement in append_only_ddl(tx.dialect.name):
            await tx.execute(Query(text(statement)))
        await tx.commit()
    yield db
    await db.dispose()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(dt.datetime(2030, 1, 1, tzinfo=dt.UTC))


@pytest.fixture
async def client(
    database: Database, tokens: TokenMinter, clock: ManualClock
) -> AsyncIterator[httpx.AsyncClient]:
    routers = [
        audit_router(PATH, log_name="demo", audit_log=LOG, database=database, clock=clock),
        audit_router(SHARD_PATH, log_name="ledger-s3", audit_log=LOG, database=database, shard=3),
    ]
    app = create_service_app(
        ServiceSettings(service_name="demo"),
        title="demo",
        routers=routers,
        readiness={},
        verifier=tokens.verifier(),
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://demo"
    ) as c:
        yield c


def as_role(tokens: TokenMinter, role: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens.mint(f'someone-{role}', [role])}"}


async def append(database: Database, n: int, start: int = 0) -> None:
    async with UnitOfWork(database) as uow:
        for i in range(start, start + n):
            await LOG.append(
                uow.transaction, actor=f"user-{i}", action="login", target="auth",
                outcome="success" if i % 2 == 0 else "failure", details={"n": i},
            )  # fmt: skip
        await uow.commit()


async def tamper(database: Database, statement: str) -> None:
    """What someone with the database owner's rights could do: lift the guard, edit."""
    async with database.transaction() as tx:
        if tx.dialect.name == "sqlite":
            await tx.execute(Query(text("DROP TRIGGER IF EXISTS audit_events_no_update")))
            await tx.execute(Query(text("DROP TRIGGER IF EXISTS audit_events_no_delete")))
        else:
            await tx.execute(Query(text("ALTER TABLE audit_events DISABLE TRIGGER USER")))
        await tx.execute(Query(text(statement)))
        await tx.commit()


def problem_slug(response: httpx.Response) -> tuple[int, str, str]:
    kind = response.json()["type"].rsplit("/", 1)[1]
    return response.status_code, response.headers["content-type"], kind


async def test_staff_read_the_chain_and_the_newest_records_newest_first(
    client: httpx.AsyncClient, database: Database, tokens: TokenMinter
) -> None:
    empty = await client.get(PATH, headers=as_role(tokens, "support"))
    assert empty.status_code == 200, empty.text
    assert empty.json() == {
        "log": "demo",
        "chain": {"intact": True, "records": 0, "first_broken": None, "reason": ""},
        "records": [],
    }
    await append(database, 25)
    answer = (await client.get(PATH, headers=as_role(tokens, "admin"))).json()
    assert answer["chain"] == {"intact": True, "records": 25, "first_broken": None, "reason": ""}
    assert [r["seq"] for r in answer["records"]] == list(range(25, 5, -1))  # default 20
    newest = answer["records"][0]
    assert set(newest) == {"seq", "at", "actor", "action", "target", "outcome", "details"}
    assert (newest["actor"], newest["action"], newest["target"]) == ("user-24", "login", "auth")
    assert (newest["outcome"], newest["details"]) == ("success", {"n": 24})
    assert dt.datetime.fromisoformat(newest["at"]).tzinfo is not None
    three = await client.get(PATH, params={"limit": 3}, headers=as_role(tokens, "support"))
    assert [r["seq"] for r in three.json()["records"]] == [25, 24, 23]
    most = await client.get(PATH, params={"limit": 200}, headers=as_role(tokens, "support"))
    assert len(most.json()["records"]) == 25


async def test_only_audit_readers_get_it_and_a_bad_limit_is_a_problem(
    client: httpx.AsyncClient, tokens: TokenMinter
) -> None:
    problem = "application/problem+json"
    assert problem_slug(await client.get(PATH)) == (401, problem, "unauthenticated")
    customer = await client.get(PATH, headers=as_role(tokens, "customer"))
    assert problem_slug(customer) == (403, problem, "forbidden")
    for limit in ("0", "201", "-1", "ten"):
        refused = await client.get(PATH, params={"limit": limit}, headers=as_role(tokens, "admin"))
        assert problem_slug(refused) == (422, problem, "validation-error"), limit


async def test_a_shard_log_answers_for_its_own_shard_only(
    client: httpx.AsyncClient, database: Database, tokens: TokenMinter
) -> None:
    await append(database, 2)
    staff = as_role(tokens, "support")
    own = await client.get("/api/v1/audit/ledger/3", headers=staff)
    assert own.status_code == 200, own.text
    assert (own.json()["log"], own.json()["chain"]["records"]) == ("ledger-s3", 2)
    other = await client.get("/api/v1/audit/ledger/1", headers=staff)
    assert problem_slug(other) == (404, "application/problem+json", "audit-log-not-found")
    assert "shard 3" in other.json()["detail"]
    for bad in ("x", "-1"):
        refused = await client.get(f"/api/v1/audit/ledger/{bad}", headers=staff)
        assert refused.status_code == 422, bad
    customer = await client.get("/api/v1/audit/ledger/3", headers=as_role(tokens, "customer"))
    assert customer.status_code == 403


async def test_a_record_changed_behind_the_last_check_shows_at_the_next_full_walk(
    client: httpx.AsyncClient, database: Database, tokens: TokenMinter, clock: ManualClock
) -> None:
    staff = as_role(tokens, "support")

    async def chain() -> dict[str, object]:
        answer: dict[str, object] = (await client.get(PATH, headers=staff)).json()["chain"]
        return answer

    await append(database, 5)
    assert (await chain())["records"] == 5
    await tamper(database, "UPDATE audit_events SET actor = 'mallory' WHERE seq = 2")
    await append(database, 3, start=5)
    # Between full walks only the new records are walked: they still link on.
    assert await chain() == {"intact": True, "records": 8, "first_broken": None, "reason": ""}
    clock.advance(FULL_WALK_EVERY_S)
    assert await chain() == {
        "intact": False,
        "records": 1,
        "first_broken": 2,
        "reason": "its content does not match its hash",
    }
    await append(database, 1, start=8)
    assert (await chain())["first_broken"] == 2  # broken stays broken


@pytest.mark.parametrize(
    ("statement", "records", "first_broken"),
    [
        ("UPDATE audit_events SET details = '{}' WHERE seq = 4", 3, 4),
        ("DELETE FROM audit_events WHERE seq = 4", 3, None),
    ],
    ids=["changed", "removed"],
)
async def test_a_change_to_the_last_record_checked_is_found_at_once(
    database: Database,
    clock: ManualClock,
    statement: str,
    records: int,
    first_broken: int | None,
) -> None:
    watch = ChainWatch(LOG, full_walk_every_s=FULL_WALK_EVERY_S, clock=clock)
    await append(database, 4)
    assert (await watch.check(database)).records == 4
    await tamper(database, statement)
    report = await watch.check(database)  # no time has passed: the anchor's change forces a walk
    assert (report.records, report.first_broken_seq) == (records, first_broken)


async def test_walking_on_from_a_report_agrees_with_walking_everything(database: Database) -> None:
    await append(database, 3)
    async with database.transaction(write=False) as tx:
        first = await LOG.verify(tx)
    await append(database, 4, start=3)
    async with database.transaction(write=False) as tx:
        whole = await LOG.verify(tx)
        walked_on = await LOG.verify(tx, since=first)
    assert whole == walked_on
    assert (whole.records, whole.intact) == (7, True)
    assert whole.head == (await LOG.newest(database.url, 1))[0]["hash"]


async def test_a_long_walk_lets_other_work_run_between_batches(database: Database) -> None:
    await append(database, 10)
    turns = 0

    async def other_request() -> None:
        nonlocal turns
        while True:
            turns += 1
            await asyncio.sleep(0)

    other = asyncio.create_task(other_request())
    await asyncio.sleep(0)  # it has started
    before = turns
    async with database.transaction(write=False) as tx:
        report = await LOG.verify(tx, batch=2)
    other.cancel()
    assert report.records == 10
    assert turns - before >= 5  # at least once per batch


def test_a_router_refuses_a_path_that_does_not_match_its_shard(sqlite_url: str) -> None:
    database = Database(sqlite_url)  # never opened
    with pytest.raises(ValueError, match="shard"):
        audit_router(SHARD_PATH, log_name="x", audit_log=LOG, database=database)
    with pytest.raises(ValueError, match="shard"):
        audit_router(PATH, log_name="x", audit_log=LOG, database=database, shard=0)


def test_the_openapi_documents_the_answers(sqlite_url: str) -> None:
    database = Database(sqlite_url)  # never opened
    app = FastAPI()
    app.include_router(
        audit_router(SHARD_PATH, log_name="x", audit_log=LOG, database=database, shard=0)
    )
    operation = app.openapi()["paths"][SHARD_PATH]["get"]
    assert set(operation["responses"]) == {"200", "401", "403", "404", "422"}
    assert {p["name"] for p in operation["parameters"]} == {"shard", "limit"}
