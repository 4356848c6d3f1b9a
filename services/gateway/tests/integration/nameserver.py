"""A nameserver on 127.0.0.1 for tests: UDP, answers the test sets, built on `dns.message`.

It answers A and AAAA questions for the names it was given, NXDOMAIN for any other name,
and for a name put in trouble either SERVFAIL or no reply at all (the resolver times out).
Every question is recorded, so a test can await the one it cares about instead of sleeping.
"""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Literal, cast

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

_Trouble = Literal["servfail", "drop"]


def _key(name: str) -> str:
    return name.removesuffix(".").lower()


class Nameserver(asyncio.DatagramProtocol):
    """Start with `await Nameserver.start()`; `port` is where it listens."""

    def __init__(self) -> None:
        self._records: dict[str, list[str]] = {}
        self._trouble: dict[str, _Trouble] = {}
        self._transport: asyncio.DatagramTransport | None = None
        self.port = 0
        # Questions received, (name, type), and those left without a reply.
        self.questions: list[tuple[str, str]] = []
        self.dropped: list[tuple[str, str]] = []
        self._asked = asyncio.Event()

    @classmethod
    async def start(cls) -> Nameserver:
        server = cls()
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: server, local_addr=("127.0.0.1", 0)
        )
        server._transport = transport
        server.port = transport.get_extra_info("sockname")[1]
        return server

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def answer(self, name: str, *addresses: str) -> None:
        """`name` resolves to `addresses` (none: the name exists, with no records)."""
        for address in addresses:
            ipaddress.ip_address(address)
        self._records[_key(name)] = list(addresses)
        self._trouble.pop(_key(name), None)

    def nxdomain(self, name: str) -> None:
        """`name` does not exist (a headless Service with no ready pod)."""
        self._records.pop(_key(name), None)
        self._trouble.pop(_key(name), None)

    def servfail(self, name: str) -> None:
        self._trouble[_key(name)] = "servfail"

    def drop(self, name: str) -> None:
        """Questions about `name` get no reply: the resolver asking times out."""
        self._trouble[_key(name)] = "drop"

    async def asked(self, name: str, count: int = 1) -> None:
        """Return once `count` questions about `name` have arrived in all."""
        while sum(1 for asked, _ in self.questions if asked == _key(name)) < count:
            self._asked.clear()
            await self._asked.wait()

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        query = dns.message.from_wire(data)
        question = query.question[0]
        name = _key(question.name.to_text())
        record_type = dns.rdatatype.to_text(question.rdtype)
        self.questions.append((name, record_type))
        self._asked.set()
        trouble = self._trouble.get(name)
        if trouble == "drop":
            self.dropped.append((name, record_type))
            return
        response = cast(dns.message.QueryMessage, dns.message.make_response(query))
        response.flags |= dns.flags.AA
        if trouble == "servfail":
            response.set_rcode(dns.rcode.SERVFAIL)
        elif name not in self._records:
            response.set_rcode(dns.rcode.NXDOMAIN)
        else:
            version = {"A": 4, "AAAA": 6}.get(record_type)
            found = [a for a in self._records[name] if ipaddress.ip_address(a).version == version]
            if found:
                response.answer.append(
                    dns.rrset.from_text_list(
                        question.name, 5, dns.rdataclass.IN, question.rdtype, found
                    )
                )
        assert self._transport is not None
        self._transport.sendto(response.to_wire(), addr)
