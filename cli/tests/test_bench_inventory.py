"""The pure parts of `flotilla bench inventory`: quantiles, per-reservation CPU, ratios,
targets and the table."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from flotilla_cli.bench.inventory import (
    MODES,
    ModeResult,
    quantile_ms,
    render,
    summarise,
    target_met,
)


def test_quantiles_are_nearest_rank_below_in_milliseconds() -> None:
    ordered = [i / 1000 for i in range(1, 101)]  # 1 ms .. 100 ms
    assert quantile_ms(ordered, 0.5) == 50.0
    assert quantile_ms(ordered, 0.99) == 99.0
    assert quantile_ms([0.0042], 0.99) == 4.2
    assert quantile_ms([], 0.5) is None


def test_a_mode_summary_counts_rate_and_cpu_per_reservation() -> None:
    result = ModeResult(
        "rest", latencies_s=[0.002, 0.001, 0.003, 0.004], errors=1, seconds=2.0,
        server_cpu_s=0.02, client_cpu_s=0.004, error_sample="RuntimeError('x')",
    )  # fmt: skip
    assert result.summary() == {
        "mode": "rest",
        "reservations": 4,
        "reservations_per_s": 2.0,
        "p50_ms": 2.0,
        "p99_ms": 3.0,
        "errors": 1,
        "error_sample": "RuntimeError('x')",
        "seconds": 2.0,
        "server_cpu_us_per_reservation": 5000.0,
        "client_cpu_us_per_reservation": 1000.0,
    }


def test_an_empty_mode_has_no_rate_nor_cpu() -> None:
    summary = ModeResult("grpc_stream", server_cpu_s=1.0).summary()
    assert (summary["reservations_per_s"], summary["p50_ms"]) == (0.0, None)
    assert summary["server_cpu_us_per_reservation"] is None


def _modes(rest: float, unary: float, stream: float) -> dict[str, dict[str, Any]]:
    return {
        "rest": {"reservations_per_s": rest},
        "grpc_unary": {"reservations_per_s": unary},
        "grpc_stream": {"reservations_per_s": stream},
    }


def test_ratios_are_stream_and_unary_against_rest() -> None:
    assert summarise(_modes(100.0, 85.0, 270.0)) == {
        "ratio_grpc_rest": 2.7,
        "ratio_unary_rest": 0.85,
    }


def test_a_missing_or_idle_mode_gives_no_ratio() -> None:
    assert summarise({"grpc_stream": {"reservations_per_s": 10.0}}) == {
        "ratio_grpc_rest": None,
        "ratio_unary_rest": None,
    }
    assert summarise(_modes(0.0, 5.0, 5.0))["ratio_grpc_rest"] is None


def test_the_target_is_two_and_only_printed() -> None:
    assert target_met("ratio_grpc_rest", 2.0) is True
    assert target_met("ratio_grpc_rest", 1.99) is False
    assert target_met("ratio_grpc_rest", None) is None
    assert target_met("ratio_unary_rest", 0.5) is None  # no target


def test_the_table_shows_every_mode_the_ratios_and_the_machine() -> None:
    modes = {
        key: ModeResult(
            key, [0.001] * 10, seconds=1.0, server_cpu_s=0.01, client_cpu_s=0.001
        ).summary()
        for key in MODES
    }
    report = {
        "work": "reserve 1 unit of 1 product, then release it",
        "options": {"concurrency": 16, "duration_s": 10.0, "warmup_s": 2.0},
        "modes": modes,
        "machine": {"cpus": 2},
        **summarise(modes),
    }
    console = Console(width=120, record=True)
    render(report, console)
    text = console.export_text()
    for label in MODES.values():
        assert label in text
    assert "ratio_grpc_rest: 1.0 (target >= 2.0: not met)" in text
    assert "ratio_unary_rest: 1.0" in text
    assert "machine: {'cpus': 2}" in text
