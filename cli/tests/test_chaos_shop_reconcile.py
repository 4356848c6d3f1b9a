"""The shop chaos run's verdict is only as good as its checks: a healthy set of facts passes
every one, and each invariant catches the fault it names (fed facts broken on purpose)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest

from flotilla_cli.chaos.reconcile import LedgerFacts
from flotilla_cli.chaos.shop import ORDERS_FAULT_POINTS, ShopChaosOptions, system_faults
from flotilla_cli.chaos.shop_reconcile import (
    Event,
    HistoryRow,
    InvoiceRow,
    OrderRow,
    Scenario,
    ShopFacts,
    TransferRow,
    canonical,
    check_shop_invariants,
    outboxes_caught_up,
)
from flotilla_orders.service_layer.faults import FaultPoint

SHOP = "acc_0_shop"
ALICE = "acc_1_alice"
BOB = "acc_0_bob"
# Order ids as the orders service writes them; a raw SQLite read sees them without dashes.
O_PAID = "00000000-0000-4000-8000-000000000001"
O_SHORT = "00000000-0000-4000-8000-000000000002"
O_POOR = "00000000-0000-4000-8000-000000000003"
O_REFUNDED = "00000000-0000-4000-8000-000000000004"
T_PAY = "10000000-0000-4000-8000-000000000001"
T_LATE = "10000000-0000-4000-8000-000000000004"
T_BACK = "10000000-0000-4000-8000-000000000005"
D_PAID = "20000000-0000-4000-8000-000000000001"


def _event(n: int, kind: str, data: dict[str, Any]) -> Event:
    return Event(f"e{n:04d}", kind, data, published=True)


def _healthy() -> tuple[ShopFacts, Scenario]:
    """Four orders: one confirmed (2 teas, a lamp: 2 x 650 + 4900), one out of stock, one
    unaffordable, one paid then refunded (its hold ran out); as every database would
    record them."""
    orders = {
        O_PAID: OrderRow(
            "CONFIRMED", None, "u-alice", ALICE, 6200, T_PAY, None, (("tea", 2), ("lamp", 1))
        ),
        O_SHORT: OrderRow(
            "CANCELLED", "out-of-stock", "u-alice", ALICE, None, None, None, (("poster", 9),)
        ),
        O_POOR: OrderRow(
            "CANCELLED", "insufficient-funds", "u-bob", BOB, 4900, None, None, (("lamp", 1),)
        ),
        O_REFUNDED: OrderRow(
            "CANCELLED",
            "reservation-expired",
            "u-alice",
            ALICE,
            650,
            T_LATE,
            T_BACK,
            (("tea", 1),),
        ),
    }
    transfers = {
        T_PAY: TransferRow("committed", ALICE, SHOP, 6200),
        T_LATE: TransferRow("committed", ALICE, SHOP, 650),
        T_BACK: TransferRow("committed", SHOP, ALICE, 650),
        "10000000-0000-4000-8000-000000000009": TransferRow("aborted", BOB, SHOP, 4900),
    }
    ledger = LedgerFacts(balances={SHOP: 6200, ALICE: 100_000 - 6200, BOB: 1000})
    ledger.settlement_total["eur"] = 0
    outbox = {
        "orders": [
            _event(1, "flotilla.orders.order_confirmed", {"order_id": O_PAID}),
            _event(2, "flotilla.orders.order_cancelled", {"order_id": O_SHORT}),
            _event(3, "flotilla.orders.order_cancelled", {"order_id": O_POOR}),
            _event(4, "flotilla.orders.order_cancelled", {"order_id": O_REFUNDED}),
        ],
        "payments": [
            _event(10, "flotilla.payments.transfer_committed", {"transfer_id": T_PAY}),
            _event(11, "flotilla.payments.transfer_committed", {"transfer_id": T_LATE}),
            _event(12, "flotilla.payments.transfer_committed", {"transfer_id": T_BACK}),
        ],
        "inventory": [
            _event(20, "flotilla.inventory.stock_changed", {"product_id": "tea", "version": 1, "on_hand": 100}),
            _event(21, "flotilla.inventory.stock_changed", {"product_id": "tea", "version": 2, "on_hand": 98}),
            _event(22, "flotilla.inventory.stock_changed", {"product_id": "lamp", "version": 1, "on_hand": 10}),
            _event(23, "flotilla.inventory.stock_changed", {"product_id": "lamp", "version": 2, "on_hand": 9}),
            _event(24, "flotilla.inventory.stock_changed", {"product_id": "poster", "version": 1, "on_hand": 3}),
        ],
        "billing": [
            _event(30, "flotilla.billing.invoice_issued", {"document_id": D_PAID, "order_id": O_PAID}),
        ],
    }  # fmt: skip
    facts = ShopFacts(
        orders=orders,
        products={"tea": (98, 0, 2), "lamp": (9, 0, 2), "poster": (3, 0, 1)},
        reservations={
            O_PAID: "committed",
            O_SHORT: "refused",
            O_POOR: "released",
            O_REFUNDED: "expired",
        },
        transfers=transfers,
        ledger=ledger,
        outbox=outbox,
        inbox={
            "orders-history-orders": [e.id for e in outbox["orders"]],
            "orders-history-payments": [e.id for e in outbox["payments"]],
            "billing-orders": ["e0001"],  # the confirmation; cancellations are not its
        },
        history={
            O_PAID: HistoryRow("CONFIRMED", None, 6200, T_PAY, None),
            O_SHORT: HistoryRow("CANCELLED", "out-of-stock", None, None, None),
            O_POOR: HistoryRow("CANCELLED", "insufficient-funds", None, None, None),
            O_REFUNDED: HistoryRow("CANCELLED", "reservation-expired", None, None, T_BACK),
        },
        history_payments={T_PAY, T_LATE, T_BACK},
        documents={D_PAID: InvoiceRow("invoice", 2026, 1, "2026-000001", O_PAID, 6200)},
    )
    scenario = Scenario(
        initial_stock={"tea": 100, "lamp": 10, "poster": 3},
        shop_account=SHOP,
        shop_initial_minor=0,
        deposits={ALICE: 100_000, BOB: 1000},
        answered={"k1": {O_PAID}, "k2": {O_SHORT}, "k3": {O_POOR}, "k4": {O_REFUNDED}},
        client_saw={O_PAID: "CONFIRMED", O_POOR: "CANCELLED"},
    )
    return facts, scenario


def _verdict(facts: ShopFacts, scenario: Scenario) -> dict[str, bool]:
    return {k: v["holds"] for k, v in check_shop_invariants(facts, scenario).items()}


def test_a_healthy_shop_passes_every_check() -> None:
    checks = check_shop_invariants(*_healthy())
    assert {k: v for k, v in checks.items() if not v["holds"]} == {}


def _order(facts: ShopFacts, order_id: str, **changes: Any) -> None:
    facts.orders[order_id] = replace(facts.orders[order_id], **changes)


def _unpublish(facts: ShopFacts) -> None:
    first = facts.outbox["inventory"][0]
    facts.outbox["inventory"][0] = replace(first, published=False)


Breakage = Callable[[ShopFacts, Scenario], Any]

BREAKAGES: dict[str, Breakage] = {
    "every_order_final": lambda f, _: _order(f, O_POOR, state="PENDING"),
    "one_order_per_idempotency_key": lambda _, s: s.answered["k1"].add(O_SHORT),
    "clients_saw_the_final_state": lambda _, s: s.client_saw.update({O_POOR: "CONFIRMED"}),
    "stock_on_hand_is_initial_minus_confirmed": lambda f, _: f.products.update({"tea": (97, 0, 2)}),
    "no_stock_held": lambda f, _: f.reservations.update({O_POOR: "held"}),
    "committed_reservations_are_confirmed_orders": lambda f, _: f.reservations.update(
        {O_POOR: "committed"}
    ),
    "shop_gained_the_confirmed_totals": lambda f, _: f.ledger.balances.update({SHOP: 6850}),
    "customers_paid_their_confirmed_totals": lambda f, _: f.ledger.balances.update({BOB: 0}),
    "ledger_balanced": lambda f, _: f.ledger.unbalanced_shards.append(1),
    "no_branch_prepared": lambda f, _: setattr(f.ledger, "prepared_branches", 1),
    "every_transfer_finished": lambda f, _: f.transfers.update(
        {"t-stuck": TransferRow("committing", BOB, SHOP, 10)}
    ),
    "transfers_match_orders": lambda f, _: f.transfers.update(
        {T_BACK: TransferRow("aborted", SHOP, ALICE, 650)}
    ),
    "outboxes_drained": lambda f, _: _unpublish(f),
    "one_event_per_final_order": lambda f, _: f.outbox["orders"].append(
        _event(5, "flotilla.orders.order_confirmed", {"order_id": O_PAID})
    ),
    "one_event_per_committed_transfer": lambda f, _: f.outbox["payments"].pop(),
    "stock_events_tell_the_stock": lambda f, _: f.outbox["inventory"].pop(1),
    "exactly_once_orders-history-orders": lambda f, _: f.inbox["orders-history-orders"].pop(),
    "exactly_once_orders-history-payments": lambda f, _: f.inbox["orders-history-payments"].append(
        "e0010"
    ),
    "no_dead_letters": lambda f, _: f.dead_letters.append(
        {"consumer": "orders-history-orders", "event_id": "e0001", "reason": "boom"}
    ),
    "history_matches_orders": lambda f, _: f.history.update(
        {O_PAID: HistoryRow("CANCELLED", "out-of-stock", None, None, None)}
    ),
    "history_payment_states": lambda f, _: f.history_payments.discard(T_PAY),
    "exactly_once_billing-orders": lambda f, _: f.inbox["billing-orders"].pop(),
    "one_invoice_per_confirmed_order": lambda f, _: f.documents.clear(),
    "invoice_numbers_gapless": lambda f, _: f.documents.update(
        {"d-3": InvoiceRow("credit_note", 2026, 3, "2026-000003", O_PAID, -6200)}
    ),
    "one_invoice_event_per_document": lambda f, _: f.outbox["billing"].clear(),
}


def test_every_invariant_has_a_breakage() -> None:
    assert set(BREAKAGES) == set(check_shop_invariants(*_healthy()))


@pytest.mark.parametrize("name", sorted(BREAKAGES))
def test_each_invariant_catches_its_fault(name: str) -> None:
    facts, scenario = _healthy()
    BREAKAGES[name](facts, scenario)
    verdict = _verdict(facts, scenario)
    assert verdict[name] is False
    assert check_shop_invariants(facts, scenario)[name]["detail"]


@pytest.mark.parametrize(
    ("name", "breakage"),
    [
        # The same event applied twice by one consumer (an inbox that failed its job).
        (
            "exactly_once_orders-history-orders",
            lambda f, _: f.inbox["orders-history-orders"].append("e0001"),
        ),
        # A confirmed order paid less than its total.
        (
            "transfers_match_orders",
            lambda f, _: f.transfers.update({T_PAY: TransferRow("committed", ALICE, SHOP, 6199)}),
        ),
        # Money moved that no order explains.
        (
            "transfers_match_orders",
            lambda f, _: f.transfers.update({"t-x": TransferRow("committed", BOB, SHOP, 1)}),
        ),
        # An order's event of the other kind.
        (
            "one_event_per_final_order",
            lambda f, _: f.outbox.update(
                {
                    "orders": [
                        _event(1, "flotilla.orders.order_cancelled", {"order_id": O_PAID}),
                        *f.outbox["orders"][1:],
                    ]
                }
            ),
        ),
        # An answered order that is not in the database at all.
        ("every_order_final", lambda _, s: s.answered.update({"k9": {"o-ghost"}})),
        # A refund the history never heard of.
        ("history_payment_states", lambda f, _: f.history_payments.discard(T_BACK)),
        # The newest stock event disagrees with the table.
        ("stock_events_tell_the_stock", lambda f, _: f.products.update({"poster": (2, 0, 1)})),
        # Billing applied an event it does not subscribe to (a cancellation).
        ("exactly_once_billing-orders", lambda f, _: f.inbox["billing-orders"].append("e0002")),
        # A second invoice for one order; an invoice for a cancelled order; the wrong total.
        (
            "one_invoice_per_confirmed_order",
            lambda f, _: f.documents.update(
                {"d-2": InvoiceRow("invoice", 2026, 2, "2026-000002", O_PAID, 6200)}
            ),
        ),
        (
            "one_invoice_per_confirmed_order",
            lambda f, _: f.documents.update(
                {"d-2": InvoiceRow("invoice", 2026, 2, "2026-000002", O_POOR, 4900)}
            ),
        ),
        (
            "one_invoice_per_confirmed_order",
            lambda f, _: f.documents.update(
                {D_PAID: InvoiceRow("invoice", 2026, 1, "2026-000001", O_PAID, 6199)}
            ),
        ),
        # The same number twice (a duplicate is a gap's twin); a number not YYYY-NNNNNN.
        (
            "invoice_numbers_gapless",
            lambda f, _: f.documents.update(
                {"d-2": InvoiceRow("credit_note", 2026, 1, "2026-000001", O_PAID, -6200)}
            ),
        ),
        (
            "invoice_numbers_gapless",
            lambda f, _: f.documents.update(
                {D_PAID: InvoiceRow("invoice", 2026, 1, "2026-1", O_PAID, 6200)}
            ),
        ),
    ],
)
def test_more_ways_to_break(name: str, breakage: Breakage) -> None:
    facts, scenario = _healthy()
    breakage(facts, scenario)
    assert _verdict(facts, scenario)[name] is False


def test_caught_up_needs_every_event_published_and_applied() -> None:
    facts, _ = _healthy()
    assert outboxes_caught_up(facts.outbox, facts.inbox)
    facts.inbox["orders-history-payments"].pop()
    assert not outboxes_caught_up(facts.outbox, facts.inbox)
    facts, _ = _healthy()
    facts.inbox["billing-orders"].clear()  # billing has not invoiced the confirmation
    assert not outboxes_caught_up(facts.outbox, facts.inbox)
    facts, _ = _healthy()
    _unpublish(facts)
    assert not outboxes_caught_up(facts.outbox, facts.inbox)


def test_ids_are_compared_in_their_canonical_form() -> None:
    assert canonical(O_PAID.replace("-", "")) == O_PAID
    assert canonical("prod_1") == "prod_1"


def test_the_run_injects_every_orders_fault_point_qualified() -> None:
    assert set(ORDERS_FAULT_POINTS) == {p.value for p in FaultPoint}
    faults = system_faults(ShopChaosOptions(fault_rate=0.02, payments_fault_rate=0.0))
    assert faults == {f"orders:{p.value}": 0.02 for p in FaultPoint}
    with_payments = system_faults(ShopChaosOptions(fault_rate=0.0, payments_fault_rate=0.01))
    assert with_payments
    assert all(k.startswith("payments:") for k in with_payments)
