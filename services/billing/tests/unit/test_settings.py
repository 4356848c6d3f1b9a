"""Billing's settings: defaults that work locally, VAT rates checked."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flotilla_billing.bootstrap import vat_rates
from flotilla_billing.settings import BillingSettings


def test_the_defaults_work_locally() -> None:
    settings = BillingSettings()
    assert settings.service_name == "billing"
    assert settings.nats_url == "nats://127.0.0.1:4222"
    rates = vat_rates(settings)
    assert rates.rate_of("anything") == 2000


def test_overrides_name_products() -> None:
    settings = BillingSettings(vat_default_bp=1900, vat_overrides_bp={"book": 700})
    rates = vat_rates(settings)
    assert (rates.rate_of("book"), rates.rate_of("pen")) == (700, 1900)


@pytest.mark.parametrize(
    "bad",
    [{"vat_default_bp": -1}, {"vat_default_bp": 10_001}, {"vat_overrides_bp": {"": 100}},
     {"vat_overrides_bp": {"book": 10_001}}],
)  # fmt: skip
def test_a_rate_out_of_range_is_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        BillingSettings(**bad)  # type: ignore[arg-type]
