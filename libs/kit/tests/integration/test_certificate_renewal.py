"""A renewed certificate (a Secret updated by cert-manager, files swapped under a running
process) is served from the next handshake on, over HTTPS and gRPC, without a restart."""

from __future__ import annotations

import asyncio
import shutil
import ssl
from pathlib import Path

import grpc
from cryptography import x509
from grpc import aio

from flotilla_kit.rpc import Channels, server_credentials
from flotilla_kit.settings import TlsSettings
from flotilla_kit.tls import (
    CertificatePaths,
    client_context,
    ensure_dev_pki,
    reload_changed_certificates,
    server_context,
)


def _issue(source: Path) -> CertificatePaths:
    """A new certificate for `svc` from the same CA (the old one is thrown away first)."""
    for stale in source.glob("svc*.pem"):
        stale.unlink()
    return ensure_dev_pki(source, ["svc"])["svc"]


def _mount(paths: CertificatePaths, mount: Path) -> TlsSettings:
    """Put `paths` where the process reads them, each file replaced at once (as the kubelet
    swaps a Secret's files)."""
    mount.mkdir(exist_ok=True)
    targets = {"tls.crt": paths.cert, "tls.key": paths.key, "ca.crt": paths.ca}
    for name, source in targets.items():
        shutil.copyfile(source, mount / f".{name}.new")
        (mount / f".{name}.new").replace(mount / name)
    return TlsSettings(
        cert_file=mount / "tls.crt", key_file=mount / "tls.key", ca_file=mount / "ca.crt"
    )


def _serial(pem: Path) -> int:
    return x509.load_pem_x509_certificate(pem.read_bytes()).serial_number


async def _served_serial(port: int, client: ssl.SSLContext) -> int:
    _, writer = await asyncio.open_connection(
        "127.0.0.1", port, ssl=client, server_hostname="localhost"
    )
    der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    writer.transport.abort()  # only the handshake was wanted
    return x509.load_der_x509_certificate(der).serial_number


async def test_https_serves_the_renewed_certificate_after_a_reload(tmp_path: Path) -> None:
    issuer, mount = tmp_path / "issuer", tmp_path / "mount"
    first = _issue(issuer)
    first_serial = _serial(first.cert)
    tls = _mount(first, mount)
    assert tls.cert_file is not None
    assert tls.key_file is not None
    served = server_context(tls.cert_file, tls.key_file, tls.ca_file)
    listener = await asyncio.start_server(lambda r, w: w.close(), "127.0.0.1", 0, ssl=served)
    port = listener.sockets[0].getsockname()[1]
    client = client_context(first.ca)
    try:
        assert await _served_serial(port, client) == first_serial

        second_serial = _serial(_mount(_issue(issuer), mount).cert_file or mount)
        # Loaded once: the swap alone changes nothing ...
        assert await _served_serial(port, client) == first_serial
        # ... until the periodic check sees the new files.
        assert reload_changed_certificates() >= 1
        assert await _served_serial(port, client) == second_serial
        assert reload_changed_certificates() == 0  # nothing changed since

        # Caught half-way through a renewal (a new certificate, the old key): the context
        # keeps serving what it had, and takes the pair once both files are there.
        third = _issue(issuer)
        third_serial = _serial(third.cert)
        shutil.copyfile(third.cert, mount / "tls.crt")
        reload_changed_certificates()
        assert await _served_serial(port, client) == second_serial
        _mount(third, mount)
        reload_changed_certificates()
        assert await _served_serial(port, client) == third_serial
    finally:
        listener.close()
        await listener.wait_closed()


async def test_grpc_serves_the_renewed_certificate_at_the_next_handshake(tmp_path: Path) -> None:
    first = _issue(tmp_path / "issuer")
    tls = _mount(first, tmp_path / "mount")
    server = aio.server()
    port = server.add_secure_port("127.0.0.1:0", server_credentials(tls))
    await server.start()
    # The server asks for a client certificate (mTLS); plain TLS is enough to see its own.
    client = client_context(first.ca, first.cert, first.key)
    client.set_alpn_protocols(["h2"])
    try:
        assert await _served_serial(port, client) == _serial(first.cert)
        second = _issue(tmp_path / "issuer")  # (first's files are gone now)
        _mount(second, tmp_path / "mount")
        assert await _served_serial(port, client) == _serial(second.cert)
    finally:
        await server.stop(None)


async def test_grpc_clients_present_the_renewed_certificate_on_new_channels(
    tmp_path: Path,
) -> None:
    # The server notes the serial of each caller's certificate.
    seen: list[int] = []

    async def whoami(request: bytes, context: aio.ServicerContext[bytes, bytes]) -> bytes:
        (pem,) = context.auth_context()["x509_pem_cert"]
        seen.append(x509.load_pem_x509_certificate(pem).serial_number)
        return b"ok"

    issued = _issue(tmp_path / "issuer")
    server = aio.server()
    handler = grpc.method_handlers_generic_handler(
        "test.Who", {"Am": grpc.unary_unary_rpc_method_handler(whoami)}
    )
    server.add_generic_rpc_handlers([handler])
    port = server.add_secure_port(
        "127.0.0.1:0",
        server_credentials(
            TlsSettings(cert_file=issued.cert, key_file=issued.key, ca_file=issued.ca)
        ),
    )
    await server.start()
    client_tls = _mount(issued, tmp_path / "client")
    channels: Channels[aio.UnaryUnaryMultiCallable[bytes, bytes]] = Channels(
        client_tls, lambda channel: channel.unary_unary("/test.Who/Am"), check_every_s=0.0
    )
    try:
        first = _serial(tmp_path / "client" / "tls.crt")
        assert await channels.stub(f"127.0.0.1:{port}")(b"", timeout=10) == b"ok"
        assert await channels.stub(f"127.0.0.1:{port}")(b"", timeout=10) == b"ok"
        renewed = _issue(tmp_path / "issuer")  # the same CA, a new certificate for "svc"
        _mount(renewed, tmp_path / "client")
        second = _serial(renewed.cert)
        assert await channels.stub(f"127.0.0.1:{port}")(b"", timeout=10) == b"ok"
        assert seen == [first, first, second]
    finally:
        await channels.close()
        await server.stop(None)
