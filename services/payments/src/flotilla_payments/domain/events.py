"""What payments tells the world, as the name and `data` of its events (published as
CloudEvents, `flotilla.payments.<event>`, by the outbox adapter), built from the transfer
they are about and written in the transaction of its final state."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flotilla_payments.domain.transfer import Transfer, TransferState

__all__ = ["DIRECT", "SERVICE", "TRANSFER_COMMITTED", "committed_route", "transfer_committed"]

SERVICE = "payments"
TRANSFER_COMMITTED = "transfer_committed"
# The routing token of a transfer its initiator asked for; one asked for by a service on
# a customer's behalf goes out under that service's name.
DIRECT = "direct"
_SERVICE_PREFIX = "service:"


def committed_route(transfer: Transfer) -> str:
    """The subject's routing token: `flotilla.payments.transfer_committed.orders` for the
    transfers the orders service made, `.direct` for the rest. A consumer subscribes to
    the transfers it acts on (`.orders`) or to all of them (`.*`)."""
    requester = transfer.requested_by
    if requester is not None and requester.startswith(_SERVICE_PREFIX):
        return requester.removeprefix(_SERVICE_PREFIX)
    return DIRECT


def _rfc3339(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def transfer_committed(transfer: Transfer) -> tuple[str, dict[str, Any]]:
    """(event name, data) of `flotilla.payments.transfer_committed`: the money moved
    (subject: the transfer id; published under the routing token `committed_route` gives)."""
    if transfer.state is not TransferState.COMMITTED or transfer.completed_at is None:
        raise ValueError(f"transfer {transfer.id} is {transfer.state.value}, not committed")
    return (
        TRANSFER_COMMITTED,
        {
            "transfer_id": str(transfer.id),
            "from_account": transfer.from_account,
            "to_account": transfer.to_account,
            "amount_minor": transfer.amount_minor,
            "currency": transfer.currency,
            "reference": transfer.reference,
            "initiator": transfer.initiator,
            "requested_by": transfer.requested_by,
            "path": transfer.path.value,
            "committed_at": _rfc3339(transfer.completed_at),
        },
    )
