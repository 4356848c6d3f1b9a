"""`flotilla chaos bank` and `flotilla chaos shop`: a fresh system under killed processes,
then its invariants checked; both in `chaos_app`."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from flotilla_cli.chaos.bank import ChaosOptions, run_bank_chaos
from flotilla_cli.chaos.report import finish_chaos_run
from flotilla_cli.chaos.shop import ShopChaosOptions, run_shop_chaos
from flotilla_cli.launcher.planning import Database
from flotilla_cli.options import DatabaseOption

__all__ = ["chaos_app"]

console = Console()
chaos_app = typer.Typer(
    help="Fault injection against a fresh system.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)

# Options both runs take.
Seed = Annotated[int, typer.Option(help="Makes the run's choices repeatable.")]
JsonReport = Annotated[Path | None, typer.Option("--json", help="Write the report here.")]
RunVarDir = Annotated[
    Path | None,
    typer.Option(help="Run the system here (kept afterwards). Default: a temporary one."),
]
Keep = Annotated[bool, typer.Option(help="Keep the temporary var/ for a post-mortem.")]


@chaos_app.command("bank")
def chaos_bank(
    transfers: Annotated[int, typer.Option(min=1, help="Transfers to send.")] = 2000,
    kills: Annotated[int, typer.Option(min=0, help="Processes to SIGKILL meanwhile.")] = 10,
    seed: Seed = 1,
    fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.1,
            help="Chance, per transfer and crash point, that a coordinator exits at once "
            "(os._exit, as kill -9). 0 injects none.",
        ),
    ] = 0.002,
    db: DatabaseOption = Database.sqlite,
    json_file: JsonReport = None,
    var_dir: RunVarDir = None,
    keep: Keep = False,
) -> None:
    """Transfers under killed processes, then the bank's invariants.

    Start a fresh system (2 shards, 2 instances each, 2 coordinators), send concurrent
    transfers through the gateway while killing processes and crashing coordinators at
    their fault points, then check every invariant. Exit 1 if one does not hold."""
    options = ChaosOptions(
        transfers=transfers, kills=kills, seed=seed, fault_rate=fault_rate, database=db.value,
        var_dir=var_dir, keep=keep,
    )  # fmt: skip
    report = asyncio.run(run_bank_chaos(options, console))
    finish_chaos_run(console, report, title="Bank invariants after the storm", json_file=json_file)


@chaos_app.command("shop")
def chaos_shop(
    orders: Annotated[int, typer.Option(min=1, help="Checkouts to send.")] = 300,
    kills: Annotated[
        int,
        typer.Option(
            min=0,
            help="Processes to SIGKILL meanwhile, chosen at random (orders, inventory, "
            "payments, billing, their relays).",
        ),
    ] = 8,
    billing_kills: Annotated[
        int,
        typer.Option(
            min=0,
            help="SIGKILLs of billing instances (their inbox consumers with them) on top of "
            "--kills, so the invoices are tested under kills whatever the draw.",
        ),
    ] = 2,
    concurrency: Annotated[int, typer.Option(min=1, max=128, help="Orders in flight.")] = 16,
    seed: Seed = 1,
    fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.1,
            help="Chance, per saga step and orders fault point, that an orders instance "
            "exits at once (os._exit, as kill -9). 0 injects none.",
        ),
    ] = 0.01,
    payments_fault_rate: Annotated[
        float,
        typer.Option(
            min=0.0,
            max=0.1,
            help="The same for the payments coordinator's fault points. 0 injects none.",
        ),
    ] = 0.0,
    db: DatabaseOption = Database.sqlite,
    json_file: JsonReport = None,
    var_dir: RunVarDir = None,
    keep: Keep = False,
) -> None:
    """Checkouts under killed instances, then the shop's invariants.

    Start a fresh system, send concurrent checkouts through the gateway (some out of
    stock, some unaffordable, some sent twice with one Idempotency-Key) while killing
    orders, inventory, payments and billing instances and their relays and crashing the
    orders saga at its fault points; then read every database and check the shop's
    invariants (billing's: one invoice per confirmed order, numbers without a gap).
    Exit 1 if one does not hold."""
    options = ShopChaosOptions(
        orders=orders, kills=kills, billing_kills=billing_kills, concurrency=concurrency,
        seed=seed, fault_rate=fault_rate, payments_fault_rate=payments_fault_rate,
        database=db.value, var_dir=var_dir, keep=keep,
    )  # fmt: skip
    report = asyncio.run(run_shop_chaos(options, console))
    finish_chaos_run(console, report, title="Shop invariants after the storm", json_file=json_file)
