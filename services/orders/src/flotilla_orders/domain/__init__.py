"""Order rules and types: the checkout saga's state machine. No I/O, no framework."""

from flotilla_orders.domain.events import CANCELLED, CONFIRMED, SERVICE, final_event
from flotilla_orders.domain.history import (
    CommittedTransfer,
    HistoryEntry,
    InvalidEventData,
    OrderOutcome,
    PaymentState,
    outcome_of,
    payment_state,
    transfer_of,
)
from flotilla_orders.domain.order import (
    MAX_AMOUNT_MINOR,
    MAX_LINES,
    MAX_QUANTITY,
    CancelReason,
    IllegalTransition,
    InvalidLines,
    Order,
    OrderLine,
    OrderState,
    SagaStep,
    check_lines,
    new_order,
)

__all__ = [
    "CANCELLED",
    "CONFIRMED",
    "MAX_AMOUNT_MINOR",
    "MAX_LINES",
    "MAX_QUANTITY",
    "SERVICE",
    "CancelReason",
    "CommittedTransfer",
    "HistoryEntry",
    "IllegalTransition",
    "InvalidEventData",
    "InvalidLines",
    "Order",
    "OrderLine",
    "OrderOutcome",
    "OrderState",
    "PaymentState",
    "SagaStep",
    "check_lines",
    "final_event",
    "new_order",
    "outcome_of",
    "payment_state",
    "transfer_of",
]
