"""Traces, followed through the running system: a login and a cross-shard transfer sent
through the gateway with a `traceparent` of our own, then their spans read back from
`var/traces/*.jsonl` (written in batches: polled with a deadline) and checked as a tree,
and `flotilla trace` run on them."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable

import httpx
import pytest

from flotilla_cli.ops.trace import SpanNode, TraceTree, build_tree, read_spans
from tests.e2e.system import RunningSystem

pytestmark = pytest.mark.e2e

# Spans of one request come from several processes; their clocks are the same machine's,
# but the gateway converts its monotonic timings to wall time (microseconds apart).
_CLOCK_SLACK_NS = 2_000_000
_DEADLINE_S = 30.0


def _traceparent() -> tuple[str, str, str]:
    trace_id, caller_span = uuid.uuid4().hex, uuid.uuid4().hex[:16]
    return trace_id, caller_span, f"00-{trace_id}-{caller_span}-01"


def _wait_for_tree(
    system: RunningSystem, trace_id: str, complete: Callable[[TraceTree], bool]
) -> TraceTree:
    """The trace's tree once `complete` says all its spans are on disk, and none is
    waiting for its parent: each process writes its spans in its own batches, so a
    database span can be on disk before the server span it belongs to (which ends later).
    A span whose parent never comes makes this time out."""
    deadline = time.monotonic() + _DEADLINE_S
    tree = None
    while time.monotonic() < deadline:
        tree = build_tree(read_spans(system.var_dir / "traces", trace_id), trace_id)
        if tree is not None and len(tree.roots) == 1 and complete(tree):
            return tree
        time.sleep(0.2)  # spans are flushed in batches (about once a second)
    found = [] if tree is None else [(s.service, s.name) for s in tree.spans()]
    raise AssertionError(f"trace {trace_id} incomplete after {_DEADLINE_S} s: {found}")


def _services(tree: TraceTree) -> set[str]:
    return {span.service for span in tree.spans()}


def _check_nesting(span: SpanNode) -> None:
    assert span.start_ns <= span.end_ns, span.name
    for child in span.children:
        assert child.trace_id == span.trace_id
        assert child.start_ns >= span.start_ns - _CLOCK_SLACK_NS, (span.name, child.name)
        # Producer and consumer spans may outlive what made the event (asynchronous), and
        # a service's server span ends after its last byte is sent: it may end after the
        # caller's span in another process, which ends when that byte arrives.
        crosses_processes = child.instance != span.instance and child.kind == "SERVER"
        if child.kind not in ("PRODUCER", "CONSUMER") and not crosses_processes:
            assert child.end_ns <= span.end_ns + _CLOCK_SLACK_NS, (span.name, child.name)
        _check_nesting(child)


def _the_gateway_root(tree: TraceTree, caller_span: str) -> SpanNode:
    assert len(tree.roots) == 1, [(r.service, r.name) for r in tree.roots]
    root = tree.roots[0]
    assert root.service == "gateway"
    assert root.kind == "SERVER"
    assert root.parent_span_id == caller_span  # the traceparent we sent
    _check_nesting(root)
    return root


def _account(client: httpx.Client, system: RunningSystem, staff: str, owner: str) -> str:
    listed = client.get(
        "/api/v1/accounts",
        params={"owner_id": system.user_id(owner)},
        headers={"Authorization": f"Bearer {staff}"},
    )
    assert listed.status_code == 200, listed.text
    return str(next(a["id"] for a in listed.json()["items"] if a["name"] == "Everyday"))


def test_a_login_is_traced_from_the_gateway_into_auth_and_its_database(
    observed_system: RunningSystem,
) -> None:
    trace_id, caller_span, traceparent = _traceparent()
    with observed_system.client() as client:
        answer = client.post(
            "/api/v1/auth/token",
            data={
                "grant_type": "password",
                "username": "alice",
                "password": observed_system.password("alice"),
            },
            headers={"traceparent": traceparent},
        )
    assert answer.status_code == 200, answer.text

    def complete(tree: TraceTree) -> bool:
        return {"gateway", "auth"} <= _services(tree) and any(
            s.kind == "CLIENT" and "db.namespace" in s.attributes for s in tree.spans()
        )

    tree = _wait_for_tree(observed_system, trace_id, complete)
    gateway = _the_gateway_root(tree, caller_span)
    assert gateway.attributes["http.route"] == "/api/v1/auth/token"
    assert gateway.attributes["http.response.status_code"] == 200
    (auth,) = gateway.children
    assert (auth.service, auth.kind, auth.name) == ("auth", "SERVER", "POST /api/v1/auth/token")
    assert auth.attributes["http.response.status_code"] == 200
    assert gateway.attributes["flotilla.upstream.instance"] == auth.instance
    databases = [s for s in auth.walk() if "db.namespace" in s.attributes]
    assert databases
    assert all(s.attributes["db.namespace"] == "auth" for s in databases)
    assert any(s.attributes["flotilla.db.write"] for s in databases)  # the login is recorded


def test_a_cross_shard_transfer_is_traced_through_payments_and_both_ledger_shards(
    observed_system: RunningSystem,
) -> None:
    alice, sam = observed_system.token("alice"), observed_system.token("sam")
    with observed_system.client() as client:
        source = _account(client, observed_system, sam, "alice")
        destination = _account(client, observed_system, sam, "carol")
        trace_id, caller_span, traceparent = _traceparent()
        sent = client.post(
            "/api/v1/transfers",
            json={
                "from_account": source,
                "to_account": destination,
                "amount_minor": 1,
                "currency": "EUR",
                "reference": "traced",
            },
            headers={
                "Authorization": f"Bearer {alice}",
                "Idempotency-Key": str(uuid.uuid4()),
                "traceparent": traceparent,
            },
        )
    assert sent.status_code == 201, sent.text

    def complete(tree: TraceTree) -> bool:
        ledger = {s.instance for s in tree.spans() if s.service == "accounts"}
        return {"gateway", "payments"} <= _services(tree) and len(
            {name.split("-")[1] for name in ledger}  # accounts-s0-1 -> s0
        ) == 2

    tree = _wait_for_tree(observed_system, trace_id, complete)
    gateway = _the_gateway_root(tree, caller_span)
    payments = next(s for s in gateway.children if s.service == "payments")
    assert (payments.kind, payments.name) == ("SERVER", "POST /api/v1/transfers")
    below = list(payments.walk())[1:]
    assert any(s.service == "payments" and "db.namespace" in s.attributes for s in below)
    calls = [s for s in payments.children if s.kind == "CLIENT" and s.attributes.get("rpc.system")]
    assert calls, [(s.name, s.kind) for s in payments.children]
    assert {c.attributes["rpc.method"] for c in calls} >= {"Prepare", "Commit"}
    for call in calls:
        (served,) = call.children  # the shard's server span, parented by our metadata
        assert (served.service, served.kind, served.name) == ("accounts", "SERVER", call.name)
    assert any(
        "db.namespace" in s.attributes for c in calls for s in c.walk() if s.service == "accounts"
    )

    shown = observed_system.flotilla("trace", trace_id, "--json")
    assert shown.returncode == 0, shown.stderr
    document = json.loads(shown.stdout)
    assert document["trace_id"] == trace_id
    assert {"gateway", "payments", "accounts"} <= set(document["services"])
    assert document["roots"][0]["children"][0]["service"] == "payments"
    rendered = observed_system.flotilla("trace", trace_id)
    assert rendered.returncode == 0, rendered.stderr
    assert "POST /api/v1/transfers" in rendered.stdout
    assert "ledger.v1.Ledger/Prepare" in rendered.stdout or "Prepare" in rendered.stdout


def test_flotilla_trace_names_an_unknown_trace(observed_system: RunningSystem) -> None:
    unknown = observed_system.flotilla("trace", uuid.uuid4().hex)
    assert unknown.returncode == 1
    assert "No spans of trace" in unknown.stderr
    newest = observed_system.flotilla("trace", "--last", "--json")
    assert newest.returncode == 0, newest.stderr
    assert json.loads(newest.stdout)["roots"][0]["service"] == "gateway"
