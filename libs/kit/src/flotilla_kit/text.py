"""One rule for the text that comes in, whatever it comes in (JSON bodies, forms, query
and path parameters, headers that reach a database, gRPC fields, events):

- **Refused** everywhere: C0 and C1 control characters (U+0000-U+001F, U+007F-U+009F)
  but tab, line feed and carriage return; lone surrogates (U+D800-U+DFFF: valid JSON can
  spell them, no database can store them); and the bidirectional embedding, override and
  isolate controls (U+202A-U+202E, U+2066-U+2069), which make a name display as another
  (the "Trojan Source" trick) and which nothing here needs.
- **Single-line** fields (names, identifiers, references, query and path parameters)
  refuse tab, line feed, carriage return and the Unicode line and paragraph separators
  too.
- **Names** (shown, or looked up: a username, an account's or a product's name, a SKU)
  are normalised to NFC, so that the same name typed on two keyboards is one name
  (`Name`).

PostgreSQL's `text` cannot hold a NUL at all, so before this rule a NUL in any string
reached the driver and came back as a 500; now it is a 422 naming the field, on every
backend alike. Request models derive from `ApiModel`, which applies the multi-line rule
to every string they receive (nested in lists and objects too); fields that are names,
identifiers or single lines say so with the types below. The kit's middleware applies the
single-line rule to the path and the query before the app sees them.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
from typing import Annotated, Any, get_args

from pydantic import (
    BaseModel,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    ValidationInfo,
    field_validator,
)
from pydantic.fields import FieldInfo
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import core_schema

__all__ = [
    "MULTI_LINE_PATTERN",
    "SINGLE_LINE_PATTERN",
    "ApiModel",
    "Name",
    "SingleLine",
    "TextRefused",
    "check_text",
    "refusal",
    "refusal_within",
    "state_the_rule",
]

# Regular-expression text (Python's `re` and ECMA-262 read `\uXXXX` alike), so that the
# OpenAPI documents state the rule as a `pattern` (clients and fuzzers then know it).
_CONTROLS_AND_BIDI = (
    r"\u0000-\u0008\u000b\u000c\u000e-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069"
)
_LINE_BREAKS_RE = r"\u0009\u000a\u000d\u2028\u2029"
_LINE_BREAKS = "\t\n\r\u2028\u2029"
_MULTI_LINE = re.compile(f"[{_CONTROLS_AND_BIDI}\ud800-\udfff]")
_SINGLE_LINE = re.compile(f"[{_CONTROLS_AND_BIDI}\ud800-\udfff{_LINE_BREAKS_RE}]")
# The same rule for JSON Schema: what a string may hold. Without the surrogates: UTF-8 (and
# so a JSON document on the wire) cannot hold one, and several regex engines refuse them.
MULTI_LINE_PATTERN = f"^[^{_CONTROLS_AND_BIDI}]*$"
SINGLE_LINE_PATTERN = f"^[^{_CONTROLS_AND_BIDI}{_LINE_BREAKS_RE}]*$"


class TextRefused(ValueError):
    """A string holds a character the rule refuses: `field` names it, `reason` says which
    character and where."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field} {reason}")
        self.field = field
        self.reason = reason


def refusal(value: str, *, single_line: bool = True) -> str | None:
    """Why `value` is refused (naming the first character refused), or None."""
    found = (_SINGLE_LINE if single_line else _MULTI_LINE).search(value)
    if found is None:
        return None
    character = found.group()
    category = unicodedata.category(character)
    what = (
        "a line break"
        if character in _LINE_BREAKS
        else "a control character"
        if category == "Cc"
        else "a lone surrogate"
        if category == "Cs"
        else "a bidirectional control"
    )
    return f"holds {what} (U+{ord(character):04X}) at position {found.start()}"


def check_text(value: str, field: str, *, single_line: bool = True) -> str:
    """`value`, or TextRefused naming `field` (for entrypoints outside pydantic: gRPC
    fields, form fields, events)."""
    problem = refusal(value, single_line=single_line)
    if problem is not None:
        raise TextRefused(field, problem)
    return value


class _Rule(enum.Enum):
    """Which part of the rule a field of an `ApiModel` takes (beyond the multi-line one)."""

    SINGLE_LINE = "single line"
    NAME = "name"

    def __get_pydantic_core_schema__(
        self, source: Any, handler: GetCoreSchemaHandler
    ) -> core_schema.CoreSchema:
        return handler(source)  # a marker: `ApiModel` reads it, the schema stays a string's

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        state_the_rule(json_schema, SINGLE_LINE_PATTERN)
        return json_schema


