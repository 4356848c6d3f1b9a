"""Deciding what a system is before starting it: instances, ports, and each one's settings.

Ports are chosen here, once; an instance restarted by the supervisor comes back on the same
port, so the gateway's topology only changes when instances are added or removed. They
are taken below the kernel's ephemeral range (`stable_port`): while an instance is down,
no outgoing connection can be handed its port, not even a client reconnecting to it
(which would end up connected to itself).
"""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Literal

from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.state import InstancePlan, Plan
from flotilla_kit import scale_requests
from flotilla_kit.devservers import stable_port
from flotilla_kit.manifest import MANIFEST_FILE, Manifest, ManifestError, load_manifest
from flotilla_kit.sharding import home_shard

__all__ = [
    "BACKEND_SERVICES",
    "GATEWAY_SERVICE",
    "GRPC_SERVICES",
    "MANIFEST",
    "RELAYED_SERVICES",
    "SERVICES",
    "SHARDED_SERVICE",
    "SHOP_ACCOUNT_NAME",
    "SHOP_OWNER",
    "Database",
    "ServiceSpec",
    "build_plan",
    "database_names",
    "demo_user_id",
    "instance_index",
    "nats_port",
    "plan_sibling",
    "postgres_base_url",
    "service_specs",
    "shop_account_id",
    "shop_owner_id",
    "take_port",
]

# The shop's bank account: owned by a demo user of its own, its id fixed in advance so
# the orders service can be told it before the account is seeded.
SHOP_OWNER = "shop"
SHOP_ACCOUNT_NAME = "Takings"
_EMBEDDED_PG_PORT_FILE = "pg-port"
_NATS_PORT_FILE = "nats-port"
_DEMO_NAMESPACE = uuid.UUID("8b6c2f0e-1d3a-4c5b-9e7f-0a1b2c3d4e5f")
_SHOP_NAMESPACE = uuid.UUID("3f9a6c1e-2b4d-4e8f-a1c3-5d7e9f0b2a4c")


class Database(StrEnum):
    """The database backends a system can run on (`--db`)."""

    sqlite = "sqlite"
    postgres = "postgres"


def _key_encryption_key(layout: VarLayout) -> str:
    """The auth service's key-encryption key: random, made once, kept under var/secrets."""
    path = layout.secrets / "auth-key-encryption-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(32))
        path.chmod(0o600)
    return path.read_text().strip()


def postgres_base_url(layout: VarLayout, external: str | None) -> str:
    """The server URL without a database; the embedded server keeps its port across runs."""
    if external:
        return external.rstrip("/")
    port_file = layout.run / _EMBEDDED_PG_PORT_FILE
    if not port_file.exists():
        port_file.write_text(str(stable_port()))
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port_file.read_text().strip()}"


class _Ports:
    """Ports for one plan: each stable (see the module docstring) and none twice."""

    def __init__(self) -> None:
        self._taken: set[int] = set()

    def take(self) -> int:
        while (port := stable_port()) in self._taken:
            pass
        self._taken.add(port)
        return port

    def reserve(self, port: int) -> None:
        """A port kept from an earlier run (the broker's, PostgreSQL's): not to be taken."""
        self._taken.add(port)


def nats_port(layout: VarLayout) -> int:
    """The embedded NATS server's port, kept across runs (its store stays in var/nats)."""
    port_file = layout.run / _NATS_PORT_FILE
    if not port_file.exists():
        port_file.write_text(str(stable_port()))
    return int(port_file.read_text().strip())


def demo_user_id(username: str) -> str:
    """Fixed ids, so the accounts of a demo user can be seeded while the user is, and
    services can be told them before they start (the shop's owner)."""
    return str(uuid.uuid5(_DEMO_NAMESPACE, username))


def shop_owner_id() -> str:
    return demo_user_id(SHOP_OWNER)


def shop_account_id(shards: int) -> str:
    """The shop's account: on its owner's home shard, with an id fixed in advance."""
    owner = shop_owner_id()
    return f"acc_{home_shard(owner, shards)}_{uuid.uuid5(_SHOP_NAMESPACE, owner).hex}"


def _tls_env(layout: VarLayout, name: str) -> dict[str, str]:
    return {
        "FLOTILLA_TLS_CERT_FILE": str(layout.tls / f"{name}.pem"),
        "FLOTILLA_TLS_KEY_FILE": str(layout.tls / f"{name}-key.pem"),
        "FLOTILLA_TLS_CA_FILE": str(layout.tls / "ca.pem"),
    }


