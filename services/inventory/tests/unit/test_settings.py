"""The inventory's settings: working local defaults, environment variables, refusals."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flotilla_inventory.settings import InventorySettings
from flotilla_kit.settings import ServiceSettings


def test_every_setting_has_a_working_default_and_a_description() -> None:
    settings = InventorySettings()
    assert settings.service_name == "inventory"
    assert settings.grpc_port == 0
    assert 0 < settings.reservation_hold_s <= settings.max_hold_s
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert settings.sqlalchemy_url.endswith("inventory.db")
    own = set(InventorySettings.model_fields) - set(ServiceSettings.model_fields)
    assert own >= {"grpc_port", "reservation_hold_s", "max_hold_s", "sweep_interval_s"}
    for name in own:
        assert InventorySettings.model_fields[name].description, name


def test_settings_come_from_flotilla_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_GRPC_PORT", "7301")
    monkeypatch.setenv("FLOTILLA_RESERVATION_HOLD_S", "30")
    monkeypatch.setenv("FLOTILLA_SWEEP_INTERVAL_S", "0.5")
    settings = InventorySettings()
    assert (settings.grpc_port, settings.reservation_hold_s, settings.sweep_interval_s) == (
        7301, 30, 0.5,
    )  # fmt: skip


@pytest.mark.parametrize(
    "fields",
    [
        {"reservation_hold_s": 601, "max_hold_s": 600},
        {"reservation_hold_s": 0},
        {"sweep_interval_s": 0},
        {"grpc_port": 70000},
        {"stream_window": 0},
    ],
)
def test_unworkable_settings_are_refused(fields: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        InventorySettings(**fields)  # type: ignore[arg-type]
