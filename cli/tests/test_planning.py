from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Literal

import pytest

from flotilla_cli.launcher import planning
from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import (
    build_plan,
    database_names,
    demo_user_id,
    service_specs,
    shop_account_id,
)
from flotilla_cli.launcher.state import Plan
from flotilla_kit.manifest import ManifestError, find_manifest, load_manifest, parse_manifest
from flotilla_kit.sharding import home_shard, shard_of


def _plan(
    tmp_path: Path,
    *,
    instances: int = 2,
    database: Literal["sqlite", "postgres"] = "sqlite",
    postgres_url: str | None = None,
    gateways: int = 1,
) -> tuple[VarLayout, Plan]:
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    plan = build_plan(
        layout, instances=instances, shards=2, database=database, profile="dev",
        gateway_port=9443, postgres_url=postgres_url, gateways=gateways,
    )  # fmt: skip
    return layout, plan


def test_every_instance_gets_its_own_ports_and_settings(tmp_path: Path) -> None:
    layout, plan = _plan(tmp_path)
    instances = plan.instances
    assert [i.name for i in instances] == [
        "auth-0", "auth-1",
        "accounts-s0-0", "accounts-s0-1", "accounts-s1-0", "accounts-s1-1",
        "payments-0", "payments-1",
        "inventory-0", "inventory-1",
        "orders-0", "orders-1",
        "billing-0", "billing-1",
        "web-0", "web-1",
        "payments-relay", "inventory-relay", "orders-relay", "billing-relay",
        "gateway-0",
    ]  # fmt: skip
    listening = [i for i in instances if i.serves_http]
    ports = [i.port for i in listening] + [i.grpc_port for i in instances if i.grpc_port]
    assert len(set(ports)) == len(ports)
    ledger = {i.name: i for i in instances if i.service == "accounts"}
    shard1 = ledger["accounts-s1-1"]
    assert (shard1.shard, shard1.env["FLOTILLA_SHARD"], shard1.env["FLOTILLA_SHARDS"]) == (
        1,
        "1",
        "2",
    )
    # Logs and metrics name the instance `<service>-<instance id>`: unique across shards.
    assert shard1.env["FLOTILLA_INSTANCE_ID"] == "s1-1"
    assert shard1.env["FLOTILLA_GRPC_PORT"] == str(shard1.grpc_port)
    assert shard1.env["FLOTILLA_DATABASE_URL"].endswith("/accounts_s1.db")
    assert shard1.env["FLOTILLA_TLS_CERT_FILE"].endswith("tls/accounts.pem")
    auth_ports = [i.port for i in instances if i.service == "auth"]
    assert json.loads(shard1.env["FLOTILLA_JWKS_URLS"]) == [
        f"https://127.0.0.1:{p}/.well-known/jwks.json" for p in auth_ports
    ]
    payments = next(i for i in instances if i.name == "payments-0")
    assert json.loads(payments.env["FLOTILLA_LEDGER_SHARDS"]) == {
        str(shard): [f"127.0.0.1:{i.grpc_port}" for i in ledger.values() if i.shard == shard]
        for shard in (0, 1)
    }
    assert json.loads(shard1.env["FLOTILLA_PAYMENTS_URLS"]) == [
        i.url for i in listening if i.service == "payments"
    ]
    # The shop: orders knows inventory's gRPC targets, payments, each ledger shard and
    # the shop's account; everything with an outbox knows the broker.
    orders = next(i for i in instances if i.name == "orders-1")
    inventory = [i for i in instances if i.service == "inventory" and i.serves_http]
    assert json.loads(orders.env["FLOTILLA_INVENTORY_TARGETS"]) == [
        f"127.0.0.1:{i.grpc_port}" for i in inventory
    ]
    assert json.loads(orders.env["FLOTILLA_ACCOUNTS_SHARDS"]) == {
        str(shard): [i.url for i in ledger.values() if i.shard == shard] for shard in (0, 1)
    }
    shop = orders.env["FLOTILLA_SHOP_ACCOUNT"]
    assert shop == shop_account_id(2)
    assert orders.env["FLOTILLA_SHOP_OWNER"] == demo_user_id("shop")
    assert shard_of(shop) == home_shard(demo_user_id("shop"), 2)
    assert inventory[0].env["FLOTILLA_GRPC_PORT"] == str(inventory[0].grpc_port)
    relays = [i for i in instances if i.command == "relay"]
    assert [(r.service, r.url) for r in relays] == [
        ("payments", ""), ("inventory", ""), ("orders", ""), ("billing", ""),
    ]  # fmt: skip
    assert plan.nats_url is not None
    with_broker = {i.name for i in instances if i.env.get("FLOTILLA_NATS_URL") == plan.nats_url}
    assert with_broker == {
        i.name
        for i in instances
        if i.service in ("payments", "inventory", "orders", "billing", "web")
    }
    # The web front end calls the gateway like any client, and asks the supervisor to scale.
    web = next(i for i in instances if i.name == "web-1")
    assert web.env["FLOTILLA_GATEWAY_URL"] == "https://127.0.0.1:9443"
    assert web.env["FLOTILLA_SCALE_REQUESTS_DIR"] == str(layout.run / "scale")
    assert relays[1].env["FLOTILLA_DATABASE_URL"].endswith("/inventory.db")
    gateway = instances[-1]
    assert gateway.url == "https://127.0.0.1:9443"
    assert gateway.env["FLOTILLA_TOPOLOGY_FILE"] == str(layout.topology_file)
    assert "FLOTILLA_DATABASE_URL" not in gateway.env


