"""The operator console's use cases: the system picture (live figures per instance), the
work still pending (in-doubt transfers, PENDING orders), the audit logs and their chains,
a trace as a waterfall, the dead letters and their requeue, scaling.

The APIs are called through the gateway with the operator's own token, so the gateway's
policy and each service's own checks apply to them as to anyone. An API that is missing
or down (404, 503, no answer) makes its section say so; only a refused session (401)
ends the page. Everything a page shows is bounded, so a page stays small whatever the
system holds."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flotilla_kit.tracing.files import TraceSummary, as_trace_id
from flotilla_web.domain import GatewayUnavailable, InvalidForm, NotFound
from flotilla_web.domain.console_metrics import (
    GatewaySnapshot,
    InstanceCounts,
    InstanceRates,
    SnapshotHistory,
    format_error_rate,
    format_p99,
    format_rate,
    rates_between,
)
from flotilla_web.domain.console_waterfall import (
    BarBox,
    SpanBar,
    Waterfall,
    format_ms,
    lay_out,
)
from flotilla_web.service_layer.console_ports import (
    ConsoleSources,
    DeadLetters,
    DeadLetterView,
    RequeueOutcome,
    ScaleAnswer,
    ScaleDesk,
    ScalePending,
    SourceUnavailable,
    SpanFiles,
)
from flotilla_web.service_layer.ports import ApiAnswer, UserApi

__all__ = [
    "AUDIT_LIMIT",
    "AUDIT_LOGS",
    "DEAD_LETTER_LIMIT",
    "IN_DOUBT",
    "IN_DOUBT_AFTER_S",
    "MAX_DRAWN_SPANS",
    "MAX_SCALE_INSTANCES",
    "MERGED_AUDIT_LIMIT",
    "PENDING_LIMIT",
    "PENDING_ORDERS",
    "SHARDED_SERVICE",
    "STALE_REQUEST_S",
    "SYSTEM_INSTANCES",
    "AuditRow",
    "AuditView",
    "DeadLetterList",
    "GroupCount",
    "InstanceRow",
    "LogStatus",
    "MalformedTraceId",
    "OrderRow",
    "PendingWork",
    "ScalingView",
    "Section",
    "ServiceRow",
    "SpanRow",
    "SystemPicture",
    "TracePage",
    "TransferRow",
    "audit_logs",
    "checked_trace_id",
    "dead_letters",
    "pending_work",
    "recent_requests",
    "request_scale",
    "requeue_dead_letter",
    "scale_form",
    "scaling_view",
    "system_picture",
    "trace_page",
]

SYSTEM_INSTANCES = "/api/v1/system/instances"
IN_DOUBT = "/api/v1/in-doubt-transfers"
PENDING_ORDERS = "/api/v1/orders"
AUDIT = "/api/v1/audit"
# The audited logs with one log per service; the ledger has one per shard.
AUDIT_LOGS = ("auth", "payments", "inventory")
SHARDED_SERVICE = "accounts"
PENDING_LIMIT = 50  # rows of each pending list shown
# A transfer younger than this is on its way, not in doubt (recovery has not had to act).
IN_DOUBT_AFTER_S = 5
AUDIT_LIMIT = 20  # newest records asked of each log
MERGED_AUDIT_LIMIT = 60  # rows of the merged tail shown
DEAD_LETTER_LIMIT = 40
DETAILS_PREVIEW = 240  # characters of an audit record's details shown
MAX_DRAWN_SPANS = 100  # rows of a waterfall (the page and its files stay under 100 KB)
MAX_SCALE_INSTANCES = 64  # a sanity bound; the supervisor has its own, tighter limits
STALE_REQUEST_S = 30.0  # a scale request unanswered this long: is a supervisor running?
_SERVICE_NAME = re.compile(r"[a-z][a-z0-9-]{0,62}")


# -- reading answers -------------------------------------------------------------------
def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def _text(value: Any) -> str:
    return value if isinstance(value, str) else "" if value is None else str(value)


def _moment(value: Any) -> dt.datetime | None:
    if not isinstance(value, str):
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _seconds_text(moment: dt.datetime | None) -> str:
    """A moment to the second, in UTC: `2026-12-07 14:05:09 UTC`."""
    if moment is None:
        return "\u2014"
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _trace_of(item: Mapping[str, Any]) -> str | None:
    """The trace of a record, when the data names one (`trace_id`, `traceparent`)."""
    for key in ("trace_id", "trace.id"):
        value = item.get(key)
        if isinstance(value, str) and (found := as_trace_id(value)) is not None:
            return found
    traceparent = item.get("traceparent")
    if isinstance(traceparent, str):
        parts = traceparent.strip().split("-")
        if len(parts) == 4 and (found := as_trace_id(parts[1])) is not None:
            return found if found != "0" * 32 else None
    return None


def _why_not(answer: ApiAnswer, path: str) -> str:
    """Why an API's answer is not the data: for a section that says it is unavailable."""
    detail = f": {answer.detail}" if answer.detail else ""
    if answer.status == 404:
        return f"Not available: this system has no {path} (HTTP 404{detail})."
    if answer.status == 503:
        return f"Not available right now: the service did not answer (HTTP 503{detail})."
    if answer.status == 403:
        return f"Refused: your roles do not allow {path} (HTTP 403{detail})."
    return f"The API answered HTTP {answer.status}{detail}."


