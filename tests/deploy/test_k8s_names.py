"""deploy/k8s: the names the services dial, and the names on the certificates they meet.

Every address in a container's settings that is reached over TLS (the gateway's DNS
targets, the JWKS, revocation and token URLs, the ledger shards, the inventory targets,
...) must be a name on the certificate that the pods of the Service it resolves to load,
or the handshake fails in the cluster (issue 15, fault 1: clients dialled
`accounts-s0.flotilla.svc` while nothing tied that name to the namespace the overlay was
deployed to). Checked for each overlay, in its own namespace and in another one (the
delivery workflow sets it), against both ways of making the certificates: the
cert-manager component (its Certificate objects as rendered) and the dev recipe
(`deploy/k8s/dev_certificates.py`, run for real: the names are read from the
certificates it issued).

Also here: the cert-manager component's chain and fields (checked by hand: its CRDs are
not in kubernetes-validate's bundle), the TLS Secrets mounted so that a renewal reaches
the pods, the namespace set in one place, and every Secret a pod needs either made by
its overlay or listed in it as one that must exist.
"""

from __future__ import annotations

import base64
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from tests.deploy.test_kubernetes import (
    K8S,
    MANIFEST,
    OVERLAYS,
    ROOT,
    SERVICE_DEPLOYMENTS,
    Obj,
    _env,
    _secret_data,
    client_targets,
    containers,
    flotilla_service,
    kustomize,
    matches,
    name_of,
    namespace_of,
    of_kind,
    pod_labels,
    render,
    service_name,
    validate,
    workloads,
)

COMPONENT = "../../components/cert-manager"
# Another namespace than the overlays', as the delivery workflow may set.
OTHER = "shop-staging"
# Every setting that names a peer, so the checks below cannot pass by finding none.
PEER_SETTINGS = {
    "FLOTILLA_DNS_SERVICES",
    "FLOTILLA_JWKS_URLS",
    "FLOTILLA_REVOCATION_URLS",
    "FLOTILLA_AUTH_TOKEN_URLS",
    "FLOTILLA_PAYMENTS_URLS",
    "FLOTILLA_ACCOUNTS_SHARDS",
    "FLOTILLA_LEDGER_SHARDS",
    "FLOTILLA_INVENTORY_TARGETS",
}
VARIANTS = [(overlay, namespace) for overlay in OVERLAYS for namespace in (None, OTHER)]

Render = Callable[..., tuple[Obj, ...]]


# ------------------------------------------------------------------ rendering variants


@pytest.fixture(scope="session")
def variant(tmp_path_factory: pytest.TempPathFactory) -> Render:
    """Renders an overlay as someone would deploy it: with its `namespace:` set to another
    name (what `kustomize edit set namespace` does) and/or the cert-manager component
    added, on a copy of deploy/k8s."""
    cache: dict[tuple[str, str | None, bool], tuple[Obj, ...]] = {}

    def build(overlay: str, namespace: str | None = None, cert_manager: bool = False) -> tuple[Obj, ...]:  # fmt: skip
        key = (overlay, namespace, cert_manager)
        if key not in cache:
            tree = tmp_path_factory.mktemp("k8s") / "k8s"
            subprocess.run(["cp", "-r", str(K8S), str(tree)], check=True, timeout=30)
            kustomization = tree / "overlays" / overlay / "kustomization.yaml"
            data = yaml.safe_load(kustomization.read_text())
            if namespace is not None:
                data["namespace"] = namespace
            if cert_manager:
                data.setdefault("components", []).append(COMPONENT)
            kustomization.write_text(yaml.safe_dump(data, sort_keys=False))
            cache[key] = kustomize(tree / "overlays" / overlay)
        return cache[key]

    return build


def _tls_secret(objects: tuple[Obj, ...], workload: Obj) -> str | None:
    """The Secret holding the certificate a workload's container loads (the volume mounted
    at the folder of its FLOTILLA_TLS_CERT_FILE); None for one without TLS (a relay, a
    datastore)."""
    container = containers(workload)[0]
    if flotilla_service(container) is None:
        return None
    cert_file = dict(_env(objects, container)).get("FLOTILLA_TLS_CERT_FILE")
    if cert_file is None:
        return None
    folder = Path(cert_file).parent
    (mount,) = [m for m in container["volumeMounts"] if Path(m["mountPath"]) == folder]
    volumes = {v["name"]: v for v in workload["spec"]["template"]["spec"]["volumes"]}
    return str(volumes[mount["name"]]["secret"]["secretName"])


