"""deploy/k8s: render every overlay with `kubectl kustomize`, validate every object against
the Kubernetes API schemas (kubernetes-validate, offline, a pinned version), and check the
policies each workload must follow: probes, resources, security context, autoscalers,
disruption budgets, topology spread, network flows, settings and secrets.

The rules are checked on the rendered objects (what a cluster would get), not on the
files, so a patch in an overlay cannot quietly undo one.
"""

from __future__ import annotations

import base64
import copy
import functools
import importlib
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import kubernetes_validate.utils  # type: ignore[import-untyped]
import pytest
import yaml
from pydantic_settings import BaseSettings

from flotilla_auth.settings import AuthSettings
from flotilla_cli.launcher.planning import shop_account_id, shop_owner_id
from flotilla_gateway.settings import GatewaySettings
from flotilla_kit.manifest import load_manifest
from flotilla_kit.settings import ServiceSettings, TlsSettings, is_placeholder_secret
from tests.deploy.dockerfiles import SETTINGS_MODELS

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS = ("dev", "prod")
# The Kubernetes version the manifests are written for (kubernetes-validate bundles its
# schemas, so this works offline).
KUBERNETES_VERSION = "1.32.0"
NAMESPACE = "flotilla"

Obj = dict[str, Any]

# Each service's settings model (tests/deploy/dockerfiles.py finds them from services.toml).
SETTINGS: dict[str, type[ServiceSettings]] = {
    service: getattr(importlib.import_module(module), name)
    for service, (module, name) in SETTINGS_MODELS.items()
}
MANIFEST = load_manifest(ROOT / "services.toml")
K8S_SHARDS = 2  # the ledger's shards in the base: accounts-s0, accounts-s1
# The Deployments of services.toml's services (the gateway first), one per shard of the
# sharded one, and their relays.
SERVICE_DEPLOYMENTS = tuple(
    deployment
    for service in (MANIFEST.gateway, *MANIFEST.backends)
    for deployment in (
        [f"{service.name}-s{k}" for k in range(K8S_SHARDS)] if service.sharded else [service.name]
    )
)
RELAYS = tuple(f"{service.name}-relay" for service in MANIFEST.services if service.relay)
# The services whose pods subscribe to NATS themselves (their consumers run in `serve`).
CONSUMERS = tuple(service.name for service in MANIFEST.services if service.consumes)
# Workloads without a HorizontalPodAutoscaler, and why.
NOT_AUTOSCALED = {
    **dict.fromkeys(RELAYS, "one publisher per outbox: a second one adds no throughput"),
    "valkey": "one in-memory store of rate-limit buckets, shared by every gateway",
    "nats": "a single JetStream node (StatefulSet)",
    "postgres": "a single database server (StatefulSet)",
}
# Containers without probes, and why: a relay has no listener, and a relay that cannot
# go on exits (Kubernetes restarts it); broker and database trouble it retries forever.
NOT_PROBED = dict.fromkeys(RELAYS, "no listener to probe")


# ------------------------------------------------------------------ rendering


def kustomize(directory: Path) -> tuple[Obj, ...]:
    """`kubectl kustomize DIRECTORY`, as objects."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it renders the overlays: `kubectl kustomize`)")
    result = subprocess.run(
        [kubectl, "kustomize", str(directory)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@functools.cache
def render(overlay: str) -> tuple[Obj, ...]:
    return kustomize(K8S / "overlays" / overlay)


@pytest.fixture(params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def objects(overlay: str) -> tuple[Obj, ...]:
    return render(overlay)


def of_kind(objects: tuple[Obj, ...], *kinds: str) -> list[Obj]:
    return [o for o in objects if o["kind"] in kinds]


def workloads(objects: tuple[Obj, ...]) -> list[Obj]:
    return of_kind(objects, "Deployment", "StatefulSet")


def name_of(obj: Obj) -> str:
    return str(obj["metadata"]["name"])


def pod_labels(workload: Obj) -> dict[str, str]:
    return dict(workload["spec"]["template"]["metadata"]["labels"])


def containers(workload: Obj) -> list[Obj]:
    return list(workload["spec"]["template"]["spec"]["containers"])


def flotilla_service(container: Obj) -> str | None:
    """`auth` for an image `flotilla/auth:<tag>`; None for third-party images."""
    match = re.fullmatch(r"flotilla/([a-z]+):.+", container["image"])
    return match.group(1) if match else None


def matches(selector: Obj, labels: dict[str, str]) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) against labels."""
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values")
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


# ------------------------------------------------------------------ schema validation


@functools.cache
def _schema_contents(filename: str, desired_version: str) -> Any:
    # kubernetes-validate reads its (large) definitions file again for every object;
    # the files never change during a run.
    return _original_schema_contents(filename, desired_version)


