"""gRPC with the same guarantees as HTTP: mutual TLS, a service token on every call,
a deadline on every call.

Servers use `server_credentials` (client certificate required) and `TokenAuthInterceptor`
(the caller's token in the `authorization` metadata must grant a permission). Clients
use `secure_channel` and pass `bearer(token)` as call metadata with a `timeout`.
Tracing: channels from `secure_channel` trace unary calls; servers add
`flotilla_kit.tracing.TracingServerInterceptor` first among their interceptors.
Text: handlers answer INVALID_ARGUMENT when `text_refusal(request)` names a string field
the kit's rule refuses (`flotilla_kit.text`; every gRPC string here is one line).
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message
from grpc import aio

from flotilla_kit.logs import get_logger
from flotilla_kit.settings import TlsSettings
from flotilla_kit.text import refusal
from flotilla_kit.tls import Stamp, check_pair, file_stamp
from flotilla_kit.tokens import TokenError, TokenVerifier
from flotilla_kit.tracing import client_interceptors

__all__ = [
    "ChannelFactory",
    "Channels",
    "TokenAuthInterceptor",
    "bearer",
    "secure_channel",
    "server_credentials",
    "text_refusal",
]

_log = get_logger("flotilla.rpc")

# Keep idle connections healthy across restarts of the peer; fail fast when it is gone.
# Calls go round robin over every address the target resolves to (gRPC's default,
# pick_first, sends every call of a channel to one of them). The server's certificate is
# checked against the host the target names, as HTTPS does: `127.0.0.1` locally (the dev
# certificates name it), `accounts-s0` in compose and in Kubernetes (whose certificates also
# name `accounts-s0.<namespace>.svc`).
_CHANNEL_OPTIONS = [
    ("grpc.keepalive_time_ms", 20_000),
    ("grpc.keepalive_timeout_ms", 5_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1_000),
    ("grpc.lb_policy_name", "round_robin"),
]


def _read(path: object) -> bytes:
    if path is None:
        raise ValueError("TLS is required for gRPC: set FLOTILLA_TLS_CERT_FILE/KEY_FILE/CA_FILE")
    with open(str(path), "rb") as handle:
        return handle.read()


def _stamp(tls: TlsSettings) -> Stamp:
    return file_stamp(tls.cert_file, tls.key_file, tls.ca_file)


def _certificate_configuration(tls: TlsSettings) -> grpc.ServerCertificateConfiguration:
    return grpc.ssl_server_certificate_configuration(
        [(_read(tls.key_file), _read(tls.cert_file))], root_certificates=_read(tls.ca_file)
    )


class _RenewedCertificates:
    """gRPC asks at each new connection's handshake: a new configuration when the files
    changed (a renewed certificate), else None (keep the current one). A stat of three
    files per connection; connections live long."""

    def __init__(self, tls: TlsSettings) -> None:
        self._tls = tls
        self._stamp = _stamp(tls)

    def __call__(self) -> grpc.ServerCertificateConfiguration | None:
        tls = self._tls
        stamp = _stamp(tls)
        if stamp == self._stamp:
            return None
        assert tls.cert_file is not None
        assert tls.key_file is not None
        try:
            check_pair(tls.cert_file, tls.key_file)
            configuration = _certificate_configuration(tls)
        except (OSError, ssl.SSLError, ValueError):
            return None  # the next handshake looks again
        self._stamp = stamp
        _log.info("gRPC certificates reloaded", cert=str(tls.cert_file))
        return configuration


def server_credentials(tls: TlsSettings) -> grpc.ServerCredentials:
    return grpc.dynamic_ssl_server_credentials(
        _certificate_configuration(tls),
        # The stubs say the fetcher must always return one; gRPC's docs: None keeps the
        # current configuration.
        _RenewedCertificates(tls),  # type: ignore[arg-type]
        require_client_authentication=True,
    )


def secure_channel(target: str, tls: TlsSettings, *, server_name: str | None = None) -> aio.Channel:
    """A channel to `host:port` (or any gRPC target: `dns:///name:port`, `ipv4:a:p,b:p`),
    verifying the server against our CA and the host the target names (`server_name`
    when it names none, as a list of addresses does), and presenting our own
    certificate."""
    credentials = grpc.ssl_channel_credentials(
        root_certificates=_read(tls.ca_file),
        private_key=_read(tls.key_file),
        certificate_chain=_read(tls.cert_file),
    )
    options = list(_CHANNEL_OPTIONS)
    if server_name is not None:
        options.append(("grpc.default_authority", server_name))
    return aio.secure_channel(
        target, credentials, options=options, interceptors=client_interceptors()
    )


ChannelFactory = Callable[[str, TlsSettings], aio.Channel]
_Stub = TypeVar("_Stub")


class Channels(Generic[_Stub]):
    """A client's channels, one per target, each with its stub, made on first use.

    A channel presents the certificate it was made with for as long as it lives, so when
    the certificate files change (a renewed Secret) the channels are made again, looked at
    every `check_every_s` at most; the old ones close once their calls in flight are done
    (within `grace_s`)."""

    def __init__(
        self,
        tls: TlsSettings,
        make_stub: Callable[[aio.Channel], _Stub],
        *,
        channel_factory: ChannelFactory = secure_channel,
        check_every_s: float = 30.0,
        grace_s: float = 30.0,
    ) -> None:
        self._tls = tls
        self._make_stub = make_stub
        self._channel_factory = channel_factory
        self._check_every_s = check_every_s
        self._grace_s = grace_s
        self._stamp = _stamp(tls)
        self._next_check = time.monotonic() + check_every_s
        self._channels: dict[str, aio.Channel] = {}
        self._stubs: dict[str, _Stub] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def stub(self, target: str) -> _Stub:
        now = time.monotonic()
        if now >= self._next_check:
            self._next_check = now + self._check_every_s
            self._renew_if_changed()
        stub = self._stubs.get(target)
        if stub is None:
            channel = self._channels[target] = self._channel_factory(target, self._tls)
            stub = self._stubs[target] = self._make_stub(channel)
        return stub

    def _renew_if_changed(self) -> None:
        tls = self._tls
        stamp = _stamp(tls)
        if stamp == self._stamp:
            return
        self._stamp = stamp
        retired, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in retired:
            task = asyncio.get_running_loop().create_task(channel.close(self._grace_s))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        _log.info("gRPC channels made again for renewed certificates", cert=str(tls.cert_file))

    async def close(self) -> None:
        channels, self._channels, self._stubs = list(self._channels.values()), {}, {}
        for channel in channels:
            await channel.close()
        await asyncio.gather(*self._closing, return_exceptions=True)


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


class TokenAuthInterceptor(aio.ServerInterceptor):
    """Refuses a call whose token is missing or invalid (UNAUTHENTICATED) or lacks
    `permission` (PERMISSION_DENIED), before the handler runs. Streaming methods are
    refused at once too, before the client sends a message: the refusing handler has the
    method's own shape (a unary one would wait for a first request that a client reading
    first never sends)."""

    def __init__(self, verifier: TokenVerifier, permission: str) -> None:
        self._verifier = verifier
        self._permission = permission

    async def _refusal(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> tuple[grpc.StatusCode, str] | None:
        metadata = dict(handler_call_details.invocation_metadata or ())
        scheme, _, token = str(metadata.get("authorization", "")).partition(" ")
        if scheme.lower() != "bearer" or not token:
            return (grpc.StatusCode.UNAUTHENTICATED, "a bearer token is required")
        try:
            principal = await self._verifier.verify(token)
        except TokenError:
            return (grpc.StatusCode.UNAUTHENTICATED, "the token is invalid or expired")
        if not principal.can(self._permission):
            return (
                grpc.StatusCode.PERMISSION_DENIED,
                f"this needs the permission {self._permission!r}",
            )
        return None

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        refusal = await self._refusal(handler_call_details)
        handler = await continuation(handler_call_details)
        if refusal is None:
            return handler  # None for an unknown method: grpc answers UNIMPLEMENTED
        return _refusing(handler, *refusal)


def _refusing(
    handler: grpc.RpcMethodHandler[Any, Any] | None, code: grpc.StatusCode, detail: str
) -> grpc.RpcMethodHandler[Any, Any]:
    """A handler of the same shape as `handler` that only refuses the call."""

    async def deny(request_or_iterator: Any, context: aio.ServicerContext[Any, Any]) -> Any:
        await context.abort(code, detail)

    streams_in = handler is not None and handler.request_streaming
    streams_out = handler is not None and handler.response_streaming
    if streams_in and streams_out:
        return grpc.stream_stream_rpc_method_handler(deny)
    if streams_in:
        return grpc.stream_unary_rpc_method_handler(deny)
    if streams_out:
        return grpc.unary_stream_rpc_method_handler(deny)
    return grpc.unary_unary_rpc_method_handler(deny)


def text_refusal(message: Message, *, path: str = "") -> str | None:
    """Why `message` is refused under the kit's text rule, naming the field (`lines[0].
    product_id holds a control character ...`); None when no string in it, nested and
    repeated fields included, holds a character the rule refuses."""
    for field, value in message.ListFields():
        name = f"{path}{field.name}"
        repeated = field.is_repeated
        items = value if repeated else (value,)
        for index, item in enumerate(items):
            where = f"{name}[{index}]" if repeated else name
            if field.type == FieldDescriptor.TYPE_STRING:
                problem = refusal(item)
                if problem is not None:
                    return f"{where} {problem}"
            elif field.type == FieldDescriptor.TYPE_MESSAGE:
                problem = text_refusal(item, path=f"{where}.")
                if problem is not None:
                    return problem
    return None
