"""gRPC instrumentation: a client span per unary call made through a channel with
`client_interceptors()` (its `traceparent` in the call's metadata), and a server span per
unary call (`TracingServerInterceptor`), parented by the caller's `traceparent`. A call
whose caller did not sample its trace gets no span, unless the server fails it."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import grpc
from grpc import aio
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from flotilla_kit.context import RequestContext, new_span_id, reset_context, set_context
from flotilla_kit.tracing._propagation import (
    bound_request_context,
    context_from_traceparent,
    current_traceparent,
    failed,
    hex_id,
    traceparent_of,
    unsampled_parent,
)
from flotilla_kit.tracing._state import installed

if TYPE_CHECKING:
    from flotilla_kit.tracing._setup import Tracing

__all__ = ["TracingServerInterceptor", "client_interceptors"]

_TRACEPARENT = "traceparent"


def _grpc_service_method(full: str) -> tuple[str, str]:
    service, _, method = full.lstrip("/").partition("/")
    return service, method


def _with_traceparent(details: aio.ClientCallDetails, traceparent: str) -> aio.ClientCallDetails:
    metadata = [(k, v) for k, v in (details.metadata or ()) if k != _TRACEPARENT]
    metadata.append((_TRACEPARENT, traceparent))
    return aio.ClientCallDetails(
        details.method,
        details.timeout,
        aio.Metadata(*metadata),
        details.credentials,
        details.wait_for_ready,
    )


class _UnaryUnaryClientInterceptor(aio.UnaryUnaryClientInterceptor):
    async def intercept_unary_unary(
        self,
        continuation: Callable[[aio.ClientCallDetails, Any], Awaitable[Any]],
        client_call_details: aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        active = installed.tracing
        if active is None or not trace.get_current_span().is_recording():
            traceparent = current_traceparent()
            if traceparent is None:
                return await continuation(client_call_details, request)
            return await continuation(_with_traceparent(client_call_details, traceparent), request)
        full: object = client_call_details.method  # bytes in the stubs, str at times
        method = full.decode() if isinstance(full, bytes) else str(full)
        service, name = _grpc_service_method(method)
        with active.tracer.start_as_current_span(
            method.lstrip("/"),
            kind=SpanKind.CLIENT,
            attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            traceparent = traceparent_of(span)
            details = (
                client_call_details
                if traceparent is None
                else _with_traceparent(client_call_details, traceparent)
            )
            try:
                call = await continuation(details, request)
                code = await call.code()
            except Exception as error:
                failed(span, error)
                raise
            span.set_attribute("rpc.grpc.status_code", code.value[0])
            if code != grpc.StatusCode.OK:
                span.set_status(Status(StatusCode.ERROR, code.name))
            return call


def client_interceptors() -> list[aio.ClientInterceptor]:
    """For `aio.secure_channel(..., interceptors=...)`: unary calls get a client span.
    (Streams are left alone: one span for a long-lived stream would say nothing.)"""
    return [_UnaryUnaryClientInterceptor()]


class TracingServerInterceptor(aio.ServerInterceptor):
    """A server span per unary gRPC call, parented by the caller's `traceparent`
    metadata; also the kit's request context for the handler's log lines."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        active = installed.tracing
        if (
            active is None
            or handler is None
            or handler.request_streaming
            or handler.response_streaming
            or handler.unary_unary is None
        ):
            return handler
        method = handler_call_details.method
        metadata: Mapping[str, Any] = dict(handler_call_details.invocation_metadata or ())
        raw_parent = str(metadata.get(_TRACEPARENT) or "")
        service, name = _grpc_service_method(method)
        attributes = {"rpc.system": "grpc", "rpc.service": service, "rpc.method": name}
        behaviour = handler.unary_unary
        unsampled = unsampled_parent(raw_parent)
        if unsampled is not None:
            return grpc.unary_unary_rpc_method_handler(
                _untraced(active, behaviour, method.lstrip("/"), unsampled, attributes),  # type: ignore[arg-type]
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        parent = context_from_traceparent(raw_parent)
        tracer_ = active.tracer

        async def traced(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
            with (
                tracer_.start_as_current_span(
                    method.lstrip("/"),
                    context=parent,
                    kind=SpanKind.SERVER,
                    attributes=attributes,
                    record_exception=False,
                    set_status_on_exception=False,
                ) as span,
                bound_request_context(span, hex_id(span.get_span_context().span_id, 16)),
            ):
                try:
                    return await behaviour(request, context)  # type: ignore[arg-type]
                except Exception as error:
                    failed(span, error)
                    raise
                finally:
                    code = context.code()
                    if code is not None and code != grpc.StatusCode.OK:
                        status = code if isinstance(code, grpc.StatusCode) else None
                        span.set_status(
                            Status(StatusCode.ERROR, status.name if status else str(code))
                        )

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


# What a server failed at (OpenTelemetry's gRPC conventions); a NOT_FOUND or a
# FAILED_PRECONDITION is the caller's answer, not the server's error.
_SERVER_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)


def _untraced(
    active: Tracing,
    behaviour: Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]],
    name: str,
    parent: tuple[str, str],
    attributes: Mapping[str, str | int],
) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Any]]:
    """A call whose caller did not sample its trace: no span, the trace's ids in the
    request context (logs, callees), and a span after all if it fails."""
    trace_id, parent_span_id = parent

    async def serve(request: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        span_id = new_span_id()
        request_context = RequestContext(span_id, trace_id, span_id, sampled=False)
        token = set_context(request_context)
        started = time.time_ns()
        failure: str | None = None
        try:
            return await behaviour(request, context)
        except aio.AbortError:
            raise  # the handler answered with a status: judged by its code below
        except Exception as error:
            failure = type(error).__name__
            raise
        finally:
            reset_context(token)
            code = context.code()
            if failure is not None or code in _SERVER_ERRORS:
                active.error_span(
                    name=name, kind=SpanKind.SERVER, context=request_context,
                    parent_span_id=parent_span_id, start_ns=started, end_ns=time.time_ns(),
                    attributes={**attributes, "rpc.grpc.status_code": _code_value(code)},
                    message=failure or (code.name if isinstance(code, grpc.StatusCode) else None),
                )  # fmt: skip

    return serve


def _code_value(code: object) -> int:
    if isinstance(code, grpc.StatusCode):
        value = code.value[0]
        return int(value) if isinstance(value, int) else 2
    return 2 if code is not None else 0  # UNKNOWN, or OK
