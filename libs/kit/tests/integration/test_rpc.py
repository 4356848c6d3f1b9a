"""`TokenAuthInterceptor` on a real gRPC server over mutual TLS: every method shape (unary,
server streaming, client streaming, bidirectional) is refused at once without a token
that grants the permission, and served with one."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from grpc import aio

from flotilla_kit import tls as tls_module
from flotilla_kit.rpc import TokenAuthInterceptor, bearer, secure_channel, server_credentials
from flotilla_kit.settings import TlsSettings
from flotilla_kit.testing import TokenMinter
from flotilla_kit.tls import CertificatePaths

Pki = Callable[[str], CertificatePaths]
TIMEOUT_S = 10.0
SERVICE = "test.Echo"


def _tls(paths: CertificatePaths) -> TlsSettings:
    return TlsSettings(cert_file=paths.cert, key_file=paths.key, ca_file=paths.ca)


async def _unary(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
    return b"unary:" + request


async def _server_stream(
    request: bytes, context: aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    for part in (b"one", b"two"):
        yield part + b":" + request


async def _client_stream(
    requests: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]
) -> bytes:
    return b"+".join([r async for r in requests])


async def _bidi(
    requests: AsyncIterator[bytes], context: aio.ServicerContext[Any, Any]
) -> AsyncIterator[bytes]:
    async for request in requests:
        yield b"bidi:" + request


@pytest.fixture
async def channel(dev_pki: Pki, tokens: TokenMinter) -> AsyncIterator[aio.Channel]:
    server = aio.server(interceptors=[TokenAuthInterceptor(tokens.verifier(), "ledger:post")])
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Unary": grpc.unary_unary_rpc_method_handler(_unary),
        "ServerStream": grpc.unary_stream_rpc_method_handler(_server_stream),
        "ClientStream": grpc.stream_unary_rpc_method_handler(_client_stream),
        "Bidi": grpc.stream_stream_rpc_method_handler(_bidi),
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_secure_port("127.0.0.1:0", server_credentials(_tls(dev_pki("server"))))
    await server.start()
    client = secure_channel(f"127.0.0.1:{port}", _tls(dev_pki("client")))
    try:
        yield client
    finally:
        await client.close()
        await server.stop(None)


def _method(channel: aio.Channel, kind: str, name: str) -> Any:
    factory = getattr(channel, kind)
    return factory(f"/{SERVICE}/{name}")


async def test_a_granted_token_reaches_every_method_shape(
    channel: aio.Channel, tokens: TokenMinter
) -> None:
    metadata = bearer(tokens.mint("payments", ["service:payments"]))
    unary = await _method(channel, "unary_unary", "Unary")(
        b"a", metadata=metadata, timeout=TIMEOUT_S
    )
    server_stream = _method(channel, "unary_stream", "ServerStream")(
        b"b", metadata=metadata, timeout=TIMEOUT_S
    )

    async def parts() -> AsyncIterator[bytes]:
        for part in (b"c", b"d"):
            yield part

    client_stream = await _method(channel, "stream_unary", "ClientStream")(
        parts(), metadata=metadata, timeout=TIMEOUT_S
    )
    bidi = _method(channel, "stream_stream", "Bidi")(metadata=metadata, timeout=TIMEOUT_S)
    await bidi.write(b"e")
    first = await bidi.read()
    await bidi.done_writing()
    assert unary == b"unary:a"
    assert [r async for r in server_stream] == [b"one:b", b"two:b"]
    assert client_stream == b"c+d"
    assert first == b"bidi:e"


@pytest.mark.parametrize(
    ("kind", "name", "request_"),
    [
        ("unary_unary", "Unary", b"x"),
        ("unary_stream", "ServerStream", b"x"),
        ("stream_unary", "ClientStream", None),
        ("stream_stream", "Bidi", None),
    ],
)
@pytest.mark.parametrize(
    ("who", "code"),
    [
        ("nobody", grpc.StatusCode.UNAUTHENTICATED),
        ("customer", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_every_method_shape_is_refused_at_once(
    channel: aio.Channel,
    tokens: TokenMinter,
    kind: str,
    name: str,
    request_: bytes | None,
    who: str,
    code: grpc.StatusCode,
) -> None:
    metadata = () if who == "nobody" else bearer(tokens.mint("alice", ["customer"]))
    method = _method(channel, kind, name)
    with pytest.raises(aio.AioRpcError) as refused:
        if kind == "unary_unary":
            await method(request_, metadata=metadata, timeout=TIMEOUT_S)
        elif kind == "unary_stream":
            _ = [r async for r in method(request_, metadata=metadata, timeout=TIMEOUT_S)]
        else:
            # Read first, send nothing: the refusal must not wait for a request.
            call = method(metadata=metadata, timeout=TIMEOUT_S)
            await call.read() if kind == "stream_stream" else await call
    assert refused.value.code() == code


def _named_only(dev_pki: Pki, directory: Path, name: str) -> TlsSettings:
    """A server certificate from the dev CA that names `name` and 127.0.0.1, not
    `localhost` (as a certificate issued for a cluster's service name would)."""
    ca = dev_pki("client").ca
    ca_cert = x509.load_pem_x509_certificate(ca.read_bytes())
    ca_key = serialization.load_pem_private_key((ca.parent / "ca-key.pem").read_bytes(), None)
    cert, key = tls_module._issue(ca_cert, ca_key, name, [name])  # type: ignore[arg-type]
    (directory / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "server-key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return TlsSettings(
        cert_file=directory / "server.pem", key_file=directory / "server-key.pem", ca_file=ca
    )


async def _echo_server(tls: TlsSettings, seen: list[str], label: str) -> tuple[aio.Server, int]:
    async def unary(request: bytes, context: aio.ServicerContext[Any, Any]) -> bytes:
        seen.append(label)
        return request

    server = aio.server()
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary)
    }
    server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, handlers)])
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    return server, port