def test_the_auth_key_encryption_key_is_random_and_kept(tmp_path: Path) -> None:
    layout, first = _plan(tmp_path)
    _, second = _plan(tmp_path)
    key = first.instances[0].env["FLOTILLA_KEY_ENCRYPTION_KEY"]
    assert len(key) >= 32
    assert second.instances[0].env["FLOTILLA_KEY_ENCRYPTION_KEY"] == key
    assert (layout.secrets / "auth-key-encryption-key").stat().st_mode & 0o077 == 0


def test_postgres_gives_each_service_and_shard_its_own_database(tmp_path: Path) -> None:
    _, plan = _plan(
        tmp_path, instances=1, database="postgres", postgres_url="postgresql+asyncpg://u:p@db:5432/"
    )
    urls = {i.name: i.env.get("FLOTILLA_DATABASE_URL") for i in plan.instances}
    assert urls == {
        "auth-0": "postgresql+asyncpg://u:p@db:5432/auth",
        "accounts-s0-0": "postgresql+asyncpg://u:p@db:5432/accounts_s0",
        "accounts-s1-0": "postgresql+asyncpg://u:p@db:5432/accounts_s1",
        "payments-0": "postgresql+asyncpg://u:p@db:5432/payments",
        "inventory-0": "postgresql+asyncpg://u:p@db:5432/inventory",
        "orders-0": "postgresql+asyncpg://u:p@db:5432/orders",
        # A relay reads its service's outbox, in its service's database.
        "payments-relay": "postgresql+asyncpg://u:p@db:5432/payments",
        "inventory-relay": "postgresql+asyncpg://u:p@db:5432/inventory",
        "orders-relay": "postgresql+asyncpg://u:p@db:5432/orders",
        "billing-0": "postgresql+asyncpg://u:p@db:5432/billing",
        "billing-relay": "postgresql+asyncpg://u:p@db:5432/billing",
        "web-0": "postgresql+asyncpg://u:p@db:5432/web",
        "gateway-0": None,
    }
    assert database_names(3) == [
        "auth", "accounts_s0", "accounts_s1", "accounts_s2", "payments", "inventory", "orders",
        "billing", "web",
    ]  # fmt: skip