_original_schema_contents = kubernetes_validate.utils.schema_contents


def validate(obj: Obj) -> None:
    kubernetes_validate.utils.schema_contents = _schema_contents
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    finally:
        kubernetes_validate.utils.schema_contents = _original_schema_contents


def test_every_rendered_object_is_valid_for_the_pinned_kubernetes(objects: tuple[Obj, ...]) -> None:
    assert len(objects) > 50
    errors = []
    for obj in objects:
        try:
            validate(obj)
        except kubernetes_validate.ValidationError as error:
            errors.append(f"{obj['kind']}/{name_of(obj)}: {error.message}")
    assert not errors, "\n".join(errors)


def test_schema_validation_catches_a_wrong_object() -> None:
    # The check above would pass vacuously if nothing were validated: prove it bites, on
    # a typo'd field (strict mode) and on a wrong type.
    deployment = copy.deepcopy(workloads(render("dev"))[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    deployment = copy.deepcopy(workloads(render("dev"))[0])
    deployment["spec"]["replicas"] = "two"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)


def test_everything_lives_in_the_flotilla_namespace(objects: tuple[Obj, ...]) -> None:
    (namespace,) = of_kind(objects, "Namespace")
    assert name_of(namespace) == NAMESPACE
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        NAMESPACE
    }


# ------------------------------------------------------------------ workload policies


def test_every_container_has_startup_liveness_and_readiness_probes(
    objects: tuple[Obj, ...],
) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            if name_of(workload) in NOT_PROBED:
                assert not {"startupProbe", "livenessProbe", "readinessProbe"} & set(container)
                continue
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                assert probe in container, f"{name_of(workload)}: no {probe}"
            if flotilla_service(container) is None:
                continue
            env = dict(_env(objects, container))
            # The gateway answers probes on its admin listener only.
            port = env.get("FLOTILLA_ADMIN_PORT", env["FLOTILLA_PORT"])
            for probe, path in [
                ("startupProbe", "/livez"),
                ("livenessProbe", "/livez"),
                ("readinessProbe", "/readyz"),
            ]:
                spec = container[probe]
                if "httpGet" in spec:
                    # Only the gateway's listener does not ask for a client certificate.
                    assert flotilla_service(container) == "gateway"
                    assert spec["httpGet"]["path"] == path
                    assert spec["httpGet"]["scheme"] == "HTTPS"
                    assert _port_number(container, spec["httpGet"]["port"]) == int(port)
                else:
                    # Services require a client certificate (mTLS), which kubelet's httpGet
                    # cannot present: the probe runs in the container with the pod's own.
                    script = spec["exec"]["command"][-1]
                    assert f"'https://127.0.0.1:{port}{path}'" in script
                    mounted = _tls_mount(container)
                    assert f"'{mounted}/tls.crt','{mounted}/tls.key'" in script


def _tls_mount(container: Obj) -> str:
    (mount,) = [m["mountPath"] for m in container["volumeMounts"] if m["name"] == "tls"]
    return str(mount)


def _port_number(container: Obj, port: int | str) -> int:
    if isinstance(port, int):
        return port
    (number,) = [p["containerPort"] for p in container["ports"] if p["name"] == port]
    return int(number)


_QUANTITY = re.compile(r"(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti)?")
_UNITS = {None: 1.0, "m": 0.001, "Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40}


def quantity(value: str | int) -> float:
    match = _QUANTITY.fullmatch(str(value))
    assert match, f"unexpected quantity {value!r}"
    return float(match.group(1)) * _UNITS[match.group(2)]


def test_every_container_has_requests_and_limits(objects: tuple[Obj, ...]) -> None:
    for workload in workloads(objects):
        for container in containers(workload):
            resources = container["resources"]
            for resource in ("cpu", "memory"):
                request = quantity(resources["requests"][resource])
                limit = quantity(resources["limits"][resource])
                assert 0 < request <= limit, f"{name_of(workload)}: {resource}"


def test_every_pod_runs_locked_down(objects: tuple[Obj, ...]) -> None:
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] > 0
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        volumes = {v["name"]: v for v in pod["volumes"]}
        for container in containers(workload):
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False
            assert context["readOnlyRootFilesystem"] is True
            assert context["runAsNonRoot"] is True
            assert context["capabilities"] == {"drop": ["ALL"]}
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            assert "emptyDir" in volumes[mounts["/tmp"]], f"{name_of(workload)}: /tmp"
            if flotilla_service(container) is not None:
                var_dir = dict(_env(objects, container))["FLOTILLA_VAR_DIR"]
                assert "emptyDir" in volumes[mounts[var_dir]], f"{name_of(workload)}: var"


# Labels the controllers put on the pods they make, besides the template's.
CONTROLLER_LABELS = {
    "Deployment": {"pod-template-hash"},
    "StatefulSet": {
        "controller-revision-hash",
        "statefulset.kubernetes.io/pod-name",
        "apps.kubernetes.io/pod-index",
    },
}


