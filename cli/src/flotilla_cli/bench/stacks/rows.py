"""The rows of `flotilla bench stacks`: the five candidate proxies (each a module of this
package, run as its own process) and the three references measured in the same run.
Stdlib only."""

from __future__ import annotations

import sys
from dataclasses import dataclass

__all__ = ["CANDIDATES", "REFERENCES", "ROWS", "Candidate", "Row"]


@dataclass(frozen=True)
class Row:
    key: str
    stack: str
    server: str
    client: str


@dataclass(frozen=True)
class Candidate(Row):
    def command(self, port: int, upstream: str) -> list[str]:
        """The command line that runs this candidate as a process of its own."""
        return [
            sys.executable, "-m", f"flotilla_cli.bench.stacks.{self.key}",
            "--port", str(port), "--upstream", upstream,
        ]  # fmt: skip


# Every Python server here runs on uvloop; uvicorn with its httptools parser.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("starlette_httpx", "Starlette + httpx", "uvicorn + Starlette", "httpx"),
    Candidate("starlette_aiohttp", "Starlette + aiohttp", "uvicorn + Starlette", "aiohttp"),
    Candidate("aiohttp_aiohttp", "aiohttp + aiohttp", "aiohttp.web", "aiohttp"),
    Candidate("granian_aiohttp", "granian + aiohttp", "granian (RSGI)", "aiohttp"),
    Candidate("bare_httptools", "bare httptools", "Protocol + httptools", "Protocol + httptools"),
)

REFERENCES: tuple[Row, ...] = (
    Row("direct", "direct (no proxy)", "uvicorn, minimal app", "-"),
    Row("nginx", "nginx", "nginx, 1 process", "keep-alive pool"),
    Row("gateway", "Flotilla gateway", "gateway, all features", "gateway pool"),
)

# In the order they run and are shown: the references first, then the candidates.
ROWS: dict[str, Row] = {row.key: row for row in (*REFERENCES, *CANDIDATES)}