# A one-line string that is shown or compared as given (a reference, a reason, an id).
SingleLine = Annotated[str, _Rule.SINGLE_LINE]
# A name, shown or looked up (an account's, a product's, a SKU): one line, NFC.
Name = Annotated[str, _Rule.NAME]
# Markers rather than validators: pydantic then still checks a string's length constraints
# as a string's ("at least 1 character"), which it does not after a validator. They take
# effect in an `ApiModel`, which request models are.


def refusal_within(value: Any, *, single_line: bool = False, path: str = "") -> str | None:
    """Why a JSON-like value (strings, in lists and objects, keys too) is refused,
    naming where; None when nothing is."""
    if isinstance(value, str):
        problem = refusal(value, single_line=single_line)
        return f"at {path} {problem}" if problem and path else problem
    if isinstance(value, dict):
        for key, item in value.items():
            inner = refusal_within(
                key, single_line=True, path=f"{path}[{key!r}] (the key)"
            ) or refusal_within(item, single_line=single_line, path=f"{path}[{key!r}]")
            if inner is not None:
                return inner
    if isinstance(value, list | tuple):
        for index, item in enumerate(value):
            inner = refusal_within(item, single_line=single_line, path=f"{path}[{index}]")
            if inner is not None:
                return inner
    return None


class ApiModel(BaseModel):
    """The base of every model a service accepts from outside: no string of it, however
    deep, holds a character the rule refuses (its validation error names the field);
    `SingleLine` and `Name` fields (in lists too) take their part of the rule. Fields
    holding models are left to those models (themselves `ApiModel`s), whose errors then
    name the field inside them."""

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        json_schema = handler(schema)
        model = handler.resolve_ref_schema(json_schema)
        for field in model.get("properties", {}).values():
            state_the_rule(field, MULTI_LINE_PATTERN)  # a SingleLine or a Name has its own
        return json_schema

    @field_validator("*", mode="before")
    @classmethod
    def _apply_the_text_rule(cls, value: Any, info: ValidationInfo) -> Any:
        rule = _field_rules(cls).get(info.field_name or "", _MULTI)
        if rule is _MODELS:
            return value
        if isinstance(value, str):  # the common case: one search, no walk
            pattern = _MULTI_LINE if rule is _MULTI else _SINGLE_LINE
            if pattern.search(value) is None:
                return unicodedata.normalize("NFC", value) if rule is _Rule.NAME else value
        problem = refusal_within(value, single_line=rule is not _MULTI)
        if problem:
            raise ValueError(f"the value {problem}")
        if rule is _Rule.NAME:
            return _nfc(value)
        return value


def state_the_rule(json_schema: dict[str, Any], pattern: str = SINGLE_LINE_PATTERN) -> None:
    """Give every string in `json_schema` (a field's, a parameter's: in `anyOf` and array
    items too) the rule as a `pattern`, unless it has a pattern, an enum or a format
    (a date, a UUID) of its own, which are stricter."""
    if json_schema.get("type") == "string":
        stricter = {"pattern", "enum", "const"} & json_schema.keys()
        if not stricter and json_schema.get("format") in (None, "password"):
            json_schema["pattern"] = pattern
        return
    for alternative in json_schema.get("anyOf", ()):
        state_the_rule(alternative, pattern)
    items = json_schema.get("items")
    if isinstance(items, dict):
        state_the_rule(items, pattern)


_MULTI = object()  # a field with no marker: the multi-line rule
_MODELS = object()  # a field holding models: theirs


def _nfc(value: Any) -> Any:
    if isinstance(value, str):
        return unicodedata.normalize("NFC", value)
    if isinstance(value, list):
        return [_nfc(item) for item in value]
    return value


@functools.cache
def _field_rules(model: type[BaseModel]) -> dict[str, object]:
    """Each field of `model` and the rule it takes."""
    return {name: _rule_of(field) for name, field in model.model_fields.items()}


def _rule_of(field: FieldInfo) -> object:
    if _holds_models(field.annotation):
        return _MODELS
    marks = [*field.metadata, *_marks_within(field.annotation)]
    if _Rule.NAME in marks:
        return _Rule.NAME
    return _Rule.SINGLE_LINE if _Rule.SINGLE_LINE in marks else _MULTI


def _marks_within(annotation: Any) -> list[Any]:
    """The markers in `annotation`'s arguments (`list[SingleLine]`, `SingleLine | None`)."""
    found: list[Any] = list(getattr(annotation, "__metadata__", ()))
    for argument in get_args(annotation):
        found.extend(_marks_within(argument))
    return found


def _holds_models(annotation: Any) -> bool:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_holds_models(argument) for argument in get_args(annotation))
