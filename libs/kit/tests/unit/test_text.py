"""The one rule for incoming text: what it refuses, what it lets through, what it normalises,
and where each entrypoint applies it (models, path, query, events, the database)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import APIRouter
from google.protobuf.descriptor_pb2 import DescriptorProto, FileDescriptorProto
from pydantic import Field, StringConstraints, ValidationError

from flotilla_kit.app import create_service_app
from flotilla_kit.db import TextNotStorable
from flotilla_kit.events import CloudEvent, MalformedEvent
from flotilla_kit.rpc import text_refusal
from flotilla_kit.settings import ServiceSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.text import ApiModel, Name, SingleLine, TextRefused, check_text, refusal

REFUSED_EVERYWHERE = {
    "NUL": "a\x00b",
    "bell": "a\x07b",
    "escape": "\x1b[31mred",
    "delete": "a\x7fb",
    "C1 control": "a\x85b",
    "lone surrogate": "a\ud800b",
    "right-to-left override": "\u202eevil",
    "isolate": "a\u2066b\u2069",
}
LINE_BREAKS = {"tab": "a\tb", "line feed": "a\nb", "return": "a\rb", "separator": "a\u2028b"}
ACCEPTED = ["plain", "Zoë", "日本語", "مرحبا", "😀 ok", "a\u200eb", "e\u0301", "", "x" * 10_000]


@pytest.mark.parametrize("value", REFUSED_EVERYWHERE.values(), ids=REFUSED_EVERYWHERE.keys())
def test_controls_surrogates_and_bidi_overrides_are_refused_in_any_text(value: str) -> None:
    assert refusal(value, single_line=False) is not None
    assert refusal(value) is not None


@pytest.mark.parametrize("value", LINE_BREAKS.values(), ids=LINE_BREAKS.keys())
def test_line_breaks_are_refused_in_a_single_line_only(value: str) -> None:
    assert refusal(value, single_line=False) is None
    assert "line break" in (refusal(value) or "")


@pytest.mark.parametrize("value", ACCEPTED)
def test_ordinary_text_of_any_script_is_accepted(value: str) -> None:
    assert refusal(value) is None


def test_the_reason_names_the_character_and_where_it_is() -> None:
    assert refusal("ab\x00") == "holds a control character (U+0000) at position 2"
    assert refusal("\u202eevil") == "holds a bidirectional control (U+202E) at position 0"
    with pytest.raises(TextRefused) as refused:
        check_text("ali\x00ce", "username")
    assert (refused.value.field, refused.value.reason) == (
        "username", "holds a control character (U+0000) at position 3",
    )  # fmt: skip


class Line(ApiModel):
    product_id: SingleLine
    quantity: int


class Order(ApiModel):
    name: Name
    note: str = ""
    lines: list[Line] = []
    tags: dict[str, str] = {}


def _locations(error: ValidationError) -> list[tuple[Any, ...]]:
    return [e["loc"] for e in error.errors()]


def test_a_model_refuses_the_field_that_holds_it_however_deep() -> None:
    for body, where in (
        ({"name": "a\x00"}, ("name",)),
        ({"name": "ok", "note": "a\x00"}, ("note",)),
        (
            {"name": "ok", "lines": [{"product_id": "p\x00", "quantity": 1}]},
            ("lines", 0, "product_id"),
        ),
        ({"name": "ok", "tags": {"k": "v\x00"}}, ("tags",)),
        ({"name": "ok", "tags": {"k\x00": "v"}}, ("tags",)),
        ({"name": "two\nlines"}, ("name",)),
    ):
        with pytest.raises(ValidationError) as refused:
            Order.model_validate(body)
        assert where in _locations(refused.value), body


def test_a_model_keeps_line_breaks_in_free_text_and_normalises_names() -> None:
    order = Order.model_validate({"name": "Zoe\u0308", "note": "line 1\nline 2\ttabbed"})
    assert order.name == "Zoë"  # NFC: one code point
    assert len(order.name) == 3
    assert order.note == "line 1\nline 2\ttabbed"


class Profile(ApiModel):
    nickname: Annotated[Name, StringConstraints(strip_whitespace=True, min_length=1)]
    aliases: list[Name] = []
    handle: SingleLine | None = Field(default=None, max_length=3)


def test_names_in_lists_are_normalised_and_lengths_are_a_strings() -> None:
    profile = Profile.model_validate({"nickname": " Zoe\u0308 ", "aliases": ["e\u0301"]})
    assert (profile.nickname, profile.aliases) == ("Zoë", ["é"])
    with pytest.raises(ValidationError) as refused:
        Profile.model_validate({"nickname": "   ", "handle": "toolong"})
    messages = {e["loc"]: e["msg"] for e in refused.value.errors()}
    assert messages == {
        ("nickname",): "String should have at least 1 character",
        ("handle",): "String should have at most 3 characters",
    }
    with pytest.raises(ValidationError) as refused:
        Profile.model_validate({"nickname": "ok", "aliases": ["fine", "two\nlines"]})
    assert "at [1] holds a line break" in refused.value.errors()[0]["msg"]


def test_a_grpc_message_is_refused_naming_the_field_however_deep() -> None:
    # Any message will do; this one has strings in nested and repeated fields.
    message = FileDescriptorProto(name="a.proto", message_type=[DescriptorProto(name="A")])
    message.message_type[0].field.add(name="ok")
    assert text_refusal(message) is None
    message.message_type[0].field.add(name="p\x002")
    assert text_refusal(message) == (
        "message_type[0].field[1].name holds a control character (U+0000) at position 1"
    )
    assert text_refusal(FileDescriptorProto(dependency=["a", "b\nc"])) == (
        "dependency[1] holds a line break (U+000A) at position 1"
    )


def test_an_event_with_refused_text_is_malformed() -> None:
    good = CloudEvent.new("orders", "x", {"reference": "ok"})
    assert CloudEvent.from_json(good.to_json()).data == {"reference": "ok"}
    for data in ({"reference": "a\x00b"}, {"nested": [{"k": "\u202e"}]}):
        raw = CloudEvent.new("orders", "x", data).to_json()
        with pytest.raises(MalformedEvent, match="text"):
            CloudEvent.from_json(raw)


def test_the_path_the_query_and_unstorable_text_get_a_422_naming_where(
    tmp_path: Path, tokens: TokenMinter
) -> None:
    router = APIRouter()

    @router.get("/things/{thing}")
    async def thing(thing: str, q: str = "") -> dict[str, str]:
        return {"thing": thing, "q": q}

    @router.post("/store")
    async def store(body: Order) -> dict[str, str]:
        raise TextNotStorable("what a driver would say")

    settings = ServiceSettings(service_name="demo", var_dir=tmp_path, tracing_enabled=False)
    app = create_service_app(
        settings, title="t", routers=[router], readiness={}, verifier=tokens.verifier()
    )

    async def call() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return [
                await client.get("/things/a%20b?q=x%20y"),
                await client.get("/things/a%00b"),
                await client.get("/things/a?q=%0Anext&r=1"),
                await client.get("/things/a?%00=1"),
                await client.post("/store", json={"name": "fine"}),
                await client.post("/store", json={"name": "ok", "note": "a\u0000"}),
            ]

    fine, in_path, in_query, in_name, unstorable, in_body = asyncio.run(call())
    assert fine.status_code == 200
    assert fine.json() == {"thing": "a b", "q": "x y"}
    for refused, location in (
        (in_path, ["path"]),
        (in_query, ["query", "q"]),
        (in_name, ["query", "\x00"]),
        (in_body, ["body", "note"]),
    ):
        assert refused.status_code == 422, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
        problem = refused.json()
        assert problem["type"].endswith("/validation-error")
        assert location in [error["location"] for error in problem["errors"]]
    assert unstorable.status_code == 422
    assert "NUL" in unstorable.json()["detail"]