def test_every_pod_is_spread_over_nodes_and_zones(objects: tuple[Obj, ...]) -> None:
    for workload in workloads(objects):
        constraints = workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
        keys = {c["topologyKey"] for c in constraints}
        assert "kubernetes.io/hostname" in keys, name_of(workload)
        if workload["kind"] == "Deployment" and name_of(workload) in SERVICE_DEPLOYMENTS:
            assert "topology.kubernetes.io/zone" in keys
        labels = set(pod_labels(workload)) | CONTROLLER_LABELS[workload["kind"]]
        for constraint in constraints:
            assert matches(constraint["labelSelector"], pod_labels(workload))
            # A key the pods lack is ignored by the scheduler: the constraint would not
            # do what it says (pod-template-hash on a StatefulSet did exactly that).
            missing = set(constraint.get("matchLabelKeys", [])) - labels
            assert not missing, f"{name_of(workload)}: its pods have no label {missing}"


def test_prod_spreads_service_pods_over_nodes_strictly() -> None:
    for workload in workloads(render("prod")):
        if name_of(workload) in SERVICE_DEPLOYMENTS:
            (by_node,) = [
                c
                for c in workload["spec"]["template"]["spec"]["topologySpreadConstraints"]
                if c["topologyKey"] == "kubernetes.io/hostname"
            ]
            assert by_node["whenUnsatisfiable"] == "DoNotSchedule"


