"""Hostile values for the fuzzers: a valid request with one of its strings or integers
replaced by text that breaks the kit's rule (NUL, controls, bidi overrides, line breaks),
text that is merely unusual (long, astral, combining, look-alike, injection-shaped), or an
integer at a boundary of the machine (2^31, 2^53, 2^63, 10^30)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st
from schemathesis.generation import GenerationMode
from schemathesis.generation.case import Case
from schemathesis.schemas import APIOperation

from flotilla_kit.text import refusal

__all__ = ["BOUNDARY_INTEGERS", "HOSTILE_TEXT", "Spoiled", "spoiled_cases"]

HOSTILE_TEXT = [
    # Refused by the rule, everywhere:
    "\x00",
    "ali\x00ce",
    "\x1b[2J\x1b[31mred",
    "\x07\x08\x7f",
    "a\x85b",
    "\u202eevil.exe",
    "\u2066isolated\u2069",
    # Refused where the field is one line:
    "two\nlines",
    "cr\rlf",
    "tab\there",
    "para\u2029graph",
    # Accepted, but unusual:
    "x" * 10_000,
    "é" * 70_000,
    "\U0010ffff\U0001f600\U0001f468\u200d\U0001f469\u200d\U0001f467",
    "e\u0301\u0301\u0301",
    "\ufb01\uff21\u2126\u212b",  # a ligature, a full-width A, Ohm, Angstrom: NFKC folds them
    "\u0130\u00df\u03a3",  # case mappings that change length
    "\ufeff\u200b\u200e",  # BOM, zero-width space, left-to-right mark
    "\uffff\ufffe",  # noncharacters
    "' OR 1=1 --",
    "../../etc/passwd",
    "%00%0a",
    "{{7*7}}${7*7}",
    "",
    " ",
]
BOUNDARY_INTEGERS = [
    0,
    -1,
    2**31 - 1,
    2**31,
    -(2**31) - 1,
    2**53 + 1,
    2**63 - 1,
    2**63,
    -(2**63) - 1,
    10**30,
]


# Services sit behind the gateway, which refuses a request head over 16 KiB itself (431); the
# uvicorn in front of a service refuses one before the app sees it (in plain text).
_LONGEST_IN_A_URL = 1_000


@dataclass
class Spoiled:
    """A case with one value replaced; `refused` when the value breaks the text rule (the
    answer must then be a 4xx)."""

    case: Case[Any]
    where: str
    value: Any
    refused: bool


def _slots(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [slot for key, item in value.items() for slot in _slots(item, (*path, key))]
    if isinstance(value, list):
        return [slot for index, item in enumerate(value) for slot in _slots(item, (*path, index))]
    if isinstance(value, str) or (isinstance(value, int) and not isinstance(value, bool)):
        return [path]
    return []


def _read(container: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        container = container[step]
    return container


def _write(container: Any, path: tuple[Any, ...], value: Any) -> None:
    for step in path[:-1]:
        container = container[step]
    container[path[-1]] = value


def _spoil(case: Case[Any]) -> st.SearchStrategy[Spoiled]:
    places = [
        (part, slot)
        for part in ("body", "query", "path_parameters")
        if isinstance(getattr(case, part), dict | list)
        for slot in _slots(getattr(case, part))
        if slot
    ]
    if not places:
        return st.just(Spoiled(case, "nothing to spoil", None, refused=False))

    def spoil(choice: tuple[tuple[str, tuple[Any, ...]], str, int]) -> Spoiled:
        (part, slot), text, number = choice
        if part != "body" and len(text) > _LONGEST_IN_A_URL:
            text = text[:_LONGEST_IN_A_URL]  # a longer URL is the gateway's to refuse
        container = getattr(case, part)
        value: Any = text if isinstance(_read(container, slot), str) else number
        _write(container, slot, value)
        refused = isinstance(value, str) and refusal(value, single_line=False) is not None
        return Spoiled(case, f"{part}{list(slot)}", value, refused)

    return st.tuples(
        st.sampled_from(places), st.sampled_from(HOSTILE_TEXT), st.sampled_from(BOUNDARY_INTEGERS)
    ).map(spoil)


def spoiled_cases(operation: APIOperation[Any, Any, Any, Any]) -> st.SearchStrategy[Spoiled]:
    """Valid requests of `operation`, each with one value made hostile."""
    return operation.as_strategy(GenerationMode.POSITIVE).flatmap(_spoil)
