"""services.toml is the one list of services: what cannot read it is checked against it.

The launcher, the Makefile (PACKAGES) and the image tools read it. Everything else that
names services (compose, Kubernetes, the workflows, Prometheus, the root pyproject.toml,
the RBAC policy in flotilla_kit.rbac, the release check, the services' folders and the
events their code publishes and consumes) has a check here that says which file lacks
which service, or names one the manifest does not. Each check is proved able to fail:
against a manifest with one more service (`shipping`, which does not exist) every check
names it missing, and against one without `orders` every check names it extra.
"""

from __future__ import annotations

import re
import subprocess
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml

from flotilla_kit import rbac
from flotilla_kit.manifest import Manifest, Service, load_manifest
from tests.deploy.dockerfiles import ROOT

MANIFEST = load_manifest(ROOT / "services.toml")
Check = Callable[[Manifest], list[str]]
CHECKS: dict[str, Check] = {}


def check(function: Check) -> Check:
    CHECKS[function.__name__.removeprefix("check_")] = function
    return function


def _compare(where: str, found: Iterable[str], wanted: Iterable[str]) -> list[str]:
    """`where` lacks what the manifest names, or names what the manifest does not."""
    found, wanted = set(found), set(wanted)
    return [f"{where}: no {name} (services.toml names it)" for name in sorted(wanted - found)] + [
        f"{where}: {name}, which services.toml does not name" for name in sorted(found - wanted)
    ]


def _yaml(path: str) -> Any:
    return yaml.safe_load((ROOT / path).read_text())


def _documents(path: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / path).read_text()) if d]


def _workloads(manifest: Manifest, shards: Iterable[str]) -> set[str]:
    """The deployed units: one per service, one per shard of the sharded service
    (`shards`: the shard suffixes the file uses, such as `s0`)."""
    suffixes = sorted(set(shards))
    return {
        workload
        for s in manifest.services
        for workload in ([f"{s.name}-{k}" for k in suffixes] if s.sharded else [s.name])
    }


def _shard_suffixes(names: Iterable[str], manifest: Manifest) -> set[str]:
    sharded = [s.name for s in manifest.services if s.sharded]
    return {
        match.group(1)
        for name in names
        for service in sharded
        if (match := re.fullmatch(rf"{service}[-_](s\d+)", name))
    } or {"s0"}


def _databases(manifest: Manifest, suffixes: Iterable[str]) -> set[str]:
    return {
        f"{s.name}_{k}" if s.sharded else s.name
        for s in manifest.services
        if s.database
        for k in (sorted(set(suffixes)) if s.sharded else [""])
    }


# -- the build: Makefile, root pyproject.toml, workflows, images ------------------------------


