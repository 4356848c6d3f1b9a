"""The one place where settings become a wired gateway."""

from __future__ import annotations

import ssl
from collections.abc import Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from flotilla_gateway.access_log import AccessLog
from flotilla_gateway.authentication import Authenticator
from flotilla_gateway.balancer import Registry, Service
from flotilla_gateway.dispatcher import Dispatcher, RouteTarget
from flotilla_gateway.endpoints import LocalEndpoints
from flotilla_gateway.forwarding import TrustedProxies
from flotilla_gateway.gateway import Gateway, Listener
from flotilla_gateway.health import HealthChecker
from flotilla_gateway.metrics import GatewayMetrics
from flotilla_gateway.openapi import OpenApiAggregator
from flotilla_gateway.problems import ProblemCatalog
from flotilla_gateway.rate_limits import RateLimiter, SharedBuckets
from flotilla_gateway.routes import GATEWAY, POLICY, RoutePolicy, RouteTable, operation_owner
from flotilla_gateway.server import Connections, ServerLimits
from flotilla_gateway.settings import GatewaySettings
from flotilla_gateway.shards import shard_router
from flotilla_gateway.spans import SpanLog
from flotilla_gateway.topology import TopologySource, TopologyWatcher
from flotilla_gateway.upstream import ConnectionPool, Deadlines, Endpoint
from flotilla_kit.health import Drain
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tls import client_context, server_context
from flotilla_kit.tracing import tracing

__all__ = [
    "build_gateway",
    "client_tls_context",
    "rate_limiter",
    "server_tls_context",
    "topology_source",
]

_JWKS_PATH = "/.well-known/jwks.json"
_REVOCATIONS_PATH = "/internal/v1/revocations"


def server_tls_context(tls: TlsSettings) -> ssl.SSLContext | None:
    """HTTPS for clients when a certificate is configured; clients need no certificate."""
    if tls.cert_file is None or tls.key_file is None:
        return None
    return server_context(tls.cert_file, tls.key_file, tls.ca_file, require_client_cert=False)


def client_tls_context(tls: TlsSettings) -> ssl.SSLContext:
    """Verifies upstreams against the CA and presents the gateway's certificate (mTLS)."""
    if tls.ca_file is not None:
        return client_context(tls.ca_file, tls.cert_file, tls.key_file)
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if tls.cert_file is not None and tls.key_file is not None:
        context.load_cert_chain(tls.cert_file, tls.key_file)
    return context


class _AuthSourcesFromTopology:
    """With no `jwks_urls` or `revocation_urls` configured, fetch keys and revocations from
    the instances of the service that serves the JWKS route, following the topology as it
    changes."""

    def __init__(
        self,
        authenticator: Authenticator,
        service: str,
        *,
        jwks: bool,
        revocations: bool,
    ) -> None:
        self._authenticator = authenticator
        self._service = service
        self._jwks = jwks
        self._revocations = revocations
        self._bases: tuple[str, ...] | None = None

    def __call__(self, registry: Registry) -> None:
        service = registry.services.get(self._service)
        instances = service.instances.values() if service is not None else ()
        bases = tuple(sorted({_base_url(i.endpoint) for i in instances}))
        if bases == self._bases:
            return
        self._bases = bases
        if self._jwks:
            self._authenticator.use_jwks([base + _JWKS_PATH for base in bases])
        if self._revocations:
            self._authenticator.use_revocations([base + _REVOCATIONS_PATH for base in bases])


def _base_url(endpoint: Endpoint) -> str:
    """Where to fetch an instance's keys and revocations from.

    An https instance whose certificate names something else than its URL's host (found
    through DNS: a pod IP, a certificate for the Service) is reached by that name, which
    resolves to the Service's ready pods; the kit's HTTP client checks the certificate
    against the URL's host and could not verify the pod IP.
    """
    if endpoint.tls and endpoint.server_name != endpoint.host:
        return f"https://{endpoint.server_name}:{endpoint.port}"
    return endpoint.url.rstrip("/")


