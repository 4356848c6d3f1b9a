"""The operator console in the browser: support sees every instance the system runs (as
`flotilla status --json` lists them) and opens a request's trace as a waterfall; an admin
scales a service and sees its new instance appear on the console, live."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import expect

from flotilla_kit.tracing.files import TraceTree, read_trace
from tests.browser.harness import Api, Visitor, wait_until
from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e

SCALED = "inventory"  # a service of its own instances (not sharded), quick to start


def _rows(visitor: Visitor) -> set[str]:
    names: list[str] = visitor.page.eval_on_selector_all(
        "#instances tr[data-instance]", "rows => rows.map(r => r.dataset.instance)"
    )
    return set(names)


def _serving(system: RunningSystem, service: str | None = None) -> set[str]:
    """The instances that serve requests (relays do not), gateway aside, as status says."""
    return {
        i["name"]
        for i in system.status()["instances"]
        if i["command"] == "serve"
        and i["service"] != "gateway"
        and (service is None or i["service"] == service)
    }


def test_support_sees_every_instance_of_the_system(visitor: Visitor, system: RunningSystem) -> None:
    visitor.login("sam")
    assert visitor.path() == "/console", "support starts on the console"
    instances = visitor.page.locator("#instances tr[data-instance]")
    expect(instances.first).to_be_visible()
    serving = _serving(system)
    everything = {i["name"] for i in system.status()["instances"]}
    wait_until("a row for every instance", lambda: serving <= _rows(visitor), within_s=10)
    assert _rows(visitor) <= everything, "a row for an instance the system does not run"
    for name in serving:
        row = visitor.page.locator(f'#instances tr[data-instance="{name}"]')
        expect(row).to_contain_text(name)
    visitor.shoot("console")


def _traced_request(api: Api) -> str:
    """A request of ours through the gateway, with a trace id we chose."""
    trace_id = uuid.uuid4().hex
    response = api.client.get(
        "/api/v1/accounts",
        headers={**api.headers("alice"), "traceparent": f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    return trace_id


def _whole_trace(system: RunningSystem, trace_id: str) -> TraceTree:
    """The trace once its spans are on disk (each process writes its own in batches)."""
    found: list[TraceTree] = []

    def complete() -> bool:
        tree = read_trace(system.var_dir / "traces", trace_id)
        if tree is None or len(tree.roots) != 1:
            return False
        found[:] = [tree]
        return {"gateway", "accounts"} <= {span.service for span in tree.spans()}

    wait_until(f"the spans of trace {trace_id}", complete)
    return found[0]


def test_support_opens_a_trace_as_a_waterfall(
    visitor: Visitor, api: Api, system: RunningSystem
) -> None:
    trace_id = _traced_request(api)
    tree = _whole_trace(system, trace_id)
    span_ids = {span.span_id for span in tree.spans()}

    visitor.login("sam")
    visitor.open("/console/traces")
    visitor.page.get_by_label("Trace id").fill(trace_id)
    visitor.page.get_by_label("Trace id").press("Enter")
    waterfall = visitor.page.locator("#waterfall")
    expect(waterfall).to_be_visible()
    assert trace_id in visitor.path()
    bars = waterfall.locator("g[data-span]")
    expect(bars.first).to_be_visible()
    shown = set(bars.evaluate_all("bars => bars.map(b => b.dataset.span)"))
    assert span_ids <= shown, f"spans missing from the waterfall: {span_ids - shown}"
    assert waterfall.locator("g[data-span] rect").count() >= len(span_ids)
    visitor.shoot("trace")


def test_an_admin_scales_a_service_and_sees_the_new_instance(
    visitor: Visitor, system: RunningSystem
) -> None:
    before = _serving(system, SCALED)
    visitor.login("ada")
    visitor.open("/console/scaling")
    page = visitor.page
    service = page.locator("form[action='/console/scale'] [name=service]")
    if service.evaluate("e => e.tagName") == "SELECT":
        service.select_option(SCALED)
    else:
        service.fill(SCALED)
    page.locator("form[action='/console/scale'] [name=instances]").fill(str(len(before) + 1))
    visitor.shoot("scaling")
    page.get_by_role("button", name="Scale").click()
    page.wait_for_load_state()
    assert "/login" not in page.url

    visitor.open("/console")
    # The supervisor takes a request and sees the new instance ready at its probes, which
    # are 30 s apart once the system is settled: up to a minute in all.
    wait_until("the new instance runs", lambda: len(_serving(system, SCALED)) > len(before), 75)
    (new,) = _serving(system, SCALED) - before
    assert re.fullmatch(rf"{SCALED}-\d+", new)
    # On the page as it stands: console.js brings the new row in without a reload, once
    # the gateway has the instance (after the supervisor found it ready).
    page.evaluate("window.flotillaTestNoReload = true")
    row = page.locator(f'#instances tr[data-instance="{new}"]')
    expect(row).to_be_visible(timeout=75_000)
    assert page.evaluate("window.flotillaTestNoReload") is True, "the page was reloaded"
