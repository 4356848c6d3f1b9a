"""A local certificate authority and the TLS contexts built on it.

`flotilla up` makes a dev CA and one certificate per service under `var/tls/` (never
committed); each certificate is good for both server and client use so the same pair
serves HTTPS and authenticates the service to its peers (mTLS). In Kubernetes the same
files come from Secrets or cert-manager.

Renewal: every context made here remembers its files, and `reload_changed_certificates()`
loads them again into the same context when they change (a Secret updated by cert-manager,
a new `var/tls/`), so new handshakes use the new certificate without a restart; the
connections already open keep theirs. The kit's server calls it every 30 s, the gateway's
housekeeping too; gRPC servers read the files at each handshake (`rpc.server_credentials`).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from flotilla_kit.logs import get_logger

__all__ = [
    "CertificatePaths",
    "Stamp",
    "check_pair",
    "client_context",
    "ensure_dev_pki",
    "file_stamp",
    "reload_changed_certificates",
    "server_context",
]

_log = get_logger("flotilla.tls")
_CA_DAYS = 3650
_LEAF_DAYS = 397
_RENEW_BEFORE = dt.timedelta(days=30)


@dataclass(frozen=True, slots=True)
class CertificatePaths:
    cert: Path
    key: Path
    ca: Path


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Created with owner-only permissions from the first byte.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _create_ca(common_name: str) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def _issue(
    ca_cert: x509.Certificate,
    ca_key: ec.EllipticCurvePrivateKey,
    common_name: str,
    dns_names: list[str],
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    san: list[x509.GeneralName] = [x509.DNSName(n) for n in dns_names]
    san.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=_LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    return cert, key


def _still_good(cert_path: Path, ca_cert: x509.Certificate, dns_names: list[str]) -> bool:
    if not cert_path.exists():
        return False
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca_cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(dns_names) <= set(san.get_values_for_type(x509.DNSName)) and (
        cert.not_valid_after_utc - _RENEW_BEFORE > _now()
    )


def ensure_dev_pki(
    directory: Path, names: list[str], hosts: Mapping[str, list[str]] | None = None
) -> dict[str, CertificatePaths]:
    """Create (or keep, if still valid) a dev CA and one certificate per name, valid for
    `localhost`, 127.0.0.1, the name itself and the extra host names `hosts` gives it (a
    certificate that lacks one is issued again)."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_cert_path, ca_key_path = directory / "ca.pem", directory / "ca-key.pem"
    if ca_cert_path.exists() and ca_key_path.exists():
        ca_cert = x509.load_pem_x509_certificate(ca_cert_path.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if not isinstance(loaded, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{ca_key_path} is not an EC private key")
        ca_key = loaded
    else:
        ca_cert, ca_key = _create_ca("Flotilla dev CA")
        _write_key(ca_key_path, ca_key)
        _write_cert(ca_cert_path, ca_cert)

    issued: dict[str, CertificatePaths] = {}
    for name in names:
        cert_path, key_path = directory / f"{name}.pem", directory / f"{name}-key.pem"
        dns_names = list(dict.fromkeys(["localhost", name, *(hosts or {}).get(name, [])]))
        if not (key_path.exists() and _still_good(cert_path, ca_cert, dns_names)):
            cert, key = _issue(ca_cert, ca_key, name, dns_names)
            _write_key(key_path, key)
            _write_cert(cert_path, cert)
        issued[name] = CertificatePaths(cert=cert_path, key=key_path, ca=ca_cert_path)
    return issued


def server_context(
    cert: Path, key: Path, ca: Path | None = None, *, require_client_cert: bool = False
) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.load_verify_locations(ca)
    context.verify_mode = ssl.CERT_REQUIRED if require_client_cert else ssl.CERT_NONE
    _watch(context, cert, key, ca)
    return context


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Verifies the server against `ca`; presents `cert` when given (mTLS)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(ca))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if cert is not None and key is not None:
        context.load_cert_chain(cert, key)
    _watch(context, cert, key, ca)
    return context


# -- renewal ------------------------------------------------------------------------------

Stamp = tuple[tuple[int, int, int], ...]


def file_stamp(*paths: Path | None) -> Stamp:
    """What changes when any of `paths` is replaced or rewritten (inode, size, mtime);
    a missing file stamps as zeros, so its return counts as a change."""
    stamps = []
    for path in paths:
        if path is None:
            continue
        try:
            info = os.stat(path)  # follows the symlinks a mounted Secret swaps
        except OSError:
            stamps.append((0, 0, 0))
        else:
            stamps.append((info.st_ino, info.st_size, info.st_mtime_ns))
    return tuple(stamps)


def check_pair(cert: Path, key: Path) -> None:
    """Raises (ssl.SSLError, OSError) unless `key` is the key of `cert`: a renewal written
    file by file can be caught half-way. Checked on a scratch context, since a failed load
    into a live one can leave it holding the new certificate with the old key."""
    ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key)


@dataclass(slots=True)
class _Watched:
    context: weakref.ref[ssl.SSLContext]
    cert: Path | None
    key: Path | None
    ca: Path | None
    stamp: Stamp


_WATCHED: list[_Watched] = []


def _watch(context: ssl.SSLContext, cert: Path | None, key: Path | None, ca: Path | None) -> None:
    _WATCHED[:] = [w for w in _WATCHED if w.context() is not None]
    _WATCHED.append(_Watched(weakref.ref(context), cert, key, ca, file_stamp(cert, key, ca)))


def reload_changed_certificates() -> int:
    """Load changed certificate files into the contexts made from them; how many were.

    A renewal written file by file can be caught half-way (a new certificate with the old
    key): such a context keeps what it had, and the next call tries again.
    """
    reloaded = 0
    for watched in list(_WATCHED):
        context = watched.context()
        if context is None:
            continue
        stamp = file_stamp(watched.cert, watched.key, watched.ca)
        if stamp == watched.stamp:
            continue
        try:
            if watched.cert is not None and watched.key is not None:
                check_pair(watched.cert, watched.key)
                context.load_cert_chain(watched.cert, watched.key)
            if watched.ca is not None:
                # Adds to the trusted set: during a CA rollover both CAs are trusted.
                context.load_verify_locations(watched.ca)
        except (OSError, ssl.SSLError) as error:
            _log.warning(
                "certificate files changed but could not be loaded; keeping the old ones",
                cert=str(watched.cert),
                error=str(error),
            )
            continue
        watched.stamp = stamp
        reloaded += 1
        _log.info("certificates reloaded", cert=str(watched.cert))
    return reloaded