@dataclass(frozen=True, slots=True)
class _Slot:
    """One instance to plan: its service, shard (if any), index and ports."""

    service: str
    index: int
    port: int
    shard: int | None = None
    grpc_port: int | None = None
    has_database: bool = True

    @property
    def instance_id(self) -> str:
        """Unique within the service: `1`, or `s0-1` for a ledger shard's instance."""
        return str(self.index) if self.shard is None else f"s{self.shard}-{self.index}"

    @property
    def name(self) -> str:
        return f"{self.service}-{self.instance_id}"

    @property
    def database(self) -> str | None:
        """The database this instance uses: one per service, one per ledger shard."""
        if not self.has_database:
            return None
        return self.service if self.shard is None else f"{self.service}_s{self.shard}"

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@dataclass(frozen=True, slots=True)
class _Wiring:
    """Where a system's instances are, for the settings that point one service at another."""

    layout: VarLayout
    shards: int
    slots: list[_Slot]
    # Where clients reach the system (the first gateway), and the broker.
    gateway_url: str = ""
    nats_url: str = ""

    def urls(self, service: str, path: str = "") -> str:
        """Every instance of `service` (with `path`), as the JSON list the settings take."""
        return json.dumps([f"{s.url}{path}" for s in self.slots if s.service == service])

    def grpc_targets(self, service: str, shard: int | None = None) -> list[str]:
        return [
            f"127.0.0.1:{s.grpc_port}"
            for s in self.slots
            if s.service == service and (shard is None or s.shard == shard)
        ]


def _auth_settings(wiring: _Wiring, slot: _Slot) -> dict[str, str]:
    return {"FLOTILLA_KEY_ENCRYPTION_KEY": _key_encryption_key(wiring.layout)}


def _accounts_settings(wiring: _Wiring, slot: _Slot) -> dict[str, str]:
    return {
        "FLOTILLA_SHARD": str(slot.shard),
        "FLOTILLA_SHARDS": str(wiring.shards),
        "FLOTILLA_PAYMENTS_URLS": wiring.urls("payments"),
    }


def _payments_settings(wiring: _Wiring, slot: _Slot) -> dict[str, str]:
    ledger_shards = {
        str(shard): wiring.grpc_targets("accounts", shard) for shard in range(wiring.shards)
    }
    return {"FLOTILLA_LEDGER_SHARDS": json.dumps(ledger_shards)}


def _orders_settings(wiring: _Wiring, slot: _Slot) -> dict[str, str]:
    accounts_shards = {
        str(shard): [s.url for s in wiring.slots if s.shard == shard]
        for shard in range(wiring.shards)
    }
    return {
        "FLOTILLA_INVENTORY_TARGETS": json.dumps(wiring.grpc_targets("inventory")),
        "FLOTILLA_PAYMENTS_URLS": wiring.urls("payments"),
        "FLOTILLA_ACCOUNTS_SHARDS": json.dumps(accounts_shards),
        "FLOTILLA_SHOP_ACCOUNT": shop_account_id(wiring.shards),
        "FLOTILLA_SHOP_OWNER": shop_owner_id(),
    }


def _web_settings(wiring: _Wiring, slot: _Slot) -> dict[str, str]:
    # The web front end calls the gateway like any client; its operator console reads the
    # dead letters on the broker and asks the supervisor to scale (var/run/scale/).
    return {
        "FLOTILLA_GATEWAY_URL": wiring.gateway_url,
        "FLOTILLA_NATS_URL": wiring.nats_url,
        "FLOTILLA_SCALE_REQUESTS_DIR": str(scale_requests.requests_dir(wiring.layout.run)),
    }


def _no_settings(wiring: _Wiring, slot: _Slot) -> dict[str, str]:
    return {}


@dataclass(frozen=True, slots=True)
class ServiceSpec:
    """One backend service of a system, as the plan starts it (from services.toml)."""

    name: str
    sharded: bool = False  # N instances per ledger shard, each with its shard's database
    grpc: bool = False  # also listens for gRPC (the ledger's participants, reservations)
    relayed: bool = False  # publishes events through an outbox: one relay process
    consumer: bool = False  # its instances consume events (so need the broker too)
    database: bool = True  # owns a database (one per shard when sharded)
    # Its own settings, beside those every instance gets (where the others are, secrets).
    settings: Callable[[_Wiring, _Slot], dict[str, str]] = _no_settings


# Each backend service's own settings, by name: what only the launcher knows (where the
# others listen, secrets it makes). Every service of services.toml has an entry, even
# an empty one, so a service added there cannot start half-configured.
_SETTINGS: dict[str, Callable[[_Wiring, _Slot], dict[str, str]]] = {
    "auth": _auth_settings,
    "accounts": _accounts_settings,
    "payments": _payments_settings,
    "inventory": _no_settings,
    "orders": _orders_settings,
    "billing": _no_settings,
    "web": _web_settings,
    # flotilla new service: settings
}


