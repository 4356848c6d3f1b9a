"""Demo users, accounts and the shop's products, created through each service's own
`seed` command (forked from the warm parent, as the instances are).

Passwords are random on the first run and reused after that, so `flotilla up` can be run
again over an existing `var/`. They are written to `var/demo-credentials.json` only in the
dev profile.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from dataclasses import dataclass
from typing import Any

from flotilla_cli.launcher.forking import fork_command
from flotilla_cli.launcher.layout import VarLayout
from flotilla_cli.launcher.planning import (
    SHARDED_SERVICE,
    SHOP_ACCOUNT_NAME,
    SHOP_OWNER,
    demo_user_id,
    shop_account_id,
)
from flotilla_cli.launcher.state import Plan, write_atomically
from flotilla_kit.sharding import home_shard

__all__ = [
    "DEMO_ACCOUNTS",
    "DEMO_PRODUCTS",
    "DEMO_USERS",
    "SeedError",
    "demo_user_id",
    "seed_demo_data",
]


DEMO_USERS: dict[str, list[str]] = {
    "alice": ["customer"],
    "bob": ["customer"],
    "carol": ["customer"],
    "sam": ["support"],
    "ada": ["admin"],
    # Owns the shop's account, where orders are paid to (and refunded from).
    SHOP_OWNER: ["customer"],
}

# (owner, account name, currency, opening balance in minor units)
DEMO_ACCOUNTS: list[tuple[str, str, str, int]] = [
    ("alice", "Everyday", "EUR", 250_000),
    ("alice", "Savings", "EUR", 1_000_000),
    ("bob", "Everyday", "EUR", 120_000),
    ("carol", "Everyday", "EUR", 300_000),
    ("sam", "Everyday", "EUR", 50_000),
    ("ada", "Operations", "EUR", 100_000),
    (SHOP_OWNER, SHOP_ACCOUNT_NAME, "EUR", 0),
]

# The shop's catalogue: (sku, name, price in minor units, stock on hand). The poster is
# there to run out.
DEMO_PRODUCTS: list[tuple[str, str, int, int]] = [
    ("TEA-EARL-250", "Earl Grey tea, 250 g", 650, 200),
    ("COFFEE-BEANS-1KG", "Coffee beans, 1 kg", 2_400, 120),
    ("MUG-BLUE", "Blue enamel mug", 1_200, 80),
    ("LAMP-DESK", "Desk lamp", 4_900, 30),
    ("POSTER-LTD", "Limited edition poster", 3_000, 3),
]


class SeedError(RuntimeError):
    pass


@dataclass(frozen=True, slots=True)
class _Seeder:
    plan: Plan
    layout: VarLayout

    def env_of(self, service: str, shard: int | None) -> dict[str, str]:
        first = next(i for i in self.plan.instances if (i.service, i.shard) == (service, shard))
        return {**os.environ, **first.env}

    async def run(
        self, service: str, payload: dict[str, Any], shard: int | None = None
    ) -> dict[str, Any]:
        label = service if shard is None else f"{service}-s{shard}"
        seed_file = self.layout.run / f"seed-{label}.json"
        fd = os.open(seed_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle)
        out_file, err_file = seed_file.with_suffix(".out"), seed_file.with_suffix(".err")
        for path in (out_file, err_file):
            path.unlink(missing_ok=True)  # written by a seed that was cut off
        try:
            process = await fork_command(
                service, ["seed", "--file", str(seed_file)], env=self.env_of(service, shard),
                name=f"seed-{label}", stdout=out_file, stderr=err_file,
            )  # fmt: skip
            try:
                await process.wait()
            except asyncio.CancelledError:
                process.kill()  # the system is stopping before the seed finished
                raise
            out, err = out_file.read_text(), err_file.read_text()
        finally:
            for path in (seed_file, out_file, err_file):
                path.unlink(missing_ok=True)  # the seed file holds passwords
        if process.returncode != 0:
            tail = err.strip().splitlines()[-15:]
            raise SeedError(f"seeding {label} failed:\n" + "\n".join(tail))
        result: dict[str, Any] = json.loads(out)
        return result


def _new_password(username: str) -> str:
    """16 random characters; drawn again in the rare case they contain the username,
    which the auth service's password policy refuses."""
    while True:
        password = secrets.token_urlsafe(12)
        if username.lower() not in password.lower():
            return password


def _passwords(layout: VarLayout) -> dict[str, str]:
    known: dict[str, str] = {}
    if layout.credentials_file.exists():
        for user in json.loads(layout.credentials_file.read_text()).get("users", []):
            known[user["username"]] = user["password"]
    return {name: known.get(name) or _new_password(name) for name in DEMO_USERS}


async def seed_demo_data(plan: Plan, layout: VarLayout) -> None:
    seeder = _Seeder(plan, layout)
    passwords = _passwords(layout)
    users = [
        {"username": name, "password": passwords[name], "roles": roles, "id": demo_user_id(name)}
        for name, roles in DEMO_USERS.items()
    ]
    # Each customer's accounts go to their home shard.
    by_shard: dict[int, list[dict[str, Any]]] = {shard: [] for shard in range(plan.shards)}
    for owner, name, currency, balance in DEMO_ACCOUNTS:
        owner_id = demo_user_id(owner)
        account: dict[str, Any] = {
            "owner_id": owner_id, "name": name, "currency": currency, "balance_minor": balance,
        }  # fmt: skip
        if owner == SHOP_OWNER:
            account["id"] = shop_account_id(plan.shards)  # the orders service is told it
        by_shard[home_shard(owner_id, plan.shards)].append(account)
    products = [
        {"sku": sku, "name": name, "price_minor": price, "currency": "EUR", "on_hand": stock}
        for sku, name, price, stock in DEMO_PRODUCTS
    ]
    created, *_ = await asyncio.gather(
        seeder.run("auth", {"users": users}),
        *(
            seeder.run(SHARDED_SERVICE, {"accounts": accounts}, shard)
            for shard, accounts in by_shard.items()
        ),
        seeder.run("inventory", {"products": products}),
    )
    strangers = [u["username"] for u in created["users"] if u["id"] != demo_user_id(u["username"])]
    if strangers:
        raise SeedError(
            f"users {strangers} exist with other ids than the demo data expects; "
            "start from a clean var/ (make clean)"
        )
    if plan.profile == "dev":
        write_atomically(layout.credentials_file, json.dumps({"users": users}, indent=2) + "\n")
        layout.credentials_file.chmod(0o600)
