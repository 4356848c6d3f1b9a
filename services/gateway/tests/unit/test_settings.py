from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flotilla_gateway.settings import DnsTarget, GatewaySettings


def test_defaults_work_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOTILLA_PORT", "FLOTILLA_REVOCATION_URLS", "FLOTILLA_REVOCATION_REFRESH_S"):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    assert settings.service_name == "gateway"
    assert settings.port == 8443
    assert settings.topology_file == Path("var/run/topology.json")
    assert settings.unhealthy_after == 2
    assert settings.pool_idle_timeout_s < 5.0  # below uvicorn's keep-alive timeout
    assert settings.revocation_urls == []  # from the topology's auth instances
    assert settings.revocation_refresh_s == 5.0


def test_every_field_is_described() -> None:
    undocumented = [
        name for name, field in GatewaySettings.model_fields.items() if not field.description
    ]
    assert undocumented == []


def test_environment_variables_use_the_flotilla_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_PORT", "9443")
    monkeypatch.setenv("FLOTILLA_UPSTREAM_TIMEOUT_S", "2.5")
    monkeypatch.setenv("FLOTILLA_JWKS_URLS", '["https://127.0.0.1:1/.well-known/jwks.json"]')
    monkeypatch.setenv("FLOTILLA_TLS_CA_FILE", "/tmp/ca.pem")
    monkeypatch.setenv(
        "FLOTILLA_REVOCATION_URLS", '["https://127.0.0.1:1/internal/v1/revocations"]'
    )
    monkeypatch.setenv("FLOTILLA_REVOCATION_REFRESH_S", "0.5")
    settings = GatewaySettings()
    assert settings.port == 9443
    assert settings.upstream_timeout_s == 2.5
    assert settings.jwks_urls == ["https://127.0.0.1:1/.well-known/jwks.json"]
    assert settings.tls.ca_file == Path("/tmp/ca.pem")
    assert settings.revocation_urls == ["https://127.0.0.1:1/internal/v1/revocations"]
    assert settings.revocation_refresh_s == 0.5


def test_discovery_defaults_to_the_topology_file(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOTILLA_DISCOVERY", "FLOTILLA_DNS_SERVICES", "FLOTILLA_DNS_NAMESERVERS"):
        monkeypatch.delenv(name, raising=False)
    settings = GatewaySettings()
    assert settings.discovery == "file"
    assert settings.dns_services == {}
    assert settings.dns_refresh_s == 5.0
    assert settings.dns_nameservers == []  # the system resolver
    assert settings.dns_port == 53


def test_dns_services_come_as_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_DISCOVERY", "dns")
    monkeypatch.setenv(
        "FLOTILLA_DNS_SERVICES",
        '{"auth": [{"host": "auth.flotilla.svc", "port": 8443}],'
        ' "accounts": [{"host": "accounts-s0.flotilla.svc", "port": 8443, "shard": 0},'
        ' {"host": "accounts-s1.flotilla.svc", "port": 8443, "shard": 1, "scheme": "http"}]}',
    )
    monkeypatch.setenv("FLOTILLA_DNS_NAMESERVERS", '["127.0.0.1", "::1"]')
    monkeypatch.setenv("FLOTILLA_DNS_PORT", "5353")
    settings = GatewaySettings()
    assert settings.dns_services["auth"] == [DnsTarget(host="auth.flotilla.svc", port=8443)]
    assert settings.dns_services["auth"][0].scheme == "https"
    assert [(t.shard, t.scheme) for t in settings.dns_services["accounts"]] == [
        (0, "https"),
        (1, "http"),
    ]
    assert settings.dns_nameservers == ["127.0.0.1", "::1"]
    assert settings.dns_port == 5353


def test_dns_discovery_without_services_is_refused() -> None:
    with pytest.raises(ValidationError, match="FLOTILLA_DISCOVERY=dns needs FLOTILLA_DNS_SERVICES"):
        GatewaySettings(discovery="dns")


@pytest.mark.parametrize(
    ("services", "message"),
    [
        ({"auth": []}, "lists no target"),
        ({"auth": [{"host": "10.0.0.1", "port": 1}]}, "is an address"),
        ({"auth": [{"host": "auth..svc", "port": 1}]}, "not a DNS name"),
        ({"auth": [{"host": "-auth.svc", "port": 1}]}, "not a DNS name"),
        ({"auth": [{"host": "auth.svc", "port": 0}]}, "greater than or equal to 1"),
        ({"auth": [{"host": "auth.svc", "port": 1, "scheme": "ftp"}]}, "'http' or 'https'"),
        (
            {"accounts": [{"host": "a.svc", "port": 1, "shard": 0}, {"host": "b.svc", "port": 1}]},
            "every target has a shard or none",
        ),
        (
            {"auth": [{"host": "auth.svc", "port": 1}, {"host": "AUTH.svc.", "port": 2}]},
            "names a host twice",
        ),
    ],
)
def test_dns_services_that_make_no_sense_are_refused(
    services: dict[str, list[dict[str, object]]], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        GatewaySettings(discovery="dns", dns_services=services)


def test_nameservers_are_addresses() -> None:
    with pytest.raises(ValidationError, match="not an IP address"):
        GatewaySettings(dns_nameservers=["kube-dns.kube-system"])