@check
def check_makefile(manifest: Manifest) -> list[str]:
    dump = subprocess.run(
        ["make", "--no-print-directory", "-pn", "help"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    (line,) = [ln for ln in dump.splitlines() if ln.startswith("PACKAGES := ")]
    packages = line.removeprefix("PACKAGES := ").split()
    problems = _compare("Makefile PACKAGES", packages, manifest.folders)
    if not problems and packages != list(manifest.folders):
        problems.append(f"Makefile PACKAGES: {packages}, not in services.toml's order")
    return problems


def _pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]  # type: ignore[no-any-return]


@check
def check_pyproject_paths(manifest: Manifest) -> list[str]:
    tool = _pyproject()
    mypy = [p for p in tool["mypy"]["mypy_path"].split(":") if p.startswith("services/")]
    tests = [p for p in tool["pytest"]["ini_options"]["testpaths"] if p.startswith("services/")]
    return _compare(
        "pyproject.toml [tool.mypy] mypy_path", mypy, [f"{s.folder}/src" for s in manifest.services]
    ) + _compare(
        "pyproject.toml [tool.pytest.ini_options] testpaths",
        tests,
        [f"{s.folder}/tests" for s in manifest.services],
    )


@check
def check_pyproject_packages(manifest: Manifest) -> list[str]:
    tool = _pyproject()
    services = [s.package for s in manifest.services]

    def of_services(names: Iterable[str]) -> list[str]:
        return [n for n in names if n not in ("flotilla_kit", "flotilla_proto", "flotilla_cli")]

    contracts = {c["id"]: c for c in tool["importlinter"]["contracts"]}
    return (
        _compare("pyproject.toml [tool.ruff.lint.isort] known-first-party",
                 of_services(tool["ruff"]["lint"]["isort"]["known-first-party"]), services)
        + _compare("pyproject.toml [tool.importlinter] root_packages",
                   of_services(tool["importlinter"]["root_packages"]), services)
        + _compare("pyproject.toml importlinter services-independent",
                   contracts["services-independent"]["modules"], services)
        + _compare("pyproject.toml importlinter layers containers",
                   contracts["layers"]["containers"], [s.package for s in manifest.backends])
    )  # fmt: skip


def _image_matrix(workflow: str) -> tuple[list[str], dict[str, dict[str, str]]]:
    loaded = _yaml(f".github/workflows/{workflow}")
    (job,) = [
        j for j in loaded["jobs"].values() if "service" in j.get("strategy", {}).get("matrix", {})
    ]
    matrix = job["strategy"]["matrix"]
    args = {
        entry["service"]: dict(line.split("=", 1) for line in entry["build-args"].split())
        for entry in matrix["include"]
    }
    return matrix["service"], args


def _workflow(workflow: str, manifest: Manifest) -> list[str]:
    where = f".github/workflows/{workflow}"
    services, args = _image_matrix(workflow)
    problems = _compare(f"{where} matrix.service", services, manifest.names)
    problems += _compare(f"{where} matrix.include", args, manifest.names)
    for service in manifest.services:
        if service.name in args and args[service.name] != service.build_args:
            problems.append(
                f"{where}: {service.name}'s build-args {args[service.name]}, services.toml "
                f"says {service.build_args}"
            )
    return problems


@check
def check_ci_workflow(manifest: Manifest) -> list[str]:
    return _workflow("ci.yml", manifest)


@check
def check_delivery_workflow(manifest: Manifest) -> list[str]:
    problems = _workflow("delivery.yml", manifest)
    text = (ROOT / ".github/workflows/delivery.yml").read_text()
    loops = re.findall(r"for service in ([a-z0-9 ]+); do", text)
    assert loops, "delivery.yml: the loop that sets each image's digest"
    for loop in loops:
        problems += _compare(".github/workflows/delivery.yml `for service in`", loop.split(),
                             manifest.names)  # fmt: skip
    return problems


# -- compose ---------------------------------------------------------------------------------


@check
def check_compose(manifest: Manifest) -> list[str]:
    where = "deploy/compose/compose.yaml"
    services: dict[str, Any] = _yaml(where)["services"]
    built = {n: d["build"]["args"] for n, d in services.items() if d.get("build") and n != "pki"}
    images = {str(args["SERVICE"]) for args in built.values()}
    problems = _compare(f"{where} (images built)", images, manifest.names)
    for name, args in built.items():
        service = next((s for s in manifest.services if s.name == args["SERVICE"]), None)
        wanted = service.build_args if service else None
        if wanted is not None and {k: str(v) for k, v in args.items()} != wanted:
            problems.append(f"{where}: {name}'s build args {args}, services.toml says {wanted}")
    relays = [n.removesuffix("-relay") for n in built if n.endswith("-relay")]
    problems += _compare(f"{where} relays", relays,
                         [s.name for s in manifest.services if s.relay])  # fmt: skip
    running = [n for n in built if not n.endswith("-relay")]
    shards = _shard_suffixes(running, manifest)
    problems += _compare(f"{where} (running services)", running, _workloads(manifest, shards))
    pki = [arg.split("=")[0] for arg in services["pki"]["command"] if not arg.startswith("--")]
    problems += _compare(f"{where} pki certificates", [p for p in pki if p != "prometheus"],
                         manifest.names)  # fmt: skip
    dns = yaml.safe_load(services[manifest.gateway.name]["environment"]["FLOTILLA_DNS_SERVICES"])
    problems += _compare(f"{where} FLOTILLA_DNS_SERVICES", dns,
                         [s.name for s in manifest.backends])  # fmt: skip
    sql = (ROOT / "deploy/compose/postgres/init-databases.sql").read_text()
    problems += _compare("deploy/compose/postgres/init-databases.sql",
                         re.findall(r"CREATE DATABASE (\w+);", sql),
                         _databases(manifest, shards))  # fmt: skip
    return problems


# -- Kubernetes ------------------------------------------------------------------------------

K8S = "deploy/k8s"


def _names(documents: Iterable[dict[str, Any]], kind: str | None = None) -> list[str]:
    return [d["metadata"]["name"] for d in documents if kind is None or d["kind"] == kind]


def _k8s_deployments() -> list[str]:
    return [
        name
        for path in sorted((ROOT / K8S / "base/services").glob("*.yaml"))
        for name in _names(_documents(str(path.relative_to(ROOT))), "Deployment")
    ]


@check
def check_k8s_base(manifest: Manifest) -> list[str]:
    kustomization = _yaml(f"{K8S}/base/kustomization.yaml")
    deployments = _k8s_deployments()
    services = [d for d in deployments if not d.endswith("-relay")]
    shards = _shard_suffixes(services, manifest)
    workloads = _workloads(manifest, shards)
    relays = [s.name for s in manifest.services if s.relay]
    files = [r.removeprefix("services/").removesuffix(".yaml")
             for r in kustomization["resources"] if r.startswith("services/")]  # fmt: skip
    problems = _compare(f"{K8S}/base/kustomization.yaml resources services/",
                        files, workloads | ({"relays"} if relays else set()))  # fmt: skip
    problems += _compare(f"{K8S}/base/services (Deployments)", services, workloads)
    problems += _compare(f"{K8S}/base/services/relays.yaml",
                         [d.removesuffix("-relay") for d in deployments if d.endswith("-relay")],
                         relays)  # fmt: skip
    generated = [g["name"].removeprefix("flotilla-") for g in kustomization["configMapGenerator"]]
    problems += _compare(f"{K8S}/base/kustomization.yaml configMapGenerator",
                         [g for g in generated if g not in ("common", "tokens", "events", "relay")],
                         manifest.names)  # fmt: skip
    problems += _compare(f"{K8S}/base/autoscaling.yaml",
                         _names(_documents(f"{K8S}/base/autoscaling.yaml")), workloads)  # fmt: skip
    budgets = [d for d in _documents(f"{K8S}/base/disruption-budgets.yaml")
               if d["metadata"]["labels"]["app.kubernetes.io/component"] != "datastore"]  # fmt: skip
    problems += _compare(f"{K8S}/base/disruption-budgets.yaml", _names(budgets),
                         workloads | {f"{r}-relay" for r in relays})  # fmt: skip
    datastores = {Path(r).stem for r in kustomization["resources"] if r.startswith("datastores/")}
    shared = {"default-deny", "allow-dns", "allow-metrics-scrape", "relays"}
    policies = [n for n in _names(_documents(f"{K8S}/base/network-policies.yaml"))
                if n not in shared | datastores]  # fmt: skip
    problems += _compare(f"{K8S}/base/network-policies.yaml", policies, manifest.names)
    (init,) = [d for d in _documents(f"{K8S}/base/datastores/postgres.yaml")
               if d["metadata"]["name"] == "postgres-init"]  # fmt: skip
    sql = init["data"]["10-databases.sql"]
    problems += _compare(f"{K8S}/base/datastores/postgres.yaml CREATE DATABASE",
                         re.findall(r"CREATE DATABASE (\w+);", sql),
                         _databases(manifest, shards))  # fmt: skip
    return problems


@check
def check_k8s_certificates(manifest: Manifest) -> list[str]:
    path = f"{K8S}/components/cert-manager/certificates.yaml"
    names = _names(_documents(path), "Certificate")
    return _compare(path, [n.removeprefix("flotilla-tls-") for n in names
                           if n.startswith("flotilla-tls-")], manifest.names)  # fmt: skip


@check
def check_k8s_overlays(manifest: Manifest) -> list[str]:
    problems: list[str] = []
    for overlay in ("dev", "prod"):
        path = f"{K8S}/overlays/{overlay}/kustomization.yaml"
        images = [i["name"].removeprefix("flotilla/") for i in _yaml(path)["images"]]
        problems += _compare(f"{path} images", images, manifest.names)
        listed = re.findall(r"#\s+- flotilla-tls-([a-z0-9]+)\n", (ROOT / path).read_text())
        problems += _compare(f"{path} (the TLS Secrets it lists)", listed, manifest.names)
    dev = _yaml(f"{K8S}/overlays/dev/kustomization.yaml")
    (database,) = [s for s in dev["secretGenerator"] if s["name"] == "flotilla-database"]
    keys = [literal.split("=")[0] for literal in database["literals"]]
    shards = _shard_suffixes(keys, manifest)
    wanted = {w for w in _workloads(manifest, shards)
              if w.split("-")[0] in {s.name for s in manifest.services if s.database}}  # fmt: skip
    problems += _compare(f"{K8S}/overlays/dev/kustomization.yaml flotilla-database", keys, wanted)
    return problems


# -- Prometheus ------------------------------------------------------------------------------


@check
def check_prometheus(manifest: Manifest) -> list[str]:
    path = "deploy/prometheus/prometheus.yml"
    jobs = {
        j["job_name"]: j for j in _yaml(path)["scrape_configs"] if j["job_name"] != "prometheus"
    }
    problems = _compare(f"{path} scrape jobs", jobs, manifest.names)
    for service in manifest.services:
        if service.name not in jobs:
            continue
        (sd,) = jobs[service.name]["dns_sd_configs"]
        if sd["port"] != service.metrics_port:
            problems.append(f"{path}: job {service.name} scrapes port {sd['port']}, "
                            f"services.toml says {service.metrics_port}")  # fmt: skip
        wanted = (
            {f"{service.name}-{k}" for k in _shard_suffixes(sd["names"], manifest)}
            if service.sharded
            else {service.name}
        )
        problems += _compare(f"{path} job {service.name} names", sd["names"], wanted)
    return problems


# -- code: RBAC, the services' folders, their events ------------------------------------------


@check
def check_rbac(manifest: Manifest) -> list[str]:
    where = "libs/kit/src/flotilla_kit/rbac.py"
    roles = {s.name: s.role for s in manifest.services if s.role}
    problems = _compare(f"{where} SERVICE_ROLES", rbac.SERVICE_ROLES, roles)
    problems += _compare(
        f"{where} ROLE_PERMISSIONS (service roles)",
        [r.removeprefix("service:") for r in rbac.ROLE_PERMISSIONS if r.startswith("service:")],
        roles,
    )
    for service in manifest.services:
        if service.role and service.role in rbac.ROLE_PERMISSIONS:
            granted = rbac.ROLE_PERMISSIONS[service.role]
            if granted != set(service.permissions):
                problems.append(f"{where}: {service.role} grants {sorted(granted)}, "
                                f"services.toml says {sorted(service.permissions)}")  # fmt: skip
        if service.role and rbac.SERVICE_ROLES.get(service.name, service.role) != service.role:
            problems.append(f"{where}: {service.name}'s role is "
                            f"{rbac.SERVICE_ROLES[service.name]}, not {service.role}")  # fmt: skip
    return problems


@check
def check_service_folders(manifest: Manifest) -> list[str]:
    folders = [str(p.parent.relative_to(ROOT)) for p in ROOT.glob("services/*/pyproject.toml")]
    problems = _compare("services/ (folders with a pyproject.toml)", folders,
                        [s.folder for s in manifest.services])  # fmt: skip
    for service in manifest.services:
        package = ROOT / service.folder / "src" / service.package / "__init__.py"
        if (ROOT / service.folder).is_dir() and not package.is_file():
            problems.append(f"{service.folder}: no package {service.package} under src/")
    return problems


def _source(service: Service) -> str:
    src = ROOT / service.folder / "src" / service.package
    return "\n".join(p.read_text() for p in sorted(src.rglob("*.py")))


@check
def check_events(manifest: Manifest) -> list[str]:
    problems: list[str] = []
    published = {s.name: set(s.publishes) for s in manifest.services}
    for service in manifest.services:
        source = _source(service) if (ROOT / service.folder).is_dir() else ""
        for event in service.publishes:
            if f'"{event}"' not in source:
                problems.append(f"{service.folder}: publishes no {event} (services.toml says "
                                "it does; its name is not in the code)")  # fmt: skip
        for subject in service.consumes:
            if f'"{subject}"' not in source:
                problems.append(f"{service.folder}: subscribes to no {subject} (services.toml "
                                "says it does)")  # fmt: skip
            _, publisher, *rest = subject.split(".")
            event = rest[0] if rest else ">"
            if publisher not in published or (
                event not in (">", "*") and event not in published[publisher]
            ):
                problems.append(f"services.toml: {service.name} consumes {subject}, which "
                                f"no service publishes (no {publisher} {event})")  # fmt: skip
    return problems


# -- the tests -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_every_list_of_services_is_the_manifests(name: str) -> None:
    assert CHECKS[name](MANIFEST) == []


# A service no file names (and none will: it is not planned), with every field a check
# reads: a database, a relay, events, a role and its permissions.
SHIPPING = Service(
    name="shipping", folder="services/shipping", package="flotilla_shipping",
    framework="django", http_port=8000, database=True, relay=True,
    publishes=("parcel_shipped",), consumes=("flotilla.orders.order_confirmed",),
    role="service:shipping", permissions=("orders:read:any",),
)  # fmt: skip


def _manifest(services: Iterable[Service]) -> Manifest:
    return Manifest(workspace=MANIFEST.workspace, services=tuple(services))


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_each_check_names_a_service_it_lacks(name: str) -> None:
    more = _manifest([*MANIFEST.backends, SHIPPING, MANIFEST.gateway])
    problems = CHECKS[name](more)
    assert problems, f"{name} did not see that shipping is missing"
    assert all("shipping" in p for p in problems), problems


# The events check reads only what the manifest's own services publish and consume: a
# service missing from the manifest is the other checks' to see.
@pytest.mark.parametrize("name", sorted(set(CHECKS) - {"events"}))
def test_each_check_names_a_service_the_manifest_lacks(name: str) -> None:
    # orders: it has a relay, a database, a role and permissions, so every check sees it.
    fewer = _manifest(s for s in MANIFEST.services if s.name != "orders")
    problems = CHECKS[name](fewer)
    assert problems, f"{name} did not see that orders is not in services.toml"
    assert any("orders" in p for p in problems), problems


def test_the_makefile_works_without_the_venv_and_gives_the_manifests_folders() -> None:
    # What `make` runs before .venv exists: the system's python3 and the standard library.
    printed = subprocess.run(
        ["python3", "-I", str(ROOT / "tools" / "service_folders.py")],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    assert printed == list(MANIFEST.folders)
    assert "$(shell $(PYTHON) tools/service_folders.py)" in (ROOT / "Makefile").read_text()


def test_a_check_reports_a_file_that_lost_a_service(monkeypatch: pytest.MonkeyPatch) -> None:
    # The other direction: the manifest right, a file wrong (prometheus.yml without orders).
    real = _yaml
    original = real("deploy/prometheus/prometheus.yml")

    def without_orders(path: str) -> Any:
        if path != "deploy/prometheus/prometheus.yml":
            return real(path)
        jobs = [j for j in original["scrape_configs"] if j["job_name"] != "orders"]
        return {**original, "scrape_configs": jobs}

    monkeypatch.setattr(f"{__name__}._yaml", without_orders)
    assert check_prometheus(MANIFEST) == [
        "deploy/prometheus/prometheus.yml scrape jobs: no orders (services.toml names it)"
    ]
