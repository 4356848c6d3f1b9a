"""The gateway's settings: the kit's service fields plus traffic, pool and health knobs.

Every field works on a laptop as is; `flotilla up` only sets the topology file, ports and
certificates. Environment variables are `FLOTILLA_<FIELD>` (`FLOTILLA_TLS_*` for TLS).
"""

from __future__ import annotations

import ipaddress
import re
from ipaddress import IPv4Network, IPv6Network
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from flotilla_kit.settings import ServiceSettings, TlsSettings

__all__ = ["DnsTarget", "GatewaySettings", "Resilience", "RouteRateLimit"]

# One DNS label: letters, digits, hyphens (and underscores, which DNS itself allows).
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)")


class RouteRateLimit(BaseModel):
    """A route's own limit: per client IP on a public route, per identity otherwise."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rps: float = Field(gt=0, description="Sustained requests per second.")
    burst: int = Field(ge=1, description="Requests allowed at once from a full bucket.")


class DnsTarget(BaseModel):
    """A headless Service whose A/AAAA records are the ready pods of (a shard of) a service."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    host: str = Field(
        description="DNS name of the headless Service, e.g. accounts-s0.flotilla.svc; a "
        "trailing dot makes it absolute (no search list). Also the name the pods' "
        "certificates are checked against."
    )
    port: int = Field(ge=1, le=65535, description="Port the pods listen on.")
    scheme: Literal["http", "https"] = Field(
        default="https", description="https: mutual TLS to the pods (the usual case)."
    )
    shard: int | None = Field(
        default=None, ge=0, description="The shard its pods serve, for a sharded service."
    )

    @field_validator("host")
    @classmethod
    def _a_dns_name(cls, host: str) -> str:
        try:
            ipaddress.ip_address(host)
        except ValueError:
            pass
        else:
            raise ValueError(f"{host!r} is an address; DNS discovery needs a Service name")
        labels = host.removesuffix(".").split(".")
        if len(host) > 253 or not all(_LABEL.fullmatch(label) for label in labels):
            raise ValueError(f"{host!r} is not a DNS name")
        return host


class Resilience(BaseModel):
    """Outlier ejection, circuit breaker and retry budget: the one definition of these
    knobs, their defaults and limits. `GatewaySettings` is a `Resilience` (the fields are
    read from `FLOTILLA_<FIELD>` like the others), and the balancer takes one."""

    outlier_consecutive_failures: int = Field(
        default=5,
        ge=1,
        description="Consecutive failed requests (connect errors, resets, timeouts, 5xx "
        "answers) after which an instance is ejected: it gets no new requests for a while.",
    )
    outlier_ejection_s: float = Field(
        default=10.0,
        gt=0,
        description="How long the first ejection of an instance lasts; an instance ejected "
        "again soon after its re-admission stays out twice as long as the last time.",
    )
    outlier_max_ejection_s: float = Field(
        default=300.0, gt=0, description="The longest an ejection lasts, however often repeated."
    )
    slow_start_checks: int = Field(
        default=3,
        ge=0,
        description="A re-admitted instance counts as this many more requests in flight; "
        "one is forgiven per passed health check.",
    )
    breaker_window_s: float = Field(
        default=10.0, gt=0, description="Window over which a service's failure ratio is counted."
    )
    breaker_min_requests: int = Field(
        default=20,
        ge=1,
        description="Attempts a window needs before its failure ratio can open the breaker.",
    )
    breaker_failure_ratio: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="The breaker of a service opens when more than this share of the "
        "attempts in a window failed.",
    )
    breaker_consecutive_failures: int = Field(
        default=20,
        ge=1,
        description="The breaker of a service also opens after this many failed attempts in a row.",
    )
    breaker_open_s: float = Field(
        default=5.0,
        gt=0,
        description="How long an open breaker refuses requests (503) before letting one "
        "probe request through.",
    )
    retry_budget_ratio: float = Field(
        default=0.2,
        ge=0,
        le=1,
        description="Retries a service may get, as a share of its requests (token bucket: "
        "each request deposits this much, each retry takes 1).",
    )
    retry_budget_min_per_s: float = Field(
        default=3.0,
        ge=0,
        description="Retries per second a service may get even when its budget is empty.",
    )

    @property
    def longest_ejection_s(self) -> float:
        """The cap on an ejection's length, never below the first ejection's length."""
        return max(self.outlier_max_ejection_s, self.outlier_ejection_s)


