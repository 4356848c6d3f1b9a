"""Tracing: the JSON lines exporter, and the spans the kit makes (HTTP server and client,
gRPC server and client, database transactions, events), each linked to its parent."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
from fastapi import APIRouter, Request
from grpc import aio
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult
from opentelemetry.trace import SpanKind
from sqlalchemy import text

from flotilla_kit.app import create_service_app
from flotilla_kit.context import current_context
from flotilla_kit.db import Database, Query
from flotilla_kit.events import CloudEvent
from flotilla_kit.http_client import HttpClient
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tracing import (
    JsonLinesSpanExporter,
    Tracing,
    TracingServerInterceptor,
    client_interceptors,
    context_from_traceparent,
    install_tracing,
    messaging_span,
    tracer,
    tracing,
    uninstall_tracing,
)

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"


def _spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _settings(tmp_path: Path, **changes: Any) -> ServiceSettings:
    # Every new trace recorded, unless a test says otherwise (the default samples 5 %).
    values: dict[str, Any] = {"trace_sample_ratio": 1.0, **changes}
    return ServiceSettings(
        service_name="demo", instance_id="7", var_dir=tmp_path, trace_export_delay_s=0.05,
        **values,
    )  # fmt: skip


@pytest.fixture
def span_file(tmp_path: Path) -> Iterator[Path]:
    """Tracing installed for the test; after it, its spans are flushed to this file."""
    assert install_tracing(_settings(tmp_path)) is not None
    yield tmp_path / "traces" / "demo-7.jsonl"
    uninstall_tracing()


def _flushed(path: Path) -> list[dict[str, Any]]:
    active = tracing()
    assert active is not None
    active.processor.force_flush()
    return _spans(path)


class Peer:
    """Another service, on a real socket: answers `status` to everything and remembers
    the `traceparent` each request carried. Use as `async with Peer(503) as peer`, inside
    the event loop the calls run in; `peer.client` is the kit's client to call it with."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.seen: list[str | None] = []
        self.url = ""
        self.client = HttpClient()
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            found = [line for line in head.split("\r\n") if line.lower().startswith("traceparent:")]
            self.seen.append(found[0].split(":", 1)[1].strip() if found else None)
            writer.write(b"HTTP/1.1 %d X\r\ncontent-length: 0\r\n\r\n" % self.status)
            await writer.drain()
        finally:
            writer.close()

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/api"
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.client.aclose()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def test_the_exporter_appends_one_json_object_per_span(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "svc-0.jsonl"
    traced = Tracing(service="svc", instance="svc-0", exporter=JsonLinesSpanExporter(path))
    with traced.tracer.start_as_current_span("outer", kind=SpanKind.SERVER) as outer:
        with traced.tracer.start_as_current_span("inner", attributes={"n": 3}):
            pass
        outer.set_attribute("route", "/x")
    traced.shutdown()
    inner, outer_record = _spans(path)
    assert outer_record["parent_span_id"] is None
    assert inner["parent_span_id"] == outer_record["span_id"]
    assert inner["trace_id"] == outer_record["trace_id"]
    assert len(inner["trace_id"]) == 32
    assert (inner["service"], inner["instance"], inner["kind"]) == ("svc", "svc-0", "INTERNAL")
    assert outer_record["kind"] == "SERVER"
    assert outer_record["attributes"] == {"route": "/x"}
    assert inner["attributes"] == {"n": 3}
    assert outer_record["start_unix_nano"] <= inner["start_unix_nano"] <= inner["end_unix_nano"]
    assert inner["end_unix_nano"] <= outer_record["end_unix_nano"]
    assert inner["status"] == "UNSET"
    # A second exporter on the same file appends (a restarted instance).
    again = JsonLinesSpanExporter(path)
    assert again.export([]) is SpanExportResult.SUCCESS
    again.shutdown()
    assert len(_spans(path)) == 2


def test_a_request_is_a_server_span_continuing_the_callers_trace_with_its_db_and_http_spans(
    span_file: Path, tmp_path: Path, tokens: TokenMinter
) -> None:
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    peers: list[Peer] = []
    router = APIRouter()

    @router.get("/things/{thing}")
    async def thing(thing: str, request: Request) -> dict[str, str | None]:
        async with database.transaction() as transaction:
            await transaction.execute(Query(text("SELECT 1")))
            await transaction.execute(Query(text("SELECT 2")))
            await transaction.commit()
        await peers[0].client.get(peers[0].url)
        context = current_context()
        return {"trace": context.trace_id if context else None}

    app = create_service_app(
        _settings(tmp_path), title="t", routers=[router], readiness={}, verifier=tokens.verifier()
    )

    async def call() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with (
            Peer(503) as peer,
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            peers.append(peer)
            assert (await client.get("/livez")).status_code == 200  # probes make no trace
            return await client.get("/things/a", headers={"traceparent": CALLER})

    response = asyncio.run(call())
    seen = peers[0].seen
    asyncio.run(database.dispose())
    assert response.status_code == 200
    assert response.json() == {"trace": CALLER_TRACE}  # what the log lines carry
    spans = _flushed(span_file)
    assert len(spans) == 3
    by_kind = {(s["kind"], s["name"]): s for s in spans}
    server = by_kind["SERVER", "GET /things/{thing}"]
    assert server["trace_id"] == CALLER_TRACE
    assert server["parent_span_id"] == CALLER_SPAN
    assert server["attributes"]["http.route"] == "/things/{thing}"
    assert server["attributes"]["http.response.status_code"] == 200
    db = by_kind["CLIENT", "sqlite write transaction"]
    assert db["parent_span_id"] == server["span_id"]
    assert db["attributes"]["db.namespace"] == "demo"
    assert db["attributes"]["flotilla.db.statements"] == 2
    assert db["attributes"]["db.query.text"] == "SELECT 1"
    assert db["attributes"]["flotilla.db.outcome"] == "commit"
    client = by_kind["CLIENT", "GET /api"]
    assert client["parent_span_id"] == server["span_id"]
    assert seen == [f"00-{CALLER_TRACE}-{client['span_id']}-01"]
    assert client["status"] == "ERROR"  # a 503
    assert client["attributes"]["http.response.status_code"] == 503
    for child in (db, client):
        assert server["start_unix_nano"] <= child["start_unix_nano"]
        assert child["end_unix_nano"] <= server["end_unix_nano"]


async def test_a_grpc_call_is_a_client_span_and_the_server_span_is_its_child(
    span_file: Path,
) -> None:
    async def say(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.append(current_context())
        if request == b"no":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused")
        return request

    seen: list[object] = []
    server = aio.server(interceptors=[TracingServerInterceptor()])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=client_interceptors()
        ) as channel:
            call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Echo/Say")
            with tracer().start_as_current_span("caller") as caller:
                assert await call(b"hi", timeout=5) == b"hi"
                with pytest.raises(aio.AioRpcError):
                    await call(b"no", timeout=5)
    finally:
        await server.stop(None)
    spans = _flushed(span_file)
    clients = [s for s in spans if s["kind"] == "CLIENT"]
    servers = [s for s in spans if s["kind"] == "SERVER"]
    assert [s["name"] for s in clients] == ["test.Echo/Say"] * 2
    caller_id = format(caller.get_span_context().span_id, "016x")
    assert all(c["parent_span_id"] == caller_id for c in clients)
    assert sorted(s["parent_span_id"] for s in servers) == sorted(c["span_id"] for c in clients)
    assert clients[0]["attributes"]["rpc.method"] == "Say"
    refused = next(c for c in clients if c["status"] == "ERROR")
    assert refused["status_message"] == "FAILED_PRECONDITION"
    assert [s["status"] for s in servers].count("ERROR") == 1
    # The handler ran in its server span's request context (log lines carry the trace).
    assert all(getattr(c, "trace_id", None) == clients[0]["trace_id"] for c in seen)


UNSAMPLED = CALLER[:-2] + "00"


def test_an_unsampled_request_makes_no_span_but_passes_its_ids_on_and_a_failure_is_kept(
    span_file: Path, tmp_path: Path, tokens: TokenMinter
) -> None:
    """The gateway samples a few traces and sends flag 00 for the rest: those requests
    cost no span, yet their callees and log lines get the trace's ids, and a request that
    fails (5xx) is recorded after all, with the span id it passed on."""
    database = Database(f"sqlite+aiosqlite:///{tmp_path / 'demo.db'}")
    contexts: list[object] = []
    peers: list[Peer] = []
    router = APIRouter()

    @router.get("/things/{thing}")
    async def thing(thing: str) -> dict[str, str]:
        async with database.transaction() as transaction:
            await transaction.execute(Query(text("SELECT 1")))
            await transaction.commit()
        await peers[-1].client.get(peers[-1].url)
        contexts.append(current_context())
        if thing == "broken":
            raise RuntimeError("a bug")
        return {"thing": thing}

    app = create_service_app(
        _settings(tmp_path), title="t", routers=[router], readiness={}, verifier=tokens.verifier()
    )

    async def call(thing: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with (
            Peer(200) as peer,
            httpx.AsyncClient(transport=transport, base_url="http://t") as client,
        ):
            peers.append(peer)
            return await client.get(f"/things/{thing}", headers={"traceparent": UNSAMPLED})

    assert asyncio.run(call("fine")).status_code == 200
    # No span: not the request's, nor its database's, nor its call's.
    assert not span_file.exists() or _flushed(span_file) == []
    context = contexts[0]
    assert getattr(context, "trace_id", None) == CALLER_TRACE  # what its log lines carry
    assert getattr(context, "sampled", None) is False
    span_id = getattr(context, "span_id", "")
    # The callee does not sample either.
    assert peers[0].seen == [f"00-{CALLER_TRACE}-{span_id}-00"]

    assert asyncio.run(call("broken")).status_code == 500
    asyncio.run(database.dispose())
    (failed,) = _flushed(span_file)
    assert (failed["name"], failed["kind"], failed["status"]) == (
        "GET /things/{thing}", "SERVER", "ERROR",
    )  # fmt: skip
    assert (failed["trace_id"], failed["parent_span_id"]) == (CALLER_TRACE, CALLER_SPAN)
    assert failed["span_id"] == getattr(contexts[1], "span_id", None)  # the id it passed on
    assert failed["attributes"]["http.response.status_code"] == 500
    assert failed["start_unix_nano"] <= failed["end_unix_nano"]


async def test_an_unsampled_grpc_call_makes_no_span_unless_the_server_fails(
    span_file: Path,
) -> None:
    async def say(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        seen.append(current_context())
        if request == b"no":
            await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "refused")  # an answer
        if request == b"bug":
            raise RuntimeError("a bug")
        return request

    seen: list[object] = []
    server = aio.server(interceptors=[TracingServerInterceptor()])
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "test.Echo", {"Say": grpc.unary_unary_rpc_method_handler(say)}
            )
        ]
    )
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with aio.insecure_channel(
            f"127.0.0.1:{port}", interceptors=client_interceptors()
        ) as channel:
            call: aio.UnaryUnaryMultiCallable[bytes, bytes] = channel.unary_unary("/test.Echo/Say")
            metadata = (("traceparent", UNSAMPLED),)
            assert await call(b"hi", timeout=5, metadata=metadata) == b"hi"
            for refused in (b"no", b"bug"):
                with pytest.raises(aio.AioRpcError):
                    await call(refused, timeout=5, metadata=metadata)
    finally:
        await server.stop(None)
    (failed,) = _flushed(span_file)  # only the bug: a refusal is the server's answer
    assert (failed["name"], failed["kind"], failed["status"]) == (
        "test.Echo/Say",
        "SERVER",
        "ERROR",
    )
    assert (failed["trace_id"], failed["parent_span_id"]) == (CALLER_TRACE, CALLER_SPAN)
    assert failed["span_id"] == getattr(seen[2], "span_id", None)
    assert all(getattr(c, "trace_id", None) == CALLER_TRACE for c in seen)
    assert all(getattr(c, "sampled", None) is False for c in seen)


