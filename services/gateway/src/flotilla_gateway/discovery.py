"""Upstream instances from DNS: the A and AAAA records of Kubernetes headless Services.

A headless Service's name resolves to the IPs of its ready pods, so a pod that starts
appears once its readiness probe passes, and a draining pod leaves by itself. Every
`refresh_s` each configured name is resolved again and a new `Topology` is built; the
gateway polls it like the topology file (`TopologySource`) and applies the difference.

A name's answer is all or nothing. NXDOMAIN or an empty answer means the Service has no
ready pod: its instances go. Anything else that fails (a timeout, SERVFAIL, a refused or
unreachable nameserver) says nothing about the pods, so the name keeps its last known
instances and one warning is logged per outage: a DNS hiccup never empties the gateway.
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Literal

import dns.asyncresolver
import dns.resolver

from flotilla_gateway.settings import DnsTarget
from flotilla_gateway.topology import TopologyChange, diff
from flotilla_kit.logs import get_logger
from flotilla_kit.topology import Instance, Topology

__all__ = ["DnsDiscovery", "RecordType", "Resolve", "dns_resolver"]

_log = get_logger("flotilla.gateway.discovery")

RecordType = Literal["A", "AAAA"]

Resolve = Callable[[str, RecordType], Awaitable[Sequence[str]]]
"""The addresses of one record type of a name. Raises dnspython's exceptions:
`NXDOMAIN` and `NoAnswer` mean "no such records"; anything else is a failed lookup."""

_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Answers that say the Service has no ready pod (for this family), not that DNS failed.
_NO_RECORDS = (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer)


def dns_resolver(*, nameservers: Sequence[str], port: int, timeout_s: float) -> Resolve:
    """A `Resolve` on dnspython's asyncio resolver; no nameservers: the system's."""
    resolver = dns.asyncresolver.Resolver(configure=not nameservers)
    # Read when a query is sent, for configured and system nameservers alike.
    resolver.port = port
    if nameservers:
        resolver.nameservers = list(nameservers)
    resolver.timeout = timeout_s
    resolver.lifetime = timeout_s
    # No cache: every round must see the pods that are ready now.
    resolver.cache = None

    async def resolve(name: str, record_type: RecordType) -> Sequence[str]:
        # The search list applies as for any program in the pod, so `auth.flotilla.svc`
        # works; a trailing dot makes a name absolute.
        answer = await resolver.resolve(name, record_type, search=True)
        return [rdata.to_text() for rdata in answer]

    return resolve


def _sort_key(address: _Address) -> tuple[int, int]:
    return (address.version, int(address))


def _instance(service: str, target: DnsTarget, address: _Address) -> Instance:
    ip = str(address)
    host = f"[{ip}]" if address.version == 6 else ip
    name = f"{service}-{ip}" if target.shard is None else f"{service}-s{target.shard}-{ip}"
    return Instance(
        name=name,
        url=f"{target.scheme}://{host}:{target.port}",
        shard=target.shard,
        # The pods' certificates name the Service, not their IPs.
        tls_name=target.host.removesuffix("."),
    )


class DnsDiscovery:
    """Resolves the configured headless Services every `refresh_s`; `poll()` tells what
    changed since the last poll, as `TopologyWatcher.poll()` does for the file."""

    def __init__(
        self,
        services: Mapping[str, Sequence[DnsTarget]],
        resolve: Resolve,
        *,
        refresh_s: float,
    ) -> None:
        self._services = {name: tuple(targets) for name, targets in services.items()}
        self._resolve = resolve
        self._refresh_s = refresh_s
        # Each name is looked up once per round, however many targets share it.
        self._names = tuple(
            dict.fromkeys(target.host for targets in self._services.values() for target in targets)
        )
        # The last good answer of each name: what a failed lookup keeps.
        self._known: dict[str, tuple[_Address, ...]] = {}
        # Names whose last lookup failed (an outage is logged once, when it begins).
        self._failing: set[str] = set()
        self._conflicts_logged: set[str] = set()
        self.current = Topology()
        self._latest = self.current
        # Rounds completed; `refreshed()` waits for the next one.
        self.rounds = 0
        self._round_done = asyncio.Event()

    @property
    def failing(self) -> frozenset[str]:
        """Names whose last lookup failed and which keep their last known instances."""
        return frozenset(self._failing)

    def poll(self) -> TopologyChange | None:
        """The change since the last poll, or None when there is none."""
        latest = self._latest
        if latest is self.current:
            return None
        change = diff(self.current, latest)
        self.current = latest
        return change or None

    async def run(self) -> None:
        """Resolve every name now and then every `refresh_s`, until cancelled."""
        while True:
            try:
                await self.refresh()
            except Exception:  # discovery must outlive one bad round
                _log.exception("DNS discovery round failed")
            await asyncio.sleep(self._refresh_s)

    async def refreshed(self) -> None:
        """Return when the next round ends (a round in progress counts)."""
        await self._round_done.wait()

    async def refresh(self) -> None:
        """One round: resolve every name (concurrently) and build the new topology."""
        results = await asyncio.gather(*(self._lookup(name) for name in self._names))
        for name, result in zip(self._names, results, strict=True):
            if isinstance(result, Exception):
                self._lookup_failed(name, result)
            else:
                if name in self._failing:
                    self._failing.discard(name)
                    _log.info("DNS lookup answers again", **{"dns.question.name": name})
                self._known[name] = result
        self._latest = self._build()
        self.rounds += 1
        done, self._round_done = self._round_done, asyncio.Event()
        done.set()

    async def _lookup(self, name: str) -> tuple[_Address, ...] | Exception:
        """The name's addresses (sorted, without duplicates), or why the lookup failed."""
        answers = await asyncio.gather(
            self._resolve(name, "A"), self._resolve(name, "AAAA"), return_exceptions=True
        )
        addresses: set[_Address] = set()
        for answer in answers:
            if isinstance(answer, _NO_RECORDS):
                continue
            if isinstance(answer, Exception):
                # One family failing is enough: a partial answer could drop live pods.
                return answer
            if isinstance(answer, BaseException):  # cancelled: the gateway is stopping
                raise answer
            try:
                addresses.update(ipaddress.ip_address(text) for text in answer)
            except ValueError as error:
                return error
        return tuple(sorted(addresses, key=_sort_key))

    def _lookup_failed(self, name: str, error: Exception) -> None:
        if name in self._failing:
            return
        self._failing.add(name)
        _log.warning(
            "DNS lookup failed; keeping the last known instances",
            **{"dns.question.name": name},
            instances=len(self._known.get(name, ())),
            error=f"{type(error).__name__}: {error}",
        )

    def _build(self) -> Topology:
        services: dict[str, list[Instance]] = {}
        for service, targets in self._services.items():
            # By shard, then by address as a number (10.0.0.9 before 10.0.0.10), whatever
            # order the nameserver answered in: the topology only changes with the pods.
            chosen: dict[str, tuple[tuple[int, int, int], Instance]] = {}
            for target in targets:
                shard = -1 if target.shard is None else target.shard
                for address in self._known.get(target.host, ()):
                    instance = _instance(service, target, address)
                    order = (shard, *_sort_key(address))
                    kept = chosen.setdefault(instance.name, (order, instance))[1]
                    # The same pod behind two Services: one instance, the first target's.
                    if kept.url != instance.url:
                        self._conflict(service, kept, instance)
            services[service] = [i for _, i in sorted(chosen.values(), key=lambda pair: pair[0])]
        return Topology(services=services)

    def _conflict(self, service: str, kept: Instance, other: Instance) -> None:
        # Two Services of one service list the same pod under different ports or
        # schemes; names must be unique, so the first target listed wins.
        if kept.name in self._conflicts_logged:
            return
        self._conflicts_logged.add(kept.name)
        _log.warning(
            "one pod listed twice with different ports; keeping the first",
            **{"upstream.instance": kept.name},
            service=service,
            kept=kept.url,
            ignored=other.url,
        )
