"""From a parsed request to a reply: local endpoint, or policy, token check and forward.

This is the hot path. Everything that can be decided at start is: the policy table is
compiled, route targets carry their service, access rule, timeout and metric children,
problem bodies and header blocks are prebuilt. A proxied request with a known token runs
without a task or a future: the dispatcher writes it on a pooled connection and the
connection's parser callback hands the response to the `Exchange`, which answers the
client. Tasks are used only off the hot path: the first sight of a token, a new upstream
connection, local endpoints.

For a sharded service, the route's `ShardRouter` picks the shard once the token is
checked; the request, and any retry of it, then goes to that shard's instances only.

Resilience: every attempt's outcome feeds the instance's passive check (outlier ejection,
health penalty) and the service's circuit breaker; an open breaker answers 503 with
`Retry-After` before any instance is chosen. Idempotent requests (GET, HEAD, OPTIONS, or
any method with an `Idempotency-Key`) move once to another instance after a connect
error, a reset before any response byte, or a 502/503 answer, if the service's retry
budget allows.

Rate limits: the per-IP bucket is checked right after the route match, the per-identity
bucket once the token and permission are; in process both are synchronous. Buckets shared
through Valkey need an await, so those checks run in a task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Mapping
from math import ceil as _ceil
from time import perf_counter_ns
from typing import Any, Protocol

from flotilla_gateway.access_log import AccessLog
from flotilla_gateway.authentication import Authenticator, bearer_token
from flotilla_gateway.balancer import CLOSED, Candidates, Instance, Registry, Service
from flotilla_gateway.endpoints import LocalHandler
from flotilla_gateway.errors import (
    UpstreamConnectError,
    UpstreamError,
    UpstreamReset,
    UpstreamTimeout,
)
from flotilla_gateway.headers import NO_STORE
from flotilla_gateway.health import HealthChecker
from flotilla_gateway.metrics import GatewayMetrics, RouteMetrics
from flotilla_gateway.problems import ProblemCatalog, ProblemTemplate
from flotilla_gateway.rate_limits import IP, Outcome, RateLimit, RateLimiter
from flotilla_gateway.reply import Reply
from flotilla_gateway.request import Request
from flotilla_gateway.routes import RoutePolicy, RouteTable
from flotilla_gateway.shards import ShardRouter
from flotilla_gateway.spans import SpanLog
from flotilla_gateway.upstream import UpstreamResponse
from flotilla_kit.context import new_ids, parse_traceparent, valid_request_id
from flotilla_kit.logs import get_logger
from flotilla_kit.tokens import Principal

__all__ = ["Dispatcher", "Exchange", "Responder", "RouteTarget"]

_log = get_logger("flotilla.gateway.dispatcher")

# Safe to send twice (RFC 9110 9.2.2 minus PUT/DELETE, whose handlers we do not control);
# other methods only with an `Idempotency-Key` (the service replays the stored answer).
_IDEMPOTENT = frozenset({b"GET", b"HEAD", b"OPTIONS"})
# Answers of an idempotent request worth trying on another instance.
_RETRY_STATUSES = frozenset({502, 503})
# Methods whose requests carry a body even when it is empty.
_BODY_METHODS = frozenset({b"POST", b"PUT", b"PATCH"})
_LOCAL_METHODS = frozenset({b"GET", b"HEAD"})
_LOCAL_ALLOW = ("GET", "HEAD")
# Probes and scrapes come every second; only their failures are worth a log line.
_QUIET_PATHS = frozenset({"/livez", "/readyz", "/metrics"})
_UNMATCHED = "<unmatched>"


class Responder(Protocol):
    """Where the reply to a request goes (its client connection)."""

    def respond(self, request: Request, reply: Reply) -> None: ...


class RouteTarget:
    """A policy entry with everything the dispatcher needs to act on it, resolved at start."""

    __slots__ = (
        "both_limits_head",
        "identity_limit",
        "identity_limit_head",
        "ip_limit",
        "ip_limit_head",
        "local",
        "metrics",
        "no_store",
        "page",
        "permission",
        "policy",
        "public",
        "service",
        "shard_router",
        "timeout_s",
    )

    def __init__(
        self,
        policy: RoutePolicy,
        service: Service,
        metrics: RouteMetrics,
        timeout_s: float,
        shard_router: ShardRouter | None = None,
        limiter: RateLimiter | None = None,
        local: LocalHandler | None = None,
    ):
        self.policy = policy
        self.service = service
        # The gateway's own operation (`routes.GATEWAY`): answered by this, not forwarded.
        self.local = local
        self.metrics = metrics
        self.public = policy.public
        # None: any valid token will do.
        self.permission = policy.permission
        self.no_store = policy.no_store
        self.page = policy.page
        self.timeout_s = policy.timeout_s if policy.timeout_s is not None else timeout_s
        # None: any instance of the service will do.
        self.shard_router = shard_router
        # None: not limited (limits off, or no identity on a public route).
        self.ip_limit: RateLimit | None = None
        self.identity_limit: RateLimit | None = None
        if limiter is not None:
            self.ip_limit, self.identity_limit = limiter.limits_for(
                policy.method, policy.path, public=policy.public
            )
        # The RateLimit fields for the limits a request was checked by, rendered once;
        # each takes (remaining, seconds to reset) per limit.
        ip, identity = self.ip_limit, self.identity_limit
        self.ip_limit_head = _limits_head(ip) if ip is not None else b""
        self.identity_limit_head = _limits_head(identity) if identity is not None else b""
        self.both_limits_head = (
            _limits_head(ip, identity) if ip is not None and identity is not None else b""
        )

    def candidates(self, request: Request, subject: str | None) -> Candidates | ProblemTemplate:
        """The instances `request` may go to, or the problem to answer with instead.

        `shard_by` applies only while the service is sharded (its instances in the
        topology carry a shard); otherwise every instance will do.
        """
        service = self.service
        router = self.shard_router
        if router is None or not service.shard_count:
            return service.everyone
        return router.select(service, request, subject)


class Dispatcher:
    def __init__(
        self,
        *,
        routes: RouteTable[RouteTarget],
        local: Mapping[str, LocalHandler],
        authenticator: Authenticator,
        health: HealthChecker,
        registry: Registry,
        problems: ProblemCatalog,
        metrics: GatewayMetrics,
        access_log: AccessLog,
        forwarded_proto: bytes,
        limiter: RateLimiter | None = None,
        spans: SpanLog | None = None,
    ) -> None:
        self.routes = routes
        # None: tracing is off.
        self.spans = spans
        self.local = dict(local)
        self.authenticator = authenticator
        # The verifier lives as long as the gateway: its synchronous lookup, bound once.
        self.cached_principal = authenticator.verifier.cached
        self.health = health
        self.registry = registry
        self.problems = problems
        self.access_log = access_log
        self.forwarded_proto_line = f"x-forwarded-proto: {forwarded_proto.decode('ascii')}\r\n"
        self.limiter = limiter
        self.shared_buckets = limiter.shared if limiter is not None else None
        self.rate_clock = limiter.clock if limiter is not None else _no_clock
        self.exempt_roles = limiter.exempt_roles if limiter is not None else frozenset()
        self.unmatched = metrics.route(_UNMATCHED)
        self.local_metrics = {path: metrics.route(path) for path in self.local}
        self._tasks: set[asyncio.Task[None]] = set()

    def dispatch(self, request: Request, responder: Responder) -> None:
        """Answer `request` through `responder`, now or later; never raises."""
        exchange = Exchange(self, request, responder)
        try:
            exchange.start()
        except Exception:
            exchange.crashed()

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        """Cancel slow-path work still running (after the shutdown grace period)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.limiter is not None:
            await self.limiter.close()
        self.access_log.flush()
        if self.spans is not None:
            self.spans.flush()