_NO_ANSWER = "Not available right now: the gateway did not answer in time."


# -- the system picture ----------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class InstanceRow:
    service: str
    name: str
    shard: int | None
    ready: bool
    in_flight: int | None
    rates: InstanceRates

    @property
    def requests_per_s(self) -> str:
        return format_rate(self.rates)

    @property
    def p99_ms(self) -> str:
        return format_p99(self.rates)

    @property
    def error_rate(self) -> str:
        return format_error_rate(self.rates)

    def to_json(self) -> dict[str, Any]:
        rates = self.rates
        return {
            "service": self.service,
            "name": self.name,
            "shard": self.shard,
            "ready": self.ready,
            "in_flight": self.in_flight,
            "requests_per_s": self.requests_per_s,
            "p99_ms": self.p99_ms,
            "error_rate": self.error_rate,
            "values": {
                "requests_per_s": rates.requests_per_s,
                "p99_s": rates.p99.seconds if rates.p99 is not None else None,
                "p99_above": rates.p99.above if rates.p99 is not None else False,
                "error_rate": rates.error_rate,
            },
        }


@dataclass(frozen=True, slots=True)
class ServiceRow:
    name: str
    sharded: bool
    instances: tuple[InstanceRow, ...]


@dataclass(frozen=True, slots=True)
class GroupCount:
    """What scales as one (a service, or one ledger shard: `accounts-s0`), counted."""

    group: str
    service: str
    shard: int | None
    instances: int
    ready: int


@dataclass(frozen=True, slots=True)
class SystemPicture:
    available: bool
    reason: str
    gateway: str = ""
    at: dt.datetime | None = None
    window_s: float | None = None
    services: tuple[ServiceRow, ...] = ()

    @classmethod
    def unavailable(cls, reason: str) -> SystemPicture:
        return cls(False, reason)

    @property
    def instances(self) -> list[InstanceRow]:
        return [row for service in self.services for row in service.instances]

    @property
    def at_text(self) -> str:
        return _seconds_text(self.at)

    @property
    def window_text(self) -> str:
        return "\u2013" if self.window_s is None else f"{self.window_s:.1f} s"

    def shard_count(self, service: str = SHARDED_SERVICE) -> int | None:
        """How many shards `service` has, by its instances' shards; None if unknown."""
        shards = [
            row.shard for row in self.instances if row.service == service and row.shard is not None
        ]
        return max(shards) + 1 if shards else None

    def group_counts(self) -> list[GroupCount]:
        groups: dict[tuple[str, int | None], list[InstanceRow]] = {}
        for row in self.instances:
            groups.setdefault((row.service, row.shard), []).append(row)
        return [
            GroupCount(
                group=service if shard is None else f"{service}-s{shard}",
                service=service,
                shard=shard,
                instances=len(rows),
                ready=sum(1 for row in rows if row.ready),
            )
            for (service, shard), rows in groups.items()
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "available": self.available,
            "reason": self.reason,
            "gateway": self.gateway,
            "at": self.at.isoformat() if self.at is not None else None,
            "at_text": self.at_text,
            "window_s": self.window_s,
            "window_text": self.window_text,
            "instances": [row.to_json() for row in self.instances],
            "groups": [
                {"group": g.group, "instances": g.instances, "ready": g.ready}
                for g in self.group_counts()
            ],
        }


