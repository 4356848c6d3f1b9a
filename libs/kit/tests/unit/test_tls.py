"""The dev PKI and TLS contexts, checked with real TLS handshakes over loopback."""

from __future__ import annotations

import asyncio
import ssl
import stat
from pathlib import Path

import pytest
from cryptography import x509

from flotilla_kit.tls import client_context, ensure_dev_pki, server_context


async def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> bytes:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hello")
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=server)
    port = listener.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        data = await reader.read()
        writer.close()
        return data
    finally:
        listener.close()


def test_pki_is_made_once_and_kept(tmp_path: Path) -> None:
    first = ensure_dev_pki(tmp_path, ["accounts"])["accounts"]
    cert_bytes = first.cert.read_bytes()
    assert stat.S_IMODE(first.key.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca-key.pem").stat().st_mode) == 0o600
    again = ensure_dev_pki(tmp_path, ["accounts", "auth"])
    assert again["accounts"].cert.read_bytes() == cert_bytes
    assert again["auth"].cert.exists()


def test_extra_host_names_are_in_the_certificate_and_a_missing_one_reissues_it(
    tmp_path: Path,
) -> None:
    def dns_names(path: Path) -> set[str]:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        return set(san.get_values_for_type(x509.DNSName))

    plain = ensure_dev_pki(tmp_path, ["accounts"])["accounts"]
    assert dns_names(plain.cert) == {"localhost", "accounts"}
    hosts = {"accounts": ["accounts-s0", "accounts-s1"]}
    wider = ensure_dev_pki(tmp_path, ["accounts"], hosts)["accounts"]
    assert dns_names(wider.cert) == {"localhost", "accounts", "accounts-s0", "accounts-s1"}
    kept = wider.cert.read_bytes()
    assert ensure_dev_pki(tmp_path, ["accounts"], hosts)["accounts"].cert.read_bytes() == kept


def test_a_certificate_from_another_ca_is_replaced(tmp_path: Path) -> None:
    ensure_dev_pki(tmp_path / "other", ["accounts"])
    (tmp_path / "mine").mkdir()
    foreign = (tmp_path / "other" / "accounts.pem").read_bytes()
    (tmp_path / "mine" / "accounts.pem").write_bytes(foreign)
    (tmp_path / "mine" / "accounts-key.pem").write_bytes(b"stale")
    renewed = ensure_dev_pki(tmp_path / "mine", ["accounts"])["accounts"]
    assert renewed.cert.read_bytes() != foreign


async def test_mutual_tls_handshake(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path, ["accounts", "gateway"])
    server = server_context(
        pki["accounts"].cert, pki["accounts"].key, pki["accounts"].ca, require_client_cert=True
    )
    client = client_context(pki["gateway"].ca, pki["gateway"].cert, pki["gateway"].key)
    assert await _handshake(server, client) == b"hello"


async def test_a_peer_without_a_client_certificate_is_refused(tmp_path: Path) -> None:
    pki = ensure_dev_pki(tmp_path, ["accounts"])
    server = server_context(
        pki["accounts"].cert, pki["accounts"].key, pki["accounts"].ca, require_client_cert=True
    )
    try:
        answer = await _handshake(server, client_context(pki["accounts"].ca))
    except (ssl.SSLError, ConnectionError):
        answer = b""  # TLS 1.2 fails the handshake; TLS 1.3 fails the first read
    assert answer == b"", "the server must never answer a peer without a certificate"


async def test_a_server_from_another_ca_is_not_trusted(tmp_path: Path) -> None:
    mine = ensure_dev_pki(tmp_path / "mine", ["gateway"])["gateway"]
    theirs = ensure_dev_pki(tmp_path / "theirs", ["accounts"])["accounts"]
    with pytest.raises(ssl.SSLCertVerificationError):
        await _handshake(server_context(theirs.cert, theirs.key), client_context(mine.ca))