def test_an_event_is_processed_in_a_child_of_the_span_it_was_made_in(span_file: Path) -> None:
    with messaging_span(
        "process", "flotilla.orders.x", traceparent=CALLER, event_id="e1", kind=SpanKind.CONSUMER
    ):
        # What the handler publishes carries the trace on.
        made = CloudEvent.new("orders", "y", {"a": 1})
    (span,) = _flushed(span_file)
    assert (span["name"], span["kind"]) == ("process flotilla.orders.x", "CONSUMER")
    assert (span["trace_id"], span["parent_span_id"]) == (CALLER_TRACE, CALLER_SPAN)
    assert span["attributes"]["messaging.message.id"] == "e1"
    assert made.traceparent == f"00-{CALLER_TRACE}-{span['span_id']}-01"


def test_transactions_outside_any_span_are_not_recorded(span_file: Path, tmp_path: Path) -> None:
    async def poll() -> None:
        database = Database(f"sqlite+aiosqlite:///{tmp_path / 'quiet.db'}")
        async with database.transaction(write=False) as transaction:
            await transaction.execute(Query(text("SELECT 1")))
        await database.dispose()

    asyncio.run(poll())
    active = tracing()
    assert active is not None
    active.processor.force_flush()
    assert not span_file.exists()


def test_sampling_follows_the_caller_and_the_ratio_applies_to_new_traces(tmp_path: Path) -> None:
    installed = install_tracing(_settings(tmp_path, trace_sample_ratio=0.0))
    assert installed is not None
    try:
        with tracer().start_as_current_span("new"):
            pass
        with tracer().start_as_current_span("continued", context=context_from_traceparent(CALLER)):
            pass
        unsampled = CALLER[:-2] + "00"
        with tracer().start_as_current_span("dropped", context=context_from_traceparent(unsampled)):
            pass
    finally:
        uninstall_tracing()
    assert [s["name"] for s in _spans(tmp_path / "traces" / "demo-7.jsonl")] == ["continued"]