def _no_clock() -> float:
    raise AssertionError("no rate limits, no clock")


class Exchange:
    """One request from arrival to reply: routing, authentication, forwarding, retries."""

    __slots__ = (
        "_body",
        "_dispatcher",
        "_fields",
        "_group",
        "_head",
        "_idempotent",
        "_identity_outcome",
        "_instance",
        "_ip_outcome",
        "_new_trace_id",
        "_request_line",
        "_rerouted",
        "_resent",
        "_responder",
        "_sampled",
        "_sent",
        "_span_id",
        "_started",
        "_target",
        "_trace_id",
        "_user_id",
        "metrics",
        "request",
        "request_id",
    )

    def __init__(self, dispatcher: Dispatcher, request: Request, responder: Responder) -> None:
        self._started = perf_counter_ns()
        self._dispatcher = dispatcher
        self._responder = responder
        self.request = request
        # Fresh ids, made at once: the request id (unless the client sent a valid one),
        # the trace id (unless the client continues a trace) and the upstream hop's span.
        request_id, self._new_trace_id, self._span_id = new_ids()
        raw_id = request.request_id
        if raw_id is not None:
            request_id = valid_request_id(raw_id.decode("latin-1")) or request_id
        self.request_id = request_id
        self._trace_id = ""
        self._sampled = True
        self._user_id: str | None = None
        self._instance: Instance | None = None
        self._target: RouteTarget | None = None
        # The instances this request may go to: its shard's, or all the service's.
        self._group: Candidates | None = None
        # At most one resend on a new connection and one move to another instance.
        self._resent = False
        self._rerouted = False
        # When the current attempt was sent (perf_counter_ns), for per-instance latency.
        self._sent = 0
        # What the rate limits said, for the RateLimit headers (None: not checked).
        self._ip_outcome: Outcome | None = None
        self._identity_outcome: Outcome | None = None
        self.metrics = dispatcher.unmatched

    def start(self) -> None:
        dispatcher = self._dispatcher
        request = self.request
        if request.error is not None:
            self.finish(request.error.reply(self.request_id))
            return
        local = dispatcher.local.get(request.path)
        if local is not None:
            self.metrics = dispatcher.local_metrics[request.path]
            if request.method in _LOCAL_METHODS:
                dispatcher.spawn(self._answer_locally(local))
            else:
                self.finish(
                    dispatcher.problems.method_not_allowed(_LOCAL_ALLOW).reply(self.request_id)
                )
            return
        target = dispatcher.routes.match(request.method, request.path)
        if target is None:
            self._refuse_unrouted()
            return
        self.metrics = target.metrics
        self._target = target
        limit = target.ip_limit
        if limit is not None:
            # Before the token: a flood of bad tokens costs verifications.
            shared = dispatcher.shared_buckets
            if shared is not None:
                dispatcher.spawn(self._take_shared(limit, request.client_ip, self._checked_ip))
                return
            outcome = self._ip_outcome = limit.take(request.client_ip, dispatcher.rate_clock())
            if not outcome[0]:
                self._refuse(limit, outcome)
                return
        self._checked_ip()

    def _checked_ip(self) -> None:
        target = self._target
        assert target is not None
        if target.public:
            self._forward()
            return
        dispatcher = self._dispatcher
        request = self.request
        token = bearer_token(request.authorization)
        if token is None:
            self.finish(dispatcher.problems.token_missing.reply(self.request_id))
            return
        principal = dispatcher.cached_principal(token)
        if principal is None:
            dispatcher.spawn(self._authenticate_and_forward(token))
            return
        self._authorize(principal)

    def _refuse_unrouted(self) -> None:
        """404 for a path no entry has; 405 with `Allow` for a method the path does not take."""
        problems = self._dispatcher.problems
        allowed = self._dispatcher.routes.allowed(self.request.path)
        problem = problems.method_not_allowed(allowed) if allowed else problems.not_found
        self.finish(problem.reply(self.request_id))

    def _authorize(self, principal: Principal) -> None:
        """The permission check, then the identity's rate limit, then forward."""
        subject = self._user_id = principal.subject
        target = self._target
        assert target is not None
        permission = target.permission
        if permission is not None and permission not in principal.permissions:
            self.finish(self._dispatcher.problems.forbidden.reply(self.request_id))
            return
        limit = target.identity_limit
        dispatcher = self._dispatcher
        exempt = dispatcher.exempt_roles
        if limit is None or (exempt and not exempt.isdisjoint(principal.roles)):
            self._forward()
            return
        if dispatcher.shared_buckets is not None:
            dispatcher.spawn(self._take_shared(limit, subject, self._forward))
            return
        outcome = self._identity_outcome = limit.take(subject, dispatcher.rate_clock())
        if outcome[0]:
            self._forward()
        else:
            self._refuse(limit, outcome)

    def _admit(self, limit: RateLimit, outcome: Outcome) -> bool:
        """Record a limit's verdict; on a refusal, answer 429 and return False."""
        if limit.kind == IP:
            self._ip_outcome = outcome
        else:
            self._identity_outcome = outcome
        if outcome[0]:
            return True
        self._refuse(limit, outcome)
        return False

    def _refuse(self, limit: RateLimit, outcome: Outcome) -> None:
        """429 with `Retry-After`."""
        self.metrics.rate_limited(limit.kind)
        problem = limit.problem
        assert problem is not None
        retry_after = b"retry-after: %d\r\n" % _whole_seconds(outcome[2])
        self.finish(problem.reply(self.request_id, retry_after))

    async def _take_shared(self, limit: RateLimit, key: str, then: Callable[[], None]) -> None:
        shared = self._dispatcher.shared_buckets
        assert shared is not None
        try:
            if self._admit(limit, await shared.take(limit, key)):
                then()
        except Exception:
            self.crashed()

    def _rate_limit_head(self) -> bytes:
        """`RateLimit-Policy` and `RateLimit` for the limits this request was checked by
        (empty when none was)."""
        target = self._target
        ip, identity = self._ip_outcome, self._identity_outcome
        if target is None or (ip is None and identity is None):
            return b""
        # Whole seconds to reset, rounded up (float noise aside), at least 1.
        if ip is not None and identity is not None:
            return target.both_limits_head % (
                ip[1], max(1, _ceil(ip[2] - 1e-9)), identity[1], max(1, _ceil(identity[2] - 1e-9))
            )  # fmt: skip
        outcome = ip if ip is not None else identity
        assert outcome is not None
        head = target.ip_limit_head if ip is not None else target.identity_limit_head
        return head % (outcome[1], max(1, _ceil(outcome[2] - 1e-9)))

    def finish(self, reply: Reply) -> None:
        """Answer with a reply the gateway made: the RateLimit fields go in, then out."""
        if self._ip_outcome is not None or self._identity_outcome is not None:
            reply = Reply(
                reply.status, reply.head + self._rate_limit_head(), reply.body, reply.close,
                reply.page,
            )  # fmt: skip
        self._finish(reply)

    def _finish(self, reply: Reply) -> None:
        """Count, hand the reply to the client connection, then log."""
        elapsed = perf_counter_ns() - self._started
        status = reply.status
        self.metrics.observe(status, elapsed / 1e9)
        request = self.request
        # The reply leaves before the access line is kept: the client does not wait for
        # the log.
        self._responder.respond(request, reply)
        instance = self._instance
        trace_id = self._trace_id
        spans = self._dispatcher.spans
        # Sampled traces, and every failure: errors are always kept.
        if trace_id and spans is not None and (self._sampled or status >= 500):
            spans.record(
                self._started, elapsed, trace_id, self._span_id,
                # The caller's traceparent, if it was valid (its trace is continued).
                request.traceparent if trace_id != self._new_trace_id else None,
                request.method, request.path, self.metrics.label, status,
                instance.name if instance is not None else None, self.request_id,
            )  # fmt: skip
        if status >= 400 or request.path not in _QUIET_PATHS:
            self._dispatcher.access_log.record(
                method=request.method,
                path=request.path,
                route=self.metrics.label,
                status=status,
                duration_ns=elapsed,
                request_id=self.request_id,
                trace_id=self._trace_id or _client_trace_id(request),
                instance=instance.name if instance is not None else None,
                user_id=self._user_id,
                client_ip=request.client_ip,
            )

    def crashed(self) -> None:
        # The traceback goes to the log with the request id, never to the client.
        _log.exception("request failed", **{"http.request.id": self.request_id})
        self.finish(self._dispatcher.problems.internal_error.reply(self.request_id))

    # slow paths (tasks)

    async def _answer_locally(self, handler: LocalHandler) -> None:
        try:
            reply = await handler(self.request, self.request_id)
        except Exception:
            self.crashed()
            return
        self.finish(reply)

    async def _authenticate_and_forward(self, token: str) -> None:
        try:
            principal = await self._dispatcher.authenticator.verify(token)
            if principal is None:
                self.finish(self._dispatcher.problems.token_invalid.reply(self.request_id))
                return
            self._authorize(principal)
        except Exception:
            self.crashed()

    # forwarding (callbacks)

    def _forward(self) -> None:
        target = self._target
        assert target is not None
        if target.local is not None:
            # The gateway's own operation: checked like any other, answered here.
            self._dispatcher.spawn(self._answer_locally(target.local))
            return
        request = self.request
        raw_parent = request.traceparent
        parent = parse_traceparent(raw_parent.decode("latin-1")) if raw_parent else None
        if parent is not None:
            trace_id, sampled = parent
        else:
            spans = self._dispatcher.spans
            trace_id, sampled = self._new_trace_id, spans is None or spans.sample()
        self._trace_id = trace_id
        self._sampled = sampled
        group = target.candidates(request, self._user_id)
        if isinstance(group, ProblemTemplate):
            self.finish(group.reply(self.request_id))
            return
        service = target.service
        breaker = group.breaker
        if breaker.state != CLOSED and not breaker.admit():
            self.finish(
                self._dispatcher.problems.circuit_open(service.name, group.shard).reply(
                    self.request_id, b"retry-after: %d\r\n" % breaker.retry_after()
                )
            )
            return
        service.retry_budget.deposit()
        instance = group.choose()
        if instance is None:
            self._unavailable(target.service.name, group.shard)
            return
        self._group = group
        method = request.method
        body = request.body
        lines = request.lines
        # One str rendered and encoded at once: cheaper than encoding each id. Every part
        # is ASCII (ids made or validated here, an address from the socket).
        lines.append(
            f"x-request-id: {self.request_id}\r\n"
            f"traceparent: 00-{trace_id}-{self._span_id}-{'01' if sampled else '00'}\r\n"
            f"x-forwarded-for: {request.client_ip}\r\n"
            f"{self._dispatcher.forwarded_proto_line}".encode("ascii")
        )
        if parent is not None and request.tracestate is not None:
            lines.append(request.tracestate)
        if request.host is not None:
            lines.append(b"x-forwarded-host: " + request.host + b"\r\n")
        if body or method in _BODY_METHODS:
            lines.append(b"content-length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        self._fields = b"".join(lines)
        self._request_line = method + b" " + request.target + b" HTTP/1.1\r\n"
        self._body = body
        self._head = method == b"HEAD"
        self._idempotent = method in _IDEMPOTENT or request.idempotency_key
        self._send(instance, fresh=False)

    def _unavailable(self, service: str, shard: int | None) -> None:
        problems = self._dispatcher.problems
        problem = (
            problems.unavailable(service)
            if shard is None
            else problems.shard_unavailable(service, shard)
        )
        self.finish(problem.reply(self.request_id))

    def _send(self, instance: Instance, *, fresh: bool) -> None:
        target = self._target
        assert target is not None
        self._instance = instance
        # Counted from here until the listener hears the outcome, exactly once.
        instance.in_flight += 1
        self._sent = perf_counter_ns()
        instance.pool.send(
            self._request_line,
            self._fields,
            self._body,
            head=self._head,
            timeout_s=target.timeout_s,
            listener=self,
            fresh=fresh,
        )

    def upstream_response(self, response: UpstreamResponse) -> None:
        instance = self._instance
        assert instance is not None
        instance.in_flight -= 1
        instance.observe((perf_counter_ns() - self._sent) / 1e9, answered=True)
        target = self._target
        group = self._group
        assert target is not None
        assert group is not None
        status = response.status
        if status < 500:
            if instance.errors:
                instance.errors = 0
            group.breaker.record(True)
        else:
            instance.server_errors += 1
            self._dispatcher.registry.failed(instance)
            group.breaker.record(False)
            if status in _RETRY_STATUSES and self._retry_elsewhere(instance):
                return
        try:
            reply = _relay(
                response,
                self.request_id.encode("ascii"),
                self._head,
                target.no_store,
                self._rate_limit_head(),
                target.page,
            )
        except Exception:
            self.crashed()
            return
        self._finish(reply)

    def upstream_failed(self, error: UpstreamError) -> None:
        instance = self._instance
        assert instance is not None
        instance.in_flight -= 1
        instance.observe((perf_counter_ns() - self._sent) / 1e9, answered=False)
        try:
            self._recover(instance, error)
        except Exception:
            self.crashed()

    def _recover(self, instance: Instance, error: UpstreamError) -> None:
        dispatcher = self._dispatcher
        problems = dispatcher.problems
        stale = isinstance(error, UpstreamReset) and error.stale
        if stale and self._idempotent and not self._resent:
            # The upstream closed the idle connection as we reused it: it never saw the
            # request. Once more on a new connection to the same instance.
            self._resent = True
            self._send(instance, fresh=True)
            return
        if not stale:
            # (An idle connection the upstream closed says nothing about its health.)
            group = self._group
            assert group is not None
            dispatcher.registry.failed(instance)
            # The breaker of the group the request went to (its shard's, for the ledger),
            # as for an answered 5xx: the one its next requests consult.
            group.breaker.record(False)
        if isinstance(error, UpstreamTimeout):
            self.finish(problems.gateway_timeout.reply(self.request_id))
            return
        if isinstance(error, (UpstreamConnectError, UpstreamReset)):
            self._dispatcher.health.suspect(instance)
            _log.warning(
                "upstream failed",
                **{"upstream.instance": instance.name, "http.request.id": self.request_id},
                error=str(error),
            )
            started = isinstance(error, UpstreamReset) and error.response_started
            if not started and self._retry_elsewhere(instance):
                return
            never_delivered = stale or isinstance(error, UpstreamConnectError)
            if not started and (never_delivered or self._idempotent):
                # Not delivered, or safe to repeat: unavailable
                # (as while no instance is healthy) with a `Retry-After`. A write without
                # an Idempotency-Key that was delivered may have happened: a 502 says so.
                group = self._group
                target = self._target
                assert group is not None
                assert target is not None
                self._unavailable(target.service.name, group.shard)
                return
        else:
            _log.warning(
                "bad upstream response",
                **{"upstream.instance": instance.name, "http.request.id": self.request_id},
                error=str(error),
            )
        self.finish(problems.bad_gateway.reply(self.request_id))

    def _retry_elsewhere(self, instance: Instance) -> bool:
        """Send an idempotent request once to another instance (of the same shard: no
        other shard has the data), if there is one and the retry budget allows."""
        group = self._group
        if not self._idempotent or self._rerouted or group is None:
            return False
        other = group.choose(exclude=instance)
        if other is None:
            return False
        target = self._target
        assert target is not None
        if not target.service.retry_budget.withdraw():
            return False
        self._rerouted = True
        self.metrics.retried()
        self._send(other, fresh=False)
        return True


def _limits_head(*limits: RateLimit) -> bytes:
    """`RateLimit-Policy` and a `RateLimit` template (`%d` remaining, `%d` reset per limit)."""
    policy = b", ".join(limit.policy_item for limit in limits).replace(b"%", b"%%")
    state = b", ".join(limit.label.replace(b"%", b"%%") + b";r=%d;t=%d" for limit in limits)
    return b"ratelimit-policy: " + policy + b"\r\nratelimit: " + state + b"\r\n"


def _whole_seconds(seconds: float) -> int:
    """Seconds for a header: whole, rounded up (float noise aside), at least 1."""
    return max(1, _ceil(seconds - 1e-9))


def _client_trace_id(request: Request) -> str | None:
    """For requests answered without forwarding: the client's trace, if it sent one."""
    raw = request.traceparent
    parent = parse_traceparent(raw.decode("latin-1")) if raw else None
    return parent[0] if parent is not None else None


def _relay(
    response: UpstreamResponse, rid: bytes, head: bool, no_store: bool, limits: bytes, page: bool
) -> Reply:
    status = response.status
    lines = response.lines
    lines.append(b"x-request-id: " + rid + b"\r\n")
    if limits:
        lines.append(limits)
    if no_store:
        lines.append(NO_STORE)
    elif response.cache_control is not None:
        lines.append(response.cache_control)
    if status == 204:
        pass
    elif head or status == 304:
        # No body follows; its would-be length is the upstream's to state.
        if response.content_length is not None:
            lines.append(b"content-length: " + response.content_length + b"\r\n")
    else:
        lines.append(b"content-length: %d\r\n" % len(response.body))
    return Reply(status, b"".join(lines), response.body, False, page)
