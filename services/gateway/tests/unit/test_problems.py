from __future__ import annotations

import json

from flotilla_gateway.problems import ProblemCatalog, ProblemTemplate, problem_reply
from flotilla_kit.problems import problem_type


def head_fields(head: bytes) -> dict[str, str]:
    fields: dict[str, str] = {}
    for line in head.decode("latin-1").split("\r\n"):
        if line:
            name, _, value = line.partition(": ")
            fields[name.lower()] = value
    return fields


def test_a_template_renders_rfc_9457_with_the_request_id() -> None:
    template = ProblemTemplate(
        503, "unavailable", "Service unavailable", "None left.", headers={"Retry-After": "1"}
    )
    reply = template.reply("req-1")
    assert reply.status == 503
    assert json.loads(reply.body) == {
        "type": problem_type("unavailable"),
        "title": "Service unavailable",
        "status": 503,
        "detail": "None left.",
        "request_id": "req-1",
    }
    fields = head_fields(reply.head)
    assert fields["content-type"] == "application/problem+json"
    assert fields["retry-after"] == "1"
    assert fields["x-request-id"] == "req-1"
    assert int(fields["content-length"]) == len(reply.body)


def test_the_catalog_says_which_problems_end_the_connection() -> None:
    catalog = ProblemCatalog(max_body_bytes=10, max_header_bytes=20)
    assert catalog.bad_request.close
    assert catalog.payload_too_large.close
    assert not catalog.not_found.close
    assert not catalog.token_missing.close
    assert "10 bytes" in json.loads(catalog.payload_too_large.reply("r").body)["detail"]
    assert head_fields(catalog.token_invalid.reply("r").head)["www-authenticate"] == (
        'Bearer realm="flotilla"'
    )
    assert catalog.unavailable("auth") is catalog.unavailable("auth")


def test_dynamic_problems_carry_extensions() -> None:
    reply = problem_reply(503, "not-ready", "Not ready", "Missing: auth.", "r", services=["auth"])
    assert json.loads(reply.body)["services"] == ["auth"]
    assert head_fields(reply.head)["content-type"] == "application/problem+json"


def test_forbidden_and_method_not_allowed() -> None:
    catalog = ProblemCatalog(max_body_bytes=10, max_header_bytes=20)
    forbidden = catalog.forbidden.reply("r")
    assert forbidden.status == 403
    assert json.loads(forbidden.body)["type"] == problem_type("forbidden")
    assert "www-authenticate" not in head_fields(forbidden.head)
    allowed = catalog.method_not_allowed(("GET", "HEAD", "POST")).reply("r")
    assert allowed.status == 405
    assert head_fields(allowed.head)["allow"] == "GET, HEAD, POST"
    assert json.loads(allowed.body)["type"] == problem_type("method-not-allowed")
    assert catalog.method_not_allowed(("POST",)) is catalog.method_not_allowed(("POST",))
