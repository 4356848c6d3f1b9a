"""The pure parts of `flotilla bench gateway`: wrk output, ratios, targets, nginx config."""

from __future__ import annotations

from pathlib import Path

import pytest

from flotilla_cli.bench.gateway import summarise, target_met
from flotilla_cli.bench.harness import LoadResult, nginx_config, parse_wrk
from flotilla_kit.tls import CertificatePaths

WRK_OUTPUT = """Running 3s test @ http://127.0.0.1:41234/api/v1/auth/me
  2 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     5.78ms    2.01ms  40.12ms   90.00%
    Req/Sec     4.48k   312.00     5.01k    70.00%
  Latency Distribution
     50%  512.00us
     75%    6.10ms
     90%    7.20ms
     99%    1.02s
  26718 requests in 3.00s, 4.31MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   8906.12
Transfer/sec:      1.44MB
"""


def test_parse_wrk_reads_throughput_percentiles_and_errors() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert result == LoadResult(
        rps=8906.1, p50_ms=0.512, p99_ms=1020.0, requests=26718, errors=10, seconds=3.0
    )


def test_parse_wrk_without_errors_counts_none() -> None:
    clean = "\n".join(
        line for line in WRK_OUTPUT.splitlines() if "errors" not in line and "Non-2xx" not in line
    )
    assert parse_wrk(clean).errors == 0


def test_parse_wrk_refuses_output_without_latency_distribution() -> None:
    with pytest.raises(ValueError, match="unexpected wrk output"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_with_cpu_is_microseconds_per_request() -> None:
    result = LoadResult(rps=1.0, p50_ms=1.0, p99_ms=2.0, requests=4000, errors=0, seconds=1.0)
    measured = result.with_cpu(0.5, app_s=0.2, load_s=0.1, busy_cores=1.8765)
    assert measured.cpu_us_per_req == 125.0
    assert measured.app_cpu_us_per_req == 50.0
    assert measured.load_cpu_us_per_req == 25.0
    assert measured.busy_cores == 1.88
    assert result.with_cpu(None).cpu_us_per_req is None  # a direct case: no proxy
    assert LoadResult(0, 0, 0, 0, 0, 1).with_cpu(1.0).cpu_us_per_req is None


def _case(rps: float, p50: float, cpu: float | None = None) -> dict[str, float | None]:
    return {"rps": rps, "p50_ms": p50, "p99_ms": p50 * 3, "cpu_us_per_req": cpu}


def test_summarise_computes_the_ratios() -> None:
    summary = summarise(
        {
            "fastapi_direct": _case(4000, 10.0),
            "fastapi_gateway": _case(3800, 10.5, 80.0),
            "minimal_direct": _case(10000, 4.0),
            "minimal_gateway": _case(9000, 4.25, 60.0),
            "minimal_nginx": _case(9500, 4.1, 30.0),
            "minimal_direct_1c": _case(8000, 0.125),
            "minimal_gateway_1c": _case(3000, 0.3, 150.0),
            "minimal_nginx_1c": _case(5000, 0.2, 60.0),
        }
    )
    assert summary == {
        "ratio_fastapi": 0.95,
        "ratio_minimal": 0.9,
        "ratio_minimal_nginx": 0.95,
        "added_p50_ms": 0.25,
        "added_p50_ms_nginx": 0.1,
        "added_p50_ms_unloaded": 0.175,
        "added_p50_ms_unloaded_nginx": 0.075,
        "cpu_us_per_req": {"gateway": 60.0, "nginx": 30.0},
        "cpu_vs_nginx": 2.0,
    }


def test_summarise_leaves_missing_cases_out() -> None:
    summary = summarise({"minimal_gateway": _case(9000, 4.25, 60.0)})
    assert summary["ratio_minimal"] is None
    assert summary["added_p50_ms"] is None
    assert summary["cpu_vs_nginx"] is None


@pytest.mark.parametrize(
    ("metric", "value", "met"),
    [
        ("ratio_minimal", 0.7, True),
        ("ratio_minimal", 0.69, False),
        ("added_p50_ms", 1.0, True),
        ("added_p50_ms", 1.01, False),
        ("cpu_vs_nginx", None, None),
        ("unknown", 1.0, None),
    ],
)
def test_target_met(metric: str, value: float | None, met: bool | None) -> None:
    assert target_met(metric, value) is met


def test_nginx_config_is_one_process_with_upstream_keepalive(tmp_path: Path) -> None:
    pki = CertificatePaths(cert=tmp_path / "c.pem", key=tmp_path / "k.pem", ca=tmp_path / "ca")
    config = nginx_config(tmp_path, 9000, 9001, 9002, pki)
    for needed in (
        "daemon off;",
        "master_process off;",
        "access_log off;",
        "server 127.0.0.1:9000; keepalive 32;",
        "proxy_http_version 1.1;",
        'proxy_set_header Connection "";',
        "listen 127.0.0.1:9001;",
        "listen 127.0.0.1:9002 ssl;",
        f"ssl_certificate {tmp_path / 'c.pem'};",
    ):
        assert needed in config