def service_specs(
    manifest: Manifest,
    settings: Mapping[str, Callable[[_Wiring, _Slot], dict[str, str]]] = _SETTINGS,
) -> tuple[ServiceSpec, ...]:
    """The backend services of `manifest`, in its order, each with its own settings;
    ManifestError when the manifest and the settings above do not name the same ones."""
    names = [service.name for service in manifest.backends]
    if unknown := [name for name in names if name not in settings]:
        raise ManifestError(
            f"{MANIFEST_FILE} names {', '.join(unknown)}, for which the launcher has no "
            "settings: add an entry to _SETTINGS in flotilla_cli/launcher/planning.py "
            "(_no_settings if it needs none)"
        )
    if stale := [name for name in settings if name not in names]:
        raise ManifestError(
            f"the launcher has settings for {', '.join(stale)}, which {MANIFEST_FILE} does "
            "not name as a backend service: add it there or remove its entry from _SETTINGS"
        )
    return tuple(
        ServiceSpec(
            service.name,
            sharded=service.sharded,
            grpc=service.grpc_port is not None,
            relayed=service.relay,
            consumer=bool(service.consumes),
            database=service.database,
            settings=settings[service.name],
        )
        for service in manifest.backends
    )


def _load() -> tuple[Manifest, tuple[ServiceSpec, ...]]:
    try:
        manifest = load_manifest()
        specs = service_specs(manifest)
        if not any(spec.sharded for spec in specs):
            raise ManifestError(
                f"{MANIFEST_FILE}: the launcher needs a sharded service (the ledger)"
            )
    except ManifestError as exc:
        # At import, before any command runs: a message naming the file and the field,
        # not a traceback.
        raise SystemExit(f"error: {exc}") from None
    return manifest, specs


# Started N times each (the ledger N times per shard), in the manifest's order, behind
# the gateway (which runs once, on its public port).
MANIFEST, SERVICES = _load()
GATEWAY_SERVICE = MANIFEST.gateway.name
BACKEND_SERVICES = tuple(spec.name for spec in SERVICES)
SHARDED_SERVICE = next(spec.name for spec in SERVICES if spec.sharded)
GRPC_SERVICES = tuple(spec.name for spec in SERVICES if spec.grpc)
RELAYED_SERVICES = tuple(spec.name for spec in SERVICES if spec.relayed)


def _slots(
    services: tuple[ServiceSpec, ...], instances: int, shards: int, ports: _Ports
) -> list[_Slot]:
    slots: list[_Slot] = []
    for spec in services:
        for shard in range(shards) if spec.sharded else [None]:
            slots += [
                _Slot(
                    spec.name,
                    index,
                    ports.take(),
                    shard,
                    ports.take() if spec.grpc else None,
                    has_database=spec.database,
                )
                for index in range(instances)
            ]
    return slots


def database_names(shards: int) -> list[str]:
    """Every database a system with `shards` ledger shards uses."""
    return [
        f"{spec.name}_s{shard}" if spec.sharded else spec.name
        for spec in SERVICES
        if spec.database
        for shard in (range(shards) if spec.sharded else [0])
    ]


