"""Ports for test servers: a stable one (for a server restarted on it) is free and outside
the range the kernel hands out by itself."""

from __future__ import annotations

import socket
from pathlib import Path

from flotilla_kit.devservers import free_port, port_is_free, stable_port


def test_a_stable_port_is_free_and_below_the_ephemeral_range() -> None:
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    for _ in range(20):
        port = stable_port()
        assert 20_000 <= port < low
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # still free: nothing kept it


def test_a_free_port_is_one_the_kernel_hands_out() -> None:
    low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    assert low <= free_port() <= high


def test_a_port_a_server_listens_on_is_not_free() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        port = server.getsockname()[1]
        assert not port_is_free(port)
    assert port_is_free(port)  # closed: free again