def _counts_of(entry: Mapping[str, Any]) -> InstanceCounts | None:
    requests, errors, buckets = _int(entry.get("requests")), _int(entry.get("errors")), []
    raw = entry.get("buckets")
    if requests is None or errors is None or not isinstance(raw, list):
        return None
    for pair in raw:
        if not isinstance(pair, list | tuple) or len(pair) != 2:
            return None
        bound, count = _number(pair[0]), _int(pair[1])
        if bound is None or count is None:
            return None
        buckets.append((bound, count))
    return InstanceCounts(requests, errors, tuple(buckets))


@dataclass(frozen=True, slots=True)
class _Seen:
    service: str
    sharded: bool
    entries: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)


def _read_picture(body: Any) -> tuple[GatewaySnapshot, list[_Seen]] | None:
    if not isinstance(body, dict) or not isinstance(body.get("services"), list):
        return None
    at = _number(body.get("at"))
    gateway = body.get("gateway")
    if at is None or not isinstance(gateway, str):
        return None
    counts: dict[tuple[str, str], InstanceCounts] = {}
    seen: list[_Seen] = []
    for service in body["services"]:
        if not isinstance(service, dict) or not isinstance(service.get("name"), str):
            continue
        found = _Seen(service["name"], service.get("sharded") is True)
        for entry in service.get("instances") or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                found.entries.append((entry["name"], entry))
                instance_counts = _counts_of(entry)
                if instance_counts is not None:
                    counts[(found.service, entry["name"])] = instance_counts
        seen.append(found)
    return GatewaySnapshot(gateway, at, counts), seen


async def system_picture(api: UserApi, history: SnapshotHistory) -> SystemPicture:
    """The answering gateway's view of every service and instance, with each instance's
    figures since the last snapshot of that gateway this web instance kept (at least a
    second old), or dashes when there is none yet."""
    try:
        answer = await api.get(SYSTEM_INSTANCES)
    except GatewayUnavailable:
        return SystemPicture.unavailable(_NO_ANSWER)
    if not answer.ok:
        return SystemPicture.unavailable(_why_not(answer, SYSTEM_INSTANCES))
    read = _read_picture(answer.body)
    if read is None:
        return SystemPicture.unavailable("The gateway's answer is not a system picture.")
    snapshot, seen = read
    baseline = history.record(snapshot)
    rates = rates_between(baseline, snapshot)
    services = tuple(
        ServiceRow(
            name=service.service,
            sharded=service.sharded,
            instances=tuple(
                InstanceRow(
                    service=service.service,
                    name=name,
                    shard=_int(entry.get("shard")),
                    ready=entry.get("healthy") is True,
                    in_flight=_int(entry.get("in_flight")),
                    rates=rates.get((service.service, name), InstanceRates.unknown()),
                )
                for name, entry in service.entries
            ),
        )
        for service in seen
    )
    return SystemPicture(
        available=True,
        reason="",
        gateway=snapshot.gateway,
        at=dt.datetime.fromtimestamp(snapshot.at, dt.UTC),
        window_s=snapshot.at - baseline.at if baseline is not None else None,
        services=services,
    )


# -- pending work ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Section:
    """One part of a page fed by one API: its rows, or why there are none."""

    available: bool
    reason: str
    rows: tuple[Any, ...] = ()
    more: bool = False  # there are more than the rows shown

    @classmethod
    def down(cls, reason: str) -> Section:
        return cls(False, reason)


