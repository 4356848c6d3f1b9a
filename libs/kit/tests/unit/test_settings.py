from __future__ import annotations

import enum

import pytest
from pydantic import SecretStr, ValidationError

from flotilla_kit.settings import (
    FaultSettings,
    LeaseSettings,
    ServiceSettings,
    is_placeholder_secret,
    load_settings,
)


class WithSecret(ServiceSettings):
    signing_secret: SecretStr = SecretStr("dev-insecure-change-me")


@pytest.mark.parametrize("value", ["", "   ", "change-me", "dev-INSECURE-key", "placeholder123"])
def test_placeholders_are_recognised(value: str) -> None:
    assert is_placeholder_secret(value)


def test_dev_profile_accepts_the_placeholder_default() -> None:
    assert WithSecret(profile="dev").signing_secret.get_secret_value() == "dev-insecure-change-me"


@pytest.mark.parametrize("profile", ["test", "prod"])
def test_other_profiles_refuse_placeholder_or_empty_secrets(profile: str) -> None:
    with pytest.raises(ValidationError, match="signing_secret"):
        WithSecret(profile=profile)
    with pytest.raises(ValidationError, match="FLOTILLA_SIGNING_SECRET"):
        WithSecret(profile=profile, signing_secret=SecretStr(""))


def test_a_real_secret_is_accepted_in_prod() -> None:
    settings = WithSecret(profile="prod", signing_secret=SecretStr("k3J9-x1Lq-88aZ-p0w2"))
    assert settings.signing_secret.get_secret_value() == "k3J9-x1Lq-88aZ-p0w2"


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_PORT", "9123")
    monkeypatch.setenv("FLOTILLA_JWKS_URLS", '["https://a/jwks", "https://b/jwks"]')
    monkeypatch.setenv("FLOTILLA_TLS_CERT_FILE", "/certs/x.pem")
    settings = ServiceSettings()
    assert settings.port == 9123
    assert settings.jwks_urls == ["https://a/jwks", "https://b/jwks"]
    assert str(settings.tls.cert_file) == "/certs/x.pem"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_PORT", "70000")
    with pytest.raises(ValidationError, match="port"):
        ServiceSettings()


def test_default_database_is_a_sqlite_file_per_service() -> None:
    settings = ServiceSettings(service_name="ledger")
    assert settings.sqlalchemy_url == "sqlite+aiosqlite:///var/ledger.db"


def test_load_settings_names_the_bad_variable_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FLOTILLA_PORT", "eighty")
    with pytest.raises(SystemExit) as exit_info:
        load_settings(ServiceSettings)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("invalid settings:")
    assert "FLOTILLA_PORT: Input should be a valid integer" in err
    assert "Traceback" not in err
    # The TLS settings are read on their own, with their own prefix.
    monkeypatch.setenv("FLOTILLA_PORT", "80")
    monkeypatch.setenv("FLOTILLA_TLS_REQUIRE_CLIENT_CERT", "maybe")
    with pytest.raises(SystemExit):
        load_settings(ServiceSettings)
    assert "FLOTILLA_TLS_REQUIRE_CLIENT_CERT: Input should be a valid boolean" in (
        capsys.readouterr().err
    )


def test_load_settings_returns_good_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_PORT", "8123")
    assert load_settings(ServiceSettings).port == 8123


def test_replicas_outside_dev_are_told_apart_by_their_host_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Compose starts every replica of a service from the same environment: without this,
    # two payments coordinators would both be instance "0" and release each other's leases.
    monkeypatch.delenv("FLOTILLA_INSTANCE_ID", raising=False)
    monkeypatch.setattr("socket.gethostname", lambda: "payments-7f3c")
    assert ServiceSettings(profile="prod").instance_id == "payments-7f3c"
    assert ServiceSettings(profile="dev").instance_id == "0"
    assert ServiceSettings(profile="prod", instance_id="payments-1").instance_id == "payments-1"
    monkeypatch.setenv("FLOTILLA_INSTANCE_ID", "from-the-pod-name")
    assert ServiceSettings(profile="prod").instance_id == "from-the-pod-name"


class _LeasingSettings(ServiceSettings, LeaseSettings):
    service_name: str = "leasing"


def test_lease_settings_come_from_the_environment_of_the_service_using_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOTILLA_LEASE_S", "30")
    monkeypatch.setenv("FLOTILLA_RETRY_MAX_S", "2.5")
    settings = _LeasingSettings()
    assert (settings.lease_s, settings.retry_initial_s, settings.retry_max_s) == (30.0, 0.1, 2.5)
    assert settings.recovery_interval_s == 1.0


def test_a_longest_retry_delay_below_the_first_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOTILLA_RETRY_INITIAL_S", "3")
    monkeypatch.setenv("FLOTILLA_RETRY_MAX_S", "1")
    with pytest.raises(ValidationError, match="retry_max_s must not be shorter"):
        _LeasingSettings()


class _Point(enum.StrEnum):
    AFTER_WRITE = "after_write"
    BEFORE_CALL = "before_call"


class _FaultySettings(FaultSettings):
    fault_service = "faulty"
    fault_points = _Point


def test_faults_come_from_the_environment_as_this_service_s_own_points(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOTILLA_PROFILE", "test")
    monkeypatch.setenv(
        "FLOTILLA_FAULTS", '{"faulty:after_write": 0.5, "before_call": 1, "other:after_pay": 1}'
    )
    assert _FaultySettings().faults == {"after_write": 0.5, "before_call": 1.0}
    assert _FaultySettings(profile="dev").faults == {"after_write": 0.5, "before_call": 1.0}


def test_fault_injection_is_refused_outside_test_and_dev() -> None:
    with pytest.raises(ValidationError, match="fault injection is refused in profile 'prod'"):
        _FaultySettings(profile="prod", faults={"after_write": 0.1})
    assert _FaultySettings(profile="prod").faults == {}  # no fault: nothing to refuse


def test_another_service_s_points_are_ignored_whatever_the_profile() -> None:
    settings = _FaultySettings(profile="prod", faults={"orders:after_pay_call": 1.0})
    assert settings.faults == {}


@pytest.mark.parametrize(
    ("faults", "complaint"),
    [
        ({"after_lunch": 0.5}, "unknown fault point 'after_lunch'"),
        ({"faulty:after_lunch": 0.5}, "unknown fault point 'faulty:after_lunch'"),
        ({"before_call": 1.5}, "the probability of 'before_call' must be between 0 and 1"),
    ],
)
def test_an_unknown_own_point_or_a_bad_probability_is_refused(
    faults: dict[str, float], complaint: str
) -> None:
    with pytest.raises(ValidationError, match=complaint):
        _FaultySettings(profile="test", faults=faults)


def test_the_description_of_faults_lists_the_service_s_points() -> None:
    description = _FaultySettings.model_json_schema()["properties"]["faults"]["description"]
    assert "'faulty:<point>'" in description
    assert description.endswith("Points: after_write, before_call.")
    # The base model's own field is left as it was.
    assert "faulty" not in (FaultSettings.model_fields["faults"].description or "")


def test_a_settings_model_with_faults_must_name_its_points() -> None:
    with pytest.raises(TypeError, match="must name fault_service and fault_points"):

        class _Unnamed(FaultSettings):
            pass
