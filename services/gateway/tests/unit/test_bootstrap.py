from __future__ import annotations

from pathlib import Path

import pytest

from flotilla_gateway import GatewaySettings, build_gateway
from flotilla_gateway.bootstrap import topology_source
from flotilla_gateway.discovery import DnsDiscovery
from flotilla_gateway.routes import POLICY, PUBLIC, RoutePolicy
from flotilla_gateway.topology import TopologyWatcher


def settings(tmp_path: Path) -> GatewaySettings:
    return GatewaySettings(port=0, topology_file=tmp_path / "topology.json")


async def test_the_real_policy_builds(tmp_path: Path) -> None:
    gateway = build_gateway(settings(tmp_path))
    table = gateway.connections.dispatcher.routes
    for entry in POLICY:
        path = entry.path.replace("{", "").replace("}", "")  # a value for each parameter
        target = table.match(entry.method.encode(), path)
        assert target is not None
        assert target.policy is entry


@pytest.mark.parametrize("path", ["/livez", "/policy.json", "/{anything}"])
async def test_a_policy_entry_the_gateway_would_answer_itself_is_refused(
    tmp_path: Path, path: str
) -> None:
    shadowed = (*POLICY, RoutePolicy("GET", path, "auth", PUBLIC))
    with pytest.raises(ValueError, match="answers these paths itself"):
        build_gateway(settings(tmp_path), shadowed)


def test_the_topology_file_is_the_default_source(tmp_path: Path) -> None:
    source, loops = topology_source(settings(tmp_path))
    assert isinstance(source, TopologyWatcher)
    assert source.path == tmp_path / "topology.json"
    assert loops == ()


async def test_dns_discovery_comes_with_its_refresh_loop(tmp_path: Path) -> None:
    dns = GatewaySettings(
        port=0,
        discovery="dns",
        dns_services={"auth": [{"host": "auth.flotilla.svc", "port": 8443}]},
        dns_nameservers=["127.0.0.1"],
        dns_port=5353,
    )
    source, loops = topology_source(dns)
    assert isinstance(source, DnsDiscovery)
    assert loops == (source.run,)
    gateway = build_gateway(dns)
    assert isinstance(gateway.topology, DnsDiscovery)