async def test_the_server_is_checked_against_the_host_the_target_names(
    dev_pki: Pki, tmp_path: Path
) -> None:
    # The kit used to check every server against `localhost`, whatever it dialled: a
    # certificate issued for `accounts-s0.flotilla.svc` failed every handshake.
    seen: list[str] = []
    server, port = await _echo_server(_named_only(dev_pki, tmp_path, "ledger.test"), seen, "s")
    client_tls = _tls(dev_pki("client"))
    try:
        async with secure_channel(f"127.0.0.1:{port}", client_tls) as channel:
            call = _method(channel, "unary_unary", "Unary")
            assert await call(b"hi", timeout=TIMEOUT_S) == b"hi"
        # A name the certificate does not carry is refused.
        async with secure_channel(f"localhost:{port}", client_tls) as channel:
            with pytest.raises(aio.AioRpcError) as refused:
                await _method(channel, "unary_unary", "Unary")(b"hi", timeout=TIMEOUT_S)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await server.stop(None)


async def test_calls_are_spread_over_every_address_of_the_target(dev_pki: Pki) -> None:
    # gRPC's default (pick_first) sent every call of a channel to one backend.
    seen: list[str] = []
    tls = _tls(dev_pki("server"))
    first, first_port = await _echo_server(tls, seen, "first")
    second, second_port = await _echo_server(tls, seen, "second")
    target = f"ipv4:127.0.0.1:{first_port},127.0.0.1:{second_port}"
    try:
        async with secure_channel(target, _tls(dev_pki("client")), server_name="server") as channel:
            call = _method(channel, "unary_unary", "Unary")
            for _ in range(20):
                await call(b"x", timeout=TIMEOUT_S)
    finally:
        await first.stop(None)
        await second.stop(None)
    assert seen.count("first") >= 5
    assert seen.count("second") >= 5
