"""Deciding what a system is before starting it: instances, ports, and each one's settings.

Ports are chosen here, once; an instance restarted by the supervisor comes back on the same
port, so the gateway's topology only changes when instances are added or removed.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Literal

from flotilla_cli.layout import VarLayout
from flotilla_cli.state import InstancePlan, Plan
from flotilla_kit.devservers import free_port

__all__ = ["BACKEND_SERVICES", "build_plan", "postgres_base_url"]

# Started N times each, behind the gateway (which runs once, on its public port).
BACKEND_SERVICES = ("auth", "accounts")
_EMBEDDED_PG_PORT_FILE = "pg-port"


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
        port_file.write_text(str(free_port()))
    return f"postgresql+asyncpg://postgres@127.0.0.1:{port_file.read_text().strip()}"


def _tls_env(layout: VarLayout, name: str) -> dict[str, str]:
    return {
        "FLOTILLA_TLS_CERT_FILE": str(layout.tls / f"{name}.pem"),
        "FLOTILLA_TLS_KEY_FILE": str(layout.tls / f"{name}-key.pem"),
        "FLOTILLA_TLS_CA_FILE": str(layout.tls / "ca.pem"),
    }


def build_plan(
    layout: VarLayout,
    *,
    instances: int,
    database: Literal["sqlite", "postgres"],
    profile: str,
    gateway_port: int,
    log_level: str = "info",
    postgres_url: str | None = None,
    demo_data: bool = True,
) -> Plan:
    ports = {service: [free_port() for _ in range(instances)] for service in BACKEND_SERVICES}
    jwks_urls = [f"https://127.0.0.1:{p}/.well-known/jwks.json" for p in ports["auth"]]
    revocation_urls = [f"https://127.0.0.1:{p}/internal/v1/revocations" for p in ports["auth"]]
    pg_base = postgres_base_url(layout, postgres_url) if database == "postgres" else None

    def common(service: str, index: int, port: int) -> dict[str, str]:
        url = f"{pg_base}/{service}" if pg_base else layout.sqlite_url(service)
        return {
            "FLOTILLA_SERVICE_NAME": service,
            "FLOTILLA_PROFILE": profile,
            "FLOTILLA_INSTANCE_ID": str(index),
            "FLOTILLA_HOST": "127.0.0.1",
            "FLOTILLA_PORT": str(port),
            "FLOTILLA_VAR_DIR": str(layout.root),
            "FLOTILLA_LOG_LEVEL": log_level,
            "FLOTILLA_DATABASE_URL": url,
            "FLOTILLA_JWKS_URLS": json.dumps(jwks_urls),
            "FLOTILLA_REVOCATION_URLS": json.dumps(revocation_urls),
            **_tls_env(layout, service),
        }

    planned: list[InstancePlan] = []
    for service, service_ports in ports.items():
        for index, port in enumerate(service_ports):
            env = common(service, index, port)
            if service == "auth":
                env["FLOTILLA_KEY_ENCRYPTION_KEY"] = _key_encryption_key(layout)
            planned.append(
                InstancePlan(
                    service=service,
                    name=f"{service}-{index}",
                    port=port,
                    url=f"https://127.0.0.1:{port}",
                    env=env,
                )
            )

    gateway_env = common("gateway", 0, gateway_port)
    del gateway_env["FLOTILLA_DATABASE_URL"]
    gateway_env["FLOTILLA_TOPOLOGY_FILE"] = str(layout.topology_file)
    gateway_url = f"https://127.0.0.1:{gateway_port}"
    planned.append(
        InstancePlan(
            service="gateway", name="gateway-0", port=gateway_port, url=gateway_url, env=gateway_env
        )
    )
    return Plan(
        var_dir=Path(layout.root),
        profile=profile,
        database=database,
        postgres_url=postgres_url,
        gateway_url=gateway_url,
        instances=planned,
        demo_data=demo_data,
    )