def _servers(objects: tuple[Obj, ...]) -> dict[str, str]:
    """Service name -> the Secret whose certificate the pods behind it present."""
    servers = {}
    for service in of_kind(objects, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        for workload in workloads(objects):
            secret = _tls_secret(objects, workload)
            if secret is not None and matches(selector, pod_labels(workload)):
                servers[name_of(service)] = secret
    return servers


def _check_targets(objects: tuple[Obj, ...], names_of_secret: dict[str, set[str]]) -> None:
    """Every TLS target of every container is a name on the certificate its server loads."""
    namespace = namespace_of(objects)
    servers = _servers(objects)
    secrets = _secret_data(objects)
    wrong, seen, checked = [], set(), 0
    for workload in workloads(objects):
        for container in containers(workload):
            for target in client_targets(_env(objects, container, secrets)):
                seen.add(target.setting)
                if not target.tls:
                    continue
                service = service_name(target.host, namespace)
                where = f"{name_of(workload)} {target.setting} {target.host}"
                if service not in servers:
                    wrong.append(f"{where}: no TLS Service of namespace {namespace} is named so")
                    continue
                names = names_of_secret[servers[service]]
                assert not any("*" in n for n in names), "wildcards are not matched here"
                if target.host.removesuffix(".") not in names:
                    wrong.append(
                        f"{where}: not on {servers[service]}'s certificate {sorted(names)}"
                    )
                checked += 1
    assert not wrong, "\n".join(wrong)
    assert seen >= PEER_SETTINGS, PEER_SETTINGS - seen
    assert checked >= 20


# ------------------------------------------------------------------ names against certificates


def certificates(objects: tuple[Obj, ...]) -> dict[str, Obj]:
    """secretName -> Certificate (cert-manager)."""
    return {c["spec"]["secretName"]: c for c in of_kind(objects, "Certificate")}


@pytest.mark.parametrize(("overlay", "namespace"), VARIANTS)
def test_every_tls_target_is_a_name_on_the_certificate_cert_manager_issues_its_server(
    variant: Render, overlay: str, namespace: str | None
) -> None:
    objects = variant(overlay, namespace, cert_manager=True)
    names = {secret: set(c["spec"].get("dnsNames", [])) for secret, c in certificates(objects).items()}  # fmt: skip
    _check_targets(objects, names)


@pytest.fixture(scope="session")
def recipe(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], dict[str, Obj]]:
    """Runs the dev recipe (dev_certificates.py) for a namespace: the Secrets it writes."""
    cache: dict[str, dict[str, Obj]] = {}

    def run(namespace: str) -> dict[str, Obj]:
        if namespace not in cache:
            out = tmp_path_factory.mktemp("tls")
            result = subprocess.run(
                [sys.executable, str(K8S / "dev_certificates.py"), "--namespace", namespace,
                 "--out", str(out)],
                capture_output=True, text=True, check=False, timeout=60, cwd=ROOT,
            )  # fmt: skip
            assert result.returncode == 0, result.stderr
            docs = [yaml.safe_load(p.read_text()) for p in sorted((out / "secrets").glob("*.yaml"))]
            cache[namespace] = {name_of(d): d for d in docs}
        return cache[namespace]

    return run


def _issued(secret: Obj) -> x509.Certificate:
    return x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))


def _dns_names(certificate: x509.Certificate) -> set[str]:
    extension = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return set(extension.value.get_values_for_type(x509.DNSName))


def _common_name(certificate: x509.Certificate) -> str:
    (attribute,) = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attribute.value)


@pytest.mark.parametrize(("overlay", "namespace"), VARIANTS)
def test_every_tls_target_is_a_name_on_the_certificate_the_dev_recipe_issues_its_server(
    variant: Render, recipe: Callable[[str], dict[str, Obj]], overlay: str, namespace: str | None
) -> None:
    objects = variant(overlay, namespace)
    issued = recipe(namespace_of(objects))
    for secret in issued.values():
        validate(secret)
        assert secret["metadata"]["namespace"] == namespace_of(objects)
    _check_targets(objects, {name: _dns_names(_issued(s)) for name, s in issued.items()})