_Background = Callable[[], Coroutine[Any, Any, None]]


def topology_source(settings: GatewaySettings) -> tuple[TopologySource, tuple[_Background, ...]]:
    """Where instances come from, and the loop that keeps it fresh (if it needs one)."""
    if settings.discovery == "file":
        return TopologyWatcher(settings.topology_file), ()
    # Imported only when used: dnspython costs a gateway on the topology file about
    # 100 ms of start-up and 6 MB.
    from flotilla_gateway.discovery import DnsDiscovery, dns_resolver  # noqa: PLC0415

    discovery = DnsDiscovery(
        settings.dns_services,
        dns_resolver(
            nameservers=settings.dns_nameservers,
            port=settings.dns_port,
            timeout_s=settings.dns_timeout_s,
        ),
        refresh_s=settings.dns_refresh_s,
    )
    return discovery, (discovery.run,)


def rate_limiter(
    settings: GatewaySettings, policy: Sequence[RoutePolicy], problems: ProblemCatalog
) -> RateLimiter | None:
    """The limits settings ask for, or None when rate limiting is off."""
    if not settings.rate_limit_enabled:
        return None
    public = {(entry.method, entry.path): entry.public for entry in policy}
    shared = (
        SharedBuckets(settings.valkey_url, timeout_s=settings.valkey_timeout_s)
        if settings.valkey_url
        else None
    )
    return RateLimiter.build(
        problems=problems,
        identity=(settings.rate_limit_identity_rps, settings.rate_limit_identity_burst),
        ip=(settings.rate_limit_ip_rps, settings.rate_limit_ip_burst),
        routes={key: (r.rps, r.burst) for key, r in settings.rate_limit_routes.items()},
        max_keys=settings.rate_limit_max_keys,
        shared=shared,
        public=lambda method, path: public.get((method, path)),
        exempt_roles=frozenset(settings.rate_limit_exempt_roles),
    )


