"""After the storm in the shop: read the orders, inventory, payments, billing and ledger
databases directly (read-only) and the dead letters, and check what the shop promises.

As `reconcile.py` does for the bank, this reads the databases instead of asking the
services, so that a bug in a service cannot hide itself. Reading (`read_shop`) and judging
(`check_shop_invariants`, pure) are apart, so that the judging can be tested with facts
broken on purpose.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flotilla_cli.chaos.reconcile import LedgerFacts, query_rows, read_ledger

__all__ = [
    "CONSUMERS",
    "Event",
    "HistoryRow",
    "InvoiceRow",
    "OrderRow",
    "Scenario",
    "ShopFacts",
    "TransferRow",
    "canonical",
    "check_shop_invariants",
    "consumed",
    "outboxes_caught_up",
    "read_events",
    "read_shop",
]

# Every consumer in the system and the producer whose outbox it reads: the orders
# service's two history consumers (all their producer publishes) and billing's (what
# CONSUMED_TYPES says). Its inbox is in its own service's database (the name's prefix).
CONSUMERS = {
    "orders-history-orders": "orders",
    "orders-history-payments": "payments",
    "billing-orders": "orders",
}
CONSUMED_TYPES = {
    "billing-orders": frozenset(
        {"flotilla.orders.order_confirmed", "flotilla.orders.order_refunded"}
    ),
}
PRODUCERS = ("orders", "payments", "inventory", "billing")


def canonical(value: object) -> str:
    """An id as the APIs write it: a raw query sees a UUID as stored (SQLite: 32 hex
    digits), other ids as they are."""
    text_ = str(value)
    try:
        return str(uuid.UUID(text_))
    except ValueError:
        return text_


@dataclass(frozen=True)
class OrderRow:
    state: str
    reason: str | None
    customer_id: str
    payment_account: str
    total_minor: int | None
    payment_transfer_id: str | None
    refund_transfer_id: str | None
    lines: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class TransferRow:
    state: str  # lower case: committed, aborted, preparing, ...
    from_account: str
    to_account: str
    amount_minor: int


@dataclass(frozen=True)
class HistoryRow:
    state: str
    reason: str | None
    total_minor: int | None
    payment_transfer_id: str | None
    refund_transfer_id: str | None


@dataclass(frozen=True)
class InvoiceRow:
    """A billing document (an invoice or a credit note)."""

    kind: str
    year: int
    seq: int
    number: str
    order_id: str
    total_minor: int


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    data: dict[str, Any]
    published: bool


@dataclass
class ShopFacts:
    """What the databases (and the broker's dead letters) say."""

    orders: dict[str, OrderRow] = field(default_factory=dict)
    products: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # on hand, held, ver
    reservations: dict[str, str] = field(default_factory=dict)  # id -> state
    transfers: dict[str, TransferRow] = field(default_factory=dict)
    ledger: LedgerFacts = field(default_factory=LedgerFacts)
    outbox: dict[str, list[Event]] = field(default_factory=dict)  # producer -> its events
    inbox: dict[str, list[str]] = field(default_factory=dict)  # consumer -> event ids
    history: dict[str, HistoryRow] = field(default_factory=dict)
    history_payments: set[str] = field(default_factory=set)  # transfers it knows committed
    dead_letters: list[dict[str, Any]] = field(default_factory=list)
    documents: dict[str, InvoiceRow] = field(default_factory=dict)  # billing's, by id


@dataclass
class Scenario:
    """What the run itself knows: what it set up, and what each client was answered."""

    initial_stock: dict[str, int]  # product -> on hand before the first order
    shop_account: str
    shop_initial_minor: int
    deposits: dict[str, int]  # customer payment account -> deposited
    answered: dict[str, set[str]]  # Idempotency-Key -> every order id its answers named
    client_saw: dict[str, str] = field(default_factory=dict)  # order id -> final state seen


def _json(value: Any) -> dict[str, Any]:
    document = json.loads(value) if isinstance(value, str) else value
    return document if isinstance(document, dict) else {}


Outboxes = dict[str, list[Event]]
Inboxes = dict[str, list[str]]


async def read_events(urls: Mapping[str, str]) -> tuple[Outboxes, Inboxes]:
    """Every producer's outbox, and every consumer's inbox (in its service's database)."""
    outbox: dict[str, list[Event]] = {}
    for producer in PRODUCERS:
        outbox[producer] = []
        for event_id, payload, published_at in await query_rows(
            urls[producer], "SELECT event_id, payload, published_at FROM outbox ORDER BY seq"
        ):
            document = _json(payload)
            outbox[producer].append(
                Event(
                    str(event_id), str(document.get("type", "")),
                    _json(document.get("data", {})), published_at is not None,
                )
            )  # fmt: skip
    inbox: dict[str, list[str]] = {consumer: [] for consumer in CONSUMERS}
    for service in sorted({consumer.split("-")[0] for consumer in CONSUMERS}):
        inbox_rows = await query_rows(urls[service], "SELECT consumer, event_id FROM inbox")
        for consumer, event_id in inbox_rows:
            inbox.setdefault(str(consumer), []).append(str(event_id))
    return outbox, inbox


def consumed(consumer: str, outbox: Mapping[str, list[Event]]) -> set[str]:
    """The ids of the events `consumer` must apply: its producer's, of its types."""
    types = CONSUMED_TYPES.get(consumer)
    return {e.id for e in outbox.get(CONSUMERS[consumer], []) if types is None or e.type in types}


def outboxes_caught_up(outbox: Mapping[str, list[Event]], inbox: Mapping[str, list[str]]) -> bool:
    """Every event published, and every consumer has applied every event it must."""
    if any(not e.published for events in outbox.values() for e in events):
        return False
    return all(consumed(consumer, outbox) <= set(inbox.get(consumer, [])) for consumer in CONSUMERS)


async def read_shop(
    urls: Mapping[str, str], shard_urls: dict[int, str], dead_letters: list[dict[str, Any]]
) -> ShopFacts:
    """`urls`: service -> database URL (orders, inventory, payments)."""
    facts = ShopFacts(ledger=await read_ledger(shard_urls), dead_letters=dead_letters)
    lines: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for order_id, product_id, quantity in await query_rows(
        urls["orders"], "SELECT order_id, product_id, quantity FROM order_lines ORDER BY line_no"
    ):
        lines[canonical(order_id)].append((str(product_id), int(quantity)))
    for row in await query_rows(
        urls["orders"],
        "SELECT id, state, reason, customer_id, payment_account, total_minor,"
        " payment_transfer_id, refund_transfer_id FROM orders",
    ):
        order_id = canonical(row[0])
        facts.orders[order_id] = OrderRow(
            state=str(row[1]), reason=row[2], customer_id=str(row[3]),
            payment_account=str(row[4]), total_minor=row[5],
            payment_transfer_id=canonical(row[6]) if row[6] else None,
            refund_transfer_id=canonical(row[7]) if row[7] else None,
            lines=tuple(lines[order_id]),
        )  # fmt: skip
    for product_id, on_hand, held, version in await query_rows(
        urls["inventory"], "SELECT id, on_hand, held, version FROM products"
    ):
        facts.products[str(product_id)] = (int(on_hand), int(held), int(version))
    for reservation_id, state in await query_rows(
        urls["inventory"], "SELECT id, state FROM reservations"
    ):
        facts.reservations[canonical(reservation_id)] = str(state).lower()
    for transfer_id, state, source, target, amount in await query_rows(
        urls["payments"],
        "SELECT id, state, from_account, to_account, amount_minor FROM transfers",
    ):
        facts.transfers[canonical(transfer_id)] = TransferRow(
            str(state).lower(), str(source), str(target), int(amount)
        )
    facts.outbox, facts.inbox = await read_events(urls)
    for row in await query_rows(
        urls["orders"],
        "SELECT order_id, state, reason, total_minor, payment_transfer_id, refund_transfer_id"
        " FROM history_orders",
    ):
        facts.history[canonical(row[0])] = HistoryRow(
            str(row[1]), row[2], row[3],
            canonical(row[4]) if row[4] else None, canonical(row[5]) if row[5] else None,
        )  # fmt: skip
    paid = await query_rows(urls["orders"], "SELECT transfer_id FROM history_payments")
    facts.history_payments = {canonical(t) for (t,) in paid}
    for row in await query_rows(
        urls["billing"],
        "SELECT id, kind, year, seq, number, order_id, total_minor FROM documents",
    ):
        facts.documents[canonical(row[0])] = InvoiceRow(
            str(row[1]), int(row[2]), int(row[3]), str(row[4]), canonical(row[5]), int(row[6])
        )
    return facts


# -- the judging (pure) ----------------------------------------------------------------------


def _few(items: Any, n: int = 5) -> str:
    listed = sorted(str(i) for i in items)
    more = f" (+{len(listed) - n})" if len(listed) > n else ""
    return f"{listed[:n]}{more}" if listed else "none"


def _events_per(events: list[Event], key: str) -> Counter[str]:
    return Counter(canonical(e.data.get(key, "")) for e in events)


Checks = dict[str, tuple[bool, str]]


def check_shop_invariants(facts: ShopFacts, scenario: Scenario) -> dict[str, Any]:
    """Every invariant by name -> {holds, detail}."""
    confirmed = {o: row for o, row in facts.orders.items() if row.state == "CONFIRMED"}
    cancelled = {o: row for o, row in facts.orders.items() if row.state == "CANCELLED"}
    checks: Checks = {
        **_order_checks(facts, scenario),
        **_stock_checks(facts, scenario, confirmed),
        **_money_checks(facts, scenario, confirmed),
        "transfers_match_orders": _transfers_match(facts, confirmed, cancelled),
        **_event_checks(facts),
        "stock_events_tell_the_stock": _stock_events(facts),
        "history_matches_orders": _history_matches(facts, confirmed, cancelled),
        "history_payment_states": _history_payments(facts, confirmed, cancelled),
        **_billing_checks(facts, confirmed),
    }
    return {name: {"holds": ok, "detail": detail} for name, (ok, detail) in checks.items()}


def _order_checks(facts: ShopFacts, scenario: Scenario) -> Checks:
    orders = facts.orders
    unfinished = [o for o, row in orders.items() if row.state not in ("CONFIRMED", "CANCELLED")]
    answered_ids: set[str] = set().union(*scenario.answered.values())
    unknown = answered_ids - set(orders)
    two_ids = {k: ids for k, ids in scenario.answered.items() if len(ids) > 1}
    keyless = set(orders) - answered_ids
    contradicted = [
        o for o, seen in scenario.client_saw.items() if o in orders and orders[o].state != seen
    ]
    return {
        "every_order_final": (
            not unfinished and not unknown,
            f"{len(unfinished)} not final {_few(unfinished)}; "
            f"{len(unknown)} answered but absent {_few(unknown)}",
        ),
        "one_order_per_idempotency_key": (
            not two_ids and not keyless,
            f"{len(two_ids)} keys named several orders {_few(two_ids)}; "
            f"{len(keyless)} orders no answer named {_few(keyless)}",
        ),
        "clients_saw_the_final_state": (
            not contradicted,
            f"{len(contradicted)} orders whose client saw another final state {_few(contradicted)}",
        ),
    }


def _stock_checks(facts: ShopFacts, scenario: Scenario, confirmed: dict[str, OrderRow]) -> Checks:
    sold: Counter[str] = Counter()
    for row in confirmed.values():
        for product, quantity in row.lines:
            sold[product] += quantity
    on_hand = {p: v[0] for p, v in facts.products.items()}
    wrong_stock = {
        p: f"{on_hand.get(p)} != {initial} - {sold[p]}"
        for p, initial in scenario.initial_stock.items()
        if on_hand.get(p) != initial - sold[p]
    }
    held_rows = [r for r, state in facts.reservations.items() if state == "held"]
    held_stock = {p: v[1] for p, v in facts.products.items() if v[1] != 0}
    committed = {r for r, state in facts.reservations.items() if state == "committed"}
    return {
        "stock_on_hand_is_initial_minus_confirmed": (
            not wrong_stock,
            str(wrong_stock) if wrong_stock else f"{sum(sold.values())} units sold",
        ),
        "no_stock_held": (
            not held_rows and not held_stock,
            f"{len(held_rows)} reservations held {_few(held_rows)}; held stock {held_stock}",
        ),
        "committed_reservations_are_confirmed_orders": (
            committed == set(confirmed),
            f"{len(committed)} committed; committed, not confirmed: "
            f"{_few(committed - set(confirmed))}; confirmed, not committed: "
            f"{_few(set(confirmed) - committed)}",
        ),
    }


def _money_checks(facts: ShopFacts, scenario: Scenario, confirmed: dict[str, OrderRow]) -> Checks:
    ledger = facts.ledger
    takings = sum(row.total_minor or 0 for row in confirmed.values())
    shop_now = ledger.balances.get(scenario.shop_account)
    gain = None if shop_now is None else shop_now - scenario.shop_initial_minor
    spent: Counter[str] = Counter()
    for row in confirmed.values():
        spent[row.payment_account] += row.total_minor or 0
    wrong_balance = {
        a: f"{ledger.balances.get(a)} != {deposit} - {spent[a]}"
        for a, deposit in scenario.deposits.items()
        if ledger.balances.get(a) != deposit - spent[a]
    }
    ledger_faults = []
    if ledger.unbalanced_shards:
        ledger_faults.append(f"shards {ledger.unbalanced_shards} do not sum to zero")
    if ledger.balance_mismatches:
        ledger_faults.append(f"{ledger.balance_mismatches} balances differ from their entries")
    if ledger.negative_available:
        ledger_faults.append(f"{ledger.negative_available} negative balances")
    if ledger.held_total:
        ledger_faults.append(f"{ledger.held_total} minor units still held")
    if any(v != 0 for v in ledger.settlement_total.values()):
        ledger_faults.append(f"settlement {dict(ledger.settlement_total)}")
    unfinished = [
        t for t, row in facts.transfers.items() if row.state not in ("committed", "aborted")
    ]
    return {
        "shop_gained_the_confirmed_totals": (
            gain == takings,
            f"gained {gain}, confirmed orders total {takings}",
        ),
        "customers_paid_their_confirmed_totals": (
            not wrong_balance,
            str(wrong_balance) if wrong_balance else f"{len(scenario.deposits)} accounts",
        ),
        "ledger_balanced": (not ledger_faults, "; ".join(ledger_faults) or "balanced"),
        "no_branch_prepared": (
            ledger.prepared_branches == 0,
            f"{ledger.prepared_branches} prepared",
        ),
        "every_transfer_finished": (
            not unfinished,
            f"{len(unfinished)} unfinished {_few(unfinished)}",
        ),
    }


def _event_checks(facts: ShopFacts) -> Checks:
    orders = facts.orders
    unpublished = {
        p: sum(not e.published for e in events)
        for p, events in facts.outbox.items()
        if any(not e.published for e in events)
    }
    order_events = _events_per(facts.outbox.get("orders", []), "order_id")
    wrong_count = [
        o
        for o, row in orders.items()
        if row.state in ("CONFIRMED", "CANCELLED") and order_events[o] != 1
    ] + [o for o in order_events if o not in orders]
    wrong_kind = [
        e.id
        for e in facts.outbox.get("orders", [])
        if (order := orders.get(canonical(e.data.get("order_id", "")))) is not None
        and e.type != f"flotilla.orders.order_{order.state.lower()}"
    ]
    committed = {t for t, row in facts.transfers.items() if row.state == "committed"}
    transfer_events = _events_per(facts.outbox.get("payments", []), "transfer_id")
    wrong_transfer_events = [t for t in committed if transfer_events[t] != 1] + [
        t for t in transfer_events if t not in committed
    ]
    checks: Checks = {
        "outboxes_drained": (not unpublished, f"unpublished: {unpublished or 'none'}"),
        "one_event_per_final_order": (
            not wrong_count and not wrong_kind,
            f"{len(wrong_count)} orders without exactly one event {_few(wrong_count)}; "
            f"{len(wrong_kind)} events of another kind than the order's state",
        ),
        "one_event_per_committed_transfer": (
            not wrong_transfer_events,
            f"{len(wrong_transfer_events)} transfers without exactly one event "
            f"{_few(wrong_transfer_events)}",
        ),
    }
    for consumer in CONSUMERS:
        produced = consumed(consumer, facts.outbox)
        applied = Counter(facts.inbox.get(consumer, []))
        twice = [e for e, n in applied.items() if n > 1]
        missing = produced - set(applied)
        strays = set(applied) - produced
        checks[f"exactly_once_{consumer}"] = (
            not twice and not missing and not strays,
            f"{len(produced)} produced, {len(applied)} applied; twice {_few(twice)}, "
            f"missing {_few(missing)}, not produced {_few(strays)}",
        )
    dead = facts.dead_letters
    checks["no_dead_letters"] = (
        not dead,
        "; ".join(
            f"{d.get('consumer')}: {d.get('event_type')} {d.get('event_id')} ({d.get('reason')})"
            for d in dead[:5]
        )
        or "none",
    )
    return checks


def _billing_checks(facts: ShopFacts, confirmed: dict[str, OrderRow]) -> Checks:
    """One invoice per confirmed order (none for another), its total the order's; numbers
    gapless and unique per year, written as `YYYY-NNNNNN`; one invoice_issued per document."""
    invoices: dict[str, list[InvoiceRow]] = defaultdict(list)
    for row in facts.documents.values():
        if row.kind == "invoice":
            invoices[row.order_id].append(row)
    not_once = [o for o in confirmed if len(invoices.get(o, [])) != 1]
    strays = [o for o in invoices if o not in confirmed]
    wrong_total = [
        o
        for o, row in confirmed.items()
        if len(invoices.get(o, [])) == 1 and invoices[o][0].total_minor != row.total_minor
    ]
    by_year: dict[int, list[int]] = defaultdict(list)
    for row in facts.documents.values():
        by_year[row.year].append(row.seq)
    gaps = {
        year: sorted(set(range(1, len(seqs) + 1)) ^ set(seqs))
        for year, seqs in by_year.items()
        if sorted(seqs) != list(range(1, len(seqs) + 1))
    }
    misnumbered = [
        r.number for r in facts.documents.values() if r.number != f"{r.year}-{r.seq:06d}"
    ]
    issued = Counter(
        canonical(e.data.get("document_id", "")) for e in facts.outbox.get("billing", [])
    )
    wrong_events = [d for d in facts.documents if issued[d] != 1] + [
        d for d in issued if d not in facts.documents
    ]
    return {
        "one_invoice_per_confirmed_order": (
            not not_once and not strays and not wrong_total,
            f"{len(not_once)} confirmed orders without exactly one invoice {_few(not_once)}; "
            f"{len(strays)} invoices of orders not confirmed {_few(strays)}; "
            f"{len(wrong_total)} invoices whose total is not the order's {_few(wrong_total)}",
        ),
        "invoice_numbers_gapless": (
            not gaps and not misnumbered,
            f"{len(facts.documents)} documents; gaps or duplicates by year "
            f"{gaps or 'none'}; {len(misnumbered)} numbers not YYYY-NNNNNN "
            f"{_few(misnumbered)}",
        ),
        "one_invoice_event_per_document": (
            not wrong_events,
            f"{len(wrong_events)} documents without exactly one invoice_issued "
            f"{_few(wrong_events)}",
        ),
    }


def _transfers_match(
    facts: ShopFacts, confirmed: dict[str, OrderRow], cancelled: dict[str, OrderRow]
) -> tuple[bool, str]:
    """A confirmed order's payment committed, for its total, to the shop; a cancelled
    order's payment, if one committed, refunded in full; and no other money moved."""
    committed = {t: row for t, row in facts.transfers.items() if row.state == "committed"}
    faults: list[str] = []
    explained: set[str] = set()
    for order_id, row in confirmed.items():
        paid = committed.get(row.payment_transfer_id or "")
        if paid is None or paid.amount_minor != row.total_minor:
            faults.append(f"{order_id}: payment {row.payment_transfer_id} not committed in full")
        explained.add(row.payment_transfer_id or "")
        if row.refund_transfer_id:
            faults.append(f"{order_id}: confirmed and refunded")
    for order_id, row in cancelled.items():
        paid = committed.get(row.payment_transfer_id or "")
        refund = committed.get(row.refund_transfer_id or "")
        explained |= {row.payment_transfer_id or "", row.refund_transfer_id or ""}
        if paid is not None and (refund is None or refund.amount_minor != paid.amount_minor):
            faults.append(f"{order_id}: paid {paid.amount_minor}, refund {row.refund_transfer_id}")
        if paid is None and refund is not None:
            faults.append(f"{order_id}: refunded without a payment")
    strays = set(committed) - explained
    if strays:
        faults.append(f"{len(strays)} committed transfers no order names {_few(strays)}")
    return not faults, "; ".join(faults[:5]) or f"{len(committed)} committed transfers"


def _stock_events(facts: ShopFacts) -> tuple[bool, str]:
    """Each product's stock events: every version once, the newest equal to the table."""
    by_product: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in facts.outbox.get("inventory", []):
        by_product[str(event.data.get("product_id"))].append(event.data)
    faults: list[str] = []
    for product, (on_hand, _, version) in facts.products.items():
        seen = by_product.get(product, [])
        versions = Counter(int(d.get("version", 0)) for d in seen)
        if sorted(versions) != list(range(1, version + 1)) or any(n > 1 for n in versions.values()):
            faults.append(f"{product}: versions {len(versions)} of {version}, some twice or none")
            continue
        newest = max(seen, key=lambda d: int(d.get("version", 0)))
        if int(newest.get("on_hand", -1)) != on_hand:
            faults.append(f"{product}: newest event says {newest.get('on_hand')}, table {on_hand}")
    return not faults, "; ".join(faults[:5]) or f"{len(facts.products)} products"


def _history_matches(
    facts: ShopFacts, confirmed: dict[str, OrderRow], cancelled: dict[str, OrderRow]
) -> tuple[bool, str]:
    final = {**confirmed, **cancelled}
    faults: list[str] = []
    for order_id, row in final.items():
        entry = facts.history.get(order_id)
        expected = HistoryRow(
            row.state, row.reason,
            row.total_minor if row.state == "CONFIRMED" else None,
            row.payment_transfer_id if row.state == "CONFIRMED" else None,
            row.refund_transfer_id,
        )  # fmt: skip
        if entry is None:
            faults.append(f"{order_id}: missing")
        elif _comparable(entry) != expected:
            faults.append(f"{order_id}: {entry} != {expected}")
    strays = set(facts.history) - set(final)
    if strays:
        faults.append(f"{len(strays)} entries of no final order {_few(strays)}")
    return not faults, "; ".join(faults[:3]) or f"{len(final)} entries agree"


def _comparable(entry: HistoryRow) -> HistoryRow:
    """A cancelled order's event carries no total or payment: compare what it carries."""
    if entry.state == "CANCELLED":
        return HistoryRow(entry.state, entry.reason, None, None, entry.refund_transfer_id)
    return entry


def _history_payments(
    facts: ShopFacts, confirmed: dict[str, OrderRow], cancelled: dict[str, OrderRow]
) -> tuple[bool, str]:
    """`paid` for every confirmed order, `refunded` for every refunded one, and the
    history knows only of transfers that committed."""
    committed = {t for t, row in facts.transfers.items() if row.state == "committed"}
    unpaid = [
        o for o, row in confirmed.items() if row.payment_transfer_id not in facts.history_payments
    ]
    unrefunded = [
        o
        for o, row in cancelled.items()
        if row.refund_transfer_id and row.refund_transfer_id not in facts.history_payments
    ]
    strays = facts.history_payments - committed
    return (
        not unpaid and not unrefunded and not strays,
        f"confirmed not paid: {_few(unpaid)}; refunded not refunded: {_few(unrefunded)}; "
        f"not committed: {_few(strays)}",
    )