@dataclass(frozen=True, slots=True)
class TransferRow:
    id: str
    state: str
    path: str
    from_account: str
    to_account: str
    amount_minor: int | None
    currency: str
    age_s: float | None
    attempts: int | None
    lease_owner: str
    created_at: str
    trace_id: str | None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> TransferRow:
        return cls(
            id=_text(item.get("id")),
            state=_text(item.get("state")),
            path=_text(item.get("path")),
            from_account=_text(item.get("from_account")),
            to_account=_text(item.get("to_account")),
            amount_minor=_int(item.get("amount_minor")),
            currency=_text(item.get("currency")),
            age_s=_number(item.get("age_s")),
            attempts=_int(item.get("attempts")),
            lease_owner=_text(item.get("lease_owner")),
            created_at=_seconds_text(_moment(item.get("created_at"))),
            trace_id=_trace_of(item),
        )

    @property
    def age_text(self) -> str:
        return "\u2014" if self.age_s is None else f"{self.age_s:.0f} s"


@dataclass(frozen=True, slots=True)
class OrderRow:
    id: str
    customer_id: str
    state: str
    total_minor: int | None
    currency: str
    created_at: str
    lines: int
    trace_id: str | None

    @classmethod
    def of(cls, item: Mapping[str, Any]) -> OrderRow:
        lines = item.get("lines")
        return cls(
            id=_text(item.get("id")),
            customer_id=_text(item.get("customer_id")),
            state=_text(item.get("state")),
            total_minor=_int(item.get("total_minor")),
            currency=_text(item.get("currency")),
            created_at=_seconds_text(_moment(item.get("created_at"))),
            lines=len(lines) if isinstance(lines, list) else 0,
            trace_id=_trace_of(item),
        )


@dataclass(frozen=True, slots=True)
class PendingWork:
    transfers: Section
    orders: Section


async def _list_section(
    api: UserApi,
    path: str,
    *,
    params: Mapping[str, str | int] | None,
    key: str,
    row: Any,
) -> Section:
    try:
        answer = await api.get(path, params=params)
    except GatewayUnavailable:
        return Section.down(_NO_ANSWER)
    if not answer.ok:
        return Section.down(_why_not(answer, path))
    items = answer.body.get(key) if isinstance(answer.body, dict) else None
    if not isinstance(items, list):
        return Section.down(f"The answer of {path} holds no list of {key}.")
    found = [row(item) for item in items if isinstance(item, dict)]
    more = len(found) > PENDING_LIMIT or bool(
        isinstance(answer.body, dict) and answer.body.get("next_after")
    )
    return Section(True, "", tuple(found[:PENDING_LIMIT]), more)


async def pending_work(api: UserApi) -> PendingWork:
    """The transfers recovery is still driving (unfinished IN_DOUBT_AFTER_S after they
    were asked for), and the orders whose saga is not over."""
    transfers, orders = await asyncio.gather(
        _list_section(
            api,
            IN_DOUBT,
            params={"older_than": IN_DOUBT_AFTER_S},
            key="transfers",
            row=TransferRow.of,
        ),
        _list_section(
            api,
            PENDING_ORDERS,
            params={"status": "PENDING", "limit": PENDING_LIMIT},
            key="items",
            row=OrderRow.of,
        ),
    )
    return PendingWork(transfers, orders)


# -- audit -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LogStatus:
    log: str
    path: str
    available: bool
    reason: str
    intact: bool | None = None
    verified: int | None = None
    first_broken: int | None = None
    broken_reason: str = ""

    @property
    def status(self) -> str:
        if not self.available or self.intact is None:
            return "unavailable"
        return "intact" if self.intact else "broken"


@dataclass(frozen=True, slots=True)
class AuditRow:
    log: str
    seq: int | None
    at: dt.datetime | None
    actor: str
    action: str
    target: str
    outcome: str
    details: str
    trace_id: str | None

    @property
    def at_text(self) -> str:
        return _seconds_text(self.at)


@dataclass(frozen=True, slots=True)
class AuditView:
    logs: tuple[LogStatus, ...]
    records: tuple[AuditRow, ...]
    shards_known: bool


def _details_text(details: Any) -> str:
    if not details:
        return ""
    text = json.dumps(details, sort_keys=True, separators=(", ", ": "), default=str)
    return text if len(text) <= DETAILS_PREVIEW else text[: DETAILS_PREVIEW - 1] + "\u2026"


