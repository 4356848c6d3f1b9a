"""The supervisor: one process that owns a running system.

It prepares `var/` (certificates, PostgreSQL, migrations, demo data), starts every
instance, restarts one that dies (exponential backoff), probes readiness, and keeps
`var/run/state.json` current. SIGTERM or SIGINT stops everything it started: SIGINT to
each instance (stop now, finishing requests in flight; SIGTERM would drain first, which a
whole system going down does not need), SIGKILL after a grace period, then PostgreSQL.

`flotilla up` starts it as a child process (`python -m flotilla_cli.supervisor PLAN`) and
shows its state; with `--detach` it leaves it running. Instances get PR_SET_PDEATHSIG, so
they die with the supervisor even if it is killed with SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

from flotilla_cli.demo_data import seed_demo_data
from flotilla_cli.layout import VarLayout
from flotilla_cli.planning import BACKEND_SERVICES, database_names, postgres_base_url
from flotilla_cli.state import InstancePlan, InstanceState, Plan, SystemState, write_atomically
from flotilla_kit.devservers import EmbeddedNats, EmbeddedPostgres, EmbeddedValkey, die_with_parent
from flotilla_kit.tls import client_context, ensure_dev_pki
from flotilla_kit.topology import Instance, Topology

__all__ = ["Supervisor", "main"]

_BACKOFF_START_S = 0.5
_BACKOFF_MAX_S = 10.0
_HEALTHY_RESETS_BACKOFF_S = 30.0
_PROBE_INTERVAL_S = 1.0
_STOP_GRACE_S = 10.0


@dataclass
class _Running:
    plan: InstancePlan
    state: InstanceState
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0
    backoff_s: float = _BACKOFF_START_S
    restart_at: float | None = None


class Supervisor:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.layout = VarLayout.at(plan.var_dir)
        self.running = [
            _Running(
                p,
                InstanceState(
                    service=p.service,
                    name=p.name,
                    port=p.port,
                    url=p.url,
                    shard=p.shard,
                    command=p.command,
                ),
            )
            for p in plan.instances
        ]
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
        self._stop = asyncio.Event()
        self._last_written = ""

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
        ensure_dev_pki(self.layout.tls, [*BACKEND_SERVICES, "gateway", "flotilla-cli"])
        Topology(
            services={
                service: [
                    Instance(name=r.plan.name, url=r.plan.url, shard=r.plan.shard)
                    for r in self.running
                    if r.plan.service == service and r.plan.serves_http
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
        # Independent servers: started side by side.
        await asyncio.gather(
            asyncio.to_thread(self._start_postgres),
            asyncio.to_thread(self._start_valkey),
            asyncio.to_thread(self._start_nats),
        )

    # -- instances -----------------------------------------------------------------------
    async def _spawn(self, r: _Running) -> None:
        log_path = self.layout.log_file(r.plan.name)
        handle = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            r.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                f"flotilla_{r.plan.service}",
                r.plan.command,
                env={**os.environ, **r.plan.env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=handle,
                stderr=handle,
                preexec_fn=die_with_parent,
            )
        finally:
            os.close(handle)
        r.started_at = time.monotonic()
        r.restart_at = None
        r.state.pid = r.process.pid
        r.state.ready = False

    async def _watch_exits(self) -> None:
        now = time.monotonic()
        for r in self.running:
            if r.process is not None and r.process.returncode is not None:
                r.state.last_exit_code = r.process.returncode
                r.state.pid = None
                r.state.ready = False
                r.process = None
                if now - r.started_at > _HEALTHY_RESETS_BACKOFF_S:
                    r.backoff_s = _BACKOFF_START_S
                r.restart_at = now + r.backoff_s
                r.backoff_s = min(r.backoff_s * 2, _BACKOFF_MAX_S)
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
                r.state.ready = response.status_code == 200
            except httpx.HTTPError:
                r.state.ready = False
        try:
            memory = psutil.Process(r.process.pid).memory_full_info()
            r.state.rss_bytes, r.state.uss_bytes = memory.rss, memory.uss
        except psutil.Error:
            r.state.rss_bytes = r.state.uss_bytes = None

    def _client_tls(self) -> ssl.SSLContext:
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
            await self._watch(seeding)
        finally:
            seeding.cancel()

    async def _watch(self, seeding: asyncio.Task[None]) -> None:
        async with httpx.AsyncClient(verify=self._client_tls()) as client:
            while not self._stop.is_set():
                await self._watch_exits()
                await asyncio.gather(*(self._probe(client, r) for r in self.running))
                if seeding.done():
                    seeding.result()  # a failed seed fails the start
                if seeding.done() and self.state.all_ready and self.state.phase == "starting":
                    self.state.ready_at = time.time()
                    self.state.phase = "running"
                    self.state.detail = ""
                self.publish()
                # Probe often while starting (every instance counts towards "ready").
                interval = _PROBE_INTERVAL_S if self.state.phase == "running" else 0.2
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), interval)

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
        self._stop.set()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request_stop)
        try:
            await self.prepare()
            if not self._stop.is_set():
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