def test_pods_get_longer_to_stop_than_they_drain(objects: tuple[Obj, ...]) -> None:
    for workload in workloads(objects):
        grace = workload["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
        for container in containers(workload):
            if flotilla_service(container) is None or name_of(workload) in RELAYS:
                continue
            env = dict(_env(objects, container))
            # After the drain, requests in flight get the shutdown grace (uvicorn's is 10 s).
            drain = float(env["FLOTILLA_DRAIN_S"]) + float(env.get("FLOTILLA_SHUTDOWN_GRACE_S", 10))
            assert grace > drain, f"{name_of(workload)}: {grace} s <= {drain} s"


def test_images_are_flotilla_images_tagged_by_the_overlay(overlay: str) -> None:
    tags = set()
    for workload in workloads(render(overlay)):
        for container in containers(workload):
            image = container["image"]
            first, _, rest = image.partition("/")
            # No registry hostname is committed (the delivery workflow adds it).
            assert not rest or not ("." in first or ":" in first), image
            name, _, tag = image.rpartition(":")
            assert name, image
            assert tag not in ("", "latest"), image
            service = flotilla_service(container)
            if service is not None:
                tags.add(tag)
                args = container["args"]
                assert args == (["relay"] if name_of(workload) in RELAYS else ["serve"])
            else:  # a datastore's image: pinned by digest too (a tag can be pushed again)
                assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image
    assert len(tags) == 1, tags
    assert tags != {"dev"} if overlay == "prod" else tags == {"dev"}


# ------------------------------------------------------------------ scaling


def _by_target(objects: tuple[Obj, ...]) -> dict[str, Obj]:
    hpas: dict[str, Obj] = {}
    for hpa in of_kind(objects, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        assert hpa["apiVersion"] == "autoscaling/v2"
        assert target["kind"] == "Deployment"
        assert target["name"] not in hpas, f"two autoscalers for {target['name']}"
        hpas[target["name"]] = hpa
    return hpas


def test_every_service_deployment_has_a_cpu_autoscaler(objects: tuple[Obj, ...]) -> None:
    hpas = _by_target(objects)
    for workload in workloads(objects):
        name = name_of(workload)
        if name in NOT_AUTOSCALED:
            assert name not in hpas
            assert workload["spec"]["replicas"] == 1, name
            continue
        assert name in SERVICE_DEPLOYMENTS, f"{name}: neither autoscaled nor exempt"
        hpa = hpas[name]["spec"]
        # The autoscaler owns the count; a replicas field would reset it on every apply.
        assert "replicas" not in workload["spec"], name
        assert 1 <= hpa["minReplicas"] < hpa["maxReplicas"] <= 20
        (metric,) = hpa["metrics"]
        assert metric["resource"]["name"] == "cpu"
        assert 50 <= metric["resource"]["target"]["averageUtilization"] <= 90
        requests = containers(workload)[0]["resources"]["requests"]
        assert "cpu" in requests, "a CPU utilisation target needs a CPU request"
    assert set(hpas) == set(SERVICE_DEPLOYMENTS)


def test_overlays_set_replica_bounds() -> None:
    dev = _by_target(render("dev"))
    prod = _by_target(render("prod"))
    for name in SERVICE_DEPLOYMENTS:
        assert (dev[name]["spec"]["minReplicas"], dev[name]["spec"]["maxReplicas"]) == (1, 2)
        assert prod[name]["spec"]["minReplicas"] >= 3
        assert prod[name]["spec"]["maxReplicas"] >= 10


def test_every_workload_has_a_disruption_budget_that_allows_a_drain(
    objects: tuple[Obj, ...],
) -> None:
    hpas = _by_target(objects)
    budgets = of_kind(objects, "PodDisruptionBudget")
    for workload in workloads(objects):
        name = name_of(workload)
        (budget,) = [b for b in budgets if matches(b["spec"]["selector"], pod_labels(workload))]
        spec = budget["spec"]
        fewest = hpas[name]["spec"]["minReplicas"] if name in hpas else workload["spec"]["replicas"]
        if "minAvailable" in spec:
            # Otherwise no node holding one of its pods could ever be drained.
            assert spec["minAvailable"] < fewest, name
        else:
            assert spec["maxUnavailable"] >= 1, name


def test_prod_keeps_service_pods_available_during_disruptions() -> None:
    objects = render("prod")
    for budget in of_kind(objects, "PodDisruptionBudget"):
        if name_of(budget) in SERVICE_DEPLOYMENTS:
            assert budget["spec"]["minAvailable"] >= 2


# ------------------------------------------------------------------ services and DNS


def test_every_service_selects_a_workload_and_its_ports(objects: tuple[Obj, ...]) -> None:
    for service in of_kind(objects, "Service"):
        selector = {"matchLabels": service["spec"]["selector"]}
        selected = [w for w in workloads(objects) if matches(selector, pod_labels(w))]
        assert len(selected) == 1, f"Service {name_of(service)} selects {len(selected)}"
        ports = {p["name"] for c in containers(selected[0]) for p in c.get("ports", [])}
        for port in service["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{name_of(service)}: {port['targetPort']}"


def _services(objects: tuple[Obj, ...]) -> dict[str, Obj]:
    return {name_of(s): s for s in of_kind(objects, "Service")}


def test_the_gateway_serves_probes_and_metrics_on_its_admin_port_which_no_service_exposes(
    objects: tuple[Obj, ...],
) -> None:
    (gateway,) = [w for w in workloads(objects) if name_of(w) == "gateway"]
    container = containers(gateway)[0]
    env = dict(_env(objects, container))
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"https": int(env["FLOTILLA_PORT"]), "admin": int(env["FLOTILLA_ADMIN_PORT"])}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == "admin"
    exposed = {
        _port_number(container, port["targetPort"])
        for service in of_kind(objects, "Service")
        if matches({"matchLabels": service["spec"]["selector"]}, pod_labels(gateway))
        for port in service["spec"]["ports"]
    }
    assert exposed == {ports["https"]}


def test_the_gateway_finds_every_upstream_through_a_headless_service(
    objects: tuple[Obj, ...],
) -> None:
    (gateway,) = [w for w in workloads(objects) if name_of(w) == "gateway"]
    env = dict(_env(objects, containers(gateway)[0]))
    assert env["FLOTILLA_DISCOVERY"] == "dns"
    settings = GatewaySettings.model_validate(
        {"dns_services": json.loads(env["FLOTILLA_DNS_SERVICES"])}
    )
    services = _services(objects)
    routed = {service.name for service in MANIFEST.backends}
    assert set(settings.dns_services) == routed
    for service, targets in settings.dns_services.items():
        for target in targets:
            name = service_name(target.host, namespace_of(objects))
            assert name is not None, f"{target.host} is no Service of the namespace"
            headless = services[name]
            # Headless: the records are the ready pods themselves, which the gateway balances.
            assert headless["spec"]["clusterIP"] == "None"
            assert target.port in {p["port"] for p in headless["spec"]["ports"]}
            assert target.scheme == "https"
            if service == "accounts":
                assert name == f"accounts-s{target.shard}"
    shards = [t.shard for t in settings.dns_services["accounts"]]
    assert sorted(s for s in shards if s is not None) == [0, 1] == list(range(len(shards)))


@dataclass(frozen=True)
class Target:
    """Somewhere a setting tells a container to connect to."""

    setting: str
    scheme: str  # https and grpc are TLS (the kit's gRPC is TLS only); the rest is not
    host: str
    port: int

    @property
    def tls(self) -> bool:
        return self.scheme in ("https", "grpc")


_URL = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*)://(?:[^@/]*@)?(?P<host>[^:/?#@]+)(?::(?P<port>\d+))?")  # fmt: skip
_HOST_PORT = re.compile(r"(?P<host>[a-z0-9][a-z0-9.-]*):(?P<port>\d+)")
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)


def client_targets(env: list[tuple[str, str]]) -> Iterator[Target]:
    """Every address in a container's settings: URLs (any scheme, in plain values or in
    JSON lists and maps), bare host:port gRPC targets, and the gateway's DNS targets."""
    for name, value in env:
        if name == "FLOTILLA_DNS_SERVICES":
            for targets in json.loads(value).values():
                for target in targets:
                    yield Target(name, target.get("scheme", "https"), target["host"], target["port"])  # fmt: skip
            continue
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
        for text in _strings(parsed):
            if url := _URL.fullmatch(text) or _URL.match(text):
                scheme = url["scheme"].split("+")[0]
                port = int(url["port"]) if url["port"] else _DEFAULT_PORTS.get(scheme, 0)
                yield Target(name, scheme, url["host"], port)
            elif bare := _HOST_PORT.fullmatch(text):
                yield Target(name, "grpc", bare["host"], int(bare["port"]))


def namespace_of(objects: tuple[Obj, ...]) -> str:
    (namespace,) = of_kind(objects, "Namespace")
    return name_of(namespace)


def service_name(host: str, namespace: str) -> str | None:
    """The Service of `namespace` a host name resolves to from a pod of that namespace
    (its search list makes `auth` mean auth.<namespace>.svc.cluster.local); None for a
    name of another namespace or outside the cluster."""
    name, *rest = host.removesuffix(".").split(".")
    if rest in ([], [namespace, "svc"], [namespace, "svc", "cluster", "local"]):
        return name
    return None


def test_every_address_in_the_settings_is_a_service_port_the_caller_may_reach(
    objects: tuple[Obj, ...], overlay: str
) -> None:
    services = _services(objects)
    pods = _pods(objects)
    namespace = namespace_of(objects)
    # dev's generated Secrets hold addresses too (the database URLs).
    secrets = _secret_data(objects) if overlay == "dev" else None
    seen = set()
    for workload in workloads(objects):
        for container in containers(workload):
            for target in client_targets(_env(objects, container, secrets)):
                name, port = target.setting, target.port
                host = service_name(target.host, namespace)
                assert host in services, f"{name_of(workload)} {name}: no Service {target.host}"
                service = services[host]
                (service_port,) = [p for p in service["spec"]["ports"] if p["port"] == port]
                (server,) = [w for w in workloads(objects) if matches({"matchLabels": service["spec"]["selector"]}, pod_labels(w))]  # fmt: skip
                number = _port_number(containers(server)[0], service_port["targetPort"])
                source, destination = pods[name_of(workload)], pods[name_of(server)]
                assert allowed(objects, source, destination, number), (
                    f"{name_of(workload)} -> {host}:{port} ({name}) is blocked"
                )
                seen.add((name_of(workload), host))
    # The check above saw the flows that matter (and so cannot pass vacuously).
    assert {("payments", "accounts-s1"), ("orders", "inventory"), ("gateway", "valkey")} <= seen
    assert {("orders-relay", "nats"), ("accounts-s0", "payments"), ("inventory", "auth")} <= seen
    if overlay == "dev":
        assert {("payments-relay", "postgres"), ("auth", "postgres")} <= seen


def test_the_address_parser_finds_every_kind_of_target() -> None:
    env = [
        ("FLOTILLA_JWKS_URLS", '["https://auth:8000/.well-known/jwks.json"]'),
        ("FLOTILLA_LEDGER_SHARDS", '{"0": ["accounts-s0:9000"], "1": ["accounts-s1.ns.svc:9000"]}'),
        ("FLOTILLA_DNS_SERVICES", '{"auth": [{"host": "auth", "port": 8000}]}'),
        ("FLOTILLA_DATABASE_URL", "postgresql+asyncpg://u:p@postgres:5432/auth"),
        ("FLOTILLA_NATS_URL", "nats://nats:4222"),
        ("FLOTILLA_SHARDS", "2"),
        ("FLOTILLA_DRAIN_S", "5"),
    ]
    assert [(t.scheme, t.host, t.port, t.tls) for t in client_targets(env)] == [
        ("https", "auth", 8000, True),
        ("grpc", "accounts-s0", 9000, True),
        ("grpc", "accounts-s1.ns.svc", 9000, True),
        ("https", "auth", 8000, True),
        ("postgresql", "postgres", 5432, False),
        ("nats", "nats", 4222, False),
    ]
    assert service_name("auth", "ns") == service_name("auth.ns.svc.cluster.local", "ns") == "auth"
    assert service_name("auth.flotilla.svc", "ns") is None
    assert service_name("example.com", "ns") is None


# ------------------------------------------------------------------ network policies


@dataclass(frozen=True)
class Pod:
    name: str
    labels: dict[str, str]
    namespace: str = NAMESPACE
    ports: dict[str, int] = field(default_factory=dict)

    @property
    def namespace_labels(self) -> dict[str, str]:
        return {"kubernetes.io/metadata.name": self.namespace}


def _pods(objects: tuple[Obj, ...]) -> dict[str, Pod]:
    return {
        name_of(w): Pod(
            name_of(w),
            pod_labels(w),
            ports={
                p["name"]: p["containerPort"] for c in containers(w) for p in c.get("ports", [])
            },
        )
        for w in workloads(objects)
    }


INGRESS_CONTROLLER = Pod(
    "ingress-controller", {"app.kubernetes.io/name": "ingress-nginx"}, "ingress-nginx"
)
PROMETHEUS = Pod("prometheus", {"app.kubernetes.io/name": "prometheus"}, "monitoring")
KUBE_DNS = Pod("kube-dns", {"k8s-app": "kube-dns"}, "kube-system", {"dns": 53})
STRANGER = Pod("stranger", {"app.kubernetes.io/name": "gateway"}, "default")


def _peer_matches(peer: Obj, policy_namespace: str, pod: Pod) -> bool:
    if "ipBlock" in peer:
        return False
    if "namespaceSelector" in peer:
        if not matches(peer["namespaceSelector"], pod.namespace_labels):
            return False
    elif pod.namespace != policy_namespace:
        return False
    return matches(peer.get("podSelector", {}), pod.labels)


def _port_matches(rule: Obj, destination: Pod, port: int, protocol: str) -> bool:
    if not rule.get("ports"):
        return True
    for entry in rule["ports"]:
        wanted = entry.get("port")
        number = destination.ports.get(wanted) if isinstance(wanted, str) else wanted
        if entry.get("protocol", "TCP") == protocol and (wanted is None or number == port):
            return True
    return False


def _side_allows(
    objects: tuple[Obj, ...], subject: Pod, other: Pod, destination: Pod, port: int,
    protocol: str, direction: str,
) -> bool:  # fmt: skip
    """Whether the policies of `subject`'s namespace let it send (Egress) to / receive
    (Ingress) from `other`; a pod no policy of that type selects is not isolated."""
    policies = [
        p
        for p in of_kind(objects, "NetworkPolicy")
        if p["metadata"]["namespace"] == subject.namespace
        and direction in p["spec"]["policyTypes"]
        and matches(p["spec"]["podSelector"], subject.labels)
    ]
    if not policies:
        return True
    key, peers = ("egress", "to") if direction == "Egress" else ("ingress", "from")
    for policy in policies:
        for rule in policy["spec"].get(key, []):
            if (
                not rule.get(peers)
                or any(_peer_matches(peer, subject.namespace, other) for peer in rule[peers])
            ) and _port_matches(rule, destination, port, protocol):
                return True
    return False


def allowed(
    objects: tuple[Obj, ...], source: Pod, destination: Pod, port: int, protocol: str = "TCP"
) -> bool:
    out = source.namespace != NAMESPACE or _side_allows(
        objects, source, destination, destination, port, protocol, "Egress"
    )
    into = destination.namespace != NAMESPACE or _side_allows(
        objects, destination, source, destination, port, protocol, "Ingress"
    )
    return out and into


def test_the_namespace_denies_everything_by_default(objects: tuple[Obj, ...]) -> None:
    deny = [
        p["spec"]
        for p in of_kind(objects, "NetworkPolicy")
        if p["spec"]["podSelector"] == {}
        and set(p["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        and not p["spec"].get("ingress")
        and not p["spec"].get("egress")
    ]
    assert deny, "no default-deny NetworkPolicy"
    # Every workload is covered by at least one policy of each direction it needs.
    for workload in workloads(objects):
        for direction in ("Ingress", "Egress"):
            assert any(
                direction in p["spec"]["policyTypes"] and matches(p["spec"]["podSelector"], pod_labels(workload))
                for p in of_kind(objects, "NetworkPolicy")
            )  # fmt: skip


def _flows(pods: dict[str, Pod]) -> tuple[list[tuple[Pod, Pod, int]], list[tuple[Pod, Pod, int]]]:
    backends = [d for d in SERVICE_DEPLOYMENTS if d != "gateway"]
    shards = ["accounts-s0", "accounts-s1"]

    def https(name: str) -> int:
        return pods[name].ports["https"]

    def grpc(name: str) -> int:
        return pods[name].ports["grpc"]

    allowed_flows = [
        (INGRESS_CONTROLLER, pods["gateway"], https("gateway")),
        # The web front end's pages call the API through the gateway, as any client.
        (pods["web"], pods["gateway"], https("gateway")),
        *[(pods["gateway"], pods[b], https(b)) for b in backends],
        *[(pods["payments"], pods[s], grpc(s)) for s in shards],
        (pods["orders"], pods["inventory"], grpc("inventory")),
        (pods["orders"], pods["payments"], https("payments")),
        *[(pods["orders"], pods[s], https(s)) for s in shards],
        *[(pods[s], pods["payments"], https("payments")) for s in shards],
        *[(pods[c], pods["auth"], https("auth")) for c in ["gateway", *backends] if c != "auth"],
        *[(pods[c], pods["postgres"], 5432) for c in [*backends, *RELAYS]],
        *[(pods[c], pods["nats"], 4222) for c in [*RELAYS, *CONSUMERS]],
        (pods["gateway"], pods["valkey"], 6379),
        *[(PROMETHEUS, pods[s], https(s)) for s in SERVICE_DEPLOYMENTS if s != "gateway"],
        (PROMETHEUS, pods["gateway"], pods["gateway"].ports["admin"]),
    ]
    denied_flows = [
        (pods["gateway"], pods["postgres"], 5432),
        (pods["gateway"], pods["accounts-s0"], grpc("accounts-s0")),
        (pods["gateway"], pods["nats"], 4222),
        (pods["inventory"], pods["payments"], https("payments")),
        (pods["payments"], pods["inventory"], grpc("inventory")),
        (pods["payments"], pods["orders"], https("orders")),
        (pods["accounts-s0"], pods["accounts-s1"], https("accounts-s1")),
        (pods["orders"], pods["valkey"], 6379),
        (pods["auth"], pods["nats"], 4222),
        (pods["auth"], pods["payments"], https("payments")),
        (pods["orders-relay"], pods["auth"], https("auth")),
        # billing calls no service (it learns of orders through NATS) and nobody calls it
        # but the gateway.
        (pods["billing"], pods["orders"], https("orders")),
        (pods["billing"], pods["payments"], https("payments")),
        (pods["orders"], pods["billing"], https("billing")),
        (pods["billing-relay"], pods["auth"], https("auth")),
        # web reaches the services through the gateway only (auth aside, for the keys that
        # check tokens), and only the gateway sends it anything; no other service is a
        # client of the gateway.
        *[(pods["web"], pods[b], https(b)) for b in backends if b not in ("web", "auth")],
        (pods["web"], pods["inventory"], grpc("inventory")),
        (pods["web"], pods["valkey"], 6379),
        (INGRESS_CONTROLLER, pods["web"], https("web")),
        (pods["orders"], pods["web"], https("web")),
        (pods["orders"], pods["gateway"], https("gateway")),
        (pods["billing"], pods["gateway"], https("gateway")),
        (pods["inventory"], pods["nats"], 4222),
        (INGRESS_CONTROLLER, pods["auth"], https("auth")),
        (INGRESS_CONTROLLER, pods["postgres"], 5432),
        (PROMETHEUS, pods["postgres"], 5432),
        (STRANGER, pods["gateway"], https("gateway")),
        (STRANGER, pods["auth"], https("auth")),
        # The gateway's operational endpoints are for Prometheus (and the kubelet) alone;
        # its client port is for the ingress alone.
        (INGRESS_CONTROLLER, pods["gateway"], pods["gateway"].ports["admin"]),
        (STRANGER, pods["gateway"], pods["gateway"].ports["admin"]),
        (PROMETHEUS, pods["gateway"], https("gateway")),
    ]
    return allowed_flows, denied_flows


def test_network_policies_open_exactly_the_flows_of_the_system(objects: tuple[Obj, ...]) -> None:
    pods = _pods(objects)
    allowed_flows, denied_flows = _flows(pods)
    blocked = [
        f"{s.name} -> {d.name}:{p}" for s, d, p in allowed_flows if not allowed(objects, s, d, p)
    ]
    assert not blocked, f"flows the system needs are blocked: {blocked}"
    opened = [f"{s.name} -> {d.name}:{p}" for s, d, p in denied_flows if allowed(objects, s, d, p)]
    assert not opened, f"flows that must stay closed are open: {opened}"


def test_every_pod_may_ask_the_cluster_dns_and_nothing_else_outside(
    objects: tuple[Obj, ...],
) -> None:
    outside = Pod("internet", {}, "elsewhere", {"https": 443})
    for pod in _pods(objects).values():
        assert allowed(objects, pod, KUBE_DNS, 53, "UDP"), pod.name
        assert allowed(objects, pod, KUBE_DNS, 53, "TCP"), pod.name
        assert not allowed(objects, pod, outside, 443), pod.name


# ------------------------------------------------------------------ settings and secrets


def _env(
    objects: tuple[Obj, ...], container: Obj, secrets: dict[str, dict[str, str]] | None = None
) -> list[tuple[str, str]]:
    """The environment a container gets: envFrom ConfigMaps, then env (fieldRefs as a
    pod name; Secret keys from `secrets`, or a stand-in when not given)."""
    config_maps = {name_of(c): c.get("data", {}) for c in of_kind(objects, "ConfigMap")}
    env: list[tuple[str, str]] = []
    for source in container.get("envFrom", []):
        env += list(config_maps[source["configMapRef"]["name"]].items())
    for variable in container.get("env", []):
        if "value" in variable:
            env.append((variable["name"], variable["value"]))
            continue
        ref = variable["valueFrom"]
        if "fieldRef" in ref:
            env.append((variable["name"], "pod-7d9f8-abcde"))
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env.append((variable["name"], config_maps[key["name"]][key["key"]]))
        else:
            key = ref["secretKeyRef"]
            value = (secrets or {}).get(key["name"], {}).get(key["key"], "stand-in-secret-4f1c9e")
            env.append((variable["name"], value))
    return env


def _secret_data(objects: tuple[Obj, ...]) -> dict[str, dict[str, str]]:
    return {
        name_of(s): {k: base64.b64decode(v).decode() for k, v in s.get("data", {}).items()}
        for s in of_kind(objects, "Secret")
    }


def env_names(model: type[BaseSettings]) -> set[str]:
    """The environment variables a settings model reads (`FLOTILLA_TLS_*` for TLS)."""
    names = {f"FLOTILLA_{name.upper()}" for name in model.model_fields}
    return names | {f"FLOTILLA_TLS_{name.upper()}" for name in TlsSettings.model_fields}


def test_every_setting_is_a_field_of_the_containers_settings_model(
    objects: tuple[Obj, ...],
) -> None:
    checked = 0
    for workload in workloads(objects):
        for container in containers(workload):
            service = flotilla_service(container)
            if service is None:
                continue
            known = env_names(SETTINGS[service])
            for name, _ in _env(objects, container):
                assert name.startswith("FLOTILLA_"), f"{name_of(workload)}: {name}"
                assert name in known, f"{name_of(workload)}: {name} is no {service} setting"
                checked += 1
    assert checked > 50


def test_a_misspelt_setting_would_be_caught() -> None:
    assert "FLOTILLA_DNS_SERVICES" in env_names(GatewaySettings)
    assert "FLOTILLA_DNS_SERVICE" not in env_names(GatewaySettings)
    assert "FLOTILLA_TLS_CA_FILE" in env_names(AuthSettings)
    assert "FLOTILLA_GRPC_PORT" not in env_names(AuthSettings)


def test_every_container_starts_with_its_rendered_settings(
    objects: tuple[Obj, ...], overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings models validate more than names: JSON shapes, shard ranges, TLS needed
    # for remote calls, the shop's account, placeholder secrets outside dev.
    secrets = _secret_data(objects) if overlay == "dev" else None
    profiles = set()
    for workload in workloads(objects):
        for container in containers(workload):
            service = flotilla_service(container)
            if service is None:
                continue
            with monkeypatch.context() as patch:
                for name in [n for n in os.environ if n.startswith("FLOTILLA_")]:
                    patch.delenv(name)
                for name, value in _env(objects, container, secrets):
                    patch.setenv(name, value)
                settings = SETTINGS[service]()
            profiles.add(settings.profile)
    assert profiles == ({"dev"} if overlay == "dev" else {"prod"})


def test_the_shop_account_is_the_launchers() -> None:
    objects = render("dev")
    by_name = {name_of(w): containers(w)[0] for w in workloads(objects)}
    env = dict(_env(objects, by_name["orders"]))
    shards = int(dict(_env(objects, by_name["accounts-s0"]))["FLOTILLA_SHARDS"])
    assert env["FLOTILLA_SHOP_ACCOUNT"] == shop_account_id(shards)
    assert env["FLOTILLA_SHOP_OWNER"] == shop_owner_id()


def test_dev_secrets_are_placeholders_only() -> None:
    secrets = _secret_data(render("dev"))
    assert secrets
    for name, data in secrets.items():
        for key, value in data.items():
            assert is_placeholder_secret(value), f"{name}.{key} looks like a real secret"


def test_prod_generates_no_secret_and_the_readme_names_every_one_it_needs() -> None:
    objects = render("prod")
    assert not of_kind(objects, "Secret")
    readme = (K8S / "README.md").read_text()
    needed: set[tuple[str, str]] = set()
    for workload in workloads(objects):
        pod = workload["spec"]["template"]["spec"]
        for volume in pod.get("volumes", []):
            if "secret" in volume:
                needed.add((volume["secret"]["secretName"], "tls.crt"))
        for container in containers(workload):
            for variable in container.get("env", []):
                ref = variable.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    needed.add((ref["name"], ref["key"]))
    assert {name for name, _ in needed} >= {"flotilla-database", "flotilla-auth-keys"}
    for name, key in needed:
        assert f"`{name}`" in readme, f"README: {name}"
        assert f"`{key}`" in readme, f"README: {name} {key}"
