"""What every candidate proxy does and how it is told where: the job's constants and the
command line they share (`--port P --upstream URL`).

Stdlib only: each candidate process imports this and its own stack, nothing else.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "FORWARDED_HEADER",
    "HOST",
    "POOL_IDLE_S",
    "UPSTREAM_TIMEOUT_S",
    "JobArgs",
    "asgi_target",
    "parse_args",
]

HOST = "127.0.0.1"
# The one request header every candidate passes on (the job of a token-checking proxy).
FORWARDED_HEADER = "authorization"
# Pooled upstream connections idle longer than this are not reused: below uvicorn's own
# keep-alive timeout (5 s), as the gateway's pool_idle_timeout_s is, so no candidate
# writes on a connection the upstream is closing.
POOL_IDLE_S = 4.0
UPSTREAM_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class JobArgs:
    port: int
    upstream: str  # http://host:port, no trailing slash
    upstream_host: str
    upstream_port: int


def _upstream(text: str) -> tuple[str, str, int]:
    parts = urlsplit(text)
    if parts.scheme != "http" or not parts.hostname or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(f"expected http://host:port, got {text!r}")
    port = parts.port or 80
    return f"http://{parts.hostname}:{port}", parts.hostname, port


def parse_args(description: str, argv: Sequence[str] | None = None) -> JobArgs:
    """The candidate's command line; exits (as argparse does) on --help or bad input."""
    parser = argparse.ArgumentParser(
        description=description
        + f" Listens on {HOST}:PORT (HTTP/1.1 keep-alive), forwards GET requests with their "
        "Authorization header to UPSTREAM over a keep-alive pool made once at start, and "
        "answers with the upstream's status, content-type and body. One process, one worker.",
    )
    parser.add_argument("--port", type=int, required=True, help="port to listen on")
    parser.add_argument(
        "--upstream", type=_upstream, required=True, help="the upstream, http://host:port"
    )
    namespace = parser.parse_args(argv)
    base, host, port = namespace.upstream
    return JobArgs(port=namespace.port, upstream=base, upstream_host=host, upstream_port=port)


def asgi_target(scope: Mapping[str, Any]) -> str:
    """The request target to send upstream: the path as the client sent it (still
    percent-encoded) and its query."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    query: bytes = scope["query_string"]
    return (raw + b"?" + query if query else raw).decode("latin-1")
