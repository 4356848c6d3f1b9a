"""Transfer rules and types: the coordinator's state machine. No I/O, no framework."""

from flotilla_kit.money import CURRENCIES, MAX_AMOUNT_MINOR
from flotilla_payments.domain.transfer import (
    UNFINISHED_STATES,
    Branch,
    Decision,
    IllegalTransition,
    Refusal,
    Transfer,
    TransferPath,
    TransferState,
    Vote,
    VoteKind,
    decide,
    is_legal_transition,
    new_transfer,
)

__all__ = [
    "CURRENCIES",
    "MAX_AMOUNT_MINOR",
    "UNFINISHED_STATES",
    "Branch",
    "Decision",
    "IllegalTransition",
    "Refusal",
    "Transfer",
    "TransferPath",
    "TransferState",
    "Vote",
    "VoteKind",
    "decide",
    "is_legal_transition",
    "new_transfer",
]
