"""The service's settings: defaults that work under `flotilla up`, bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flotilla_kit.settings import TlsSettings
from flotilla_web.settings import WebSettings


def test_the_defaults_work_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOTILLA_GATEWAY_URL", "FLOTILLA_TLS_CA_FILE", "FLOTILLA_GATEWAY_CA_FILE"):
        monkeypatch.delenv(name, raising=False)
    settings = WebSettings()
    assert settings.gateway_url == "https://127.0.0.1:8443"
    assert settings.cookie_secure is True
    assert (settings.session_idle_timeout_s, settings.session_absolute_timeout_s) == (1800, 43_200)
    assert settings.scale_requests_path == Path("var/run/scale")


def test_the_gateway_is_verified_with_the_services_ca_unless_told_otherwise() -> None:
    tls = TlsSettings(ca_file=Path("/ca.pem"))
    assert WebSettings(tls=tls).gateway_ca_path == Path("/ca.pem")
    assert WebSettings(tls=tls, gateway_ca_file=Path("/other.pem")).gateway_ca_path == Path(
        "/other.pem"
    )


@pytest.mark.parametrize(
    "values",
    [
        {"gateway_url": "127.0.0.1:8443"},
        {"session_idle_timeout_s": 0},
        {"session_idle_timeout_s": 100, "session_absolute_timeout_s": 50},
        {"gateway_timeout_s": 0},
    ],
)
def test_bad_values_are_refused(values: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        WebSettings(**values)  # type: ignore[arg-type]