def test_the_dev_recipe_issues_what_cert_manager_would(
    variant: Render, recipe: Callable[[str], dict[str, Obj]]
) -> None:
    objects = variant("prod", OTHER, cert_manager=True)
    wanted = {s: c for s, c in certificates(objects).items() if not c["spec"].get("isCA")}
    issued = recipe(OTHER)
    assert set(issued) == set(wanted)
    for secret, certificate in wanted.items():
        cert = _issued(issued[secret])
        assert _common_name(cert) == certificate["spec"]["commonName"]
        assert set(certificate["spec"].get("dnsNames", [])) <= _dns_names(cert), secret
        assert issued[secret]["type"] == "kubernetes.io/tls"
        assert set(issued[secret]["data"]) == {"tls.crt", "tls.key", "ca.crt"}


def test_a_name_missing_from_a_certificate_is_caught(variant: Render) -> None:
    objects = variant("dev", cert_manager=True)
    names = {s: set(c["spec"].get("dnsNames", [])) for s, c in certificates(objects).items()}
    names["flotilla-tls-accounts"].discard("accounts-s1")
    with pytest.raises(AssertionError, match="payments FLOTILLA_LEDGER_SHARDS accounts-s1"):
        _check_targets(objects, names)


# ------------------------------------------------------------------ the namespace


def test_the_namespace_is_set_in_one_place_per_overlay() -> None:
    for path in [K8S / "base" / "kustomization.yaml", K8S / "components" / "cert-manager" / "kustomization.yaml"]:  # fmt: skip
        assert "namespace" not in yaml.safe_load(path.read_text()), f"{path}: leave it to overlays"
    for overlay in OVERLAYS:
        assert yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())[
            "namespace"
        ] == namespace_of(render(overlay))
    # No file names a namespace in an address (the certificates' namespaced names are the
    # overlays' replacements' to fill).
    checked = 0
    for path in sorted([*K8S.rglob("*.yaml"), *K8S.rglob("*.env")]):
        if path.name == "certificates.yaml":
            continue
        text = path.read_text()  # without its comments:
        if path.suffix == ".env":
            values = "\n".join(line for line in text.splitlines() if not line.startswith("#"))
        else:
            values = yaml.safe_dump_all(yaml.safe_load_all(text))
        assert not re.search(r"[a-z0-9-]+\.[a-z0-9-]+\.svc\b", values), path
        checked += 1
    assert checked > 20


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_another_namespace_takes_every_object_and_every_certificate_name(
    variant: Render, overlay: str
) -> None:
    objects = variant(overlay, OTHER, cert_manager=True)
    assert namespace_of(objects) == OTHER
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {OTHER}
    text = yaml.safe_dump_all(objects)
    old = namespace_of(render(overlay))
    assert not re.search(rf"\.{old}\.svc\b", text), f"a name still in namespace {old}"
    services = {name_of(s) for s in of_kind(objects, "Service")}
    for certificate in of_kind(objects, "Certificate"):
        for name in certificate["spec"].get("dnsNames", []):
            # Each name is a Service of this namespace: short or fully qualified.
            assert service_name(name, OTHER) in services, f"{name_of(certificate)}: {name}"


def test_every_overlay_puts_the_namespace_into_the_certificates_the_same_way() -> None:
    blocks = {
        overlay: yaml.safe_load((K8S / "overlays" / overlay / "kustomization.yaml").read_text())[
            "replacements"
        ]
        for overlay in OVERLAYS
    }
    assert len({yaml.safe_dump(b) for b in blocks.values()}) == 1, "overlays differ"


# ------------------------------------------------------------------ the cert-manager component

# The fields of cert-manager.io/v1 this component may use, checked by hand (kubernetes-
# validate has no cert-manager schemas; none is vendored). Taken from cert-manager's CRDs
# (v1.19); an unknown or misspelt field fails, as the API server's strict decoding would.
_CERTIFICATE_SPEC = {
    "secretName": str, "secretTemplate": dict, "commonName": str, "dnsNames": list,
    "usages": list, "duration": str, "renewBefore": str, "privateKey": dict,
    "issuerRef": dict, "isCA": bool,
}  # fmt: skip
_PRIVATE_KEY = {
    "algorithm": {"RSA", "ECDSA", "Ed25519"},
    "encoding": {"PKCS1", "PKCS8"},
    "rotationPolicy": {"Never", "Always"},
    "size": None,
}
_USAGES = {"digital signature", "key encipherment", "server auth", "client auth", "cert sign"}
_DURATION = re.compile(r"(\d+)h")


def check_cert_manager_object(obj: Obj) -> None:
    """Raises AssertionError for a field cert-manager.io/v1 does not have or a bad value."""
    assert obj["apiVersion"] == "cert-manager.io/v1", obj["apiVersion"]
    assert set(obj) <= {"apiVersion", "kind", "metadata", "spec"}
    spec = obj["spec"]
    if obj["kind"] == "Issuer":
        assert len(spec) == 1, spec
        ((issuer_type, config),) = spec.items()
        assert issuer_type in {"selfSigned", "ca"}, issuer_type
        assert config == {} if issuer_type == "selfSigned" else set(config) == {"secretName"}
        return
    assert obj["kind"] == "Certificate", obj["kind"]
    for key, value in spec.items():
        assert key in _CERTIFICATE_SPEC, f"Certificate has no field spec.{key}"
        assert isinstance(value, _CERTIFICATE_SPEC[key]), f"spec.{key}: {value!r}"
    assert {"secretName", "issuerRef"} <= set(spec)
    assert set(spec["issuerRef"]) <= {"name", "kind", "group"}
    assert spec["issuerRef"].get("group", "cert-manager.io") == "cert-manager.io"
    assert set(spec.get("secretTemplate", {})) <= {"labels", "annotations"}
    for usage in spec.get("usages", []):
        assert usage in _USAGES, f"usage {usage!r}"
    for key, value in spec.get("privateKey", {}).items():
        assert key in _PRIVATE_KEY, f"privateKey has no field {key}"
        allowed = _PRIVATE_KEY[key]
        assert allowed is None or value in allowed, f"privateKey.{key}: {value!r}"
    for key in ("duration", "renewBefore"):
        assert _DURATION.fullmatch(spec[key]), f"{key}: {spec[key]!r} (hours, e.g. 2160h)"


def _hours(value: str) -> int:
    match = _DURATION.fullmatch(value)
    assert match
    return int(match.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_cert_manager_component_issues_every_tls_secret_from_the_namespace_ca(
    variant: Render, overlay: str
) -> None:
    objects = variant(overlay, cert_manager=True)
    cert_manager = [o for o in objects if o["apiVersion"].startswith("cert-manager.io/")]
    for obj in objects:
        if obj not in cert_manager:
            validate(obj)  # the component breaks nothing else
    for obj in cert_manager:
        check_cert_manager_object(obj)
    issuers = {name_of(i): i["spec"] for i in of_kind(objects, "Issuer")}
    by_secret = certificates(objects)
    # self-signed Issuer -> CA Certificate -> CA Issuer -> one Certificate per service.
    (ca,) = [c for c in by_secret.values() if c["spec"].get("isCA")]
    assert issuers[ca["spec"]["issuerRef"]["name"]] == {"selfSigned": {}}
    assert ca["spec"]["privateKey"]["rotationPolicy"] == "Never", "a new CA key breaks trust"
    (ca_issuer,) = [n for n, s in issuers.items() if s.get("ca", {}).get("secretName") == ca["spec"]["secretName"]]  # fmt: skip
    mounted = {
        secret: pod_labels(workload)["flotilla.dev/service"]
        for workload in workloads(objects)
        if (secret := _tls_secret(objects, workload)) is not None
    }
    assert len(mounted) == len(MANIFEST.services)  # one per service (the shards share one)
    assert set(mounted) == {f"flotilla-tls-{s}" for s in mounted.values()}
    assert set(mounted) <= set(by_secret), "a TLS Secret no Certificate makes"
    for secret, service in mounted.items():
        spec = by_secret[secret]["spec"]
        assert spec["issuerRef"]["name"] == ca_issuer
        # auth issues service tokens by the certificate's name.
        assert spec["commonName"] == service
        assert {"server auth", "client auth"} <= set(spec["usages"])
        assert spec["privateKey"]["rotationPolicy"] == "Always"
        assert 0 < _hours(spec["renewBefore"]) < _hours(spec["duration"]) <= 24 * 397


def test_the_hand_check_of_cert_manager_fields_bites(variant: Render) -> None:
    certificate = certificates(variant("dev", cert_manager=True))["flotilla-tls-auth"]
    check_cert_manager_object(certificate)
    for broken in (
        {"dnsName": ["auth"]},
        {"usages": ["server-auth"]},
        {"privateKey": {"algorithm": "EC"}},
        {"duration": "90d"},
    ):
        with pytest.raises(AssertionError):
            check_cert_manager_object({**certificate, "spec": {**certificate["spec"], **broken}})


# ------------------------------------------------------------------ Secrets


def test_tls_secrets_are_mounted_as_folders_so_a_renewal_reaches_the_pods() -> None:
    # A Secret mounted with subPath is never updated in a running pod; mounted as a folder,
    # the kubelet swaps the files in and the services load them again.
    for overlay in OVERLAYS:
        objects = render(overlay)
        checked = 0
        for workload in workloads(objects):
            container = containers(workload)[0]
            if _tls_secret(objects, workload) is None:
                continue
            checked += 1
            env = dict(_env(objects, container))
            secret_volumes = {
                v["name"] for v in workload["spec"]["template"]["spec"]["volumes"] if "secret" in v
            }
            for mount in container["volumeMounts"]:
                if mount["name"] in secret_volumes:
                    assert not {"subPath", "subPathExpr"} & set(mount), name_of(workload)
            folders = {Path(env[f"FLOTILLA_TLS_{k}_FILE"]).parent for k in ("CERT", "KEY", "CA")}
            assert len(folders) == 1, name_of(workload)
            names = {Path(env[f"FLOTILLA_TLS_{k}_FILE"]).name for k in ("CERT", "KEY", "CA")}
            assert names == {"tls.crt", "tls.key", "ca.crt"}  # the keys cert-manager writes
        assert checked == len(SERVICE_DEPLOYMENTS)  # every service Deployment (each shard)


def must_exist(overlay: str) -> set[str]:
    """The Secrets an overlay's kustomization.yaml lists, in its header comment, as ones that
    must exist in the namespace before it is applied."""
    lines = (K8S / "overlays" / overlay / "kustomization.yaml").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if "Secrets that must exist" in line)
    names = set()
    for line in lines[start + 1 :]:
        if not line.startswith("#"):
            break
        if match := re.fullmatch(r"#\s+- ([a-z0-9-]+)", line):
            names.add(match.group(1))
    return names


def referenced_secrets(objects: tuple[Obj, ...]) -> set[str]:
    """Every Secret a pod template reads: env secretKeyRef, envFrom, volumes (projected too)."""
    names: set[str] = set()
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                names.add(volume["secret"]["secretName"])
            for source in volume.get("projected", {}).get("sources", []):
                if "secret" in source:
                    names.add(source["secret"]["name"])
        for container in pod["containers"] + pod.get("initContainers", []):
            for source in container.get("envFrom", []):
                if "secretRef" in source:
                    names.add(source["secretRef"]["name"])
            for variable in container.get("env", []):
                if ref := variable.get("valueFrom", {}).get("secretKeyRef"):
                    names.add(ref["name"])
    return names


@pytest.mark.parametrize("cert_manager", [False, True], ids=["own-secrets", "cert-manager"])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_secret_a_pod_reads_is_made_by_its_overlay_or_listed_as_one_that_must_exist(
    variant: Render, overlay: str, cert_manager: bool
) -> None:
    objects = variant(overlay, cert_manager=cert_manager)
    referenced = referenced_secrets(objects)
    made = {name_of(s) for s in of_kind(objects, "Secret")} | set(certificates(objects))
    listed = must_exist(overlay)
    assert referenced - made <= listed, f"neither made nor listed: {referenced - made - listed}"
    # A listed name no pod reads is a wrong name (prod's list once said flotilla-auth).
    assert listed <= referenced, f"listed but read by no pod: {listed - referenced}"
    assert not listed & {name_of(s) for s in of_kind(objects, "Secret")}
    readme = (K8S / "README.md").read_text()
    for name in listed:
        assert f"`{name}`" in readme or name.startswith("flotilla-tls-"), f"README: {name}"
    assert "`flotilla-tls-<service>`" in readme


def test_the_secret_check_sees_every_way_a_pod_reads_one() -> None:
    pod: dict[str, Any] = {
        "volumes": [
            {"name": "a", "secret": {"secretName": "s-volume"}},
            {"name": "b", "projected": {"sources": [{"secret": {"name": "s-projected"}}]}},
        ],
        "containers": [
            {"envFrom": [{"secretRef": {"name": "s-env-from"}}],
             "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "s-key", "key": "k"}}}]},
        ],
    }  # fmt: skip
    workload = {"kind": "Deployment", "spec": {"template": {"spec": pod}}}
    assert referenced_secrets((workload,)) == {"s-volume", "s-projected", "s-env-from", "s-key"}
    assert "flotilla-auth-keys" in referenced_secrets(render("prod"))
