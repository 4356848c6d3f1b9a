"""The running gateway: listener, topology source, health checks, housekeeping, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from flotilla_gateway.balancer import Instance, Registry
from flotilla_gateway.forwarding import TrustedProxies
from flotilla_gateway.health import HealthChecker
from flotilla_gateway.proxy_protocol import ProxyListener
from flotilla_gateway.server import Connections
from flotilla_gateway.topology import TopologyChange, TopologySource
from flotilla_kit.health import Drain
from flotilla_kit.logs import get_logger
from flotilla_kit.tls import reload_changed_certificates

__all__ = ["Gateway", "Listener"]

_log = get_logger("flotilla.gateway")
_CERTIFICATE_CHECK_S = 30.0


@dataclass(frozen=True, slots=True)
class Listener:
    """A further port of the gateway, with its own connections (the admin listener)."""

    port: int
    connections: Connections


class Gateway:
    """Owns every long-lived part; `start()` binds and begins, `stop()` drains and closes."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        ssl_context: ssl.SSLContext | None,
        registry: Registry,
        health: HealthChecker,
        topology: TopologySource,
        connections: Connections,
        topology_poll_s: float,
        admin: Listener | None = None,
        proxy_protocol: TrustedProxies | None = None,
        shutdown_grace_s: float,
        on_topology_change: Callable[[Registry], None] | None = None,
        background: Sequence[Callable[[], Coroutine[Any, Any, None]]] = (),
        drain: Drain | None = None,
    ) -> None:
        self.registry = registry
        # Started on SIGTERM: `/readyz` says draining while requests are still served.
        self.drain = drain or Drain()
        self.connections = connections
        # Where instances come from: the topology file or DNS.
        self.topology = topology
        self._host = host
        self._port = port
        self._ssl = ssl_context
        self._health = health
        self._topology_poll_s = topology_poll_s
        self._shutdown_grace_s = shutdown_grace_s
        self._on_topology_change = on_topology_change
        # Loops that run from start to stop (keeping keys and revocations fresh).
        self._background = tuple(background)
        self._admin = admin
        # Set: the client port reads a PROXY header from these proxies before anything.
        self._proxy_protocol = proxy_protocol
        self._proxied: ProxyListener | None = None
        self._server: asyncio.Server | None = None
        self._admin_server: asyncio.Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self._background_tasks: list[asyncio.Task[None]] = []
        # Set once `stop()` has closed the listener; requests in flight are still running.
        self.stopping = asyncio.Event()

    @property
    def port(self) -> int:
        """The port actually bound (settings may ask for 0: any free port)."""
        if self._proxied is not None:
            bound: int = self._proxied.sock.getsockname()[1]
            return bound
        if self._server is None or not self._server.sockets:
            raise RuntimeError("the gateway is not listening")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def admin_port(self) -> int | None:
        """The admin listener's bound port; None when the client port serves everything."""
        if self._admin_server is None or not self._admin_server.sockets:
            return None
        port: int = self._admin_server.sockets[0].getsockname()[1]
        return port

    @property
    def scheme(self) -> str:
        return "https" if self._ssl is not None else "http"

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        # Bind first: a taken port fails the start before any probe is running.
        if self._proxy_protocol is not None:
            family = socket.AF_INET6 if ":" in self._host else socket.AF_INET
            self._proxied = ProxyListener(
                socket.create_server((self._host, self._port), family=family, backlog=2048),
                self.connections.protocol_factory,
                trusted=self._proxy_protocol,
                ssl_context=self._ssl,
            )
            self._proxied.start()
        else:
            self._server = await self._listen(self.connections, self._port)
        if self._admin is not None:
            self._admin_server = await self._listen(self._admin.connections, self._admin.port)
        self.poll_topology()
        self._housekeeping = loop.create_task(self._housekeep(), name="gateway housekeeping")
        self._background_tasks = [loop.create_task(work()) for work in self._background]
        _log.info(
            "gateway listening",
            url=f"{self.scheme}://{self._host}:{self.port}",
            admin_port=self.admin_port,
        )

    async def _listen(self, connections: Connections, port: int) -> asyncio.Server:
        return await asyncio.get_running_loop().create_server(
            connections.protocol_factory,
            self._host,
            port,
            ssl=self._ssl,
            backlog=2048,
            reuse_address=True,
            ssl_handshake_timeout=10.0 if self._ssl is not None else None,
        )

    def poll_topology(self) -> TopologyChange | None:
        """Apply what the topology source (file or DNS) changed since the last look."""
        change = self.topology.poll()
        if change is None:
            return None
        for ref in change.removed:
            removed = self.registry.remove(ref.service, ref.name)
            if removed is not None:
                self._health.unwatch(removed)
                _log.info("instance removed", **{"upstream.instance": ref.name}, url=ref.url)
        for ref in change.added:
            try:
                added: Instance = self.registry.add(
                    ref.service, ref.name, ref.url, ref.shard, tls_name=ref.tls_name
                )
            except ValueError as error:
                _log.warning(
                    "ignoring instance", **{"upstream.instance": ref.name}, error=str(error)
                )
                continue
            self._health.watch(added)
            _log.info(
                "instance added",
                **{"upstream.instance": ref.name},
                url=ref.url,
                shard=ref.shard,
                tls_name=ref.tls_name,
            )
        if self._on_topology_change is not None:
            self._on_topology_change(self.registry)
        return change

    async def stop(self) -> None:
        """Stop accepting, let requests in flight finish (bounded), close every pool."""
        if self._server is not None:
            self._server.close()
        if self._proxied is not None:
            await self._proxied.close()
        # The admin listener stays open while clients' requests finish: /readyz says
        # draining, and metrics are still read.
        self.stopping.set()
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        await self.connections.shutdown(self._shutdown_grace_s)
        if self._admin_server is not None and self._admin is not None:
            self._admin_server.close()
            await self._admin.connections.shutdown(0.0)
            await self._admin.connections.dispatcher.close()
            await self._admin_server.wait_closed()
            self._admin_server = None
        # Kept fresh while requests in flight finish; stopped with them.
        tasks, self._background_tasks = self._background_tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.connections.dispatcher.close()
        await self._health.close()
        self.registry.close(abort=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        _log.info("gateway stopped")

    async def _housekeep(self) -> None:
        loop = asyncio.get_running_loop()
        certificates_checked = loop.time()
        while True:
            await asyncio.sleep(self._topology_poll_s)
            try:
                self.poll_topology()
                if loop.time() - certificates_checked >= _CERTIFICATE_CHECK_S:
                    certificates_checked = loop.time()
                    reload_changed_certificates()  # renewed: used from the next handshake
                self.connections.sweep(loop.time())
                if self._admin is not None:
                    self._admin.connections.sweep(loop.time())
            except Exception:  # housekeeping must outlive one bad round
                _log.exception("housekeeping failed")
