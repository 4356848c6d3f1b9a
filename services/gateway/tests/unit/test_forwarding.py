"""TrustedProxies: which X-Forwarded-For address is the client."""

from __future__ import annotations

from ipaddress import ip_network

from flotilla_gateway.forwarding import TrustedProxies

PROXIES = TrustedProxies([ip_network("10.0.0.0/8"), ip_network("fd00::/8")])


def test_the_client_is_the_nearest_address_that_is_not_a_trusted_proxy() -> None:
    assert PROXIES.client("10.0.0.9", b"203.0.113.7") == "203.0.113.7"
    # Through two proxies of ours: both skipped.
    assert PROXIES.client("10.0.0.9", b"203.0.113.7, 10.1.2.3") == "203.0.113.7"
    # Several X-Forwarded-For fields arrive joined by commas.
    assert PROXIES.client("10.0.0.9", b"203.0.113.7,10.1.2.3") == "203.0.113.7"


def test_what_the_client_wrote_further_left_is_ignored() -> None:
    assert PROXIES.client("10.0.0.9", b"6.6.6.6, 203.0.113.7") == "203.0.113.7"
    assert PROXIES.client("10.0.0.9", b"10.5.5.5, 203.0.113.7") == "203.0.113.7"


def test_junk_stops_the_walk_at_the_last_address_believed() -> None:
    assert PROXIES.client("10.0.0.9", b"not-an-ip") == "10.0.0.9"
    assert PROXIES.client("10.0.0.9", b"203.0.113.7, junk, 10.1.2.3") == "10.1.2.3"
    assert PROXIES.client("10.0.0.9", b"\xff\xfe") == "10.0.0.9"


def test_ipv6_and_ipv4_mapped_addresses() -> None:
    assert PROXIES.client("fd00::1", b"2001:db8::5") == "2001:db8::5"
    assert PROXIES.trusts("::ffff:10.0.0.9")
    assert PROXIES.client("10.0.0.9", b"::ffff:203.0.113.7") == "203.0.113.7"


def test_only_the_listed_networks_are_trusted() -> None:
    assert PROXIES.trusts("10.255.0.1")
    assert not PROXIES.trusts("203.0.113.7")
    assert not PROXIES.trusts("unknown")
    assert not TrustedProxies([])
    assert PROXIES
