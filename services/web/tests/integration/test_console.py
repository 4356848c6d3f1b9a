"""The operator console, the web app in process against the stand-in gateway (a real HTTPS
server answering the console's APIs, `console_world.py`), real span files, a real NATS
JetStream for the dead letters and a real scale-request folder:

support reads every page and acts on none, admin acts (requeue, scale), a customer gets
the 403 page everywhere; a forged CSRF token is a 403 with nothing requeued or scaled; an
API or source that is missing says so in its section, never a 500; every page keeps the
contract (nothing inline the CSP would block, labelled fields) and stays under 100 KB."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from fastapi import APIRouter

from flotilla_kit import scale_requests
from flotilla_kit.events import (
    DEAD_REASON,
    DELIVERIES,
    DLQ_STREAM,
    EVENTS_STREAM,
    ORIGINAL_SUBJECT,
    CloudEvent,
    dlq_subject,
    ensure_streams,
    list_dead_letters,
)
from flotilla_web.adapters.system import console_sources
from flotilla_web.entrypoints.rendering import TEMPLATES
from flotilla_web.entrypoints.static import STATIC
from services.web.tests.integration.conftest import PASSWORD, Site, csrf_of, log_in, page_csrf
from services.web.tests.integration.console_world import (
    ConsoleWorld,
    Instance,
    audit_log,
    audit_record,
    console_routes,
    span,
    write_spans,
)
from services.web.tests.integration.gateway import User

LIMIT = 100 * 1024
TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
GET_PAGES = [
    "/console",
    "/console/traces",
    f"/console/traces/{TRACE}",
    "/console/pending",
    "/console/dead-letters",
    "/console/audit",
    "/console/scaling",
]


@pytest.fixture
def database_url(sqlite_url: str) -> str:
    """The console keeps nothing in the session store: SQLite is enough here (the store
    itself is tested on both backends by the session tests)."""
    return sqlite_url


@pytest.fixture
def console() -> ConsoleWorld:
    return ConsoleWorld()


@pytest.fixture
def gateway_routes(console: ConsoleWorld) -> list[APIRouter]:
    return [console_routes(console)]


@pytest.fixture
def scale_dir(site: Site) -> Path:
    """The supervisor's folder under `flotilla up` (var/run/scale): its parent exists."""
    (site.settings.var_dir / "run").mkdir(parents=True, exist_ok=True)
    return site.settings.scale_requests_path


async def _logged_in(browser: httpx.AsyncClient, username: str) -> httpx.AsyncClient:
    answer = await log_in(browser, username)
    assert answer.status_code == 303, answer.text
    return browser


