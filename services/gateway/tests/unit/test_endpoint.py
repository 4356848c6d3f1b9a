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


def test_the_server_name_is_the_host_unless_given() -> None:
    assert Endpoint.parse("https://accounts.internal:8443").server_name == "accounts.internal"
    assert Endpoint.parse("https://[fd00::5]:8443").server_name == "fd00::5"
    pod = Endpoint.parse("https://10.0.0.5:8443", server_name="accounts.flotilla.svc")
    assert (pod.host, pod.server_name) == ("10.0.0.5", "accounts.flotilla.svc")
    # The request still goes to the pod: Host and authority are the URL's.
    assert pod.authority == b"10.0.0.5:8443"
