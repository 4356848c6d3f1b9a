"""Make the dev CA and one certificate per service for `docker compose` (not for production:
Kubernetes takes its certificates from Secrets or cert-manager).

Each certificate's common name is the service (the name it signs in to auth with, and the
one its peers see), and its DNS names are the compose hosts it is reached at, so mutual TLS
checks hold: `accounts=accounts-s0,accounts-s1` gives `accounts` a certificate valid for both
ledger shards' hosts. Files: ca.pem, <name>.pem, <name>-key.pem (the CA's key, ca-key.pem, is
kept beside them so a later run can issue more). A run keeps a CA that is already there and
certificates it issued that are still valid for their names.

Usage: python make_certs.py --out DIR [--owner UID:GID] NAME[=HOST,HOST...] ...
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import os
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
LEAF_DAYS = 365
RENEW_WITHIN = dt.timedelta(days=30)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _write(path: Path, data: bytes, mode: int, owner: tuple[int, int] | None) -> None:
    path.write_bytes(data)
    path.chmod(mode)
    if owner is not None:
        os.chown(path, *owner)


def _key_bytes(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _ca(
    out: Path, owner: tuple[int, int] | None
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = out / "ca.pem", out / "ca-key.pem"
    if cert_path.exists() and key_path.exists():
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise SystemExit(f"{key_path} is not an EC private key")
        return x509.load_pem_x509_certificate(cert_path.read_bytes()), key
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Flotilla compose dev CA")])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=CA_DAYS))
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
    _write(key_path, _key_bytes(key), 0o600, None)  # only the issuer (root) reads the CA key
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, owner)
    return cert, key


def _still_good(path: Path, ca: x509.Certificate, hosts: list[str]) -> bool:
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return set(hosts) <= set(san.get_values_for_type(x509.DNSName)) and (
        cert.not_valid_after_utc - RENEW_WITHIN > _now()
    )


def issue(out: Path, name: str, hosts: list[str], owner: tuple[int, int] | None) -> None:
    ca_cert, ca_key = _ca(out, owner)
    cert_path, key_path = out / f"{name}.pem", out / f"{name}-key.pem"
    dns = list(dict.fromkeys([name, *hosts, "localhost"]))
    if key_path.exists() and _still_good(cert_path, ca_cert, dns):
        return
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    san: list[x509.GeneralName] = [x509.DNSName(h) for h in dns]
    san.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=LEAF_DAYS))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(san), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write(key_path, _key_bytes(key), 0o600, owner)
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644, owner)


def _owner(value: str) -> tuple[int, int]:
    uid, sep, gid = value.partition(":")
    if not (uid.isdigit() and sep and gid.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not UID:GID (numbers)")
    return int(uid), int(gid)


def _spec(value: str) -> tuple[str, list[str]]:
    name, _, hosts = value.partition("=")
    if not name or not all(
        part.replace("-", "").isalnum() for part in [name, *hosts.split(",")] if part
    ):
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME[=HOST,HOST...]")
    return name, [h for h in hosts.split(",") if h]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the PEM files")
    parser.add_argument(
        "--owner", type=_owner, default=None,
        help="UID:GID that owns the certificates and keys (the services' user); default: "
        "the caller",
    )  # fmt: skip
    parser.add_argument(
        "names", nargs="+", type=_spec, metavar="NAME[=HOST,...]",
        help="a certificate for NAME, also valid for the compose hosts listed",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, hosts in args.names:
        issue(args.out, name, hosts, args.owner)
    print(f"certificates for {', '.join(n for n, _ in args.names)} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
