from __future__ import annotations

import json
from pathlib import Path

from flotilla_cli.layout import VarLayout
from flotilla_cli.planning import build_plan


def test_every_instance_gets_its_own_port_and_settings(tmp_path: Path) -> None:
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    plan = build_plan(layout, instances=3, database="sqlite", profile="dev", gateway_port=9443)
    names = [i.name for i in plan.instances]
    assert names == [
        "auth-0", "auth-1", "auth-2", "accounts-0", "accounts-1", "accounts-2", "gateway-0",
    ]  # fmt: skip
    ports = [i.port for i in plan.instances]
    assert len(set(ports)) == len(ports)
    accounts_1 = next(i for i in plan.instances if i.name == "accounts-1")
    assert accounts_1.env["FLOTILLA_INSTANCE_ID"] == "1"
    assert accounts_1.env["FLOTILLA_PORT"] == str(accounts_1.port)
    assert accounts_1.env["FLOTILLA_DATABASE_URL"].endswith("/accounts.db")
    assert accounts_1.env["FLOTILLA_TLS_CERT_FILE"].endswith("tls/accounts.pem")
    auth_ports = [i.port for i in plan.instances if i.service == "auth"]
    assert json.loads(accounts_1.env["FLOTILLA_JWKS_URLS"]) == [
        f"https://127.0.0.1:{p}/.well-known/jwks.json" for p in auth_ports
    ]
    gateway = plan.instances[-1]
    assert gateway.url == "https://127.0.0.1:9443"
    assert gateway.env["FLOTILLA_TOPOLOGY_FILE"] == str(layout.topology_file)
    assert "FLOTILLA_DATABASE_URL" not in gateway.env


def test_the_auth_key_encryption_key_is_random_and_kept(tmp_path: Path) -> None:
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    first = build_plan(layout, instances=1, database="sqlite", profile="dev", gateway_port=1)
    second = build_plan(layout, instances=1, database="sqlite", profile="dev", gateway_port=1)
    key = first.instances[0].env["FLOTILLA_KEY_ENCRYPTION_KEY"]
    assert len(key) >= 32
    assert second.instances[0].env["FLOTILLA_KEY_ENCRYPTION_KEY"] == key
    assert (layout.secrets / "auth-key-encryption-key").stat().st_mode & 0o077 == 0


def test_postgres_gives_each_service_its_own_database(tmp_path: Path) -> None:
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    plan = build_plan(
        layout,
        instances=1,
        database="postgres",
        profile="dev",
        gateway_port=1,
        postgres_url="postgresql+asyncpg://u:p@db:5432/",
    )
    urls = {i.service: i.env.get("FLOTILLA_DATABASE_URL") for i in plan.instances}
    assert urls == {
        "auth": "postgresql+asyncpg://u:p@db:5432/auth",
        "accounts": "postgresql+asyncpg://u:p@db:5432/accounts",
        "gateway": None,
    }
