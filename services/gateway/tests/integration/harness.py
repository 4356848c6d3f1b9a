"""A real system in one process: uvicorn upstreams on real sockets, the gateway in front.

Each upstream is a small FastAPI app served by uvicorn on a socket bound before it starts
(so its port is known and connections queue until it accepts). It echoes what it received,
can hold requests until the test releases them, can fail its readiness probe, serves a
JWKS and a revocation list like the auth service, and records every client connection it
accepted and every request the gateway forwarded to it.

The gateway runs with the real `POLICY` unless a test passes another: `ECHO_POLICY` opens
any one- or two-segment path below `/api/v1/auth/` to anyone, for tests about framing,
balancing and lifecycle rather than access.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from flotilla_gateway import Gateway, GatewaySettings, build_gateway
from flotilla_gateway.authentication import Authenticator
from flotilla_gateway.balancer import Registry
from flotilla_gateway.routes import POLICY, PUBLIC, RoutePolicy
from flotilla_kit.health import Drain, readyz_endpoint
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tls import CertificatePaths
from flotilla_kit.topology import Instance, Topology

ECHO_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]

ECHO_POLICY: tuple[RoutePolicy, ...] = tuple(
    RoutePolicy(method, path, "auth", PUBLIC)
    for path in ("/api/v1/auth/{a}", "/api/v1/auth/{a}/{b}")
    for method in ECHO_METHODS
    if method != "HEAD"  # HEAD goes with GET
)


class Upstream:
    """One instance of a service: a FastAPI app under uvicorn on 127.0.0.1."""

    def __init__(
        self,
        service: str,
        name: str,
        *,
        jwks: dict[str, Any],
        certificates: CertificatePaths | None = None,
        router: APIRouter | None = None,
        shard: int | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.service = service
        self.name = name
        # The shard it serves, as the topology says (None: an unsharded service).
        self.shard = shard
        self.ready = True
        self.probes = 0  # `/readyz` requests answered
        # Started as a SIGTERM'd service starts it: `/readyz` answers 503 `draining`.
        self.drain = Drain()
        # Echoed requests wait this long before the answer, and are answered with `status`.
        self.delay_s = 0.0
        self.status = 200
        # Requests to `.../slow` wait for `release`; `entered` counts them as they arrive.
        self.release = asyncio.Event()
        self.entered = 0
        self.entered_event = asyncio.Event()
        self.clients: set[tuple[str, int]] = set()
        self.seen: list[dict[str, Any]] = []
        # Requests forwarded by the gateway (not its own probes and fetches), "METHOD /path".
        self.proxied: list[str] = []
        # How often the gateway fetched this instance's `/openapi.json`.
        self.openapi_fetches = 0
        # What `/internal/v1/revocations` lists, and the status it answers with.
        self.revoked: set[str] = set()
        self.revocations_status = 200
        self.app = self._build_app(jwks, router)
        # Like a pod, it can listen on an address of its own (127.0.0.2, ::1, ...).
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._sock.bind((host, port))
        except OSError:
            self._sock.close()
            raise
        self._sock.listen(128)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        tls: dict[str, Any] = {}
        if certificates is not None:
            tls = {
                "ssl_certfile": str(certificates.cert),
                "ssl_keyfile": str(certificates.key),
                "ssl_ca_certs": str(certificates.ca),
                "ssl_cert_reqs": ssl.CERT_REQUIRED,
            }
        authority = f"[{host}]:{self.port}" if family == socket.AF_INET6 else f"{host}:{self.port}"
        self.url = f"{'https' if certificates else 'http'}://{authority}"
        config = uvicorn.Config(
            self._asgi,
            lifespan="off",
            interface="asgi3",
            proxy_headers=False,
            ws="none",
            http="httptools",
            log_config=None,
            access_log=False,
            timeout_graceful_shutdown=2,
            **tls,
        )
        self._server = uvicorn.Server(config)
        self._task: asyncio.Task[None] | None = None

    async def _asgi(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope.get("client"):
            host, port = scope["client"]
            self.clients.add((host, port))
        if scope["type"] == "http" and any(
            name == b"x-forwarded-proto" for name, _ in scope["headers"]
        ):
            self.proxied.append(f"{scope['method']} {scope['path']}")
        if scope["type"] == "http" and scope["path"] == "/openapi.json":
            self.openapi_fetches += 1
        await self.app(scope, receive, send)

    def _build_app(self, jwks: dict[str, Any], router: APIRouter | None) -> FastAPI:
        app = FastAPI(title=f"{self.service} test service")

        async def told_to_be_ready() -> None:
            self.probes += 1
            if not self.ready:
                raise RuntimeError("the test made this instance not ready")

        # The kit's own endpoint, so the gateway reads what a real service answers.
        app.add_route(
            "/readyz",
            readyz_endpoint({"test": told_to_be_ready}, self.drain),
            include_in_schema=False,
        )

        @app.api_route("/.well-known/jwks.json", methods=["GET", "HEAD"], include_in_schema=False)
        async def jwks_document() -> JSONResponse:
            return JSONResponse(jwks, headers={"cache-control": "public, max-age=300"})

        @app.get("/internal/v1/revocations", include_in_schema=False)
        async def revocations() -> Response:
            if self.revocations_status != 200:
                return Response(status_code=self.revocations_status)
            return JSONResponse({"sessions": sorted(self.revoked)})

        @app.get("/api/v1/{rest:path}/slow", include_in_schema=False)
        async def slow(request: Request) -> JSONResponse:
            self.entered += 1
            self.entered_event.set()
            await self.release.wait()
            return await self._echo(request)

        if router is not None:
            app.include_router(router)

        @app.api_route("/api/v1/{rest:path}", methods=ECHO_METHODS, include_in_schema=False)
        async def echo(request: Request) -> JSONResponse:
            return await self._echo(request)

        # The web service's pages (`/`, `/accounts`, ...): answered the same way.
        @app.api_route("/{rest:path}", methods=ECHO_METHODS, include_in_schema=False)
        async def echo_page(request: Request) -> JSONResponse:
            return await self._echo(request)

        return app

    async def _echo(self, request: Request) -> JSONResponse:
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        body = await request.body()
        seen = {
            "instance": self.name,
            "method": request.method,
            "path": request.url.path,
            "query": request.url.query,
            "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw],
            "body": body.decode("utf-8", "replace"),
        }
        self.seen.append(seen)
        return JSONResponse(seen, status_code=self.status, headers={"x-instance": self.name})

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(
            self._server.serve(sockets=[self._sock])
        )

    def discard(self) -> None:
        """Give up an instance that was never started (closes its socket)."""
        self._sock.close()

    async def stop(self) -> None:
        """Stop like a killed process would look from outside: port closed, connections gone."""
        if self._task is None:
            return
        self.release.set()
        self._server.should_exit = True
        await self._task
        self._task = None


def header_values(seen: dict[str, Any], name: str) -> list[str]:
    return [value for key, value in seen["headers"] if key.lower() == name.lower()]


class Stack:
    """Upstreams, their topology file, and a gateway in front of them, for one test."""

    def __init__(
        self,
        tmp_path: Path,
        dev_pki: Callable[[str], CertificatePaths],
        jwks: dict[str, Any],
    ) -> None:
        self.topology_file = tmp_path / "run" / "topology.json"
        self._dev_pki = dev_pki
        self._jwks = jwks
        self.upstreams: list[Upstream] = []
        self._raw: list[_RawUpstream] = []
        self.gateway: Gateway | None = None
        # More gateways on the same topology (several gateway instances sharing limits).
        self.other_gateways: list[Gateway] = []
        self._client_context: ssl.SSLContext | None = None

    async def upstream(
        self,
        service: str,
        name: str | None = None,
        *,
        tls: bool = False,
        router: APIRouter | None = None,
        in_topology: bool = True,
        shard: int | None = None,
    ) -> Upstream:
        """Start an instance; named `<service>-<n>`, or `<service>-s<shard>-<n>` if sharded."""
        siblings = [u for u in self.upstreams if u.service == service and u.shard == shard]
        default_name = (
            f"{service}-{len(siblings)}" if shard is None else f"{service}-s{shard}-{len(siblings)}"
        )
        upstream = Upstream(
            service,
            name or default_name,
            jwks=self._jwks,
            certificates=self._dev_pki(service) if tls else None,
            router=router,
            shard=shard,
        )
        await upstream.start()
        self.upstreams.append(upstream)
        if in_topology:
            self.write_topology([*self.in_topology(), upstream])
        return upstream

    async def pods(
        self,
        service: str,
        hosts: list[str],
        *,
        certificates: CertificatePaths | None = None,
        shard: int | None = None,
        attempts: int = 20,
    ) -> list[Upstream]:
        """Start one instance on each address, all on the same port, as the pods behind a
        headless Service are (not in the topology file). Each is named as DNS discovery
        names it, `<service>-<host>` (`<service>-s<shard>-<host>`). With `certificates`
        they serve https."""
        prefix = service if shard is None else f"{service}-s{shard}"
        for _ in range(attempts):
            started: list[Upstream] = []
            port = 0
            try:
                for host in hosts:
                    pod = Upstream(
                        service,
                        f"{prefix}-{host}",
                        jwks=self._jwks,
                        certificates=certificates,
                        shard=shard,
                        host=host,
                        port=port,
                    )
                    started.append(pod)
                    port = pod.port
            except OSError:  # that port is taken on one of the addresses: another one
                for pod in started:
                    pod.discard()
                continue
            for pod in started:
                await pod.start()
            self.upstreams.extend(started)
            return started
        raise RuntimeError(f"no port free on all of {hosts}")

    async def dropping_upstream(self, service: str, name: str) -> DroppingUpstream:
        """Start a `DroppingUpstream` and add it to the topology next to the others."""
        upstream = DroppingUpstream(service, name)
        await upstream.start()
        self._raw.append(upstream)
        services: dict[str, list[Instance]] = {}
        for known in self.in_topology():
            services.setdefault(known.service, []).append(
                Instance(name=known.name, url=known.url, shard=known.shard)
            )
        services.setdefault(service, []).append(Instance(name=name, url=upstream.url))
        Topology(services=services).write(self.topology_file)
        return upstream

    async def raw_upstream(self, upstream: FlakyKeepAliveUpstream) -> None:
        await upstream.start()
        self._raw.append(upstream)
        Topology(
            services={upstream.service: [Instance(name=upstream.name, url=upstream.url)]}
        ).write(self.topology_file)

    def in_topology(self) -> list[Upstream]:
        if not self.topology_file.exists():
            return []
        topology = Topology.read(self.topology_file)
        names = {i.name for instances in topology.services.values() for i in instances}
        return [u for u in self.upstreams if u.name in names]

    def write_topology(self, upstreams: list[Upstream]) -> None:
        services: dict[str, list[Instance]] = {}
        for upstream in upstreams:
            services.setdefault(upstream.service, []).append(
                Instance(name=upstream.name, url=upstream.url, shard=upstream.shard)
            )
        Topology(services=services).write(self.topology_file)

    async def start_gateway(
        self,
        *,
        tls: bool = False,
        wait_healthy: bool = True,
        policy: tuple[RoutePolicy, ...] = POLICY,
        **overrides: Any,
    ) -> Gateway:
        tls_settings = TlsSettings(cert_file=None, key_file=None, ca_file=None)
        if tls:
            # The same certificate serves HTTPS and authenticates the gateway to upstreams.
            paths = self._dev_pki("gateway")
            tls_settings = TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)
            self._client_context = ssl.create_default_context(cafile=str(paths.ca))
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "topology_file": self.topology_file,
            "topology_poll_s": 0.05,
            "health_interval_s": 0.05,
            "health_idle_interval_s": 0.05,
            "health_timeout_s": 1.0,
            "tls": tls_settings,
        }
        values.update(overrides)
        gateway = build_gateway(GatewaySettings(**values), policy)
        await gateway.start()
        self.gateway = gateway
        if wait_healthy:
            await self.wait_until(
                lambda: (
                    all(i.healthy for i in gateway.registry.instances())
                    and any(True for _ in gateway.registry.instances())
                )
            )
        return gateway

    async def another_gateway(
        self, *, policy: tuple[RoutePolicy, ...] = POLICY, **overrides: Any
    ) -> Gateway:
        """A further plain-HTTP gateway in front of the same upstreams, stopped by `close`."""
        values: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "topology_file": self.topology_file,
            "topology_poll_s": 0.05,
            "health_interval_s": 0.05,
            "health_idle_interval_s": 0.05,
            "health_timeout_s": 1.0,
            "tls": TlsSettings(cert_file=None, key_file=None, ca_file=None),
        }
        values.update(overrides)
        gateway = build_gateway(GatewaySettings(**values), policy)
        await gateway.start()
        self.other_gateways.append(gateway)
        await gateway.registry.wait_until(
            lambda: (
                all(i.healthy for i in gateway.registry.instances())
                and any(True for _ in gateway.registry.instances())
            ),
            5.0,
        )
        return gateway

    async def wait_until(self, predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
        assert self.gateway is not None
        await self.gateway.registry.wait_until(predicate, timeout_s)

    @property
    def gateway_port(self) -> int:
        assert self.gateway is not None
        return self.gateway.port

    @property
    def authenticator(self) -> Authenticator:
        assert self.gateway is not None
        return self.gateway.connections.dispatcher.authenticator

    @property
    def registry(self) -> Registry:
        assert self.gateway is not None
        return self.gateway.registry

    @property
    def base_url(self) -> str:
        assert self.gateway is not None
        return f"{self.gateway.scheme}://127.0.0.1:{self.gateway.port}"

    def client(self, *, base_url: str | None = None, **options: Any) -> httpx.AsyncClient:
        verify: ssl.SSLContext | bool = self._client_context or True
        return httpx.AsyncClient(
            base_url=base_url or self.base_url, verify=verify, timeout=10.0, **options
        )

    async def close(self) -> None:
        for upstream in self.upstreams:
            upstream.release.set()  # nothing held keeps the gateway's shutdown waiting
        if self.gateway is not None:
            await self.gateway.stop()
        for other in self.other_gateways:
            await other.stop()
        await asyncio.gather(*(u.stop() for u in self.upstreams))
        for raw in self._raw:
            await raw.stop()


async def _read_request(reader: asyncio.StreamReader) -> str:
    """Read one request (head and body); its request line."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    await reader.readexactly(length)
    return head.split(b"\r\n", 1)[0].decode()


