"""Free TCP ports on loopback."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

__all__ = ["free_port", "port_is_free", "stable_port"]

_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")
_STABLE_LOW = 20_000


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out and released; another process could take it,
    so callers bind it promptly."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a server could listen on `port` now (a port in TIME_WAIT counts as free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        return int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768  # Linux's default


def stable_port(host: str = "127.0.0.1") -> int:
    """A free port below the kernel's ephemeral range, for a server that stops and starts
    again on the same port: while it is down, no bind(0) and no outgoing connection (not
    even a client reconnecting to it, which can end up connected to itself) is handed
    that port, as they would be one from `free_port`."""
    high = max(_ephemeral_low(), _STABLE_LOW + 1_000)
    for _ in range(200):
        port = _STABLE_LOW + secrets.randbelow(high - _STABLE_LOW)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free port between {_STABLE_LOW} and {high}")
