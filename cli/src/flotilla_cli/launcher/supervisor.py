"""The supervisor: one process that owns a running system.

It prepares `var/` (certificates, PostgreSQL, migrations, demo data), starts every
instance, restarts one that dies (at once if it had been ready, else with a back-off
that doubles), probes readiness, and keeps
`var/run/state.json` current. SIGTERM or SIGINT stops everything it started: SIGINT to
each instance (stop now, finishing requests in flight; SIGTERM would drain first, which a
whole system going down does not need), SIGKILL after a grace period, then PostgreSQL.

`flotilla up` starts it as a child process (`python -m flotilla_cli.launcher.supervisor PLAN`) and
shows its state; with `--detach` it leaves it running. Instances, relays and seeds are
forked from a warm parent that has imported every service (`forking.py`): each starts in
about 0.2 s of CPU and shares that parent's memory. They die with the supervisor even if
it is killed with SIGKILL (the forking parent exits with it, and they get
PR_SET_PDEATHSIG).

Scaling (`flotilla scale`, `flotilla up --autoscale`; the requests and the autoscaler are in
`flotilla_cli.scaling`):
an instance added gets its own stable ports and its siblings' settings, starts, and joins
the topology the gateways read once its `/readyz` passes; `scale` returns once every
gateway reports it healthy. An instance removed leaves the topology first; once no gateway
lists it any more (their requests to it in flight finish), it gets SIGTERM, drains for
its `drain_s` and stops. Callers inside the system (payments -> ledger, orders ->
inventory, services -> auth's keys) keep the instance lists they started with.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
import psutil

from flotilla_cli.launcher.demo_data import seed_demo_data
from flotilla_cli.launcher.forking import ForkedProcess, fork_command, start_forking_parent
from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import (
    BACKEND_SERVICES,
    GATEWAY_SERVICE,
    SHARDED_SERVICE,
    database_names,
    instance_index,
    plan_sibling,
    postgres_base_url,
    take_port,
)
from flotilla_cli.launcher.state import (
    InstancePlan,
    InstanceState,
    Plan,
    ScalingEvent,
    SystemState,
    write_atomically,
)
from flotilla_cli.scaling import gateway_metrics, requests
from flotilla_cli.scaling.autoscale import autoscale
from flotilla_cli.scaling.requests import ScaleError, ScaleRequest, ScaleResult, group_name
from flotilla_kit import scale_requests
from flotilla_kit.devservers import EmbeddedNats, EmbeddedPostgres, EmbeddedValkey
from flotilla_kit.tls import client_context, ensure_dev_pki
from flotilla_kit.topology import Instance, Topology

__all__ = ["Supervisor", "main", "restart_delay"]

# A process that dies before it was ever ready is restarted after 0.5 s, then 1, 2, ... 10 s
# (a crash loop costs little); one that had been ready is restarted at once, however
# often: it ran healthily, and its callers are waiting for it.
_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 10.0
# Readiness of a running system, checked this often; while an instance starts (or was
# restarted, or added) every 0.2 s. A process that exits is noticed at once, not by
# probing, and the gateways check every instance on their own: these probes only keep
# `flotilla status` current, so at rest they are rare (each costs the instance a TLS
# handshake: its keep-alive ends long before the next probe).
_PROBE_INTERVAL_S = 30.0
_STARTING_PROBE_INTERVAL_S = 0.2
# Reading a process's USS walks its memory maps: a few ms each time, so not every probe.
_MEMORY_EVERY_S = 60.0
_STOP_GRACE_S = 10.0
_READY_TIMEOUT_S = 60.0  # for an instance added by `flotilla scale`
_GATEWAYS_TIMEOUT_S = 15.0  # for every gateway to take an instance in or out
_DRAIN_DEFAULT_S = 3.0  # the kit's `drain_s`, unless an instance's env says otherwise
_SCALING_KEPT = 20  # changes shown in the state
_REQUESTS_POLL_S = 1.0  # how often the folder of scale requests is looked at


@dataclass
class _Running:
    plan: InstancePlan
    state: InstanceState
    process: ForkedProcess | None = None
    backoff_s: float = _BACKOFF_START_S
    restart_at: float | None = None
    became_ready: bool = False  # since it was last started
    in_topology: bool = True  # an added instance joins once ready; a removed one leaves first
    retiring: bool = False  # being removed: not restarted
    memory_read_at: float = float("-inf")


def restart_delay(*, became_ready: bool, backoff_s: float) -> tuple[float, float]:
    """How long to wait before restarting an instance that exited, and the back-off for
    its next exit: none if it had been ready (the back-off starts over), else the back-off,
    which doubles up to its cap."""
    if became_ready:
        return 0.0, _BACKOFF_START_S
    return backoff_s, min(backoff_s * 2, _BACKOFF_MAX_S)


class Supervisor:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.layout = VarLayout.at(plan.var_dir)
        self.running = [_Running(p, InstanceState.of(p)) for p in plan.instances]
        self.state = SystemState(
            phase="preparing",
            supervisor_pid=os.getpid(),
            gateway_url=plan.gateway_url,
            database=plan.database,
            shards=plan.shards,
            started_at=time.time(),
            instances=[r.state for r in self.running],
        )
        self.postgres: EmbeddedPostgres | None = None
        self.valkey: EmbeddedValkey | None = None
        self.nats: EmbeddedNats | None = None
        self.stopping = asyncio.Event()
        self._wake = asyncio.Event()  # a child exited: look now, not at the next probe
        self._exits: set[asyncio.Task[int]] = set()
        self._last_written = ""
        self._probed = asyncio.Condition()  # notified after every round of probes
        self.scale_lock = asyncio.Lock()  # one change of instance counts at a time
        self._seen_requests: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- state ---------------------------------------------------------------------------
    def publish(self) -> None:
        text = self.state.model_dump_json(indent=2)
        if text != self._last_written:
            write_atomically(self.layout.state_file, text)
            self._last_written = text

    def _phase(self, phase: str, detail: str = "") -> None:
        self.state.phase = phase  # type: ignore[assignment]
        self.state.detail = detail
        self.publish()

    # -- preparation ---------------------------------------------------------------------
    def _prepare_files(self) -> None:
        self.layout.ensure()
        ensure_dev_pki(self.layout.tls, [*BACKEND_SERVICES, GATEWAY_SERVICE, "flotilla-cli"])
        self._write_topology()

    def _write_topology(self) -> None:
        Topology(
            services={
                service: [
                    Instance(name=r.plan.name, url=r.plan.url, shard=r.plan.shard)
                    for r in self.running
                    if r.plan.service == service and r.plan.serves_http and r.in_topology
                ]
                for service in BACKEND_SERVICES
            }
        ).write(self.layout.topology_file)

    def _start_postgres(self) -> None:
        if self.plan.database != "postgres" or self.plan.postgres_url:
            return
        base = postgres_base_url(self.layout, None)
        port = int(base.rsplit(":", 1)[1])
        self.postgres = EmbeddedPostgres(self.layout.postgres, port=port)
        self.postgres.start()
        for database in database_names(self.plan.shards):
            self.postgres.create_database(database)
        self.state.postgres_pid = self.postgres.pid

    def _start_valkey(self) -> None:
        if self.plan.valkey_port is None:
            return
        self.valkey = EmbeddedValkey(self.layout.root / "valkey", port=self.plan.valkey_port)
        self.valkey.start()
        self.state.valkey_pid = self.valkey.pid

    def _start_nats(self) -> None:
        if self.plan.nats_url is None:
            return
        port = int(self.plan.nats_url.rsplit(":", 1)[1])
        self.nats = EmbeddedNats(self.layout.root / "nats", port=port)
        self.nats.start()
        self.state.nats_pid = self.nats.pid
        self.state.nats_url = self.nats.url

    async def prepare(self) -> None:
        self._phase("preparing", "certificates, databases and the event broker")
        await asyncio.to_thread(self._prepare_files)
        # Independent: started side by side.
        await asyncio.gather(
            asyncio.to_thread(start_forking_parent, [*BACKEND_SERVICES, GATEWAY_SERVICE]),
            asyncio.to_thread(self._start_postgres),
            asyncio.to_thread(self._start_valkey),
            asyncio.to_thread(self._start_nats),
        )

    # -- instances -----------------------------------------------------------------------
    async def _spawn(self, r: _Running) -> None:
        r.process = await fork_command(
            r.plan.service,
            [r.plan.command],
            env={**os.environ, **r.plan.env},
            name=r.plan.name,
            stdout=self.layout.log_file(r.plan.name),
        )
        r.restart_at = None
        r.became_ready = False
        r.state.pid = r.process.pid
        r.state.ready = False
        exited = asyncio.create_task(r.process.wait())
        self._exits.add(exited)
        exited.add_done_callback(self._child_exited)

    def _child_exited(self, task: asyncio.Task[int]) -> None:
        self._exits.discard(task)
        self._wake.set()

    async def _watch_exits(self) -> None:
        now = time.monotonic()
        for r in list(self.running):
            if r.retiring:
                continue  # its exit is awaited by the one removing it
            if r.process is not None and r.process.returncode is not None:
                r.state.last_exit_code = r.process.returncode
                r.state.pid = None
                r.state.ready = False
                r.process = None
                delay, r.backoff_s = restart_delay(
                    became_ready=r.became_ready, backoff_s=r.backoff_s
                )
                r.restart_at = now + delay
            if r.process is None and r.restart_at is not None and now >= r.restart_at:
                r.state.restarts += 1
                await self._spawn(r)

    async def _probe(self, client: httpx.AsyncClient, r: _Running) -> None:
        if r.process is None:
            return
        if not r.plan.serves_http:
            # A relay serves nothing to probe: it is ready while it runs (it waits for the
            # broker and the database itself, and says so in its log).
            r.state.ready = r.process.returncode is None
        else:
            try:
                response = await client.get(f"{r.plan.url}/readyz", timeout=2.0)
                r.state.ready = response.status_code == 200 and (
                    # A gateway stays ready when a service has no healthy instance (it
                    # serves the rest); the system is ready once it reaches them all.
                    r.plan.service != "gateway" or "unavailable" not in response.json()
                )
            except (httpx.HTTPError, ValueError):
                r.state.ready = False
        r.became_ready = r.became_ready or r.state.ready
        now = time.monotonic()
        if now - r.memory_read_at < _MEMORY_EVERY_S:
            return
        r.memory_read_at = now
        try:
            memory = psutil.Process(r.process.pid).memory_full_info()
            r.state.rss_bytes, r.state.uss_bytes = memory.rss, memory.uss
        except psutil.Error:
            r.state.rss_bytes = r.state.uss_bytes = None

    def client_tls(self) -> ssl.SSLContext:
        """The operator's client certificate (the dev CA's `flotilla-cli`)."""
        tls = self.layout.tls
        return client_context(
            tls / "ca.pem", tls / "flotilla-cli.pem", tls / "flotilla-cli-key.pem"
        )

    async def supervise(self) -> None:
        self._phase("starting", "instances" + (" and demo data" if self.plan.demo_data else ""))
        # Seeding and starting overlap: each takes the same locks to migrate, and nobody
        # is told the system is ready before both are done.
        seeding = asyncio.create_task(
            seed_demo_data(self.plan, self.layout) if self.plan.demo_data else asyncio.sleep(0)
        )
        try:
            await asyncio.gather(*(self._spawn(r) for r in self.running))
            self.publish()
            self._background(self._poll_requests())
            if self.plan.autoscale is not None:
                self._background(autoscale(self, self.plan.autoscale))
            await self._watch(seeding)
        finally:
            seeding.cancel()

    async def _watch(self, seeding: asyncio.Task[None]) -> None:
        async with httpx.AsyncClient(verify=self.client_tls()) as client:
            while not self.stopping.is_set():
                self._wake.clear()
                await self._watch_exits()
                await asyncio.gather(*(self._probe(client, r) for r in list(self.running)))
                async with self._probed:
                    self._probed.notify_all()
                if seeding.done():
                    seeding.result()  # a failed seed fails the start
                if seeding.done() and self.state.all_ready and self.state.phase == "starting":
                    self.state.ready_at = time.time()
                    self.state.phase = "running"
                    self.state.detail = ""
                self.publish()
                await self._pause()

    async def _pause(self) -> None:
        """Until the next probe, a restart that is due, a child's exit, or the stop."""
        settled = self.state.phase == "running" and self.state.all_ready
        interval = _PROBE_INTERVAL_S if settled else _STARTING_PROBE_INTERVAL_S
        now = time.monotonic()
        due = [r.restart_at - now for r in self.running if r.restart_at is not None]
        if due:
            interval = max(0.0, min(interval, *due))
        stop, wake = (
            asyncio.ensure_future(self.stopping.wait()),
            asyncio.ensure_future(self._wake.wait()),
        )
        try:
            await asyncio.wait({stop, wake}, timeout=interval, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            wake.cancel()

    # -- scaling -------------------------------------------------------------------------
    def _background(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _poll_requests(self) -> None:
        """Look for scale requests (`flotilla scale`, the web console) every second, apart
        from the probes, which are rare at rest: a listing of one folder."""
        while not self.stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), _REQUESTS_POLL_S)
            if self.state.phase == "running" and not self.stopping.is_set():
                self._take_requests()

    def _take_requests(self) -> None:
        for request in scale_requests.pending_requests(requests.requests_dir(self.layout)):
            if request.id not in self._seen_requests:
                self._seen_requests.add(request.id)
                self._background(self._serve_request(request))

    async def _serve_request(self, request: ScaleRequest) -> None:
        try:
            groups = requests.validate_request(request, shards=self.plan.shards)
            async with self.scale_lock:
                done = [
                    await self.scale(service, shard, request.instances, source="manual")
                    for service, shard in groups
                ]
            result = ScaleResult(
                id=request.id,
                ok=True,
                detail="; ".join(done),
                counts=requests.group_counts(self.state.instances),
            )
        except ScaleError as exc:
            result = ScaleResult(id=request.id, ok=False, detail=str(exc))
        except Exception as exc:  # answered, so that the requester is not left waiting
            result = ScaleResult(id=request.id, ok=False, detail=f"{type(exc).__name__}: {exc}")
        scale_requests.answer(requests.requests_dir(self.layout), result)

    def _members(self, service: str, shard: int | None) -> list[_Running]:
        return sorted(
            (
                r
                for r in self.running
                if r.plan.service == service
                and r.plan.shard == shard
                and r.plan.serves_http
                and not r.retiring
            ),
            key=lambda r: instance_index(r.plan.name),
        )

    def groups(self) -> list[tuple[str, int | None]]:
        """Every (service, shard) that scales as one."""
        return [
            (service, shard)
            for service in BACKEND_SERVICES
            for shard in (range(self.plan.shards) if service == SHARDED_SERVICE else [None])
        ]

    def group_instances(self, service: str, shard: int | None) -> tuple[int, list[str]]:
        """How many instances a group has, and the names of those that are ready."""
        members = self._members(service, shard)
        return len(members), [r.plan.name for r in members if r.state.ready]

    async def scale(
        self,
        service: str,
        shard: int | None,
        count: int,
        *,
        source: Literal["manual", "autoscale"],
        metric: float | None = None,
        reason: str = "",
    ) -> str:
        """Bring one service (or ledger shard) to `count` instances; hold `scale_lock`."""
        members = self._members(service, shard)
        before, group = len(members), group_name(service, shard)
        if not members:
            raise ScaleError(f"{group} has no instance to copy")
        if count > before:
            await self._add(members, count - before)
        elif count < before:
            await self._retire(members[count:])  # the newest go first
        event = ScalingEvent(
            at=time.time(),
            group=group,
            from_count=before,
            to_count=count,
            metric=metric,
            reason=reason or "flotilla scale",
            source=source,
        )
        if count != before:
            self.state.scaling = [*self.state.scaling, event][-_SCALING_KEPT:]
            print(f"scaled {group} {before} -> {count} ({source}: {event.reason})", flush=True)
        self.publish()
        return f"{group}: {before} -> {count}"

    def _taken_ports(self) -> set[int]:
        taken = {r.plan.port for r in self.running} | {
            r.plan.grpc_port for r in self.running if r.plan.grpc_port is not None
        }
        if self.plan.valkey_port is not None:
            taken.add(self.plan.valkey_port)
        if self.plan.nats_url is not None:
            taken.add(int(self.plan.nats_url.rsplit(":", 1)[1]))
        if self.plan.database == "postgres" and not self.plan.postgres_url:
            taken.add(int(postgres_base_url(self.layout, None).rsplit(":", 1)[1]))
        return taken - {0}

    def _renumber(self) -> None:
        self.state.instances = [r.state for r in self.running]

    async def _add(self, members: list[_Running], count: int) -> None:
        template = members[0].plan
        taken = self._taken_ports()
        # Names are never reused while the supervisor runs (each keeps its own log).
        siblings = [
            r for r in self.running
            if r.plan.service == template.service and r.plan.shard == template.shard
            and r.plan.serves_http
        ]  # fmt: skip
        next_index = max(instance_index(r.plan.name) for r in siblings) + 1
        added: list[_Running] = []
        for offset in range(count):
            plan = plan_sibling(
                template,
                index=next_index + offset,
                port=take_port(taken),
                grpc_port=take_port(taken) if template.grpc_port is not None else None,
            )
            added.append(_Running(plan, InstanceState.of(plan), in_topology=False))
        position = self.running.index(siblings[-1]) + 1
        self.running[position:position] = added
        self._renumber()
        await asyncio.gather(*(self._spawn(r) for r in added))
        self.publish()
        # Probe now, and every 0.2 s until they are ready (not at the next probe at rest).
        self._wake.set()
        try:
            async with asyncio.timeout(_READY_TIMEOUT_S), self._probed:
                await self._probed.wait_for(lambda: all(r.state.ready for r in added))
        except TimeoutError:
            await self._retire(added)
            names = ", ".join(r.plan.name for r in added)
            raise ScaleError(
                f"{names} not ready within {_READY_TIMEOUT_S:.0f} s (see `flotilla logs`)"
            ) from None
        for r in added:
            r.in_topology = True
        self._write_topology()
        await self._gateways_agree([r.plan.name for r in added], present=True)

    async def _retire(self, victims: list[_Running]) -> None:
        for r in victims:
            r.in_topology = False
            r.retiring = True
        self._write_topology()
        await self._gateways_agree([r.plan.name for r in victims], present=False)
        # SIGTERM: the instance drains (its /readyz answers 503 `draining` while it still
        # serves what comes), then stops.
        alive = [r for r in victims if r.process is not None and r.process.returncode is None]
        for r in alive:
            assert r.process is not None
            with contextlib.suppress(ProcessLookupError):
                r.process.send_signal(signal.SIGTERM)

        async def stopped(r: _Running) -> None:
            assert r.process is not None
            drain_s = float(r.plan.env.get("FLOTILLA_DRAIN_S", _DRAIN_DEFAULT_S))
            try:
                await asyncio.wait_for(r.process.wait(), drain_s + _STOP_GRACE_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    r.process.kill()
                await r.process.wait()

        await asyncio.gather(*(stopped(r) for r in alive))
        self.running = [r for r in self.running if r not in victims]
        self._renumber()
        self.publish()

    async def scrape_gateways(self, client: httpx.AsyncClient) -> list[str | None]:
        async def scrape(url: str) -> str | None:
            try:
                response = await client.get(f"{url}/metrics", timeout=2.0)
            except httpx.HTTPError:
                return None
            return response.text if response.status_code == 200 else None

        gateways = [r.plan.url for r in self.running if r.plan.service == "gateway"]
        return list(await asyncio.gather(*(scrape(url) for url in gateways)))

    async def _gateways_agree(self, names: list[str], *, present: bool) -> bool:
        """Wait until every gateway has the instances healthy (or none lists them)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _GATEWAYS_TIMEOUT_S
        async with httpx.AsyncClient(verify=self.client_tls()) as client:
            while loop.time() < deadline and not self.stopping.is_set():
                texts = await self.scrape_gateways(client)
                views = [gateway_metrics.parse_gateway_health(t) for t in texts if t is not None]
                if len(views) == len(texts) and all(
                    all(view.get(name, False) for name in names)
                    if present
                    else not any(name in view for name in names)
                    for view in views
                ):
                    return True
                await asyncio.sleep(0.2)  # the gateways apply the topology every second
        return False

    # -- stopping ------------------------------------------------------------------------
    async def _stop_instances(self) -> None:
        alive = [r.process for r in self.running if r.process and r.process.returncode is None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGINT)
        waiting = [asyncio.create_task(p.wait()) for p in alive]
        if waiting:
            _, pending = await asyncio.wait(waiting, timeout=_STOP_GRACE_S)
            for process in alive:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            if pending:
                await asyncio.wait(pending)
        for r in self.running:
            r.state.pid = None
            r.state.ready = False

    async def stop(self) -> None:
        self._phase("stopping")
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))
        await self._stop_instances()
        if self.postgres is not None:
            await asyncio.to_thread(self.postgres.stop)
            self.state.postgres_pid = None
        if self.valkey is not None:
            await asyncio.to_thread(self.valkey.stop)
            self.state.valkey_pid = None
        if self.nats is not None:
            await asyncio.to_thread(self.nats.stop)
            self.state.nats_pid = None

    def request_stop(self) -> None:
        self.stopping.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.prepare()
            if not self.stopping.is_set():
                await self.supervise()
        except Exception as exc:  # report it in the state file, then clean up
            await self.stop()
            self._phase("failed", f"{type(exc).__name__}: {exc}")
            return 1
        await self.stop()
        self._phase("stopped")
        return 0


def main() -> None:
    plan = Plan.model_validate_json(Path(sys.argv[1]).read_bytes())
    sys.exit(asyncio.run(Supervisor(plan).run()))


if __name__ == "__main__":
    main()
