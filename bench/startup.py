"""How long `flotilla up` takes to all-ready, and what each instance costs at rest.

Run 1 starts from an empty var/ (certificates, databases, migrations and demo data are
made); later runs reuse it. After each start the system idles a few seconds before memory
is read, so the figures are those of an idle instance. Prints a table, writes JSON; it
asserts nothing about speed.

    .venv/bin/python bench/startup.py --runs 3 --json bench/results/startup.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from flotilla_cli.machine import machine
from flotilla_kit.devservers import free_port

console = Console()


def _flotilla(var_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "flotilla_cli", *args, "--var-dir", str(var_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )


def _one_run(var_dir: Path, instances: int, db: str, idle_s: float) -> dict[str, Any]:
    port = free_port()
    began = time.perf_counter()
    started = _flotilla(
        var_dir, "up", "--detach", "--instances", str(instances), "--db", db,
        "--gateway-port", str(port),
    )  # fmt: skip
    wall_s = time.perf_counter() - began
    if started.returncode != 0:
        raise SystemExit(f"flotilla up failed:\n{started.stdout}\n{started.stderr}")
    try:
        time.sleep(idle_s)  # a benchmark, not a test: let the system settle at rest
        status = json.loads(_flotilla(var_dir, "status", "--json").stdout)
    finally:
        _flotilla(var_dir, "down")
    memory = {
        i["name"]: {"rss_mib": i["rss_bytes"] / 2**20, "uss_mib": i["uss_bytes"] / 2**20}
        for i in status["instances"]
    }
    return {
        "up_to_ready_s": round(wall_s, 2),
        "supervisor_ready_s": round(status["ready_at"] - status["started_at"], 2),
        "memory": memory,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument(
        "--idle", type=float, default=5.0, help="seconds at rest before reading memory"
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    var_dir = Path(tempfile.mkdtemp(prefix="flotilla-bench-"))
    var_dir.chmod(0o755)
    runs = []
    with console.status("starting") as status:
        for n in range(args.runs):
            status.update(f"run {n + 1}/{args.runs}: flotilla up --detach --db {args.db}")
            run = _one_run(var_dir, args.instances, args.db, args.idle)
            run["kind"] = "cold (empty var/)" if n == 0 else "warm (existing var/)"
            runs.append(run)

    services = sorted({name.rsplit("-", 1)[0] for name in runs[0]["memory"]})
    table = Table(title=f"flotilla up -> all ready, {args.instances} instances/service, {args.db}")
    table.add_column("run")
    table.add_column("kind")
    table.add_column("up -> ready (s)", justify="right")
    for service in services:
        table.add_column(f"{service} RSS/USS MiB", justify="right")
    for n, run in enumerate(runs, 1):
        cells = []
        for service in services:
            mine = [m for name, m in run["memory"].items() if name.rsplit("-", 1)[0] == service]
            rss = statistics.median(m["rss_mib"] for m in mine)
            uss = statistics.median(m["uss_mib"] for m in mine)
            cells.append(f"{rss:.0f} / {uss:.0f}")
        table.add_row(str(n), run["kind"], f"{run['up_to_ready_s']:.1f}", *cells)
    console.print(table)
    info = machine()
    console.print(f"machine: {info}")
    result = {
        "benchmark": "startup",
        "machine": info,
        "db": args.db,
        "instances": args.instances,
        "runs": runs,
    }
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
        console.print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