class GatewaySettings(ServiceSettings, Resilience):
    """Settings of one gateway process.

    TLS: HTTPS is served when `tls.cert_file` and `tls.key_file` are set; clients are never
    asked for a certificate (`tls.require_client_cert` does not apply to the gateway's own
    listener). The same certificate authenticates the gateway to https upstreams (mTLS),
    verified against `tls.ca_file`.
    """

    model_config = SettingsConfigDict(env_prefix="FLOTILLA_", extra="ignore")

    service_name: str = Field(default="gateway", description="Name in logs and metrics.")
    port: int = Field(default=8443, ge=0, le=65535, description="TCP port to listen on.")
    admin_port: int | None = Field(
        default=None,
        ge=0,
        le=65535,
        description="Port of the operational listener: /readyz, /metrics and /policy.json "
        "(and /livez) over the same TLS, for probes and Prometheus; never published. The "
        "client port then no longer serves them. Unset: they are served on `port` (local "
        "runs, where the gateway listens on loopback).",
    )
    trusted_proxies: list[IPv4Network | IPv6Network] = Field(
        default_factory=list,
        description="Networks of the proxies in front of the gateway (an ingress, a load "
        "balancer) whose X-Forwarded-For the gateway believes: from such a peer, the client "
        "is the last address in X-Forwarded-For that is not itself a trusted proxy. Rate "
        "limits, login throttling and logs then see the real client. Empty: the socket's "
        "peer is the client and X-Forwarded-For is dropped.",
    )
    proxy_protocol: bool = Field(
        default=False,
        description="Every connection to `port` starts with a PROXY protocol header (v1 or "
        "v2, before TLS) naming the client: for a proxy that passes TLS through and so "
        "cannot add X-Forwarded-For. Accepted only from `trusted_proxies`; any other "
        "connection is closed.",
    )
    log_level: Literal["debug", "info", "warning", "error"] = Field(
        default="info", description="Lowest level logged; `info` includes the access log."
    )
    tls: TlsSettings = Field(
        default_factory=TlsSettings,
        description="Certificate and key (HTTPS, and the client side of mTLS) and the CA.",
    )
    jwks_urls: list[str] = Field(
        default_factory=list,
        description=(
            "JWKS endpoints of the auth service, tried in order; empty means "
            "`/.well-known/jwks.json` of each `auth` instance in the topology."
        ),
    )
    revocation_urls: list[str] = Field(
        default_factory=list,
        description=(
            "Endpoints listing revoked sessions, tried in order; empty means "
            "`/internal/v1/revocations` of each `auth` instance in the topology."
        ),
    )
    topology_file: Path = Field(
        default=Path("var/run/topology.json"),
        description="The launcher's topology file: which instances of each service listen where.",
    )
    topology_poll_s: float = Field(
        default=1.0,
        gt=0,
        description="How often the topology file's mtime is checked (with DNS discovery: "
        "how often the latest answers are applied).",
    )
    discovery: Literal["file", "dns"] = Field(
        default="file",
        description="Where upstream instances come from: `file`, the launcher's topology "
        "file; `dns`, the A/AAAA records of the headless Services in `dns_services` "
        "(Kubernetes).",
    )
    dns_services: dict[str, list[DnsTarget]] = Field(
        default_factory=dict,
        description=(
            'With `discovery=dns`, JSON: {"auth": [{"host": "auth.flotilla.svc", "port": '
            '8443}], "accounts": [{"host": "accounts-s0.flotilla.svc", "port": 8443, '
            '"shard": 0}, ...]}. Several targets per service for a sharded one, one per '
            "shard's headless Service."
        ),
    )
    dns_refresh_s: float = Field(
        default=5.0, gt=0, description="How often every name in `dns_services` is resolved."
    )
    dns_timeout_s: float = Field(
        default=2.0,
        gt=0,
        description="Longest wait for one name's answer; a name that times out keeps its "
        "last known instances.",
    )
    dns_nameservers: list[str] = Field(
        default_factory=list,
        description="IP addresses of the nameservers to ask; empty: the system's "
        "(/etc/resolv.conf, which in a pod is the cluster DNS).",
    )
    dns_port: int = Field(
        default=53, ge=1, le=65535, description="UDP/TCP port of the nameservers."
    )
    upstream_timeout_s: float = Field(
        default=10.0,
        gt=0,
        description="Longest wait for an upstream response, for routes without their own.",
    )
    connect_timeout_s: float = Field(
        default=2.0, gt=0, description="Longest wait for a new upstream connection (TCP + TLS)."
    )
    health_interval_s: float = Field(
        default=1.0, gt=0, description="Time between two active health checks of an instance."
    )
    health_idle_interval_s: float = Field(
        default=15.0,
        gt=0,
        description="Time between two health checks of a healthy instance that got no "
        "request since the last one (a request that cannot reach it gets it checked at once).",
    )
    health_timeout_s: float = Field(
        default=1.0, gt=0, description="Longest wait for an instance to answer GET /readyz."
    )
    unhealthy_after: int = Field(
        default=2,
        ge=1,
        description="Consecutive failed health checks after which an instance gets no traffic.",
    )
    pool_max_idle_per_instance: int = Field(
        default=64, ge=0, description="Idle keep-alive connections kept open per instance."
    )
    pool_idle_timeout_s: float = Field(
        default=4.0,
        gt=0,
        description=(
            "Idle upstream connections older than this are not reused; keep it below the "
            "upstreams' own keep-alive timeout (uvicorn: 5 s) so they are not closed under us."
        ),
    )
    max_header_bytes: int = Field(
        default=16_384, gt=0, description="Largest request line plus header fields (431 above)."
    )
    max_response_bytes: int = Field(
        default=16_777_216,
        gt=0,
        description="Largest upstream response body the gateway buffers (502 above).",
    )
    keepalive_timeout_s: float = Field(
        default=5.0, gt=0, description="Idle client connections are closed after this long."
    )
    request_read_timeout_s: float = Field(
        default=30.0,
        gt=0,
        description="A client must send a whole request within this long, or is disconnected.",
    )
    shutdown_grace_s: float = Field(
        default=10.0,
        ge=0,
        description="On SIGTERM, how long in-flight requests may take before being cut off.",
    )
    rate_limit_enabled: bool = Field(
        default=True,
        description="Rate-limit routed requests (per identity and per client IP); local "
        "endpoints are never limited.",
    )
    rate_limit_identity_rps: float = Field(
        default=50.0, gt=0, description="Sustained requests per second per token subject."
    )
    rate_limit_identity_burst: int = Field(
        default=100, ge=1, description="Requests a token subject may send at once."
    )
    rate_limit_ip_rps: float = Field(
        default=100.0, gt=0, description="Sustained requests per second per client IP."
    )
    rate_limit_ip_burst: int = Field(
        default=200, ge=1, description="Requests a client IP may send at once."
    )
    rate_limit_routes: dict[str, RouteRateLimit] = Field(
        default_factory=dict,
        description=(
            'Per-route limits, JSON: {"POST /api/v1/auth/token": {"rps": 5, "burst": 10}}. '
            "Keyed by method and path template of a policy entry; per client IP on a "
            "public entry, per identity otherwise, in buckets of the route's own."
        ),
    )
    rate_limit_exempt_roles: list[str] = Field(
        default_factory=list,
        description='Roles whose holders are not limited per identity, JSON: ["load-test"] '
        "(the identities of a load test or a trusted partner); the per-IP limit and route "
        "limits per IP still apply.",
    )
    rate_limit_max_keys: int = Field(
        default=100_000,
        ge=1,
        description="In-process buckets kept per limit; beyond it full buckets are dropped, "
        "then the oldest.",
    )
    valkey_url: str = Field(
        default="",
        description="redis:// URL of a Valkey (or Redis) server shared by the gateway "
        "instances for rate limits; empty: each gateway keeps its own buckets.",
    )
    valkey_timeout_s: float = Field(
        default=0.25,
        gt=0,
        description="Longest wait for Valkey; on failure the gateway limits in process and "
        "asks Valkey again a few seconds later.",
    )

    @field_validator("dns_nameservers")
    @classmethod
    def _addresses(cls, nameservers: list[str]) -> list[str]:
        for nameserver in nameservers:
            try:
                ipaddress.ip_address(nameserver)
            except ValueError:
                raise ValueError(f"nameserver {nameserver!r} is not an IP address") from None
        return nameservers

    @model_validator(mode="after")
    def _proxy_protocol_has_proxies(self) -> Self:
        if self.proxy_protocol and not self.trusted_proxies:
            raise ValueError(
                "FLOTILLA_PROXY_PROTOCOL needs FLOTILLA_TRUSTED_PROXIES, the networks of the "
                'proxies allowed to send the header (e.g. ["10.0.0.0/8"])'
            )
        return self

    @model_validator(mode="after")
    def _dns_services_make_sense(self) -> Self:
        if self.discovery == "dns" and not self.dns_services:
            raise ValueError(
                "FLOTILLA_DISCOVERY=dns needs FLOTILLA_DNS_SERVICES, e.g. "
                '{"auth": [{"host": "auth.flotilla.svc", "port": 8443}]}: '
                "without it the gateway would find no upstream at all"
            )
        for service, targets in self.dns_services.items():
            if not targets:
                raise ValueError(f"dns_services[{service!r}] lists no target")
            if len({target.shard is None for target in targets}) > 1:
                raise ValueError(
                    f"dns_services[{service!r}]: either every target has a shard or none has"
                )
            hosts = [target.host.removesuffix(".").lower() for target in targets]
            if len(set(hosts)) < len(hosts):
                # Instance names are <service>[-s<shard>]-<ip>: one host per service keeps
                # them unique.
                raise ValueError(f"dns_services[{service!r}] names a host twice")
        return self
