"""DNS discovery end to end: a real nameserver on 127.0.0.1, pods on their own loopback
addresses (127.0.0.2, 127.0.0.3, ...) sharing one port, and the real gateway finding them
through dnspython, as it finds the pods of a headless Service in Kubernetes."""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import structlog

from flotilla_gateway.discovery import DnsDiscovery, dns_resolver
from flotilla_gateway.routes import PUBLIC, SHARD_BY_ACCOUNT_ID, RoutePolicy
from flotilla_gateway.settings import DnsTarget
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths

from .certificates import names_only
from .harness import ECHO_POLICY, Stack
from .nameserver import Nameserver

AUTH = "auth.flotilla.test"


def dns_discovery(
    nameserver: Nameserver, services: dict[str, list[dict[str, Any]]], **more: Any
) -> dict[str, Any]:
    """Gateway settings for DNS discovery through `nameserver`, refreshed often."""
    return {
        "discovery": "dns",
        "dns_services": services,
        "dns_nameservers": ["127.0.0.1"],
        "dns_port": nameserver.port,
        "dns_refresh_s": 0.05,
        "dns_timeout_s": 0.5,
        **more,
    }


def instance_names(stack: Stack) -> set[str]:
    return {instance.name for instance in stack.registry.instances()}


def serving(stack: Stack, names: set[str]) -> Callable[[], bool]:
    """The registry has exactly these instances, all healthy."""

    def check() -> bool:
        instances = list(stack.registry.instances())
        return {i.name for i in instances} == names and all(i.healthy for i in instances)

    return check


async def answering(stack: Stack, requests: int = 8) -> set[str]:
    """Which instances answered `requests` requests in a row."""
    async with stack.client() as client:
        answers = [await client.get("/api/v1/auth/ping") for _ in range(requests)]
    assert {answer.status_code for answer in answers} == {200}
    return {answer.headers["x-instance"] for answer in answers}


def discovery_of(stack: Stack) -> DnsDiscovery:
    assert stack.gateway is not None
    found = stack.gateway.topology
    assert isinstance(found, DnsDiscovery)
    return found


async def test_requests_reach_the_pods_dns_names_as_they_come_and_go(
    stack: Stack, nameserver: Nameserver
) -> None:
    first, second, third = await stack.pods("auth", ["127.0.0.2", "127.0.0.3", "127.0.0.4"])
    nameserver.answer(AUTH, "127.0.0.2", "127.0.0.3")
    services = {"auth": [{"host": AUTH, "port": first.port, "scheme": "http"}]}
    await stack.start_gateway(policy=ECHO_POLICY, **dns_discovery(nameserver, services))

    assert instance_names(stack) == {"auth-127.0.0.2", "auth-127.0.0.3"}
    assert await answering(stack) == {"auth-127.0.0.2", "auth-127.0.0.3"}
    assert not third.proxied  # listening, but not in the answer

    # A pod is replaced: the gateway follows without a restart.
    nameserver.answer(AUTH, "127.0.0.3", "127.0.0.4")
    await stack.wait_until(serving(stack, {"auth-127.0.0.3", "auth-127.0.0.4"}))
    before = len(first.proxied)
    assert await answering(stack) == {"auth-127.0.0.3", "auth-127.0.0.4"}
    assert len(first.proxied) == before
    assert second.proxied
    assert third.proxied

    # NXDOMAIN: the Service has no ready pod left.
    nameserver.nxdomain(AUTH)
    await stack.wait_until(lambda: not instance_names(stack))
    async with stack.client() as client:
        unavailable = await client.get("/api/v1/auth/ping")
    assert unavailable.status_code == 503


