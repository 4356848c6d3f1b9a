"""VAT in gross prices: the shop charges prices with VAT included, so an invoice splits
each line's gross amount into net and VAT.

Rule (README, "Rounding"): per line, VAT = gross x rate / (1 + rate), rounded half up to
the minor unit; net = gross - VAT. So net + VAT = gross on every line exactly, and the
document's totals are the sums of its lines (they add up too, and the gross total is what
was paid, to the cent).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = ["BASIS_POINTS", "MAX_RATE_BP", "VatRates", "split_gross"]

BASIS_POINTS = 10_000  # 1 % = 100 basis points
MAX_RATE_BP = BASIS_POINTS  # 100 %: no VAT rate anywhere comes near it


def split_gross(gross_minor: int, rate_bp: int) -> tuple[int, int]:
    """(net, vat) of a gross amount at `rate_bp`; a negative amount (a credit) splits as
    the mirror of its positive, so a credit note undoes its invoice to the cent."""
    if not 0 <= rate_bp <= MAX_RATE_BP:
        raise ValueError(f"VAT rate {rate_bp} bp is outside 0..{MAX_RATE_BP}")
    if gross_minor < 0:
        net, vat = split_gross(-gross_minor, rate_bp)
        return -net, -vat
    divisor = BASIS_POINTS + rate_bp
    # Half up in integers: floor((2 * gross * rate + divisor) / (2 * divisor)).
    vat = (2 * gross_minor * rate_bp + divisor) // (2 * divisor)
    return gross_minor - vat, vat


@dataclass(frozen=True, slots=True)
class VatRates:
    """The rate of each product: `default_bp`, unless `overrides` names the product."""

    default_bp: int
    overrides: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for product, rate in {"(default)": self.default_bp, **self.overrides}.items():
            if not 0 <= rate <= MAX_RATE_BP:
                raise ValueError(f"VAT rate of {product} ({rate} bp) is outside 0..{MAX_RATE_BP}")

    def rate_of(self, product_id: str) -> int:
        return self.overrides.get(product_id, self.default_bp)