def test_tracing_off_records_nothing(tmp_path: Path) -> None:
    assert install_tracing(_settings(tmp_path, tracing_enabled=False)) is None
    assert tracing() is None
    with tracer().start_as_current_span("nothing") as span:
        assert not span.is_recording()
    assert not (tmp_path / "traces").exists()


def test_an_otlp_endpoint_exports_over_otlp_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector.invalid:4318")
    settings = _settings(tmp_path)
    assert settings.otlp_endpoint == "http://collector.invalid:4318"
    monkeypatch.setenv("FLOTILLA_OTLP_ENDPOINT", "http://ours.invalid:4318/")
    installed = install_tracing(ServiceSettings())
    try:
        assert installed is not None
        assert isinstance(installed.exporter, OTLPSpanExporter)
        assert installed.exporter._endpoint == "http://ours.invalid:4318/v1/traces"
    finally:
        active = tracing()
        if active is not None:
            # Nothing was recorded, so shutting down sends nothing anywhere.
            uninstall_tracing()


@pytest.mark.parametrize(
    "value",
    [
        None,
        "",
        "00-abc-00f067aa0ba902b7-01",
        f"01-{CALLER_TRACE}-{CALLER_SPAN}-01",
        f"00-{'0' * 32}-{CALLER_SPAN}-01",
        f"00-{CALLER_TRACE}-{'0' * 16}-01",
        f"00-{CALLER_TRACE}-{CALLER_SPAN}-zz",
        f"00-{'g' * 32}-{CALLER_SPAN}-01",
    ],
)
def test_a_bad_traceparent_is_no_parent(value: str | None) -> None:
    assert context_from_traceparent(value) is None


