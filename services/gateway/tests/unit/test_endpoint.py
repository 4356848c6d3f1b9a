from __future__ import annotations

import pytest

from flotilla_gateway.upstream import ConnectionPool, Endpoint


def test_endpoints_parse_scheme_host_port_and_authority() -> None:
    plain = Endpoint.parse("http://127.0.0.1:8001")
    assert (plain.host, plain.port, plain.tls, plain.authority) == (
        "127.0.0.1",
        8001,
        False,
        b"127.0.0.1:8001",
    )
    secure = Endpoint.parse("https://accounts.internal")
    assert (secure.host, secure.port, secure.tls, secure.authority) == (
        "accounts.internal",
        443,
        True,
        b"accounts.internal",
    )
    v6 = Endpoint.parse("http://[::1]:9000/")
    assert (v6.host, v6.port, v6.authority) == ("::1", 9000, b"[::1]:9000")


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:80", "http://", "unix:///tmp/s"])
def test_other_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError, match="http"):
        Endpoint.parse(url)


def test_https_endpoints_need_a_client_context() -> None:
    with pytest.raises(ValueError, match="TLS"):
        ConnectionPool(
            Endpoint.parse("https://127.0.0.1:1"),
            ssl_context=None,
            connect_timeout_s=1,
            max_idle=1,
            idle_timeout_s=1,
            max_response_bytes=1,
        )