async def test_a_dns_timeout_keeps_routing_to_the_last_known_pods(
    stack: Stack, nameserver: Nameserver
) -> None:
    (pod,) = await stack.pods("auth", ["127.0.0.2"])
    nameserver.answer(AUTH, "127.0.0.2")
    services = {"auth": [{"host": AUTH, "port": pod.port, "scheme": "http"}]}
    gateway = await stack.start_gateway(
        policy=ECHO_POLICY, **dns_discovery(nameserver, services, dns_timeout_s=0.2)
    )
    discovery = discovery_of(stack)

    nameserver.drop(AUTH)
    with structlog.testing.capture_logs() as logs:
        # Every round from now on times out; wait for the first one that did.
        async with asyncio.timeout(10):
            while AUTH not in discovery.failing:
                await discovery.refreshed()
        gateway.poll_topology()  # whatever housekeeping has applied, apply the latest now
    assert nameserver.dropped  # it really was a timeout, not an answer

    assert instance_names(stack) == {"auth-127.0.0.2"}
    assert await answering(stack, 3) == {"auth-127.0.0.2"}
    warnings = [entry for entry in logs if entry["log_level"] == "warning"]
    assert [entry["dns.question.name"] for entry in warnings] == [AUTH]

    # The same wait with an NXDOMAIN instead empties the service: the rule, not luck.
    nameserver.nxdomain(AUTH)
    await stack.wait_until(lambda: not instance_names(stack))


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_loopback(), reason="this machine has no IPv6 loopback")
async def test_a_pod_with_an_aaaa_record_is_reached_over_ipv6(
    stack: Stack, nameserver: Nameserver
) -> None:
    v4, v6 = await stack.pods("auth", ["127.0.0.2", "::1"])
    nameserver.answer(AUTH, "::1", "127.0.0.2")
    services = {"auth": [{"host": AUTH, "port": v4.port, "scheme": "http"}]}
    await stack.start_gateway(policy=ECHO_POLICY, **dns_discovery(nameserver, services))

    urls = {i.name: i.endpoint.url for i in stack.registry.instances()}
    assert urls == {
        "auth-127.0.0.2": f"http://127.0.0.2:{v4.port}",
        "auth-::1": f"http://[::1]:{v6.port}",
    }
    assert await answering(stack) == {"auth-127.0.0.2", "auth-::1"}
    assert v6.proxied


@pytest.mark.parametrize(
    ("trouble", "kept"),
    [("servfail", True), ("drop", True), ("nxdomain", False), ("no-records", False)],
)
async def test_dnspython_failures_are_told_from_empty_answers(
    nameserver: Nameserver, trouble: str, kept: bool
) -> None:
    """The real resolver against the real nameserver: which answers keep a Service's pods."""
    target = DnsTarget(host=AUTH, port=8443)
    resolve = dns_resolver(nameservers=["127.0.0.1"], port=nameserver.port, timeout_s=0.2)
    discovery = DnsDiscovery({"auth": [target]}, resolve, refresh_s=3600)
    nameserver.answer(AUTH, "127.0.0.2", "::2")
    await discovery.refresh()
    discovery.poll()
    assert [i.url for i in discovery.current.services["auth"]] == [
        "https://127.0.0.2:8443",
        "https://[::2]:8443",
    ]

    if trouble == "servfail":
        nameserver.servfail(AUTH)
    elif trouble == "drop":
        nameserver.drop(AUTH)
    elif trouble == "nxdomain":
        nameserver.nxdomain(AUTH)
    else:
        nameserver.answer(AUTH)
    asked = len(nameserver.questions)
    with structlog.testing.capture_logs():
        await discovery.refresh()
    discovery.poll()

    assert len(nameserver.questions) > asked
    assert bool(discovery.current.services["auth"]) is kept
    assert (AUTH in discovery.failing) is kept


async def test_an_unreachable_nameserver_keeps_the_last_known_pods(
    nameserver: Nameserver,
) -> None:
    resolve = dns_resolver(nameservers=["127.0.0.1"], port=nameserver.port, timeout_s=0.2)
    discovery = DnsDiscovery({"auth": [DnsTarget(host=AUTH, port=8443)]}, resolve, refresh_s=3600)
    nameserver.answer(AUTH, "127.0.0.2")
    await discovery.refresh()
    discovery.poll()

    nameserver.close()  # its port is closed now
    with structlog.testing.capture_logs():
        await discovery.refresh()

    assert discovery.poll() is None
    assert [i.name for i in discovery.current.services["auth"]] == ["auth-127.0.0.2"]
    assert discovery.failing == {AUTH}


async def test_a_sharded_service_has_one_headless_service_per_shard(
    stack: Stack, nameserver: Nameserver
) -> None:
    shard0 = await stack.pods("ledger", ["127.0.0.2"], shard=0)
    shard1 = await stack.pods("ledger", ["127.0.0.3", "127.0.0.4"], shard=1)
    nameserver.answer("ledger-s0.flotilla.test", "127.0.0.2")
    nameserver.answer("ledger-s1.flotilla.test", "127.0.0.3", "127.0.0.4")
    services = {
        "ledger": [
            {"host": f"ledger-s{n}.flotilla.test", "port": p, "scheme": "http", "shard": n}
            for n, p in ((0, shard0[0].port), (1, shard1[0].port))
        ]
    }
    policy = (
        RoutePolicy(
            "GET", "/api/v1/accounts/{account_id}", "ledger", PUBLIC, shard_by=SHARD_BY_ACCOUNT_ID
        ),
    )
    await stack.start_gateway(policy=policy, **dns_discovery(nameserver, services))

    assert {(i.name, i.shard) for i in stack.registry.instances()} == {
        ("ledger-s0-127.0.0.2", 0),
        ("ledger-s1-127.0.0.3", 1),
        ("ledger-s1-127.0.0.4", 1),
    }
    async with stack.client() as client:
        on_0 = [await client.get(f"/api/v1/accounts/acc_0_{n:032x}") for n in range(4)]
        on_1 = [await client.get(f"/api/v1/accounts/acc_1_{n:032x}") for n in range(4)]
    assert {r.headers["x-instance"] for r in on_0} == {"ledger-s0-127.0.0.2"}
    assert {r.headers["x-instance"] for r in on_1} == {"ledger-s1-127.0.0.3", "ledger-s1-127.0.0.4"}