def build_gateway(settings: GatewaySettings, policy: Sequence[RoutePolicy] = POLICY) -> Gateway:
    client_ssl = client_tls_context(settings.tls)
    # One ticker times out the requests of every pool, proxied and probes alike.
    deadlines = Deadlines()
    pool_factory = partial(
        ConnectionPool,
        ssl_context=client_ssl,
        connect_timeout_s=settings.connect_timeout_s,
        max_idle=settings.pool_max_idle_per_instance,
        idle_timeout_s=settings.pool_idle_timeout_s,
        max_response_bytes=settings.max_response_bytes,
        deadlines=deadlines,
    )
    probe_pool_factory = partial(
        ConnectionPool,
        ssl_context=client_ssl,
        connect_timeout_s=min(settings.connect_timeout_s, settings.health_timeout_s),
        max_idle=1,
        idle_timeout_s=settings.pool_idle_timeout_s,
        max_response_bytes=1_048_576,
        deadlines=deadlines,
    )
    # The services requests are forwarded to (not the gateway's own operations).
    routed_services = tuple(
        dict.fromkeys(entry.service for entry in policy if entry.service != GATEWAY)
    )
    registry = Registry(
        pool_factory,
        unhealthy_after=settings.unhealthy_after,
        services=routed_services,
        resilience=settings,
    )
    health = HealthChecker(
        registry,
        probe_pool_factory,
        interval_s=settings.health_interval_s,
        idle_interval_s=settings.health_idle_interval_s,
        timeout_s=settings.health_timeout_s,
    )
    metrics = GatewayMetrics(registry)
    problems = ProblemCatalog(
        max_body_bytes=settings.max_body_bytes, max_header_bytes=settings.max_header_bytes
    )
    limiter = rate_limiter(settings, policy, problems)
    owner = operation_owner(policy)
    openapi = OpenApiAggregator(
        registry, services=routed_services, owner=owner, timeout_s=settings.upstream_timeout_s
    )
    drain = Drain()
    local = LocalEndpoints(
        registry=registry,
        routed_services=routed_services,
        metrics=metrics,
        openapi=openapi,
        policy=policy,
        drain=drain,
        name=f"{settings.service_name}-{settings.instance_id}",
    )
    own_operations = local.authorized_handlers()
    unanswered = [e.path for e in policy if e.service == GATEWAY and e.path not in own_operations]
    if unanswered:
        raise ValueError(f"routes of the gateway's own that it has no handler for: {unanswered}")
    table = RouteTable(
        (
            entry,
            RouteTarget(
                entry,
                Service(GATEWAY) if entry.service == GATEWAY else registry.service(entry.service),
                # One label per template, shared by its methods: bounded.
                metrics.route(entry.path),
                settings.upstream_timeout_s,
                shard_router(entry, problems),
                limiter,
                own_operations[entry.path] if entry.service == GATEWAY else None,
            ),
        )
        for entry in policy
    )
    operational = local.operational_handlers()
    handlers = local.public_handlers()
    if settings.admin_port is None:
        handlers |= operational
    shadowed = [path for path in handlers | operational if table.allowed(path)]
    if shadowed:
        raise ValueError(f"the gateway answers these paths itself; not routable: {shadowed}")
    authenticator = Authenticator(
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        jwks_urls=settings.jwks_urls,
        revocation_urls=settings.revocation_urls,
        ssl_context=client_ssl,
        revocation_refresh_s=settings.revocation_refresh_s,
    )
    server_ssl = server_tls_context(settings.tls)
    # What every listener's dispatcher shares; each adds its routes and local endpoints.
    make_dispatcher = partial(
        Dispatcher,
        authenticator=authenticator,
        health=health,
        registry=registry,
        problems=problems,
        metrics=metrics,
        access_log=AccessLog(
            service=settings.service_name,
            node=f"{settings.service_name}-{settings.instance_id}",
            enabled=settings.log_level in ("debug", "info"),
        ),
        forwarded_proto=b"https" if server_ssl is not None else b"http",
    )
    dispatcher = make_dispatcher(
        routes=table,
        local=handlers,
        limiter=limiter,
        spans=SpanLog(tracer) if (tracer := tracing()) is not None else None,
    )
    limits = ServerLimits(
        max_header_bytes=settings.max_header_bytes,
        max_body_bytes=settings.max_body_bytes,
        keepalive_timeout_s=settings.keepalive_timeout_s,
        request_read_timeout_s=settings.request_read_timeout_s,
    )
    trusted = TrustedProxies(settings.trusted_proxies)
    connections = Connections(
        dispatcher, problems, limits, tls=server_ssl is not None, trusted_proxies=trusted
    )
    admin: Listener | None = None
    if settings.admin_port is not None:
        # The operational endpoints alone: no route, no rate limit, no client traffic.
        admin_dispatcher = make_dispatcher(routes=RouteTable(()), local=operational)
        admin = Listener(
            settings.admin_port,
            Connections(admin_dispatcher, problems, limits, tls=server_ssl is not None),
        )
    auth_service = owner("GET", _JWKS_PATH)
    follow = not settings.jwks_urls or not settings.revocation_urls
    on_topology_change = (
        _AuthSourcesFromTopology(
            authenticator,
            auth_service,
            jwks=not settings.jwks_urls,
            revocations=not settings.revocation_urls,
        )
        if follow and auth_service is not None
        else None
    )
    topology, refreshing = topology_source(settings)
    return Gateway(
        host=settings.host,
        port=settings.port,
        ssl_context=server_ssl,
        registry=registry,
        health=health,
        topology=topology,
        connections=connections,
        admin=admin,
        proxy_protocol=trusted if settings.proxy_protocol else None,
        topology_poll_s=settings.topology_poll_s,
        shutdown_grace_s=settings.shutdown_grace_s,
        on_topology_change=on_topology_change,
        background=(authenticator.run, *refreshing),
        drain=drain,
    )
