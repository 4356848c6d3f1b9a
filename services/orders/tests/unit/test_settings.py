"""The settings model: working local defaults, and refusals that name what is wrong."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from flotilla_kit.settings import ServiceSettings, TlsSettings
from flotilla_orders.settings import OrdersSettings

TLS = TlsSettings(cert_file=Path("c.pem"), key_file=Path("k.pem"), ca_file=Path("ca.pem"))


def test_the_defaults_work_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FLOTILLA_PROFILE", "FLOTILLA_DATABASE_URL", "FLOTILLA_FAULTS"):
        monkeypatch.delenv(name, raising=False)
    settings = OrdersSettings()
    assert settings.service_name == "orders"
    assert settings.sqlalchemy_url.endswith("orders.db")
    assert settings.nats_url == "nats://127.0.0.1:4222"
    assert (settings.inventory_targets, settings.payments_urls, settings.accounts_shards) == (
        [], [], {},
    )  # fmt: skip
    ours = set(OrdersSettings.model_fields) - set(ServiceSettings.model_fields)
    assert "shop_account" in ours
    for name in ours:
        assert OrdersSettings.model_fields[name].description, f"{name} has no description"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_INVENTORY_TARGETS", '["127.0.0.1:7301", "127.0.0.1:7302"]')
    monkeypatch.setenv("FLOTILLA_ACCOUNTS_SHARDS", '{"0": ["https://127.0.0.1:8101"]}')
    monkeypatch.setenv("FLOTILLA_PAYMENTS_URLS", '["https://127.0.0.1:8201"]')
    monkeypatch.setenv("FLOTILLA_SHOP_ACCOUNT", "acc_0_" + "a" * 32)
    monkeypatch.setenv("FLOTILLA_TLS_CERT_FILE", "c.pem")
    monkeypatch.setenv("FLOTILLA_TLS_KEY_FILE", "k.pem")
    monkeypatch.setenv("FLOTILLA_TLS_CA_FILE", "ca.pem")
    monkeypatch.setenv("FLOTILLA_MAX_PAYMENT_ATTEMPTS", "5")
    settings = OrdersSettings()
    assert settings.inventory_targets == ["127.0.0.1:7301", "127.0.0.1:7302"]
    assert settings.accounts_shards == {0: ["https://127.0.0.1:8101"]}
    assert settings.max_payment_attempts == 5


@pytest.mark.parametrize(
    ("values", "complaint"),
    [
        ({"inventory_targets": ["nowhere"], "tls": TLS}, "not host:port"),
        ({"payments_urls": ["ftp://x"], "tls": TLS, "shop_account": "acc_0_a"}, "http"),
        ({"accounts_shards": {0: []}, "tls": TLS}, "no URLs"),
        ({"accounts_shards": {1000: ["https://a"]}, "tls": TLS}, "out of range"),
        ({"payments_urls": ["https://p"], "tls": TLS}, "FLOTILLA_SHOP_ACCOUNT"),
        ({"payments_urls": ["https://p"], "tls": TLS, "shop_account": "sys_0_cash"}, "SHOP"),
        ({"inventory_targets": ["127.0.0.1:1"]}, "needs TLS"),
        ({"faults": {"nowhere": 1.0}}, "unknown fault point"),
        ({"faults": {"after_pay_call": 2.0}}, "between 0 and 1"),
        ({"faults": {"after_pay_call": 1.0}, "profile": "prod"}, "refused in profile"),
        ({"retry_initial_s": 2.0, "retry_max_s": 1.0}, "retry_max_s"),
        ({"answer_within_s": -1}, "greater than or equal"),
        ({"lease_s": 5.0, "payments_timeout_s": 8.0}, "longer than the longest call"),
        ({"reservation_hold_s": 0}, "greater than or equal"),
        ({"max_payment_attempts": 0}, "greater than or equal"),
    ],
)
def test_bad_settings_are_refused(values: dict[str, object], complaint: str) -> None:
    with pytest.raises(ValidationError, match=complaint):
        OrdersSettings(**values)  # type: ignore[arg-type]


def test_a_system_wide_faults_value_gives_orders_only_its_own_points() -> None:
    settings = OrdersSettings(faults={"orders:after_pay_call": 0.1, "payments:after_prepare": 1.0})
    assert settings.faults == {"after_pay_call": 0.1}
