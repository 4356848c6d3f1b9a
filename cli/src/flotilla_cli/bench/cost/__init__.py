"""`flotilla bench cost`: what an account read, a local transfer, a cross-shard (2PC)
transfer and an order cost the whole system, through the gateway, on a fresh system.

For each operation in turn, at a fixed concurrency (16; 8 for orders), after a warm-up:
operations per second, p50/p99 latency, and the server CPU per operation: the user +
system CPU time of every process of the system (services, relays, gateway, supervisor,
NATS, PostgreSQL) during the measured seconds, divided by the operations completed, in
total and per process group. Before the load, the system's idle CPU over 10 s. The load
generator's CPU is not counted (it shares the two cores, so it is kept cheap).

A benchmark, not a test: it prints a table and writes JSON with the machine and its load
average, and asserts nothing about speed; the targets are printed next to the results.
"""

from flotilla_cli.bench.cost.report import TARGETS, render
from flotilla_cli.bench.cost.run import BenchOptions, run_cost_bench

__all__ = ["TARGETS", "BenchOptions", "render", "run_cost_bench"]
