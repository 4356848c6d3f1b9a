"""Fault injection: the points in a saga's life where a test or chaos run can make the
process die, to prove that a saga resumes from its last durable step. There is one after
every durable write of the saga and one after every remote call (answered, not recorded)."""

from __future__ import annotations

import enum

__all__ = ["FaultPoint", "NoFaults"]


class FaultPoint(enum.StrEnum):
    # RESERVING and the Idempotency-Key are durable; nobody has been called.
    AFTER_ORDER_RECORDED = "after_order_recorded"
    # Inventory answered Reserve (stock held, or refused); nothing recorded.
    AFTER_RESERVE_CALL = "after_reserve_call"
    # PAYING (with the prices and total) is durable; payments not called yet.
    AFTER_PAYING_RECORDED = "after_paying_recorded"
    # Payments answered the payment; nothing recorded.
    AFTER_PAY_CALL = "after_pay_call"
    # A new payment or refund attempt number is durable; its key not used yet.
    AFTER_ATTEMPT_RECORDED = "after_attempt_recorded"
    # COMMITTING (with the payment's transfer id) is durable; inventory not told.
    AFTER_COMMITTING_RECORDED = "after_committing_recorded"
    # Inventory answered Commit; nothing recorded.
    AFTER_COMMIT_CALL = "after_commit_call"
    # REFUNDING is durable; payments not asked for the refund yet.
    AFTER_REFUNDING_RECORDED = "after_refunding_recorded"
    # Payments answered the refund; nothing recorded.
    AFTER_REFUND_CALL = "after_refund_call"
    # RELEASING (with the reason) is durable; inventory not told.
    AFTER_RELEASING_RECORDED = "after_releasing_recorded"
    # Inventory answered Release; nothing recorded.
    AFTER_RELEASE_CALL = "after_release_call"
    # CONFIRMED or CANCELLED (and its event in the outbox) is durable.
    AFTER_FINAL_RECORDED = "after_final_recorded"


class NoFaults:
    """Production: nothing is injected."""

    def hit(self, point: FaultPoint) -> None:
        return None