def _audit_row(log: str, record: Mapping[str, Any]) -> AuditRow:
    details = record.get("details")
    return AuditRow(
        log=log,
        seq=_int(record.get("seq")),
        at=_moment(record.get("at")),
        actor=_text(record.get("actor")),
        action=_text(record.get("action")),
        target=_text(record.get("target")),
        outcome=_text(record.get("outcome")),
        details=_details_text(details),
        trace_id=_trace_of(details) if isinstance(details, dict) else None,
    )


async def _audit_log(api: UserApi, log: str, path: str) -> tuple[LogStatus, list[AuditRow]]:
    try:
        answer = await api.get(path, params={"limit": AUDIT_LIMIT})
    except GatewayUnavailable:
        return LogStatus(log, path, False, _NO_ANSWER), []
    if not answer.ok:
        return LogStatus(log, path, False, _why_not(answer, path)), []
    body = answer.body if isinstance(answer.body, dict) else {}
    chain, records = body.get("chain"), body.get("records")
    if not isinstance(chain, dict) or not isinstance(records, list):
        return LogStatus(log, path, False, f"The answer of {path} is not an audit log."), []
    named = body.get("log")
    name = named if isinstance(named, str) and named else log
    intact = chain.get("intact")
    status = LogStatus(
        log=name,
        path=path,
        available=True,
        reason="",
        intact=intact if isinstance(intact, bool) else None,
        verified=_int(chain.get("records")),
        first_broken=_int(chain.get("first_broken")),
        broken_reason=_text(chain.get("reason")),
    )
    return status, [_audit_row(name, r) for r in records[:AUDIT_LIMIT] if isinstance(r, dict)]


async def audit_logs(api: UserApi, *, shards: int | None) -> AuditView:
    """Every audited log's chain state and newest records, the records merged newest
    first. `shards`: the ledger's (from the system picture); None: unknown, shard 0 only."""
    logs = [(log, f"{AUDIT}/{log}") for log in AUDIT_LOGS]
    logs += [
        (f"{SHARDED_SERVICE}-s{n}", f"{AUDIT}/{SHARDED_SERVICE}/{n}") for n in range(shards or 1)
    ]
    answers = await asyncio.gather(*(_audit_log(api, log, path) for log, path in logs))
    merged = [row for _, rows in answers for row in rows]
    oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
    merged.sort(key=lambda row: (row.at or oldest, row.seq or 0), reverse=True)
    return AuditView(
        logs=tuple(status for status, _ in answers),
        records=tuple(merged[:MERGED_AUDIT_LIMIT]),
        shards_known=shards is not None,
    )


# -- traces ----------------------------------------------------------------------------
class MalformedTraceId(ValueError):
    """Not a trace id (32 hex digits)."""


def checked_trace_id(text: str) -> str:
    found = as_trace_id(text)
    if found is None:
        raise MalformedTraceId(
            "A trace id is 32 hexadecimal digits, like 4bf92f3577b34da6a3ce929d0e0e4736."
        )
    return found


@dataclass(frozen=True, slots=True)
class SpanRow:
    box: BarBox
    span_id: str
    name: str
    kind: str
    service: str
    instance: str
    status: str
    status_message: str

    @property
    def duration_text(self) -> str:
        return format_ms(self.box.duration_ms)

    @property
    def offset_text(self) -> str:
        return format_ms(self.box.offset_ms)

    @property
    def label(self) -> str:
        return f"{self.name} \u00b7 {self.service}/{self.instance} \u00b7 {self.duration_text}"


@dataclass(frozen=True, slots=True)
class TracePage:
    trace_id: str
    span_count: int
    services: tuple[str, ...]
    duration_text: str
    truncated: bool  # more spans on disk than were read
    drawn_cut: bool  # more spans read than drawn
    waterfall: Waterfall
    rows: tuple[SpanRow, ...]


