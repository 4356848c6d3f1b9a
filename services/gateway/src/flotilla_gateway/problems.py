"""RFC 9457 problem responses, prebuilt: only the request id is filled in per request.

A request id is either one the client sent that passed `valid_request_id` (letters, digits
and `._:-`) or one we generated (hex), so it can be placed in the JSON text unescaped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from flotilla_gateway.reply import Reply, bytes_reply, http_date_line
from flotilla_kit.problems import PROBLEM_CONTENT_TYPE, problem_type

__all__ = ["ProblemCatalog", "ProblemTemplate", "problem_reply"]

_CONTENT_TYPE = b"content-type: " + PROBLEM_CONTENT_TYPE.encode("ascii") + b"\r\n"
_CHALLENGE = {"WWW-Authenticate": 'Bearer realm="flotilla"'}


def _header_block(headers: Mapping[str, str]) -> bytes:
    return b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in headers.items())


class ProblemTemplate:
    """One kind of problem with a fixed title and detail; `reply()` adds the request id."""

    __slots__ = ("_head", "_prefix", "_suffix", "close", "slug", "status")

    def __init__(
        self,
        status: int,
        slug: str,
        title: str,
        detail: str,
        *,
        headers: Mapping[str, str] | None = None,
        close: bool = False,
    ) -> None:
        self.status = status
        self.slug = slug
        self.close = close
        fixed = json.dumps(
            {"type": problem_type(slug), "title": title, "status": status, "detail": detail},
            separators=(",", ":"),
        )
        self._prefix = fixed[:-1].encode() + b',"request_id":"'
        self._suffix = b'"}'
        self._head = _CONTENT_TYPE + _header_block(headers or {})

    def reply(self, request_id: str, extra_head: bytes = b"") -> Reply:
        """The reply for one request; `extra_head` holds header lines that vary per request
        (e.g. `Retry-After` of a rate limit)."""
        rid = request_id.encode("ascii")
        body = self._prefix + rid + self._suffix
        head = b"".join(
            (
                self._head,
                extra_head,
                http_date_line(),
                b"x-request-id: ",
                rid,
                b"\r\ncontent-length: %d\r\n" % len(body),
            )
        )
        return Reply(self.status, head, body, self.close)


def problem_reply(
    status: int,
    slug: str,
    title: str,
    detail: str,
    request_id: str,
    *,
    headers: Mapping[str, str] | None = None,
    **extensions: Any,
) -> Reply:
    """A problem whose content varies (e.g. which services are not ready); not for hot paths."""
    body = {
        "type": problem_type(slug),
        "title": title,
        "status": status,
        "detail": detail,
        "request_id": request_id,
        **extensions,
    }
    return bytes_reply(
        status,
        json.dumps(body, separators=(",", ":")).encode(),
        request_id,
        content_type=PROBLEM_CONTENT_TYPE.encode("ascii"),
        extra_head=_header_block(headers or {}),
    )


class ProblemCatalog:
    """Every problem the gateway itself answers with, built once at start."""

    def __init__(self, *, max_body_bytes: int, max_header_bytes: int) -> None:
        self.bad_request = ProblemTemplate(
            400, "bad-request", "Bad request", "The request is not valid HTTP/1.1.", close=True
        )
        self.bad_path = ProblemTemplate(
            400,
            "bad-request",
            "Bad request",
            "The request target must be an absolute path without dot segments.",
        )
        self.refused_path = ProblemTemplate(
            422,
            "validation-error",
            "Request validation failed",
            "The path holds a character no path may: a control character, a line break or "
            "a bidirectional control (the text rule of every Flotilla service).",
        )
        self.missing_host = ProblemTemplate(
            400, "bad-request", "Bad request", "HTTP/1.1 requests need a Host header.", close=True
        )
        self.not_found = ProblemTemplate(404, "not-found", "Not found", "No route for this path.")
        # An account id that names no shard the topology lists: no such account anywhere.
        self.unknown_account = ProblemTemplate(
            404, "not-found", "Not found", "No account has this id."
        )
        self.bad_owner = ProblemTemplate(
            400,
            "bad-request",
            "Bad request",
            "The owner_id query parameter must not be empty or given more than once.",
        )
        self.connect_not_allowed = ProblemTemplate(
            405,
            "method-not-allowed",
            "Method not allowed",
            "The gateway is not a forward proxy.",
            close=True,
        )
        self.token_missing = ProblemTemplate(
            401,
            "unauthenticated",
            "Authentication required",
            "A bearer access token is required.",
            headers=_CHALLENGE,
        )
        self.token_invalid = ProblemTemplate(
            401,
            "unauthenticated",
            "Authentication required",
            "The access token is invalid or expired.",
            headers=_CHALLENGE,
        )
        self.forbidden = ProblemTemplate(
            403,
            "forbidden",
            "Forbidden",
            "The access token does not grant the permission this operation needs.",
        )
        self.payload_too_large = ProblemTemplate(
            413,
            "payload-too-large",
            "Request body too large",
            f"The body must not exceed {max_body_bytes} bytes.",
            close=True,
        )
        self.header_too_large = ProblemTemplate(
            431,
            "header-too-large",
            "Request header fields too large",
            f"The request line and header fields must not exceed {max_header_bytes} bytes.",
            close=True,
        )
        self.bad_gateway = ProblemTemplate(
            502, "bad-gateway", "Bad gateway", "The upstream service did not answer properly."
        )
        self.gateway_timeout = ProblemTemplate(
            504,
            "gateway-timeout",
            "Gateway timeout",
            "The upstream service did not answer in time.",
        )
        self.internal_error = ProblemTemplate(
            500, "internal-error", "Internal server error", "The error was logged.", close=True
        )
        self._unavailable: dict[str, ProblemTemplate] = {}
        self._circuit_open: dict[tuple[str, int | None], ProblemTemplate] = {}
        self._shard_unavailable: dict[tuple[str, int], ProblemTemplate] = {}
        self._not_allowed: dict[tuple[str, ...], ProblemTemplate] = {}
        self._rate_limited: dict[tuple[str, float, int, str], ProblemTemplate] = {}

    def method_not_allowed(self, allowed: tuple[str, ...]) -> ProblemTemplate:
        """405 with `Allow`; one template per set of methods (bounded by the route table)."""
        template = self._not_allowed.get(allowed)
        if template is None:
            listed = ", ".join(allowed)
            template = self._not_allowed[allowed] = ProblemTemplate(
                405,
                "method-not-allowed",
                "Method not allowed",
                f"This path answers {listed} only.",
                headers={"Allow": listed},
            )
        return template

    def unavailable(self, service: str) -> ProblemTemplate:
        template = self._unavailable.get(service)
        if template is None:
            template = self._unavailable[service] = ProblemTemplate(
                503,
                "unavailable",
                "Service unavailable",
                f"No healthy instance of {service!r} is available.",
                headers={"Retry-After": "1"},
            )
        return template

    def circuit_open(self, service: str, shard: int | None = None) -> ProblemTemplate:
        """503 while the circuit breaker of a service (or of one of its shards) is open;
        the caller adds `Retry-After`."""
        key = (service, shard)
        template = self._circuit_open.get(key)
        if template is None:
            what = f"{service!r}" if shard is None else f"{service!r} shard {shard}"
            template = self._circuit_open[key] = ProblemTemplate(
                503,
                "unavailable",
                "Service unavailable",
                f"{what} is failing; requests are held back for a while (circuit open).",
            )
        return template

    def shard_unavailable(self, service: str, shard: int) -> ProblemTemplate:
        """503 for one shard of a sharded service; at most one template per shard."""
        key = (service, shard)
        template = self._shard_unavailable.get(key)
        if template is None:
            template = self._shard_unavailable[key] = ProblemTemplate(
                503,
                "unavailable",
                "Service unavailable",
                f"No healthy instance of {service!r} shard {shard} is available.",
                headers={"Retry-After": "1"},
            )
        return template

    def rate_limited(self, kind: str, rps: float, burst: int, scope: str = "") -> ProblemTemplate:
        """429 naming the limit; `Retry-After` varies, so the caller adds it per request.

        One template per configured limit, built at start.
        """
        key = (kind, rps, burst, scope)
        template = self._rate_limited.get(key)
        if template is None:
            who = "client address" if kind == "ip" else "identity"
            where = f" on {scope}" if scope else ""
            template = self._rate_limited[key] = ProblemTemplate(
                429,
                "rate-limited",
                "Too many requests",
                f"The per-{kind} rate limit{where} ({rps:g} requests/s, burst {burst}) "
                f"is used up for this {who}; retry after the Retry-After delay.",
            )
        return template
