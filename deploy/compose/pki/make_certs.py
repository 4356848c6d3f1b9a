"""Make the dev CA and one certificate per service for `docker compose` (not for production:
Kubernetes takes its certificates from Secrets or cert-manager).

Each certificate's common name is the service (the name it signs in to auth with, and the
one its peers see), and its DNS names are the compose hosts it is reached at, so mutual TLS
checks hold: `accounts=accounts-s0,accounts-s1` gives `accounts` a certificate valid for both
ledger shards' hosts. Files: ca.pem, <name>.pem, <name>-key.pem (the CA's key, ca-key.pem, is
kept beside them so a later run can issue more). A run keeps a CA that is already there and
certificates it issued that are still valid for their names. The certificates come from the
kit's dev PKI (`flotilla_kit.tls.ensure_dev_pki`), as `flotilla up`'s do; this script runs in
a service image, where the kit is installed.

A key is readable by its owner alone: `--owner` hands every certificate to the services'
user, `--owner-of NAME=UID:GID` hands NAME's to another (Prometheus runs as 65534).

Usage: python make_certs.py --out DIR [--owner UID:GID] [--owner-of NAME=UID:GID]
       NAME[=HOST,HOST...] ...
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from flotilla_kit.tls import ensure_dev_pki


def _owner(value: str) -> tuple[int, int]:
    uid, sep, gid = value.partition(":")
    if not (uid.isdigit() and sep and gid.isdigit()):
        raise argparse.ArgumentTypeError(f"{value!r} is not UID:GID (numbers)")
    return int(uid), int(gid)


def _owner_of(value: str) -> tuple[str, tuple[int, int]]:
    name, sep, owner = value.partition("=")
    if not (name and sep):
        raise argparse.ArgumentTypeError(f"{value!r} is not NAME=UID:GID")
    return name, _owner(owner)


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
        "--owner-of", type=_owner_of, action="append", default=[], metavar="NAME=UID:GID",
        help="UID:GID that owns NAME's certificate and key instead (repeatable)",
    )  # fmt: skip
    parser.add_argument(
        "names", nargs="+", type=_spec, metavar="NAME[=HOST,...]",
        help="a certificate for NAME, also valid for the compose hosts listed",
    )  # fmt: skip
    args = parser.parse_args(argv)
    hosts = dict(args.names)
    owners = dict(args.owner_of)
    if unknown := sorted(set(owners) - set(hosts)):
        parser.error(f"--owner-of names {', '.join(unknown)}: no certificate of that name")
    issued = ensure_dev_pki(args.out, list(hosts), hosts)
    if args.owner is not None:  # the CA's certificate is public; its key stays root's alone
        os.chown(args.out / "ca.pem", *args.owner)
    for name, paths in issued.items():
        owner = owners.get(name, args.owner)
        if owner is not None:
            os.chown(paths.cert, *owner)
            os.chown(paths.key, *owner)
    print(f"certificates for {', '.join(hosts)} in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