async def trace_page(spans: SpanFiles, trace_id: str) -> TracePage:
    """The waterfall of one trace. NotFound when no span of it is on disk (unknown id,
    not sampled, or not written yet); SourceUnavailable when no span files are here."""
    reason = spans.unavailable()
    if reason is not None:
        raise SourceUnavailable(reason)
    tree = await spans.trace(trace_id)
    if tree is None:
        raise NotFound
    bars = tree.waterfall()
    drawn = bars[:MAX_DRAWN_SPANS]
    layout = lay_out([SpanBar(b.span_id, b.depth, b.start_ms, b.end_ms) for b in drawn])
    rows = tuple(
        SpanRow(
            box=box,
            span_id=bar.span_id,
            name=bar.span.name,
            kind=bar.span.kind,
            service=bar.span.service,
            instance=bar.span.instance,
            status=bar.span.status,
            status_message=bar.span.status_message or "",
        )
        for bar, box in zip(drawn, layout.boxes, strict=True)
    )
    return TracePage(
        trace_id=trace_id,
        span_count=len(bars),
        services=tuple(tree.services()),
        duration_text=format_ms(layout.total_ms),
        truncated=tree.truncated,
        drawn_cut=len(bars) > len(drawn),
        waterfall=layout,
        rows=rows,
    )


async def recent_requests(spans: SpanFiles, limit: int = 20) -> Section:
    """The newest requests through the gateway, each a way to its trace."""
    reason = spans.unavailable()
    if reason is not None:
        return Section.down(reason)
    found: list[TraceSummary] = await spans.recent(limit)
    return Section(True, "", tuple(found))


# -- dead letters ----------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeadLetterList:
    available: bool
    reason: str
    letters: tuple[DeadLetterView, ...] = ()


async def dead_letters(source: DeadLetters) -> DeadLetterList:
    reason = source.unavailable()
    if reason is not None:
        return DeadLetterList(False, reason)
    try:
        letters = await source.newest(DEAD_LETTER_LIMIT)
    except SourceUnavailable as down:
        return DeadLetterList(False, str(down))
    return DeadLetterList(True, "", tuple(letters))


def _sequence(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise NotFound
    return int(text)


async def requeue_dead_letter(source: DeadLetters, sequence: str) -> RequeueOutcome:
    """Put dead letter `sequence` back on its subject. NotFound for what is not a
    sequence number; else as `DeadLetters.requeue`."""
    number = _sequence(sequence)
    reason = source.unavailable()
    if reason is not None:
        raise SourceUnavailable(reason)
    return await source.requeue(number)


# -- scaling ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ScalingView:
    picture: SystemPicture
    available: bool
    reason: str
    pending: tuple[ScalePending, ...]
    answered: tuple[ScaleAnswer, ...]

    @property
    def services(self) -> list[str]:
        """The services one may ask to scale: those the gateway routes to."""
        return [service.name for service in self.picture.services]

    @property
    def stale(self) -> bool:
        return any(request.age_s >= STALE_REQUEST_S for request in self.pending)


async def scaling_view(api: UserApi, sources: ConsoleSources) -> ScalingView:
    picture = await system_picture(api, sources.history)
    desk: ScaleDesk = sources.scaling
    reason = desk.unavailable()
    if reason is not None:
        return ScalingView(picture, False, reason, (), ())
    pending, answered = await asyncio.gather(desk.pending(), desk.answered(10))
    return ScalingView(picture, True, "", tuple(pending), tuple(answered))


def scale_form(service: str, instances: str) -> tuple[str, int]:
    """The form's fields, checked; InvalidForm names what is wrong. Which services may
    scale and how far is the supervisor's to say: it answers a request it refuses."""
    errors: dict[str, str] = {}
    service = service.strip()
    if not service:
        errors["service"] = "Choose a service."
    elif not _SERVICE_NAME.fullmatch(service):
        errors["service"] = "A service name is lower-case letters, digits and dashes."
    count = instances.strip()
    number = int(count) if count.isascii() and count.isdigit() and len(count) <= 4 else None
    if number is None or not 1 <= number <= MAX_SCALE_INSTANCES:
        errors["instances"] = f"Enter a whole number of instances from 1 to {MAX_SCALE_INSTANCES}."
    if errors or number is None:
        raise InvalidForm(errors)
    return service, number


async def request_scale(desk: ScaleDesk, service: str, instances: int) -> str:
    reason = desk.unavailable()
    if reason is not None:
        raise SourceUnavailable(reason)
    return await desk.submit(service, instances)