def test_the_span_file_is_set_aside_when_full_so_spans_on_disk_stay_bounded(
    tmp_path: Path,
) -> None:
    path = tmp_path / "svc-0.jsonl"
    exporter = JsonLinesSpanExporter(path, max_bytes=4096)
    traced = Tracing(service="svc", instance="svc-0", exporter=exporter, export_delay_s=0.001)
    for n in range(200):  # a few hundred bytes each: the file fills many times over
        with traced.tracer.start_as_current_span(f"span-{n}"):
            pass
        traced.processor.force_flush()
    traced.shutdown()
    old = tmp_path / "svc-0.old.jsonl"
    files = [f for f in (old, path) if f.exists()]
    assert old in files  # set aside at least once
    assert {p.name for p in tmp_path.iterdir()} <= {"svc-0.jsonl", "svc-0.old.jsonl"}
    assert all(f.stat().st_size < 4096 + 1024 for f in files)  # one batch past the limit
    kept = [s["name"] for f in files for s in _spans(f)]
    assert kept[-1] == "span-199"  # the newest are kept
    assert "span-0" not in kept  # the oldest are gone


def test_a_span_file_that_cannot_be_written_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "not-a-folder").write_text("")
    exporter = JsonLinesSpanExporter(tmp_path / "not-a-folder" / "svc-0.jsonl")
    traced = Tracing(service="svc", instance="svc-0", exporter=exporter)
    span = traced.tracer.start_span("lost")
    span.end()
    assert exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    assert exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    traced.shutdown()
    said = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(said) == 1
    assert "FLOTILLA_OTLP_ENDPOINT" in said[0].getMessage()


def _modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter has loaded after `statement`."""
    probe = f"import sys\n{statement}\nprint('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    return set(result.stdout.split())


def test_the_database_layer_loads_only_the_database_part_of_tracing() -> None:
    # db makes a span per transaction; it must not pull in the SDK, gRPC or the settings
    # with it (the dependency points from db to the one small module it uses).
    loaded = _modules_after("import flotilla_kit.db")
    assert "flotilla_kit.tracing._database" in loaded
    heavy = {
        "grpc",
        "opentelemetry.sdk.trace",
        "flotilla_kit.settings",
        "flotilla_kit.tracing._setup",
        "flotilla_kit.tracing._grpc",
    }
    assert loaded & heavy == set()


def test_every_public_name_of_the_package_resolves_to_its_module() -> None:
    import flotilla_kit.tracing as package  # noqa: PLC0415 - the package object itself

    for name in package.__all__:
        value = getattr(package, name)
        home = getattr(value, "__module__", None)
        assert home is None or home.startswith("flotilla_kit.tracing."), (name, home)
    assert set(package.__all__) <= set(dir(package))
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        _ = package.nothing_here
