"""The answer of an idempotent write: its stored status and body, and the headers that say
where the result is and whether this is a replay."""

from __future__ import annotations

import json

from flotilla_kit.idempotency import IdempotentResult, answer_headers, stored_answer


def test_a_first_answer_has_its_location_and_no_replay_header() -> None:
    response = stored_answer(IdempotentResult(201, {"id": "a"}, replayed=False), "/things/a")
    assert response.status_code == 201
    assert json.loads(bytes(response.body)) == {"id": "a"}
    assert response.headers["location"] == "/things/a"
    assert "idempotency-replayed" not in response.headers


def test_a_replay_says_so() -> None:
    response = stored_answer(IdempotentResult(200, {"ok": True}, replayed=True))
    assert response.headers["idempotency-replayed"] == "true"
    assert "location" not in response.headers


def test_headers_alone() -> None:
    assert answer_headers(replayed=False) == {}
    assert answer_headers(replayed=True, location="/x") == {
        "Location": "/x",
        "Idempotency-Replayed": "true",
    }