LEDGER = "ledger.flotilla.test"
LEDGER_POLICY = (RoutePolicy("GET", "/api/v1/ledger/{a}", "ledger", PUBLIC),)


async def test_tls_to_a_pod_checks_the_service_name_not_the_pod_ip(
    stack: Stack, nameserver: Nameserver, dev_pki: Callable[[str], CertificatePaths]
) -> None:
    # The dev CA's certificate for the Service names `ledger.flotilla.test` (and
    # localhost, 127.0.0.1): not the pod's address, 127.0.0.2.
    (pod,) = await stack.pods("ledger", ["127.0.0.2"], certificates=dev_pki(LEDGER))
    nameserver.answer(LEDGER, "127.0.0.2")
    # The same pod behind a second name its certificate does not carry.
    nameserver.answer("mirror.flotilla.test", "127.0.0.2")
    services = {
        "ledger": [{"host": LEDGER, "port": pod.port}],
        "mirror": [{"host": "mirror.flotilla.test", "port": pod.port}],
    }
    with structlog.testing.capture_logs() as logs:
        await stack.start_gateway(
            tls=True,
            wait_healthy=False,
            policy=LEDGER_POLICY,
            **dns_discovery(nameserver, services),
        )
        ledger = "ledger-127.0.0.2"
        mirror = "mirror-127.0.0.2"
        await stack.wait_until(
            lambda: (
                {i.name: i for i in stack.registry.instances()}.keys() == {ledger, mirror}
                and stack.registry.services["ledger"].instances[ledger].healthy
                and stack.registry.services["mirror"].instances[mirror].failures >= 2
            )
        )

    assert stack.registry.services["ledger"].instances[ledger].endpoint.server_name == LEDGER
    assert not stack.registry.services["mirror"].instances[mirror].healthy
    async with stack.client() as client:
        answer = await client.get("/api/v1/ledger/balance")
    assert answer.status_code == 200
    assert answer.headers["x-instance"] == ledger
    assert pod.proxied == ["GET /api/v1/ledger/balance"]
    refused = [
        entry["error"]
        for entry in logs
        if entry["event"] == "health check failed" and entry["upstream.instance"] == mirror
    ]
    assert refused
    assert all("certificate verify failed" in error for error in refused)

    # And the pod's address alone would not verify: the name is what made it work.
    gateway_paths = dev_pki("gateway")
    context = ssl.create_default_context(cafile=str(gateway_paths.ca))
    context.load_cert_chain(gateway_paths.cert, gateway_paths.key)
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        await asyncio.open_connection("127.0.0.2", pod.port, ssl=context)


async def test_keys_and_revocations_come_from_the_auth_service_by_its_name(
    stack: Stack,
    nameserver: Nameserver,
    dev_pki: Callable[[str], CertificatePaths],
    tokens: TokenMinter,
    tmp_path: Path,
) -> None:
    """With no JWKS URL configured, keys come from the auth instances: for pods, from the
    Service's name, since their certificate names no address the kit's client could check.

    `localhost` is the Service here: the one name this machine resolves without asking a
    nameserver, as a pod resolves its Services' names through the cluster DNS."""
    certificate = names_only(dev_pki("gateway"), tmp_path / "names-only", "localhost")
    (auth,) = await stack.pods("auth", ["127.0.0.1"], certificates=certificate)
    nameserver.answer("localhost", "127.0.0.1")
    services = {"auth": [{"host": "localhost", "port": auth.port}]}
    await stack.start_gateway(tls=True, **dns_discovery(nameserver, services))

    async with stack.client() as client:
        me = await client.get(
            "/api/v1/auth/me", headers={"Authorization": f"Bearer {tokens.mint()}"}
        )
    assert me.status_code == 200
    assert me.headers["x-instance"] == "auth-127.0.0.1"
    assert stack.authenticator.verifier.revocations.fetched

    # The certificate really names no address: by its IP the pod does not verify.
    gateway_paths = dev_pki("gateway")
    context = ssl.create_default_context(cafile=str(gateway_paths.ca))
    context.load_cert_chain(gateway_paths.cert, gateway_paths.key)
    with pytest.raises(ssl.SSLCertVerificationError, match="IP address mismatch"):
        await asyncio.open_connection("127.0.0.1", auth.port, ssl=context)
