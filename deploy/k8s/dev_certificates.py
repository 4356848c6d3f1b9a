"""Make the TLS Secrets of a dev cluster that has no cert-manager: a dev CA and one
certificate per service, issued for exactly the names the cert-manager component gives
it (components/cert-manager/certificates.yaml is the one table of names, the namespace
put into them as the overlays do), written as Secret manifests to apply.

    python deploy/k8s/dev_certificates.py                   # namespace of the dev overlay
    kubectl apply -f var/k8s-tls/secrets/

The certificates come from the kit's dev PKI (`flotilla_kit.tls.ensure_dev_pki`), as
`flotilla up`'s and compose's do, so run it in the dev environment (`make install`). A
run keeps the CA (and the certificates still valid for their names) found in --out;
--renew issues every certificate again with the same CA: apply the Secrets again and the
services load the new files without a restart. For production, use the cert-manager
component (README.md, "TLS").
"""

from __future__ import annotations

import argparse
import base64
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

from flotilla_kit.tls import ensure_dev_pki

HERE = Path(__file__).resolve().parent
CERTIFICATES = HERE / "components" / "cert-manager" / "certificates.yaml"
DEV_OVERLAY = HERE / "overlays" / "dev" / "kustomization.yaml"
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


def certificates(namespace: str) -> dict[str, tuple[str, list[str]]]:
    """secretName -> (common name, DNS names) of every leaf Certificate of the component,
    with `namespace` in each <host>.<ns>.svc[.cluster.local] name."""
    wanted: dict[str, tuple[str, list[str]]] = {}
    for doc in yaml.safe_load_all(CERTIFICATES.read_text()):
        if not doc or doc.get("kind") != "Certificate" or doc["spec"].get("isCA"):
            continue
        spec = doc["spec"]
        names = []
        for name in spec.get("dnsNames", []):
            labels = name.split(".")
            if len(labels) >= 3 and labels[2] == "svc":
                labels[1] = namespace
            names.append(".".join(labels))
        wanted[spec["secretName"]] = (spec["commonName"], names)
    return wanted


def dev_namespace() -> str:
    return str(yaml.safe_load(DEV_OVERLAY.read_text())["namespace"])


def secret(name: str, namespace: str, files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/part-of": "flotilla",
                "app.kubernetes.io/component": "tls",
            },
        },
        "data": {key: base64.b64encode(value).decode() for key, value in files.items()},
    }


def _namespace(value: str) -> str:
    if not _DNS_LABEL.fullmatch(value):
        raise argparse.ArgumentTypeError(
            f"{value!r} is not a namespace name (a DNS label: a-z, 0-9 and '-', at most 63)"
        )
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--namespace", type=_namespace, default=None,
        help="namespace the Secrets (and the certificates' namespaced names) are for; "
        "default: the dev overlay's",
    )  # fmt: skip
    parser.add_argument(
        "--out", type=Path, default=Path("var/k8s-tls"),
        help="folder for the CA, the keys and secrets/*.yaml (default: var/k8s-tls, which "
        "git ignores); keep it to issue more with the same CA",
    )  # fmt: skip
    parser.add_argument(
        "--renew", action="store_true", help="issue every certificate again (same CA)"
    )
    args = parser.parse_args(argv)
    namespace = args.namespace or dev_namespace()
    wanted = certificates(namespace)
    pki, manifests = args.out / "pki", args.out / "secrets"
    for folder in (args.out, pki, manifests):
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o700)
    if args.renew:
        for common_name, _ in wanted.values():
            (pki / f"{common_name}.pem").unlink(missing_ok=True)
    issued = ensure_dev_pki(pki, [cn for cn, _ in wanted.values()], dict(wanted.values()))
    for secret_name, (common_name, names) in wanted.items():
        paths = issued[common_name]
        files = {
            "tls.crt": paths.cert.read_bytes(),
            "tls.key": paths.key.read_bytes(),
            "ca.crt": paths.ca.read_bytes(),
        }
        target = manifests / f"{secret_name}.yaml"
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            yaml.safe_dump(secret(secret_name, namespace, files), handle, sort_keys=False)
        print(f"{target}: CN={common_name}, {', '.join(names) or 'client only'}")
    print(f"next: kubectl apply -f {manifests}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
