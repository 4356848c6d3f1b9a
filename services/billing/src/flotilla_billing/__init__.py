"""flotilla_billing: invoices and credit notes for the shop's orders, from its events.

`flotilla_kit.django` is imported first: it configures Django, whose settings REST
framework reads when its views are imported (entrypoints/http.py)."""

from flotilla_kit import django as _django  # noqa: F401 - configures Django, see above

__all__: list[str] = []
