"""The web service's rules: sessions and their lifetime, the basket, amounts, where a
browser may be sent. No I/O, no framework."""

from flotilla_web.domain.basket import (
    MAX_LINES,
    MAX_QUANTITY,
    Basket,
    BasketLine,
    BasketRefused,
    Checkout,
)
from flotilla_web.domain.errors import (
    ApiFailed,
    CsrfRefused,
    Forbidden,
    GatewayUnavailable,
    InvalidForm,
    NotFound,
    NotLoggedIn,
    WebError,
)
from flotilla_web.domain.money import InvalidAmount, format_amount, parse_amount
from flotilla_web.domain.navigation import safe_next
from flotilla_web.domain.session import (
    Session,
    SessionPolicy,
    Tokens,
    new_secret,
    same_secret,
    valid_secret,
)

__all__ = [
    "MAX_LINES",
    "MAX_QUANTITY",
    "ApiFailed",
    "Basket",
    "BasketLine",
    "BasketRefused",
    "Checkout",
    "CsrfRefused",
    "Forbidden",
    "GatewayUnavailable",
    "InvalidAmount",
    "InvalidForm",
    "NotFound",
    "NotLoggedIn",
    "Session",
    "SessionPolicy",
    "Tokens",
    "WebError",
    "format_amount",
    "new_secret",
    "parse_amount",
    "safe_next",
    "same_secret",
    "valid_secret",
]