def test_one_gateway_limits_in_process_several_share_a_valkey(tmp_path: Path) -> None:
    _, single = _plan(tmp_path / "one")
    (gateway,) = [i for i in single.instances if i.service == "gateway"]
    assert (gateway.name, gateway.port, single.valkey_port) == ("gateway-0", 9443, None)
    assert "FLOTILLA_VALKEY_URL" not in gateway.env

    _, double = _plan(tmp_path / "two", gateways=2)
    gateways = [i for i in double.instances if i.service == "gateway"]
    assert [g.name for g in gateways] == ["gateway-0", "gateway-1"]
    assert gateways[0].port == 9443 != gateways[1].port
    assert [g.env["FLOTILLA_INSTANCE_ID"] for g in gateways] == ["0", "1"]
    assert double.valkey_port is not None
    assert {g.env["FLOTILLA_VALKEY_URL"] for g in gateways} == {
        f"redis://127.0.0.1:{double.valkey_port}/0"
    }
    assert double.gateway_url == "https://127.0.0.1:9443"


def _with_shipping(*, relay: bool) -> str:
    """services.toml with one more backend service, `shipping`, before the gateway."""
    manifest = find_manifest()
    shipping = (
        '[[services]]\nname = "shipping"\nfolder = "services/shipping"\n'
        'package = "flotilla_shipping"\nframework = "django"\nhttp_port = 8000\n'
        "database = true\n"
        + ('relay = true\npublishes = ["parcel_sent"]\n' if relay else "")
        + "\n"
    )
    head, gateway = manifest.read_text().split('[[services]]\nname = "gateway"')
    return head + shipping + '[[services]]\nname = "gateway"' + gateway


def test_the_plan_is_the_manifests_backend_services_in_its_order() -> None:
    manifest = load_manifest()
    assert tuple(s.name for s in manifest.backends) == planning.BACKEND_SERVICES
    assert planning.GATEWAY_SERVICE == manifest.gateway.name == "gateway"
    assert tuple(s.name for s in manifest.backends if s.relay) == planning.RELAYED_SERVICES
    assert (
        tuple(s.name for s in manifest.backends if s.grpc_port is not None)
        == planning.GRPC_SERVICES
    )
    assert planning.SHARDED_SERVICE == "accounts"


def test_a_service_added_to_the_manifest_is_planned_with_its_relay(tmp_path: Path) -> None:
    manifest = parse_manifest(_with_shipping(relay=True))
    settings = {**planning._SETTINGS, "shipping": planning._no_settings}
    layout = VarLayout.at(tmp_path)
    layout.ensure()
    plan = build_plan(
        layout, instances=1, shards=1, database="sqlite", profile="dev", gateway_port=9443,
        services=service_specs(manifest, settings),
    )  # fmt: skip
    names = [i.name for i in plan.instances]
    assert names[names.index("web-0") + 1] == "shipping-0"
    assert "shipping-relay" in names
    (shipping,) = [i for i in plan.instances if i.name == "shipping-0"]
    assert shipping.env["FLOTILLA_DATABASE_URL"].endswith("/shipping.db")
    assert shipping.env["FLOTILLA_NATS_URL"] == plan.nats_url
    assert names[-1] == "gateway-0"


def test_a_service_without_launcher_settings_is_refused_by_name() -> None:
    manifest = parse_manifest(_with_shipping(relay=False))
    with pytest.raises(
        ManifestError, match=r"services.toml names shipping, for which the launcher"
    ):
        service_specs(manifest)
    stale = {**planning._SETTINGS, "ledger": planning._no_settings}
    with pytest.raises(ManifestError, match=r"settings for ledger, which services.toml does not"):
        service_specs(load_manifest(), stale)


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        ("no services", "services.toml is wrong:\n  services.toml: services: Field required"),
        ("shipping", "services.toml names shipping, for which the launcher has no settings"),
    ],
)
def test_a_broken_manifest_stops_the_cli_with_a_message_not_a_traceback(
    tmp_path: Path, broken: str, message: str
) -> None:
    # The launcher reads services.toml when it is imported (every `flotilla` command):
    # pointed at a broken one, it exits with the file and the field, as a user would see.
    text = (
        "[workspace]\nlibraries = []\ntools = []\n"
        if broken == "no services"
        else _with_shipping(relay=False)
    )
    (tmp_path / "services.toml").write_text(text)
    script = (
        "from pathlib import Path; from flotilla_kit import manifest;"
        f"manifest.find_manifest = lambda start=None: Path({str(tmp_path)!r}) / 'services.toml';"
        "import flotilla_cli.launcher.planning"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert message in result.stderr
