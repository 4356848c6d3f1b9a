"""Ids from a page's URL on their way into an API's path, and answers that must succeed."""

from __future__ import annotations

import pytest

from flotilla_web.domain import ApiFailed, NotFound
from flotilla_web.service_layer.answers import expect_ok, items_of, path_id
from flotilla_web.service_layer.ports import ApiAnswer


@pytest.mark.parametrize(
    ("value", "segment"),
    [
        ("acc_0_abc", "acc_0_abc"),
        ("../../auth/users", "..%2F..%2Fauth%2Fusers"),
        ("a?b#c", "a%3Fb%23c"),
        ("a b", "a%20b"),
    ],
)
def test_an_id_becomes_exactly_one_path_segment(value: str, segment: str) -> None:
    assert path_id(value) == segment


@pytest.mark.parametrize("value", ["", "x" * 129, "a\x00b", "a\nb", "a\u202eb"])
def test_what_no_id_looks_like_is_not_found(value: str) -> None:
    with pytest.raises(NotFound):
        path_id(value)


def test_only_a_success_gives_its_body() -> None:
    assert expect_ok(ApiAnswer(200, {"items": []}), "x") == {"items": []}
    with pytest.raises(NotFound):
        expect_ok(ApiAnswer(404), "x")
    with pytest.raises(ApiFailed, match="500: accounts: it broke"):
        expect_ok(ApiAnswer(500, {"detail": "it broke"}), "accounts")
    with pytest.raises(ApiFailed):
        items_of({"nothing": []})
    assert items_of({"items": [{"id": 1}, "junk"]}) == [{"id": 1}]
