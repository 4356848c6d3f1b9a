"""Crash, recover, ask, operate: on both databases, over real gRPC."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import uuid
from typing import Any

import httpx
import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi import FastAPI
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine
from typer.testing import CliRunner

from flotilla_kit.clock import ManualClock
from flotilla_kit.db import DatabaseError, Query, is_sqlite
from flotilla_kit.testing import TokenMinter
from flotilla_kit.testing import principal as who
from flotilla_payments.adapters.tables import metadata
from flotilla_payments.domain import Transfer, TransferState
from flotilla_payments.entrypoints.cli import app as cli_app
from flotilla_payments.service_layer.coordinator import Coordinator, TransferRequest
from flotilla_payments.service_layer.faults import FaultPoint
from flotilla_payments.service_layer.ports import UnitOfWorkFactory
from flotilla_payments.service_layer.recovery import Recovery
from services.payments.tests.fakes import CrashAt, SimulatedCrash
from services.payments.tests.integration.conftest import Headers, Ledger
from services.payments.tests.integration.test_transfers_api import TRANSFERS, body

P = FaultPoint
S = TransferState


def uow_of(app: FastAPI) -> UnitOfWorkFactory:
    factory: UnitOfWorkFactory = app.state.uow
    return factory


async def stored(app: FastAPI, transfer_id: uuid.UUID | str) -> Transfer:
    async with uow_of(app)(write=False) as uow:
        found = await uow.transfers.get(uuid.UUID(str(transfer_id)))
    assert found is not None
    return found


async def only_transfer(app: FastAPI) -> Transfer:
    async with uow_of(app)(write=False) as uow:
        (found,) = await uow.transfers.unfinished(created_before=None)
    return found


async def post_and_crash(
    client: httpx.AsyncClient, headers: dict[str, str], payload: dict[str, Any]
) -> None:
    with pytest.raises(SimulatedCrash):
        await client.post(TRANSFERS, json=payload, headers=headers)


def assert_no_branch_left_prepared(ledger: Ledger) -> None:
    for shard in ledger.bank.shards.values():
        assert all(b.status != "prepared" for b in shard.branches.values())
        assert all(a.held == a.pending == 0 for a in shard.accounts.values())


@pytest.mark.parametrize("faults", list(P), indirect=True)
async def test_recovery_finishes_a_transfer_whose_process_died(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
    clock: ManualClock,
    faults: CrashAt,
) -> None:
    total = ledger.bank.total()
    await post_and_crash(client, as_user(key="k"), body(accounts["a0"], accounts["b1"]))
    stuck = await only_transfer(app)
    before_decision = faults.hits[-1] in (P.AFTER_PREPARING_RECORD, P.AFTER_PREPARE)
    assert stuck.state is (S.PREPARING if before_decision else S.COMMITTING)
    assert (await app.state.recovery.tick()).claimed == 0  # its lease still holds
    clock.advance(6)  # past the lease, before the prepare timeout
    report = await app.state.recovery.tick()
    assert (report.claimed, report.finished, report.unfinished) == (1, 1, 0)
    assert (await stored(app, stuck.id)).state is S.COMMITTED
    assert ledger.bank.shards[0].balance(accounts["a0"]) == 7_500  # exactly once
    assert ledger.bank.shards[1].balance(accounts["b1"]) == 2_500
    assert ledger.bank.total() == total
    assert_no_branch_left_prepared(ledger)
    metrics = (await client.get("/metrics")).text
    assert 'flotilla_payments_recovery_actions_total{kind="finished"} 1.0' in metrics
    assert "flotilla_payments_in_doubt_transfers 0.0" in metrics


@pytest.mark.parametrize("faults", [P.AFTER_PREPARE], indirect=True)
async def test_an_undecided_transfer_is_aborted_after_the_prepare_timeout(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    ledger: Ledger,
    clock: ManualClock,
) -> None:
    money = ledger.bank.money()
    await post_and_crash(client, as_user(key="k"), body(accounts["a0"], accounts["b1"]))
    stuck = await only_transfer(app)
    clock.advance(11)
    assert (await app.state.recovery.tick()).finished == 1
    done = await stored(app, stuck.id)
    assert (done.state, done.refusal) == (S.ABORTED, "prepare-timeout")
    assert ledger.bank.money() == money
    assert_no_branch_left_prepared(ledger)


async def test_two_instances_recovering_at_once_finish_each_transfer_once(
    app: FastAPI, accounts: dict[str, str], ledger: Ledger, clock: ManualClock
) -> None:
    ours: Coordinator = app.state.coordinator

    def instance(instance_id: str, **parts: Any) -> Coordinator:
        return Coordinator(
            uow=app.state.uow, ledger=app.state.ledger, clock=clock, sleep=clock.sleep,
            metrics=app.state.payments_metrics,
            config=dataclasses.replace(ours.config, instance_id=instance_id), **parts,
        )  # fmt: skip

    for n in range(3):
        with pytest.raises(SimulatedCrash):
            await instance("p-9", faults=CrashAt(P.AFTER_DECISION)).submit(
                principal=who("alice", "customer"),
                request=TransferRequest(accounts["a0"], accounts["b1"], 100, "EUR", f"t{n}"),
                idempotency_key=f"k-{n}",
                fingerprint=f"f-{n}",
            )
    other = instance("p-1", faults=CrashAt(P.AFTER_PREPARE))  # never reached: decided already
    recovery = Recovery(other, metrics=app.state.payments_metrics, interval_s=1, sleep=clock.sleep)
    clock.advance(6)
    reports = await asyncio.gather(app.state.recovery.tick(), recovery.tick())
    assert sum(r.claimed for r in reports) == sum(r.finished for r in reports) == 3
    commits = ledger.servicers[0].calls_of("Commit") + ledger.servicers[1].calls_of("Commit")
    assert len(commits) == len(set(commits)) == 6  # one per branch: nobody drove one twice
    assert ledger.bank.shards[1].balance(accounts["b1"]) == 300
    await other.close()


@pytest.mark.parametrize("faults", [P.AFTER_PREPARE], indirect=True)
async def test_the_outcome_endpoint_for_participants_in_doubt(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    tokens: TokenMinter,
    clock: ManualClock,
) -> None:
    shard = {"Authorization": f"Bearer {tokens.mint('service:accounts', ['service:accounts'])}"}

    async def outcome(transfer_id: object, headers: dict[str, str] = shard) -> httpx.Response:
        return await client.get(f"/internal/v1/transfers/{transfer_id}/outcome", headers=headers)

    await post_and_crash(client, as_user(key="k-1"), body(accounts["a0"], accounts["b1"]))
    undecided = await only_transfer(app)
    committed = await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="k-2")
    )
    assert committed.status_code == 201
    assert (await outcome(committed.json()["id"])).json() == {"outcome": "commit"}
    assert (await outcome(uuid.uuid4())).json() == {"outcome": "abort"}  # presumed abort
    assert (await outcome("never-ours")).json() == {"outcome": "abort"}
    assert (await outcome(undecided.id)).json() == {"outcome": "pending"}
    clock.advance(10)
    assert (await outcome(undecided.id)).json() == {"outcome": "abort"}
    assert (await stored(app, undecided.id)).state is S.ABORTING
    customer = await outcome(undecided.id, as_user("alice"))
    assert (customer.status_code, customer.json()["type"].rsplit("/", 1)[1]) == (403, "forbidden")
    assert (await outcome(undecided.id, {})).status_code == 401


def _differences(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, metadata))


def _sqlite_differences(url: str) -> list[object]:
    engine = create_engine(make_url(url).set(drivername="sqlite"))  # the standard library's
    try:
        with engine.connect() as connection:
            return _differences(connection)
    finally:
        engine.dispose()


async def schema_differences(url: str) -> list[object]:
    """What Alembic finds between the database at `url` and the tables the code declares
    (through a SQLAlchemy connection of its own: the kit's `Database` has none)."""
    if is_sqlite(url):
        return await asyncio.to_thread(_sqlite_differences, url)
    async_engine = create_async_engine(url)
    try:
        async with async_engine.connect() as connection:
            return await connection.run_sync(_differences)
    finally:
        await async_engine.dispose()


async def test_migrations_build_exactly_the_tables_the_code_uses(app: FastAPI) -> None:
    assert await schema_differences(app.state.database.url) == []


async def test_the_audit_log_refuses_updates_and_deletes(
    app: FastAPI, client: httpx.AsyncClient, as_user: Headers, accounts: dict[str, str]
) -> None:
    await client.post(
        TRANSFERS, json=body(accounts["a0"], accounts["b1"]), headers=as_user(key="k")
    )
    for statement in ("UPDATE audit_events SET actor = 'mallory'", "DELETE FROM audit_events"):
        with pytest.raises(DatabaseError, match="append-only"):
            async with app.state.database.transaction() as tx:
                await tx.execute(Query(text(statement)))


async def run_cli(*args: str, database_url: str) -> tuple[int, str, str]:
    env = {**os.environ, "FLOTILLA_DATABASE_URL": database_url, "FLOTILLA_PROFILE": "test"}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "flotilla_payments", *args, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


@pytest.mark.parametrize("faults", [P.AFTER_DECISION], indirect=True)
async def test_operator_commands(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    database_url: str,
) -> None:
    await post_and_crash(client, as_user(key="k"), body(accounts["a0"], accounts["b1"]))
    stuck = await only_transfer(app)
    results = await asyncio.gather(
        run_cli("in-doubt", database_url=database_url),
        run_cli("in-doubt", "--older-than", "3600", database_url=database_url),
        run_cli("audit-verify", database_url=database_url),
        run_cli("audit-tail", "--limit", "5", database_url=database_url),
        run_cli("migrate", database_url=database_url),
    )
    assert [code for code, _, _ in results] == [0] * 5, [err for _, _, err in results]
    (line,) = [json.loads(row) for row in results[0][1].splitlines()]
    assert (line["id"], line["state"], line["lease_owner"], line["initiator"]) == (
        str(stuck.id), "committing", "p-0", "alice",
    )  # fmt: skip
    assert results[1][1] == ""
    report = json.loads(results[2][1])
    assert (report["service"], report["intact"], report["records"]) == ("payments", True, 1)
    (record,) = [json.loads(row) for row in results[3][1].splitlines()]
    assert (record["action"], record["target"]) == ("transfer.requested", str(stuck.id))


IN_DOUBT = "/api/v1/in-doubt-transfers"


@pytest.mark.parametrize("faults", [P.AFTER_DECISION], indirect=True)
async def test_operators_read_the_transfers_in_doubt_as_the_command_prints_them(
    app: FastAPI,
    client: httpx.AsyncClient,
    as_user: Headers,
    accounts: dict[str, str],
    database_url: str,
    clock: ManualClock,
) -> None:
    support = as_user("sam", "support")
    assert (await client.get(IN_DOUBT, headers=support)).json() == {"transfers": []}
    await post_and_crash(client, as_user(key="k"), body(accounts["a0"], accounts["b1"]))
    stuck = await only_transfer(app)
    clock.advance(30)
    listed = await client.get(IN_DOUBT, headers=support)
    assert listed.status_code == 200, listed.text
    (item,) = listed.json()["transfers"]
    code, printed, err = await run_cli("in-doubt", database_url=database_url)
    assert code == 0, err
    (line,) = [json.loads(row) for row in printed.splitlines()]
    # One shape: the command's clock is the real one, the app's the test's.
    assert {**item, "age_s": None} == {**line, "age_s": None}
    assert (item["id"], item["state"], item["age_s"]) == (str(stuck.id), "committing", 30.0)
    assert (item["initiator"], item["lease_owner"]) == ("alice", "p-0")
    for older_than, found in ((30, 1), (30.5, 0)):
        answer = await client.get(IN_DOUBT, params={"older_than": older_than}, headers=support)
        assert len(answer.json()["transfers"]) == found
    admin = await client.get(IN_DOUBT, headers=as_user("ada", "admin"))
    assert len(admin.json()["transfers"]) == 1

    def kind(response: httpx.Response) -> tuple[int, str, str]:
        slug = response.json()["type"].rsplit("/", 1)[1]
        return response.status_code, response.headers["content-type"], slug

    problem = "application/problem+json"
    assert kind(await client.get(IN_DOUBT, headers=as_user("alice"))) == (
        403, problem, "forbidden",
    )  # fmt: skip
    assert kind(await client.get(IN_DOUBT)) == (401, problem, "unauthenticated")
    for bad in ("-1", "nan", "inf", "1e300", "soon"):
        refused = await client.get(IN_DOUBT, params={"older_than": bad}, headers=support)
        assert kind(refused) == (422, problem, "validation-error"), bad


@pytest.mark.parametrize("older_than", ["nan", "inf", "-1", "1e300"])
def test_in_doubt_refuses_a_number_of_seconds_it_cannot_use(older_than: str) -> None:
    result = CliRunner().invoke(cli_app, ["in-doubt", "--older-than", older_than])
    assert result.exit_code == 2, result.output
    assert "--older-than" in result.output
    assert "Traceback" not in result.output


def test_help_lists_the_commands() -> None:
    result = CliRunner().invoke(cli_app, ["--help"])
    assert result.exit_code == 0
    for command in ("serve", "migrate", "in-doubt", "audit-verify", "audit-tail"):
        assert command in result.output
