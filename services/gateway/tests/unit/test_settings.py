from __future__ import annotations

from pathlib import Path

import pytest

from flotilla_gateway.settings import GatewaySettings


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
