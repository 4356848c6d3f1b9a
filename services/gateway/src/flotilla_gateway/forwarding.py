"""Who the client is when the gateway sits behind proxies it trusts (an ingress, a load
balancer): the address those proxies put in `X-Forwarded-For`.

The header is believed only on connections from a trusted peer, and only as far as the
chain of trusted proxies reaches: walking it from the right (the hop nearest the gateway),
the client is the first address that is not itself a trusted proxy. Whatever a client
wrote further left is ignored, so no one can choose the address their rate limits and
failed logins are counted against. From any other peer the header is dropped, as before.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

__all__ = ["TrustedProxies"]


class TrustedProxies:
    def __init__(self, networks: Iterable[IPv4Network | IPv6Network]) -> None:
        self._networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self._networks)

    def trusts(self, address: str) -> bool:
        try:
            ip = _address(address)
        except ValueError:
            return False
        return self._trusts(ip)

    def client(self, peer: str, forwarded_for: bytes) -> str:
        """The client's address, from a trusted `peer` that sent `forwarded_for` (the
        values of every X-Forwarded-For field, joined by commas)."""
        client = peer
        for hop in reversed(forwarded_for.split(b",")):
            try:
                ip = _address(hop.strip().decode("ascii"))
            except (ValueError, UnicodeDecodeError):
                break  # junk: nothing left of it can be believed
            client = str(ip)
            if not self._trusts(ip):
                break
        return client

    def _trusts(self, ip: IPv4Address | IPv6Address) -> bool:
        return any(ip in network for network in self._networks)


def _address(text: str) -> IPv4Address | IPv6Address:
    ip = ipaddress.ip_address(text)
    if isinstance(ip, IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip
