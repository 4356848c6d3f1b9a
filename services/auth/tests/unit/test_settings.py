"""The auth service's settings model."""

from __future__ import annotations

import os

import pytest
from pydantic import ValidationError

from flotilla_auth.settings import AuthSettings


def test_defaults_work_on_a_laptop(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [name for name in os.environ if name.startswith("FLOTILLA_")]:
        monkeypatch.delenv(name)
    settings = AuthSettings()
    assert settings.service_name == "auth"
    assert settings.access_token_ttl_s == 600
    assert settings.refresh_token_ttl_s == 30 * 24 * 3600
    assert settings.key_encryption_key.get_secret_value()
    assert settings.key_publish_delay_s == 600
    assert settings.key_rotation_period_s == 30 * 24 * 3600
    assert settings.key_check_interval_s == 30
    assert (settings.login_account_max_failures, settings.login_account_window_s) == (5, 900)
    assert (settings.login_lockout_base_s, settings.login_lockout_max_s) == (60, 900)
    assert (settings.login_ip_max_failures, settings.login_ip_window_s) == (20, 300)


def test_placeholder_kek_is_refused_outside_dev() -> None:
    with pytest.raises(ValidationError, match="key_encryption_key"):
        AuthSettings(profile="prod")
    assert AuthSettings(profile="prod", key_encryption_key="9f7d2c41b8a3e6")


@pytest.mark.parametrize("ttl", [299, 901])
def test_access_token_lifetime_is_bounded(ttl: int) -> None:
    with pytest.raises(ValidationError, match="access_token_ttl_s"):
        AuthSettings(access_token_ttl_s=ttl)


def test_settings_come_from_flotilla_environment_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOTILLA_ACCESS_TOKEN_TTL_S", "420")
    monkeypatch.setenv("FLOTILLA_KEY_ENCRYPTION_KEY", "from-the-environment")
    settings = AuthSettings()
    assert settings.access_token_ttl_s == 420
    assert settings.key_encryption_key.get_secret_value() == "from-the-environment"


def test_the_key_check_interval_fits_in_the_retired_keys_margin() -> None:
    # An instance may sign with a just-retired key for one interval; verifiers allow 30 s
    # of skew; the retired key stays published 60 s past the token lifetime.
    with pytest.raises(ValidationError, match="key_check_interval_s"):
        AuthSettings(key_check_interval_s=31)