@pytest.fixture
async def sam(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    """Support: reads the console."""
    async with site.browser() as browser:
        yield await _logged_in(browser, "sam")


@pytest.fixture
async def ada(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    """Admin: reads and acts."""
    site.world.users["ada"] = User("user-ada", PASSWORD, ["admin"])
    async with site.browser() as browser:
        yield await _logged_in(browser, "ada")


class Page(HTMLParser):
    """A page's elements, and what the CSP would block."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.inline_scripts = 0
        self._script = False
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))
        self._script = tag == "script" and not dict(attrs).get("src")

    def handle_endtag(self, tag: str) -> None:
        self._script = False

    def handle_data(self, data: str) -> None:
        if self._script and data.strip():
            self.inline_scripts += 1

    def having(self, tag: str, **attrs: str) -> list[dict[str, str]]:
        return [
            a for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items())
        ]

    def check_contract(self) -> None:
        assert self.inline_scripts == 0
        labels = {a["for"] for a in self.having("label") if a.get("for")}
        for tag, attrs in self.tags:
            assert tag != "style", attrs
            assert "style" not in attrs, (tag, attrs)
            assert not any(name.startswith("on") for name in attrs), (tag, attrs)
            if tag in ("input", "select", "textarea") and attrs.get("type") != "hidden":
                assert attrs.get("id") in labels, (tag, attrs)
        assert self.having("main", id="main")
        assert self.having("script", src="/static/console.js")


def rows_of(page: Page, **attrs: str) -> list[dict[str, str]]:
    return page.having("tr", **attrs)


async def page(browser: httpx.AsyncClient, path: str, status: int = 200) -> Page:
    answer = await browser.get(path)
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("text/html")
    assert answer.headers["cache-control"] == "no-store"
    assert len(answer.content) < LIMIT, (path, len(answer.content))
    return Page(answer.text)


def heading(html: str) -> str:
    found = re.search(r"<h1>(.*?)</h1>", html, re.S)
    assert found is not None, html
    return found.group(1).strip()


# -- the system picture ----------------------------------------------------------------
async def test_support_sees_every_instance_with_figures_that_follow_the_gateways_counts(
    sam: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    shown = await page(sam, "/console")
    rows = rows_of(shown)
    assert [r["data-instance"] for r in rows if "data-instance" in r] == [
        i.name for i in console.instances
    ]
    assert rows_of(shown, **{"data-instance": "orders-2"})[0]["data-ready"] == "false"
    assert shown.having("table", id="instances", **{"data-poll": "/console/system.json"})
    assert not shown.having("form", action="/console/scale")  # nothing to act on here

    # The first snapshot (and another taken within a second) has nothing to compare with.
    first = (await sam.get("/console/system.json")).json()
    assert {i["requests_per_s"] for i in first["instances"]} == {"\u2013"}

    # Two seconds later: payments answered 200 requests of 4 ms, 2 of them 5xx.
    console.at += 2.0
    console.instance("payments-1").serve(200, seconds=0.004, errors=2)
    answer = await sam.get("/console/system.json", headers={"Accept": "application/json"})
    assert answer.status_code == 200
    assert answer.headers["cache-control"] == "no-store"
    picture = answer.json()
    by_name = {i["name"]: i for i in picture["instances"]}
    payments = by_name["payments-1"]
    # All 200 in the (2.5 ms, 5 ms] bucket: rank 198 of 200 is at 2.5 + 2.5 * 198/200.
    assert (payments["requests_per_s"], payments["error_rate"], payments["p99_ms"]) == (
        "100",
        "1.0 %",
        "5.0",
    )
    assert payments["values"]["p99_s"] == pytest.approx(0.004975)
    # No traffic on the others: a rate of 0, no error rate, no p99.
    idle = by_name["accounts-s0-1"]
    assert (idle["requests_per_s"], idle["error_rate"], idle["p99_ms"]) == (
        "0.0",
        "\u2013",
        "\u2013",
    )
    assert picture["window_s"] == 2.0
    assert picture["gateway"] == "gateway-1"
    assert by_name["orders-2"]["ready"] is False
    assert by_name["accounts-s1-1"]["shard"] == 1


async def test_a_gateway_that_refuses_or_fails_makes_the_picture_say_so(
    sam: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    console.system_status = 503
    shown = await sam.get("/console")
    assert shown.status_code == 200
    assert 'id="system-unavailable"' in shown.text
    assert "HTTP 503" in shown.text
    picture = (await sam.get("/console/system.json")).json()
    assert picture["available"] is False
    assert "HTTP 503" in picture["reason"]
    assert picture["instances"] == []


# -- who may do what -------------------------------------------------------------------
async def test_a_customer_gets_the_403_page_on_every_console_url(
    site: Site, alice: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    for path in GET_PAGES:
        answer = await alice.get(path)
        assert answer.status_code == 403, path
        assert answer.headers["content-type"].startswith("text/html"), path
        assert heading(answer.text) == "Forbidden", path
    for path in ("/console/system.json", "/console/scaling.json"):
        answer = await alice.get(path)
        assert answer.status_code == 403
        assert answer.headers["content-type"].startswith("application/problem+json")
    token = await page_csrf(alice, "/accounts")
    for path, form in (
        ("/console/dead-letters/1/requeue", {}),
        ("/console/scale", {"service": "orders", "instances": "3"}),
    ):
        answer = await alice.post(path, data={"csrf_token": token, **form})
        assert answer.status_code == 403, path
        assert heading(answer.text) == "Forbidden"
    assert console.calls == []  # no console API was asked anything for her
    assert not (site.settings.scale_requests_path).exists()


async def test_the_navigation_shows_the_console_to_operators_only(
    alice: httpx.AsyncClient, sam: httpx.AsyncClient
) -> None:
    assert 'href="/console"' not in (await alice.get("/accounts")).text
    shown = await page(sam, "/console/pending")
    assert shown.having("a", href="/console/pending", **{"aria-current": "page"})


# -- pending work ----------------------------------------------------------------------
async def test_pending_lists_the_in_doubt_transfers_and_the_pending_orders(
    sam: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    console.in_doubt = [
        {
            "id": "0b5c1e9a-6f7e-4a7e-9a55-2d1f0c2f9a10", "from_account": "acc_0_a",
            "to_account": "acc_1_b", "amount_minor": 1250, "currency": "EUR", "reference": "",
            "state": "committing", "refusal": None, "path": "2pc",
            "created_at": "2026-12-07T14:05:09+00:00", "decided_at": None, "completed_at": None,
            "initiator": "user-alice", "age_s": 42.7, "attempts": 3,
            "next_attempt_at": None, "lease_owner": "payments-1", "lease_until": None,
        }
    ]  # fmt: skip
    console.pending_orders = [
        {
            "id": "ord-1", "customer_id": "user-bob", "state": "PENDING", "reason": None,
            "lines": [{"product_id": "prd_apple", "quantity": 2}], "total_minor": 300,
            "currency": "EUR", "payment_account": "acc_0_c",
            "created_at": "2026-12-07T14:06:00+00:00",
        }
    ]  # fmt: skip
    answer = await sam.get("/console/pending")
    shown = Page(answer.text)
    assert shown.having("section", id="in-doubt", **{"data-available": "true"})
    assert rows_of(shown, **{"data-transfer": "0b5c1e9a-6f7e-4a7e-9a55-2d1f0c2f9a10"})
    assert rows_of(shown, **{"data-order": "ord-1"})
    assert "12.50 EUR" in answer.text
    assert "committing" in answer.text
    assert "43 s" in answer.text
    assert "3.00 EUR" in answer.text
    assert "payments-1" in answer.text


async def test_an_api_that_is_missing_or_down_makes_only_its_section_say_so(
    sam: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    console.in_doubt_status = 404
    console.orders_status = 503
    answer = await sam.get("/console/pending")
    assert answer.status_code == 200
    shown = Page(answer.text)
    assert shown.having("section", id="in-doubt", **{"data-available": "false"})
    assert shown.having("section", id="pending-orders", **{"data-available": "false"})
    assert "HTTP 404" in answer.text
    assert "HTTP 503" in answer.text


# -- audit -----------------------------------------------------------------------------
async def test_audit_shows_every_chain_and_the_newest_records_of_all_logs_merged(
    sam: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    traced = "0af7651916cd43dd8448eb211c80319c"
    console.audit = {
        "auth": audit_log("auth", [audit_record(2, "2026-12-07T10:00:03+00:00", "login"),
                                   audit_record(1, "2026-12-07T10:00:00+00:00", "login")]),
        "payments": audit_log("payments", [
            audit_record(7, "2026-12-07T10:00:02+00:00", "transfer", trace_id=traced)]),
        "accounts-s0": audit_log("accounts-s0", [
            audit_record(5, "2026-12-07T10:00:04+00:00", "deposit")]),
        "accounts-s1": audit_log("accounts-s1", [
            audit_record(9, "2026-12-07T10:00:01+00:00", "deposit")], broken_at=3),
    }  # fmt: skip
    console.audit_status["inventory"] = 503
    answer = await sam.get("/console/audit")
    assert answer.status_code == 200
    shown = Page(answer.text)
    # One log per service, one per ledger shard (two shards in the picture).
    chains = {r["data-log"]: r["data-chain"] for r in rows_of(shown) if "data-chain" in r}
    assert chains == {
        "auth": "intact",
        "payments": "intact",
        "inventory": "unavailable",
        "accounts-s0": "intact",
        "accounts-s1": "broken",
    }
    assert "broken at seq 3" in answer.text
    assert "HTTP 503" in answer.text
    assert sorted(c for c in console.calls if c.startswith("audit:")) == [
        f"audit:{log}:20" for log in sorted(chains)
    ]
    merged = [(r["data-log"], r["data-seq"]) for r in rows_of(shown) if "data-seq" in r]
    assert merged == [
        ("accounts-s0", "5"), ("auth", "2"), ("payments", "7"), ("accounts-s1", "9"), ("auth", "1"),
    ]  # fmt: skip
    assert shown.having("a", href=f"/console/traces/{traced}")


# -- traces ----------------------------------------------------------------------------
def _trace_spans(trace_id: str = TRACE) -> list[dict[str, Any]]:
    return [
        span(trace_id, "a" * 16, None, "POST /api/v1/transfers", "gateway", 0, 40,
             attributes={"http.response.status_code": 201}),
        span(trace_id, "b" * 16, "a" * 16, "POST /transfers", "web", 5, 35, status="ERROR"),
        span(trace_id, "c" * 16, "b" * 16, "db transaction", "payments", 10, 30),
    ]  # fmt: skip


async def test_a_trace_is_drawn_as_a_waterfall_from_the_span_files(
    site: Site, sam: httpx.AsyncClient
) -> None:
    other = "1" * 32
    write_spans(site.settings.traces_path, [*_trace_spans(), *_trace_spans(other)[:1]])
    listed = await page(sam, "/console/traces")
    assert {r["data-trace"] for r in rows_of(listed) if "data-trace" in r} == {TRACE, other}
    assert listed.having("a", href=f"/console/traces/{TRACE}")

    # The form takes an id as people paste it (upper case, spaces) to its page.
    moved = await sam.get("/console/traces", params={"trace_id": f" {TRACE.upper()} "})
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/console/traces/{TRACE}"

    answer = await sam.get(f"/console/traces/{TRACE}")
    shown = Page(answer.text)
    shown.check_contract()
    assert shown.having("svg", id="waterfall")
    groups = [g for g in shown.having("g") if "data-span" in g]
    assert [g["data-span"] for g in groups] == ["a" * 16, "b" * 16, "c" * 16]
    assert "status-error" in groups[1]["class"]
    bars = [(r["x"], r["width"]) for r in shown.having("rect", **{"class": "bar"})]
    # 40 ms on 1000 units: 25 units a millisecond.
    assert bars == [("0.0", "1000.0"), ("125.0", "750.0"), ("250.0", "500.0")]
    assert "POST /transfers · web/web-1 · 30.0 ms" in answer.text
    assert "3 spans in 40.0 ms, through gateway, payments, web" in answer.text
    assert "ERROR: boom" in answer.text


async def test_an_unknown_trace_is_a_404_and_a_malformed_id_a_400(
    site: Site, sam: httpx.AsyncClient
) -> None:
    write_spans(site.settings.traces_path, _trace_spans())
    unknown = await sam.get(f"/console/traces/{'f' * 32}")
    assert unknown.status_code == 404
    assert heading(unknown.text) == "Trace not found"
    malformed = await sam.get("/console/traces/not-a-trace")
    assert malformed.status_code == 400
    assert heading(malformed.text) == "Bad request: not a trace id"
    form = await sam.get("/console/traces", params={"trace_id": "<script>"})
    assert form.status_code == 400
    shown = Page(form.text)
    assert shown.having("input", id="trace_id", **{"aria-describedby": "trace_id-error"})
    assert shown.having("p", id="trace_id-error")
    assert "<script>" not in form.text
    assert "&lt;script&gt;" in form.text


async def test_without_span_files_the_trace_pages_say_what_to_set(
    sam: httpx.AsyncClient,
) -> None:
    listed = await sam.get("/console/traces")
    assert listed.status_code == 200
    assert "Set FLOTILLA_TRACES_DIR" in listed.text
    one = await sam.get(f"/console/traces/{TRACE}")
    assert one.status_code == 503
    assert "FLOTILLA_TRACES_DIR" in one.text


# -- dead letters (a real NATS) --------------------------------------------------------
async def _dead_letter(
    url: str, trace_id: str = TRACE, data: dict[str, Any] | None = None
) -> tuple[int, CloudEvent]:
    """An event a consumer gave up on, in FLOTILLA_DLQ as the kit's consumer puts it."""
    event = CloudEvent(
        id=str(uuid.uuid4()),
        source="/flotilla/orders",
        type="flotilla.orders.order-placed",
        time=dt.datetime.now(dt.UTC),
        data=data or {"order_id": "ord-1"},
        traceparent=f"00-{trace_id}-{'b' * 16}-01",
    )
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        await ensure_streams(js)
        ack = await js.publish(
            dlq_subject("billing-orders"),
            event.to_json(),
            stream=DLQ_STREAM,
            headers={ORIGINAL_SUBJECT: event.type, DEAD_REASON: "LookupError: no product",
                     DELIVERIES: "5"},
        )  # fmt: skip
    finally:
        await client.close()
    return ack.seq, event


async def _events_on(url: str, subject: str) -> list[bytes]:
    client = await nats.connect(url, allow_reconnect=False)
    try:
        js = client.jetstream()
        state = (await js.stream_info(EVENTS_STREAM)).state
        found = []
        for seq in range(state.first_seq, state.last_seq + 1) if state.messages else ():
            message = await js.get_msg(EVENTS_STREAM, seq)
            if message.subject == subject:
                found.append(message.data or b"")
        return found
    finally:
        await client.close()


@pytest.fixture
def with_broker(site: Site, nats_url: str) -> str:
    site.app.state.console = console_sources(
        site.settings.model_copy(update={"nats_url": nats_url})
    )
    return nats_url


async def test_support_sees_the_dead_letters_and_cannot_requeue_them(
    with_broker: str, sam: httpx.AsyncClient
) -> None:
    sequence, event = await _dead_letter(with_broker)
    answer = await sam.get("/console/dead-letters")
    shown = Page(answer.text)
    assert rows_of(shown, **{"data-sequence": str(sequence)})
    assert "flotilla.orders.order-placed" in answer.text
    assert "LookupError: no product" in answer.text
    assert shown.having("a", href=f"/console/traces/{TRACE}")  # from the event's traceparent
    assert not [f for f in shown.having("form") if "requeue" in f.get("action", "")]
    assert "Requeue" not in answer.text
    refused = await sam.post(
        f"/console/dead-letters/{sequence}/requeue", data={"csrf_token": csrf_of(answer.text)}
    )
    assert refused.status_code == 403
    assert heading(refused.text) == "Forbidden"
    assert [d.sequence for d in await list_dead_letters(with_broker)] == [sequence]
    assert await _events_on(with_broker, event.type) == []


async def test_an_admin_requeues_a_dead_letter_once_and_a_forged_form_does_nothing(
    with_broker: str, ada: httpx.AsyncClient
) -> None:
    sequence, event = await _dead_letter(with_broker)
    shown = await page(ada, "/console/dead-letters")
    shown.check_contract()
    (form,) = shown.having("form", action=f"/console/dead-letters/{sequence}/requeue")
    assert form["method"] == "post"
    assert "Requeue" in [a.get("aria-label", "") for a in shown.having("button")][-1]

    for forged in ({"csrf_token": "x" * 43}, {}):
        refused = await ada.post(f"/console/dead-letters/{sequence}/requeue", data=forged)
        assert refused.status_code == 403
        assert heading(refused.text) == "Forbidden: the form could not be trusted"
    assert [d.sequence for d in await list_dead_letters(with_broker)] == [sequence]
    assert await _events_on(with_broker, event.type) == []

    token = csrf_of((await ada.get("/console/dead-letters")).text)
    done = await ada.post(f"/console/dead-letters/{sequence}/requeue", data={"csrf_token": token})
    assert done.status_code == 303
    assert done.headers["location"] == f"/console/dead-letters?requeued={sequence}"
    after = await page(ada, done.headers["location"])
    assert after.having("p", id="requeue-result")
    assert await list_dead_letters(with_broker) == []
    assert await _events_on(with_broker, event.type) == [event.to_json()]

    again = await ada.post(f"/console/dead-letters/{sequence}/requeue", data={"csrf_token": token})
    assert again.status_code == 404
    assert heading(again.text) == "Dead letter not found"
    junk = await ada.post("/console/dead-letters/12abc/requeue", data={"csrf_token": token})
    assert junk.status_code == 404
    assert await _events_on(with_broker, event.type) == [event.to_json()]  # still one


async def test_without_a_broker_the_dead_letters_say_what_to_set(
    site: Site, ada: httpx.AsyncClient
) -> None:
    unset = await ada.get("/console/dead-letters")
    assert unset.status_code == 200
    assert "set FLOTILLA_NATS_URL" in unset.text
    site.app.state.console = console_sources(
        site.settings.model_copy(update={"nats_url": "nats://operator:s3cret@127.0.0.1:1"})
    )
    down = await ada.get("/console/dead-letters")
    assert down.status_code == 200
    assert "nats://127.0.0.1:1 did not answer" in down.text
    assert "s3cret" not in down.text
    token = csrf_of(down.text)
    refused = await ada.post("/console/dead-letters/1/requeue", data={"csrf_token": token})
    assert refused.status_code == 503
    assert "FLOTILLA_NATS_URL" in refused.text


# -- scaling ---------------------------------------------------------------------------
async def test_support_sees_the_instance_counts_and_may_not_scale(
    scale_dir: Path, sam: httpx.AsyncClient
) -> None:
    answer = await sam.get("/console/scaling")
    shown = Page(answer.text)
    counts = {r["data-group"] for r in rows_of(shown) if "data-group" in r}
    assert counts == {
        "auth",
        "accounts-s0",
        "accounts-s1",
        "payments",
        "inventory",
        "orders",
        "web",
    }
    assert not shown.having("form", action="/console/scale")
    refused = await sam.post(
        "/console/scale",
        data={"csrf_token": csrf_of(answer.text), "service": "orders", "instances": "3"},
    )
    assert refused.status_code == 403
    assert heading(refused.text) == "Forbidden"
    assert scale_requests.pending_requests(scale_dir) == []


async def test_an_admin_scales_a_service_and_sees_the_supervisors_answer(
    scale_dir: Path, ada: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    shown = await page(ada, "/console/scaling")
    shown.check_contract()
    assert shown.having("form", action="/console/scale", method="post")
    assert shown.having("option", value="orders")
    token = csrf_of((await ada.get("/console/scaling")).text)

    forged = await ada.post("/console/scale", data={"service": "orders", "instances": "3"})
    assert forged.status_code == 403
    assert "could not be trusted" in forged.text
    bad = await ada.post(
        "/console/scale", data={"csrf_token": token, "service": "Orders!", "instances": "0"}
    )
    assert bad.status_code == 400
    form = Page(bad.text)
    assert form.having("input", id="instances", **{"aria-describedby": "instances-error"})
    assert form.having("p", id="instances-error")
    assert form.having("p", id="service-error")
    assert scale_requests.pending_requests(scale_dir) == []

    sent = await ada.post(
        "/console/scale", data={"csrf_token": token, "service": "orders", "instances": "3"}
    )
    assert sent.status_code == 303
    (request,) = scale_requests.pending_requests(scale_dir)
    assert (request.service, request.shard, request.instances) == ("orders", None, 3)
    assert sent.headers["location"] == f"/console/scaling?request={request.id}"
    waiting = await page(ada, sent.headers["location"])
    assert waiting.having("p", id="scale-asked")
    assert rows_of(waiting, **{"data-request": request.id})

    # The supervisor of `flotilla up` carries it out and answers; the gateway sees three.
    console.instances.append(Instance("orders", "orders-3"))
    scale_requests.answer(
        scale_dir,
        scale_requests.ScaleResult(
            id=request.id, ok=True, detail="orders: 2 -> 3", counts={"orders": 3}
        ),
    )
    view = (await ada.get("/console/scaling.json")).json()
    assert view["pending"] == []
    assert [(a["id"], a["ok"], a["detail"]) for a in view["answered"]] == [
        (request.id, True, "orders: 2 -> 3")
    ]
    assert {"group": "orders", "instances": 3, "ready": 2} in view["groups"]
    picture = (await ada.get("/console/system.json")).json()
    assert "orders-3" in [i["name"] for i in picture["instances"]]


async def test_without_a_supervisor_scaling_says_what_to_set_and_writes_nothing(
    site: Site, ada: httpx.AsyncClient
) -> None:
    answer = await ada.get("/console/scaling")
    assert answer.status_code == 200
    assert "FLOTILLA_SCALE_REQUESTS_DIR" in answer.text
    refused = await ada.post(
        "/console/scale",
        data={"csrf_token": csrf_of(answer.text), "service": "orders", "instances": "3"},
    )
    assert refused.status_code == 503
    assert "FLOTILLA_SCALE_REQUESTS_DIR" in refused.text
    assert not site.settings.scale_requests_path.exists()


# -- every page ------------------------------------------------------------------------
async def test_every_console_page_keeps_the_contract_and_stays_under_100_kb_when_full(
    site: Site, scale_dir: Path, with_broker: str, ada: httpx.AsyncClient, console: ConsoleWorld
) -> None:
    # Much of everything: the pages bound what they show.
    for n in range(60):  # payloads of quotes, which the page escapes (5 bytes each)
        await _dead_letter(with_broker, data={f'"{n}"' * 20: ['"' * 100] * 10})
    console.instances += [Instance("orders", f"orders-{n}") for n in range(3, 40)]
    console.in_doubt = [
        {"id": str(uuid.uuid4()), "from_account": f"acc_0_{'a' * 32}",
         "to_account": f"acc_1_{'b' * 32}", "amount_minor": 100, "currency": "EUR",
         "state": "preparing", "path": "2pc", "created_at": "2026-12-07T14:05:09+00:00",
         "age_s": 1.0, "attempts": 1, "lease_owner": "payments-1"}
        for _ in range(500)
    ]  # fmt: skip
    console.pending_orders = [
        {"id": str(uuid.uuid4()), "customer_id": "user-bob", "state": "PENDING",
         "lines": [], "total_minor": 300, "currency": "EUR",
         "created_at": "2026-12-07T14:06:00+00:00"}
        for _ in range(500)
    ]  # fmt: skip
    records = [
        audit_record(n, f"2026-12-07T10:{n // 60:02d}:{n % 60:02d}+00:00", "transfer",
                     note="x" * 500)
        for n in range(200, 0, -1)
    ]  # fmt: skip
    console.audit = {
        log: audit_log(log, records)
        for log in ("auth", "payments", "inventory", "accounts-s0", "accounts-s1")
    }
    many = [span(TRACE, f"{n:016x}", "0" * 15 + "1" if n > 1 else None, f"step {n}",
                 "payments", n, n + 5) for n in range(1, 1000)]  # fmt: skip
    write_spans(site.settings.traces_path, many)
    for n in range(5):
        scale_requests.submit(
            scale_dir, scale_requests.ScaleRequest(service="orders", instances=n + 1)
        )
    files = ("app.css", "app.js", "console.css", "console.js", "favicon.svg")
    linked = sum([len((await ada.get(f"/static/{name}")).content) for name in files])
    for path in GET_PAGES:
        shown = await page(ada, path)
        shown.check_contract()
        weight = len((await ada.get(path)).content) + linked
        assert weight < LIMIT, (path, weight)  # the page and every file it loads
    trace = await ada.get(f"/console/traces/{TRACE}")
    assert 'id="trace-cut"' in trace.text  # 999 spans, 100 drawn, and it says so


def test_no_console_template_or_script_holds_what_the_csp_would_block() -> None:
    templates = sorted((TEMPLATES / "console").glob("*.html"))
    assert len(templates) >= 8
    for template in templates:
        text = template.read_text()
        assert not re.search(r"<script(?![^>]*\bsrc=)", text), template.name
        assert not re.search(r"\sstyle\s*=|<style", text, re.I), template.name
        assert not re.search(r"\son[a-z]+\s*=", text, re.I), template.name
        assert not re.search(r"\|\s*safe\b", text), template.name
    script = (STATIC / "console.js").read_text()
    assert "innerHTML" not in script
    assert "insertAdjacentHTML" not in script
    assert "eval(" not in script
    assert "document.write" not in script
    assert "url(" not in (STATIC / "console.css").read_text()  # nothing from elsewhere


async def test_the_console_script_and_stylesheet_are_served(sam: httpx.AsyncClient) -> None:
    for name, kind in (("console.js", "text/javascript"), ("console.css", "text/css")):
        answer = await sam.get(f"/static/{name}")
        assert answer.status_code == 200
        assert answer.headers["content-type"].startswith(kind)
        assert "max-age" in answer.headers["cache-control"]