class _RawUpstream:
    """A raw HTTP/1.1 server on a free port, for upstream misbehaviour uvicorn will not show."""

    def __init__(self, service: str, name: str) -> None:
        self.service = service
        self.name = name
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._converse(reader, writer)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError


class FlakyKeepAliveUpstream(_RawUpstream):
    """Answers the first request on each connection and, like a server whose idle timeout
    just fired, closes the connection when a second one arrives, without a byte of
    response."""

    def __init__(self, service: str, name: str) -> None:
        super().__init__(service, name)
        self.connections = 0
        self.answered: list[str] = []
        self.dropped: list[str] = []

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        for number in (1, 2):
            request_line = await _read_request(reader)
            if number == 2:
                self.dropped.append(request_line)
                return
            self.answered.append(request_line)
            body = b'{"instance": "%s"}' % self.name.encode()
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                b"content-length: %d\r\n\r\n%s" % (len(body), body)
            )
            await writer.drain()


class DroppingUpstream(_RawUpstream):
    """Passes its health checks (`GET /readyz`: 200) but dies mid-request on everything
    else: it reads the whole request, counts it as delivered, and closes the connection
    without a byte of response."""

    def __init__(self, service: str, name: str) -> None:
        super().__init__(service, name)
        # Requests it received (and dropped), "METHOD /path".
        self.delivered: list[str] = []

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            method, target, _ = (await _read_request(reader)).split(" ", 2)
            if target != "/readyz":
                self.delivered.append(f"{method} {target}")
                return
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
            await writer.drain()