def build_plan(
    layout: VarLayout,
    *,
    instances: int,
    shards: int = 2,
    gateways: int = 1,
    database: Literal["sqlite", "postgres"],
    profile: str,
    gateway_port: int,
    log_level: str = "info",
    postgres_url: str | None = None,
    demo_data: bool = True,
    services: tuple[ServiceSpec, ...] = SERVICES,
) -> Plan:
    """Every instance of a system (each of `services`, by default services.toml's backend
    services; their relays; the gateways) with its ports and settings: those every
    instance gets, then its service's own."""
    ports = _Ports()
    ports.reserve(gateway_port)
    ports.reserve(nats_port(layout))
    if database == "postgres" and not postgres_url:
        ports.reserve(int(postgres_base_url(layout, None).rsplit(":", 1)[1]))
    slots = _slots(services, instances, shards, ports)
    specs = {spec.name: spec for spec in services}
    relayed = [spec.name for spec in services if spec.relayed]
    # Who needs the broker: the services with a relay, and those that consume events.
    on_the_broker = {spec.name for spec in services if spec.relayed or spec.consumer}
    pg_base = postgres_base_url(layout, postgres_url) if database == "postgres" else None
    nats_url = f"nats://127.0.0.1:{nats_port(layout)}"
    wiring = _Wiring(layout, shards, slots, f"https://127.0.0.1:{gateway_port}", nats_url)
    urls = wiring.urls

    def env_of(
        service: str, instance_id: str, port: int, database_name: str | None
    ) -> dict[str, str]:
        env = {
            "FLOTILLA_SERVICE_NAME": service,
            "FLOTILLA_PROFILE": profile,
            "FLOTILLA_INSTANCE_ID": instance_id,
            "FLOTILLA_HOST": "127.0.0.1",
            "FLOTILLA_PORT": str(port),
            "FLOTILLA_VAR_DIR": str(layout.root),
            "FLOTILLA_TRACES_DIR": str(layout.root / "traces"),  # `flotilla trace` reads it
            "FLOTILLA_LOG_LEVEL": log_level,
            "FLOTILLA_JWKS_URLS": urls("auth", "/.well-known/jwks.json"),
            "FLOTILLA_REVOCATION_URLS": urls("auth", "/internal/v1/revocations"),
            "FLOTILLA_AUTH_TOKEN_URLS": urls("auth", "/api/v1/auth/token"),
            **_tls_env(layout, service),
        }
        if database_name is not None:
            env["FLOTILLA_DATABASE_URL"] = (
                f"{pg_base}/{database_name}" if pg_base else layout.sqlite_url(database_name)
            )
        if service in on_the_broker:
            env["FLOTILLA_NATS_URL"] = nats_url
        return env

    planned: list[InstancePlan] = []
    for slot in slots:
        env = env_of(slot.service, slot.instance_id, slot.port, slot.database)
        if slot.grpc_port is not None:
            env["FLOTILLA_GRPC_PORT"] = str(slot.grpc_port)
        env |= specs[slot.service].settings(wiring, slot)
        planned.append(
            InstancePlan(
                service=slot.service,
                name=slot.name,
                port=slot.port,
                url=slot.url,
                shard=slot.shard,
                grpc_port=slot.grpc_port,
                env=env,
            )
        )

    # One relay per service database with an outbox: it publishes the service's events.
    for service in relayed:
        relay_env = env_of(service, "relay", 0, service)
        planned.append(
            InstancePlan(
                service=service,
                name=f"{service}-relay",
                port=0,
                url="",
                command="relay",
                env=relay_env,
            )
        )

    # Gateways: the first on the public port; with more than one, they share their
    # rate-limit buckets through an embedded Valkey the supervisor starts.
    valkey_port = ports.take() if gateways > 1 else None
    gateway_ports = [gateway_port] + [ports.take() for _ in range(gateways - 1)]
    for index, port in enumerate(gateway_ports):
        gateway_env = env_of(GATEWAY_SERVICE, str(index), port, None)
        gateway_env["FLOTILLA_TOPOLOGY_FILE"] = str(layout.topology_file)
        if valkey_port is not None:
            gateway_env["FLOTILLA_VALKEY_URL"] = f"redis://127.0.0.1:{valkey_port}/0"
        planned.append(
            InstancePlan(
                service=GATEWAY_SERVICE,
                name=f"{GATEWAY_SERVICE}-{index}",
                port=port,
                url=f"https://127.0.0.1:{port}",
                env=gateway_env,
            )
        )
    gateway_url = wiring.gateway_url
    return Plan(
        var_dir=Path(layout.root),
        profile=profile,
        database=database,
        postgres_url=postgres_url,
        gateway_url=gateway_url,
        shards=shards,
        valkey_port=valkey_port,
        nats_url=nats_url,
        instances=planned,
        demo_data=demo_data,
    )


def plan_sibling(
    template: InstancePlan, *, index: int, port: int, grpc_port: int | None
) -> InstancePlan:
    """One more instance of `template`'s service (and shard), set up as its siblings are:
    the same settings but its own id, name and ports (`flotilla scale`)."""
    slot = _Slot(template.service, index, port, template.shard, grpc_port)
    env = {
        **template.env,
        "FLOTILLA_INSTANCE_ID": slot.instance_id,
        "FLOTILLA_PORT": str(port),
    }
    if grpc_port is not None:
        env["FLOTILLA_GRPC_PORT"] = str(grpc_port)
    return template.model_copy(
        update={
            "name": slot.name,
            "port": port,
            "url": slot.url,
            "grpc_port": grpc_port,
            "env": env,
        }
    )


def take_port(taken: set[int]) -> int:
    """A stable port (see the module docstring) not in `taken`, which it joins."""
    ports = _Ports()
    for port in taken:
        ports.reserve(port)
    port = ports.take()
    taken.add(port)
    return port


def instance_index(name: str) -> int:
    """`inventory-2` -> 2, `accounts-s1-3` -> 3."""
    return int(name.rsplit("-", 1)[1])
