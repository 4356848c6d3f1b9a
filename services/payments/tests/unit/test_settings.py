"""Settings refuse what must not reach production; fault injection ends the process."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flotilla_payments.bootstrap import service_tokens
from flotilla_payments.settings import PaymentsSettings


def test_every_setting_has_a_default_and_a_description() -> None:
    settings = PaymentsSettings()
    assert (settings.service_name, settings.ledger_shards, settings.faults) == ("payments", {}, {})
    assert (settings.rpc_timeout_s, settings.answer_within_s, settings.prepare_timeout_s) == (
        2.0,
        5.0,
        10.0,
    )
    assert (settings.retry_initial_s, settings.retry_max_s) == (0.1, 5.0)
    assert (settings.recovery_interval_s, settings.lease_s) == (1.0, 10.0)
    for name in ("ledger_shards", "auth_token_urls", "rpc_timeout_s", "answer_within_s", "prepare_timeout_s",
                 "retry_initial_s", "retry_max_s", "recovery_interval_s", "lease_s", "faults"):  # fmt: skip
        assert PaymentsSettings.model_fields[name].description, name


def test_ledger_shards_and_faults_come_from_the_environment_as_json(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(
        "FLOTILLA_LEDGER_SHARDS", '{"0": ["127.0.0.1:7101", "127.0.0.1:7102"], "1": ["h:7201"]}'
    )
    monkeypatch.setenv("FLOTILLA_FAULTS", '{"after_prepare": 0.1}')
    monkeypatch.setenv("FLOTILLA_PROFILE", "test")
    settings = PaymentsSettings()
    assert settings.ledger_shards == {0: ["127.0.0.1:7101", "127.0.0.1:7102"], 1: ["h:7201"]}
    assert settings.faults == {"after_prepare": 0.1}


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"faults": {"after_prepare": 0.5}, "profile": "prod"}, "refused in profile 'prod'"),
        ({"faults": {"after_lunch": 0.5}}, "unknown fault point"),
        ({"faults": {"before_done": 1.5}}, "between 0 and 1"),
        ({"ledger_shards": {0: []}}, "no targets"),
        ({"ledger_shards": {0: ["localhost"]}}, "not host:port"),
        ({"ledger_shards": {1000: ["h:1"]}}, "out of range"),
        ({"retry_initial_s": 2.0, "retry_max_s": 1.0}, "retry_max_s"),
        ({"rpc_timeout_s": 0}, "greater than 0"),
    ],
)
def test_settings_refuse_what_makes_no_sense(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        PaymentsSettings(**fields)  # type: ignore[arg-type]


def test_faults_are_allowed_in_test_and_dev() -> None:
    for profile in ("test", "dev"):
        assert PaymentsSettings(profile=profile, faults={"after_decision": 1.0}).faults == {
            "after_decision": 1.0
        }


def test_a_system_wide_faults_value_gives_payments_only_its_own_points() -> None:
    settings = PaymentsSettings(
        faults={"payments:after_prepare": 0.1, "orders:after_pay_call": 1.0}
    )
    assert settings.faults == {"after_prepare": 0.1}
    # Only other services' points: nothing is injected here, so any profile may carry it.
    assert PaymentsSettings(profile="prod", faults={"orders:after_pay_call": 1.0}).faults == {}


def test_calling_the_ledger_needs_tls() -> None:
    with pytest.raises(ValueError, match="needs TLS"):
        service_tokens(PaymentsSettings(ledger_shards={0: ["127.0.0.1:1"]}))
    # With no shard to call, the instance starts (every transfer is then refused as 404).
    assert service_tokens(PaymentsSettings()) is not None
