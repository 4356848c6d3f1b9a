"""`DnsDiscovery` on a fake DNS: what each answer (or failure) does to the topology."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import Callable, Sequence
from typing import cast

import dns.resolver
import pytest
import structlog

from flotilla_gateway.discovery import DnsDiscovery, RecordType
from flotilla_gateway.settings import DnsTarget
from flotilla_gateway.topology import InstanceRef, TopologyChange
from flotilla_kit.topology import Instance


def dns_error(kind: type[Exception], **details: object) -> Exception:
    """One of dnspython's exceptions (their constructors are untyped)."""
    return cast(Callable[..., Exception], kind)(**details)


_FAMILIES: tuple[tuple[RecordType, int], ...] = (("A", 4), ("AAAA", 6))


class FakeDns:
    """Answers from a table the test changes; a name it does not know is NXDOMAIN."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, RecordType], Sequence[str] | Exception] = {}
        self.asked: list[tuple[str, RecordType]] = []

    def answer(self, name: str, *addresses: str) -> None:
        """`name` has these A and AAAA records (a family without any: NoAnswer)."""
        for record_type, version in _FAMILIES:
            found = [a for a in addresses if ipaddress.ip_address(a).version == version]
            self._records[name, record_type] = found or dns_error(dns.resolver.NoAnswer)

    def nxdomain(self, name: str) -> None:
        self.fail(name, dns_error(dns.resolver.NXDOMAIN))

    def fail(self, name: str, error: Exception, record_type: RecordType | None = None) -> None:
        families: tuple[RecordType, ...] = ("A", "AAAA") if record_type is None else (record_type,)
        for family in families:
            self._records[name, family] = error

    async def resolve(self, name: str, record_type: RecordType) -> Sequence[str]:
        self.asked.append((name, record_type))
        found = self._records.get((name, record_type), dns_error(dns.resolver.NXDOMAIN))
        if isinstance(found, Exception):
            raise found
        return list(found)


def timeout() -> Exception:
    return dns_error(dns.resolver.LifetimeTimeout, timeout=2.0, errors=[])


AUTH = {"auth": [DnsTarget(host="auth.flotilla.svc", port=8443)]}
LEDGER = {
    "accounts": [
        DnsTarget(host="accounts-s1.flotilla.svc", port=8443, shard=1),
        DnsTarget(host="accounts-s0.flotilla.svc", port=8443, shard=0),
    ]
}


def discovery(fake: FakeDns, services: dict[str, list[DnsTarget]]) -> DnsDiscovery:
    return DnsDiscovery(services, fake.resolve, refresh_s=3600)


def names(found: DnsDiscovery, service: str = "auth") -> list[str]:
    """The instances of `service` as of now (`current` is as of the last poll)."""
    found.poll()
    return [i.name for i in found.current.services.get(service, [])]


def ref(
    name: str, url: str, shard: int | None = None, tls: str = "auth.flotilla.svc"
) -> InstanceRef:
    service = name.partition("-")[0]
    return InstanceRef(service, name, url, shard, tls)


async def test_the_records_become_instances_named_by_service_and_ip() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.7", "fd00::a:7")
    found = discovery(fake, AUTH)
    assert found.poll() is None  # nothing resolved yet

    await found.refresh()
    change = found.poll()

    assert change == TopologyChange(
        added=(
            ref("auth-10.1.0.7", "https://10.1.0.7:8443"),
            ref("auth-fd00::a:7", "https://[fd00::a:7]:8443"),
        )
    )
    assert found.current.services["auth"] == [
        Instance(
            name="auth-10.1.0.7",
            url="https://10.1.0.7:8443",
            tls_name="auth.flotilla.svc",
        ),
        Instance(
            name="auth-fd00::a:7",
            url="https://[fd00::a:7]:8443",
            tls_name="auth.flotilla.svc",
        ),
    ]
    assert sorted(fake.asked) == [("auth.flotilla.svc", "A"), ("auth.flotilla.svc", "AAAA")]
    assert found.poll() is None  # told once


async def test_pods_that_come_and_go_are_added_and_removed() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1", "10.1.0.2")
    found = discovery(fake, AUTH)
    await found.refresh()
    found.poll()

    # A pod was replaced: a new IP, the old one gone.
    fake.answer("auth.flotilla.svc", "10.1.0.2", "10.1.0.3")
    await found.refresh()

    assert found.poll() == TopologyChange(
        added=(ref("auth-10.1.0.3", "https://10.1.0.3:8443"),),
        removed=(ref("auth-10.1.0.1", "https://10.1.0.1:8443"),),
    )
    # The same answer again changes nothing.
    await found.refresh()
    assert found.poll() is None


async def test_an_ip_moving_to_another_shard_is_removed_and_added() -> None:
    fake = FakeDns()
    fake.answer("accounts-s0.flotilla.svc", "10.2.0.5")
    fake.answer("accounts-s1.flotilla.svc", "10.2.0.6")
    found = discovery(fake, LEDGER)
    await found.refresh()
    found.poll()

    fake.answer("accounts-s0.flotilla.svc")
    fake.answer("accounts-s1.flotilla.svc", "10.2.0.5", "10.2.0.6")
    await found.refresh()

    assert found.poll() == TopologyChange(
        added=(
            ref("accounts-s1-10.2.0.5", "https://10.2.0.5:8443", 1, "accounts-s1.flotilla.svc"),
        ),
        removed=(
            ref("accounts-s0-10.2.0.5", "https://10.2.0.5:8443", 0, "accounts-s0.flotilla.svc"),
        ),
    )


async def test_each_shard_has_its_service_and_instances_sort_by_shard() -> None:
    fake = FakeDns()
    fake.answer("accounts-s0.flotilla.svc", "10.2.0.9")
    fake.answer("accounts-s1.flotilla.svc", "10.2.0.1")
    found = discovery(fake, LEDGER)
    await found.refresh()
    found.poll()

    assert found.current.services["accounts"] == [
        Instance(
            name="accounts-s0-10.2.0.9",
            url="https://10.2.0.9:8443",
            shard=0,
            tls_name="accounts-s0.flotilla.svc",
        ),
        Instance(
            name="accounts-s1-10.2.0.1",
            url="https://10.2.0.1:8443",
            shard=1,
            tls_name="accounts-s1.flotilla.svc",
        ),
    ]


async def test_scheme_port_and_absolute_names_come_from_the_target() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc.cluster.local.", "10.1.0.1", "::1")
    target = DnsTarget(host="auth.flotilla.svc.cluster.local.", port=8000, scheme="http")
    found = discovery(fake, {"auth": [target]})
    await found.refresh()
    found.poll()

    assert [(i.url, i.tls_name) for i in found.current.services["auth"]] == [
        ("http://10.1.0.1:8000", "auth.flotilla.svc.cluster.local"),
        ("http://[::1]:8000", "auth.flotilla.svc.cluster.local"),
    ]


async def test_the_order_of_the_answer_does_not_matter() -> None:
    fake = FakeDns()
    # Nameservers rotate their answers; addresses sort as numbers, IPv4 first.
    fake.answer("auth.flotilla.svc", "10.1.0.10", "fd00::2", "10.1.0.9", "fd00::10")
    found = discovery(fake, AUTH)
    await found.refresh()
    found.poll()
    assert names(found) == ["auth-10.1.0.9", "auth-10.1.0.10", "auth-fd00::2", "auth-fd00::10"]
    before = found.current

    fake.answer("auth.flotilla.svc", "fd00::10", "10.1.0.9", "fd00::2", "10.1.0.10")
    await found.refresh()

    assert found.poll() is None
    assert found.current == before


async def test_an_address_listed_twice_is_one_instance() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1", "10.1.0.1", "fd00::1", "fd00:0::1")
    found = discovery(fake, AUTH)
    await found.refresh()
    assert names(found) == ["auth-10.1.0.1", "auth-fd00::1"]


async def test_a_pod_behind_two_services_of_one_service_is_one_instance() -> None:
    fake = FakeDns()
    fake.answer("auth-a.flotilla.svc", "10.1.0.1", "10.1.0.2")
    fake.answer("auth-b.flotilla.svc", "10.1.0.2", "10.1.0.3")
    services = {
        "auth": [
            DnsTarget(host="auth-a.flotilla.svc", port=8443),
            DnsTarget(host="auth-b.flotilla.svc", port=8443),
        ]
    }
    found = discovery(fake, services)
    await found.refresh()
    assert names(found) == ["auth-10.1.0.1", "auth-10.1.0.2", "auth-10.1.0.3"]


async def test_a_pod_listed_on_two_ports_keeps_the_first_target_and_warns_once() -> None:
    fake = FakeDns()
    fake.answer("auth-a.flotilla.svc", "10.1.0.1")
    fake.answer("auth-b.flotilla.svc", "10.1.0.1")
    services = {
        "auth": [
            DnsTarget(host="auth-a.flotilla.svc", port=8443),
            DnsTarget(host="auth-b.flotilla.svc", port=9443),
        ]
    }
    found = discovery(fake, services)
    with structlog.testing.capture_logs() as logs:
        await found.refresh()
        await found.refresh()
    found.poll()

    assert [i.url for i in found.current.services["auth"]] == ["https://10.1.0.1:8443"]
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert len(warnings) == 1
    assert warnings[0]["ignored"] == "https://10.1.0.1:9443"


@pytest.mark.parametrize(
    "gone",
    [dns_error(dns.resolver.NXDOMAIN), dns_error(dns.resolver.NoAnswer)],
    ids=["nxdomain", "no-answer"],
)
async def test_no_records_means_no_ready_pod(gone: Exception) -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1", "fd00::1")
    found = discovery(fake, AUTH)
    await found.refresh()
    found.poll()

    fake.fail("auth.flotilla.svc", gone)
    with structlog.testing.capture_logs() as logs:
        await found.refresh()

    change = found.poll()
    assert change is not None
    assert [r.name for r in change.removed] == ["auth-10.1.0.1", "auth-fd00::1"]
    assert found.current.services["auth"] == []
    assert found.failing == frozenset()
    assert [entry for entry in logs if entry["log_level"] == "warning"] == []


@pytest.mark.parametrize(
    "error",
    [
        dns_error(dns.resolver.LifetimeTimeout, timeout=2.0, errors=[]),
        dns_error(dns.resolver.NoNameservers),  # SERVFAIL or REFUSED from every nameserver
        ConnectionRefusedError(111, "Connection refused"),
    ],
    ids=["timeout", "servfail", "unreachable"],
)
async def test_a_failed_lookup_keeps_the_last_known_instances(error: Exception) -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1", "10.1.0.2")
    found = discovery(fake, AUTH)
    await found.refresh()
    found.poll()

    fake.fail("auth.flotilla.svc", error)
    await found.refresh()

    assert found.poll() is None
    assert names(found) == ["auth-10.1.0.1", "auth-10.1.0.2"]
    assert found.failing == {"auth.flotilla.svc"}


async def test_one_family_failing_keeps_both() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1", "fd00::1")
    found = discovery(fake, AUTH)
    await found.refresh()
    found.poll()

    # The A records would say "one pod left", but AAAA did not answer: a half answer
    # could drop live pods, so the name keeps what it had.
    fake.answer("auth.flotilla.svc", "10.1.0.1")
    fake.fail("auth.flotilla.svc", timeout(), "AAAA")
    await found.refresh()

    assert found.poll() is None
    assert names(found) == ["auth-10.1.0.1", "auth-fd00::1"]


async def test_an_outage_of_one_name_leaves_the_others_moving() -> None:
    fake = FakeDns()
    fake.answer("accounts-s0.flotilla.svc", "10.2.0.1")
    fake.answer("accounts-s1.flotilla.svc", "10.2.0.2")
    found = discovery(fake, LEDGER)
    await found.refresh()
    found.poll()

    fake.fail("accounts-s0.flotilla.svc", timeout())
    fake.answer("accounts-s1.flotilla.svc", "10.2.0.3")
    await found.refresh()

    change = found.poll()
    assert change is not None
    assert [r.name for r in change.added] == ["accounts-s1-10.2.0.3"]
    assert [r.name for r in change.removed] == ["accounts-s1-10.2.0.2"]
    assert names(found, "accounts") == ["accounts-s0-10.2.0.1", "accounts-s1-10.2.0.3"]


async def test_an_outage_is_logged_once_and_its_end_too() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1")
    found = discovery(fake, AUTH)
    await found.refresh()

    with structlog.testing.capture_logs() as logs:
        fake.fail("auth.flotilla.svc", timeout())
        for _ in range(3):
            await found.refresh()
        fake.answer("auth.flotilla.svc", "10.1.0.1")
        await found.refresh()
        fake.fail("auth.flotilla.svc", dns_error(dns.resolver.NoNameservers))
        await found.refresh()

    events = [(entry["log_level"], entry["event"]) for entry in logs]
    failed = ("warning", "DNS lookup failed; keeping the last known instances")
    assert events == [failed, ("info", "DNS lookup answers again"), failed]
    assert logs[0]["dns.question.name"] == "auth.flotilla.svc"
    assert logs[0]["instances"] == 1
    assert "LifetimeTimeout" in logs[0]["error"]


async def test_a_name_that_never_answered_has_no_instances_until_it_does() -> None:
    fake = FakeDns()
    fake.fail("auth.flotilla.svc", timeout())
    found = discovery(fake, AUTH)
    await found.refresh()
    assert found.poll() is None
    assert found.failing == {"auth.flotilla.svc"}

    fake.answer("auth.flotilla.svc", "10.1.0.1")
    await found.refresh()
    change = found.poll()
    assert change is not None
    assert [r.name for r in change.added] == ["auth-10.1.0.1"]
    assert found.failing == frozenset()


async def test_run_resolves_at_once_and_again_every_refresh() -> None:
    fake = FakeDns()
    fake.answer("auth.flotilla.svc", "10.1.0.1")
    found = DnsDiscovery(AUTH, fake.resolve, refresh_s=0.01)
    task = asyncio.get_running_loop().create_task(found.run())
    try:
        await asyncio.wait_for(found.refreshed(), 5)
        first = found.poll()
        assert first is not None
        assert [r.name for r in first.added] == ["auth-10.1.0.1"]

        fake.answer("auth.flotilla.svc", "10.1.0.2")
        # The round in progress may have asked before the change: wait for the next one.
        rounds = found.rounds
        while found.rounds < rounds + 2:
            await asyncio.wait_for(found.refreshed(), 5)
        second = found.poll()
        assert second is not None
        assert [r.name for r in second.added] == ["auth-10.1.0.2"]
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_run_outlives_a_resolver_that_raises_anything() -> None:
    calls = 0

    async def broken(name: str, record_type: RecordType) -> Sequence[str]:
        nonlocal calls
        calls += 1
        raise RuntimeError("resolver bug")

    found = DnsDiscovery(AUTH, broken, refresh_s=0.01)
    task = asyncio.get_running_loop().create_task(found.run())
    try:
        with structlog.testing.capture_logs():
            for _ in range(2):
                await asyncio.wait_for(found.refreshed(), 5)
        assert not task.done()
        assert found.failing == {"auth.flotilla.svc"}
        assert calls >= 4
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
