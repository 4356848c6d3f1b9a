"""deploy/compose/compose.yaml, checked without a Docker engine (and without the compose
plugin, which this machine lacks): the compose-spec schema, then cross-checks against the
code: every backend service and relay is there with its replicas, every FLOTILLA_* variable
is a setting of that service and the settings load from it, every URL points at a compose
service on the port it listens on, the certificates cover the names peers use, the
databases are the ones the launcher plans, and Prometheus (deploy/prometheus/prometheus.yml)
scrapes every service where it serves metrics with the certificate compose gives it.
tests/containers runs the file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from cryptography import x509

from flotilla_cli.launcher.planning import (
    BACKEND_SERVICES,
    RELAYED_SERVICES,
    SHARDED_SERVICE,
    database_names,
    shop_account_id,
    shop_owner_id,
)
from flotilla_kit.tls import client_context, server_context
from tests.deploy.dockerfiles import ROOT, SETTINGS_MODELS, dockerfile, settings_env_names

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = COMPOSE_DIR / "compose.yaml"
PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# The images are built from the wheels tools/containers/build_wheels.py writes there.
WHEELS = ROOT / "build" / "wheels"
SHARDS = 2
# Mounted from the folders the metrics work owns (deploy/prometheus, deploy/grafana).
SHARED_MOUNTS = {
    "deploy/prometheus/prometheus.yml",
    "deploy/prometheus/rules",
    "deploy/grafana/provisioning",
    "deploy/grafana/dashboards",
}
# The Docker host's paths only Filebeat reads (the containers' logs, their labels).
HOST_MOUNTS = {"/var/lib/docker/containers", "/var/run/docker.sock"}
# Values for the variables compose.yaml requires from deploy/compose/.env.
TEST_ENV = {
    "POSTGRES_PASSWORD": "pg-secret-for-the-compose-test",
    "FLOTILLA_KEY_ENCRYPTION_KEY": "kek-for-the-compose-test-0123456789abcdef",
    "GRAFANA_ADMIN_PASSWORD": "grafana-secret-for-the-compose-test",
}
_VARIABLE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])((?:[^{}]|\{[^{}]*\})*))?\}")


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: ${VAR}, ${VAR:-default}, ${VAR:?error}, $$."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if operator in (":?", "?"):
            raise KeyError(f"{name}: {argument}")
        return interpolate(argument or "", env)

    return _VARIABLE.sub(one, value)


def _compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def _services() -> dict[str, dict[str, Any]]:
    services: dict[str, dict[str, Any]] = _compose()["services"]
    return services


def _flotilla_service(definition: dict[str, Any]) -> str | None:
    """The Flotilla service whose image a compose service runs (the SERVICE build argument
    of deploy/docker/Dockerfile)."""
    build = definition.get("build")
    if not build:
        return None
    assert build["dockerfile"] == "../../deploy/docker/Dockerfile", build
    service = build["args"]["SERVICE"]
    assert isinstance(service, str), build
    return service


def _environment(definition: dict[str, Any]) -> dict[str, str]:
    env = definition.get("environment", {})
    assert isinstance(env, dict), "environment as a mapping"
    return {k: interpolate(str(v), TEST_ENV) for k, v in env.items()}


def _image_env(service: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in dockerfile(service)[-1].all("ENV"):
        for pair in arguments.split(" "):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def _running() -> dict[str, tuple[str, dict[str, Any]]]:
    """Compose services that run a Flotilla image (not the one-shot pki): name -> (service,
    definition)."""
    out: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, definition in _services().items():
        service = _flotilla_service(definition)
        if service is not None and name != "pki":
            out[name] = (service, definition)
    return out


def test_compose_file_matches_the_compose_spec() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(COMPOSE)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_compose_spec_check_bites(tmp_path: Path) -> None:
    broken = tmp_path / "compose.yaml"
    broken.write_text("services:\n  a:\n    image: x\n    replica_count: 2\n")
    result = subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
         str(broken)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode != 0


def test_every_backend_service_gateway_and_relay_is_there() -> None:
    running = _running()
    names = set(running)
    for service in BACKEND_SERVICES:
        if service == SHARDED_SERVICE:
            expected = {f"{service}-s{shard}" for shard in range(SHARDS)}
        else:
            expected = {service}
        assert expected <= names, service
        for name in expected:
            assert running[name][0] == service
            definition = running[name][1]
            assert definition["deploy"]["replicas"] >= 2, f"{name}: two replicas at least"
            # The spec's default, said out loud: podman-compose reads replicas only then.
            assert definition["deploy"]["mode"] == "replicated", name
            assert definition.get("command", ["serve"]) == ["serve"]
    assert running["gateway"][0] == "gateway"
    assert running["gateway"][1]["deploy"]["replicas"] in (1, 2)
    for service in RELAYED_SERVICES:
        service_name, relay = running[f"{service}-relay"]
        assert service_name == service
        assert relay["command"] == ["relay"]
        assert relay["healthcheck"] == {"disable": True}, "a relay serves no /livez"
    expected_names = {
        *(f"{s}-s{n}" if s == SHARDED_SERVICE else s for s in BACKEND_SERVICES
          for n in (range(SHARDS) if s == SHARDED_SERVICE else [0])),
        "gateway", *(f"{s}-relay" for s in RELAYED_SERVICES),
    }  # fmt: skip
    assert names == expected_names
    for infrastructure in ("postgres", "nats", "valkey", "prometheus", "grafana"):
        assert infrastructure in _services()
        # Pinned by digest as well as tag: a tag can be pushed again.
        image = _services()[infrastructure]["image"]
        assert re.fullmatch(r"[\w./-]+:[\w.-]+@sha256:[0-9a-f]{64}", image), image
    assert "--jetstream" in _services()["nats"]["command"]


def test_the_elk_profile() -> None:
    services = _services()
    elk = {name for name, d in services.items() if "elk" in d.get("profiles", [])}
    assert elk == {"elasticsearch", "logstash", "kibana", "filebeat"}
    assert not [n for n, d in services.items() if n not in elk and d.get("profiles")]


@pytest.mark.parametrize("name", sorted(_running()))
def test_environment_is_settings_of_that_service(name: str) -> None:
    service, definition = _running()[name]
    env = _environment(definition)
    unknown = {k for k in env if k.startswith("FLOTILLA_")} - settings_env_names(service)
    assert not unknown, f"{name} sets variables {service}'s settings do not read"
    assert not [k for k in env if not k.startswith("FLOTILLA_")]


@pytest.mark.parametrize("name", sorted(_running()))
def test_the_settings_load_from_that_environment(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The model itself validates every value (JSON lists and maps, shard ranges, the shop
    # account, TLS needed for peers, no placeholder secret in profile prod).
    service, definition = _running()[name]
    env = {**_image_env(service), **_environment(definition)}
    for key, value in env.items():
        if key.startswith("FLOTILLA_"):
            monkeypatch.setenv(key, value)
    module_name, class_name = SETTINGS_MODELS[service]
    model = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    settings = model()
    assert settings.profile == "prod"
    assert settings.service_name == service
    assert settings.host == "0.0.0.0"  # noqa: S104 - the container's interface
    assert settings.tls.enabled
    if service != "gateway":
        assert settings.sqlalchemy_url.startswith("postgresql+asyncpg://flotilla:")


def _listening(name: str) -> tuple[int, int | None]:
    """The HTTP and gRPC ports a compose service's instances listen on."""
    service, definition = _running()[name]
    env = {**_image_env(service), **_environment(definition)}
    grpc = int(env["FLOTILLA_GRPC_PORT"]) if env.get("FLOTILLA_GRPC_PORT") else None
    exposed = {int(p) for e in dockerfile(service)[-1].all("EXPOSE") for p in e.split()}
    assert int(env["FLOTILLA_PORT"]) in exposed
    assert grpc is None or grpc in exposed
    return int(env["FLOTILLA_PORT"]), grpc


# How each setting that names peers holds them: one, a list, or a map of lists (per
# shard), of base URLs, gRPC targets, or the gateway's DNS targets.
_PEER_SETTINGS = {
    "FLOTILLA_GATEWAY_URL": ("one", "url"),
    "FLOTILLA_JWKS_URLS": ("list", "url"),
    "FLOTILLA_REVOCATION_URLS": ("list", "url"),
    "FLOTILLA_AUTH_TOKEN_URLS": ("list", "url"),
    "FLOTILLA_PAYMENTS_URLS": ("list", "url"),
    "FLOTILLA_ACCOUNTS_SHARDS": ("map", "url"),
    "FLOTILLA_LEDGER_SHARDS": ("map", "target"),
    "FLOTILLA_INVENTORY_TARGETS": ("list", "target"),
    "FLOTILLA_DNS_SERVICES": ("map", "dns"),
}


def _peer(item: Any, kind: str, variable: str) -> tuple[str, int, str, str]:
    if kind == "url":
        parts = urlsplit(item)
        assert parts.scheme == "https", f"{variable}: {item} (mutual TLS between services)"
        assert parts.hostname is not None
        assert parts.port is not None
        return parts.hostname, parts.port, "http", variable
    if kind == "target":
        host, _, port = item.rpartition(":")
        return host, int(port), "grpc", variable
    return item["host"], item["port"], "http", variable


def _peers(env: dict[str, str]) -> list[tuple[str, int, str, str]]:
    """(host, port, http or grpc, variable) of every peer a compose service's settings name."""
    peers: list[tuple[str, int, str, str]] = []
    for variable, (shape, kind) in _PEER_SETTINGS.items():
        if variable not in env:
            continue
        value: Any = [env[variable]] if shape == "one" else json.loads(env[variable])
        groups = value.values() if shape == "map" else [value]
        peers += [_peer(item, kind, variable) for group in groups for item in group]
    return peers


def test_every_peer_is_a_compose_service_on_the_port_it_listens_on() -> None:
    running = _running()
    seen = 0
    for name, (_, definition) in running.items():
        for host, port, kind, variable in _peers(_environment(definition)):
            assert host in running, f"{name}: {variable} names {host}, not a service here"
            http, grpc = _listening(host)
            assert port == (http if kind == "http" else grpc), f"{name}: {variable} {host}:{port}"
            seen += 1
    assert seen > 20
    # Each ledger shard is reached through its own host, with the shard it serves.
    dns = json.loads(_environment(running["gateway"][1])["FLOTILLA_DNS_SERVICES"])
    assert set(dns) == set(BACKEND_SERVICES)
    for target in dns[SHARDED_SERVICE]:
        shard_env = _environment(running[target["host"]][1])
        assert shard_env["FLOTILLA_SHARD"] == str(target["shard"])
        assert shard_env["FLOTILLA_SHARDS"] == str(SHARDS)


def test_the_gateway_publishes_the_port_it_listens_on() -> None:
    http, _ = _listening("gateway")
    ports = [interpolate(p, TEST_ENV) for p in _running()["gateway"][1]["ports"]]
    assert ports == [f"{http}:{http}"]
    # The host's side can be moved (a second stack, a port already taken), not the other.
    moved = [
        interpolate(p, {"FLOTILLA_GATEWAY_PORT": "18443"})
        for p in _running()["gateway"][1]["ports"]
    ]
    assert moved == [f"18443:{http}"]
    assert _running()["gateway"][1]["deploy"]["replicas"] == 1, "one replica holds the port"


def test_databases_are_the_ones_the_launcher_plans() -> None:
    init = (COMPOSE_DIR / "postgres" / "init-databases.sql").read_text()
    created = re.findall(r"^CREATE DATABASE (\w+);", init, flags=re.MULTILINE)
    assert sorted(created) == sorted(database_names(SHARDS))
    used: dict[str, str] = {}
    for name, (service, definition) in _running().items():
        url = _environment(definition).get("FLOTILLA_DATABASE_URL")
        if service == "gateway":
            assert url is None
            continue
        assert url is not None
        database = urlsplit(url).path.lstrip("/")
        shard = _environment(definition).get("FLOTILLA_SHARD")
        assert database == (f"{service}_s{shard}" if shard is not None else service), name
        assert urlsplit(url).hostname == "postgres"
        used[name] = database
    assert set(used.values()) == set(created)


def test_the_shop_is_the_account_the_launcher_seeds() -> None:
    env = _environment(_running()["orders"][1])
    assert env["FLOTILLA_SHOP_ACCOUNT"] == shop_account_id(SHARDS)
    assert env["FLOTILLA_SHOP_OWNER"] == shop_owner_id()


def test_depends_on_builds_images_and_mounts_exist() -> None:
    services = _services()
    for name, definition in services.items():
        for dependency in definition.get("depends_on", {}):
            assert dependency in services, f"{name} depends on unknown {dependency}"
        build = definition.get("build")
        if build:
            # Hermetic: the context holds the wheels alone; the Dockerfile is read from
            # deploy/docker/.
            assert (COMPOSE_DIR / build["context"]).resolve() == WHEELS
            assert (WHEELS / build["dockerfile"]).resolve().is_file()
            service = _flotilla_service(definition)
            assert definition["image"] == f"flotilla-{service}:${{FLOTILLA_TAG:-dev}}"
        for volume in definition.get("volumes", []):
            source = volume.split(":")[0]
            if source in HOST_MOUNTS:
                assert name == "filebeat", f"{name} mounts the host's {source}"
                continue
            if not source.startswith("."):
                assert source in _compose()["volumes"], f"{name}: volume {source}"
                continue
            relative = (COMPOSE_DIR / source).resolve().relative_to(ROOT).as_posix()
            if relative in SHARED_MOUNTS and not (ROOT / relative).exists():
                continue  # written by the metrics work on its own branch
            assert (ROOT / relative).exists(), f"{name} mounts {relative}"


def test_services_run_locked_down() -> None:
    for name, (service, definition) in _running().items():
        assert definition["read_only"] is True, name
        assert definition["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in definition["security_opt"]
        assert definition["labels"] == {"flotilla.service": service}  # Filebeat keeps these
        drain = float(_environment(definition).get("FLOTILLA_DRAIN_S", "3"))
        assert float(definition["stop_grace_period"].removesuffix("s")) > drain + 10


def test_certificates_cover_every_name_peers_use(tmp_path: Path) -> None:
    pki = _services()["pki"]
    args = [a for a in pki["command"] if not a.startswith("--")]
    result = subprocess.run(
        [sys.executable, str(COMPOSE_DIR / "pki" / "make_certs.py"), "--out", str(tmp_path),
         *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    ca = x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes())
    hosts_of: dict[str, set[str]] = {}
    for _, definition in _running().values():
        for host, _, _, _ in _peers(_environment(definition)):
            hosts_of.setdefault(_running()[host][0], set()).add(host)
    for name, (service, definition) in _running().items():
        env = _environment(definition)
        cert_file = Path(env["FLOTILLA_TLS_CERT_FILE"])
        assert cert_file.parent == Path(env["FLOTILLA_TLS_CA_FILE"]).parent
        assert cert_file.name == f"{service}.pem", name
        local = tmp_path / cert_file.name
        cert = x509.load_pem_x509_certificate(local.read_bytes())
        cert.verify_directly_issued_by(ca)
        # The common name is the identity the service signs in to auth with.
        assert cert.subject.rfc4514_string() == f"CN={service}"
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert hosts_of.get(service, set()) <= set(san.get_values_for_type(x509.DNSName)), name
        key = tmp_path / Path(env["FLOTILLA_TLS_KEY_FILE"]).name
        server_context(local, key, tmp_path / "ca.pem", require_client_cert=True)
        client_context(tmp_path / "ca.pem", local, key)
    again = subprocess.run(
        [sys.executable, str(COMPOSE_DIR / "pki" / "make_certs.py"), "--out", str(tmp_path),
         *args],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert again.returncode == 0
    assert x509.load_pem_x509_certificate((tmp_path / "ca.pem").read_bytes()) == ca, "kept"


def test_the_certificate_maker_refuses_bad_input(tmp_path: Path) -> None:
    script = str(COMPOSE_DIR / "pki" / "make_certs.py")
    for bad in (
        ["auth=bad host"], ["--owner", "me", "auth"], ["--owner-of", "nobody=1:1", "auth"],
        ["--owner-of", "auth", "auth"],
    ):  # fmt: skip
        result = subprocess.run(
            [sys.executable, script, "--out", str(tmp_path), *bad],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert result.returncode == 2
        assert "error:" in result.stderr
    helped = subprocess.run(
        [sys.executable, script, "--help"], capture_output=True, text=True, check=False
    )
    assert helped.returncode == 0
    assert "--owner" in helped.stdout


def test_required_secrets_come_from_the_environment() -> None:
    text = COMPOSE.read_text()
    for variable in TEST_ENV:
        assert f"${{{variable}:?" in text, f"{variable} must be required, with no default"
        with pytest.raises(KeyError):
            interpolate(f"${{{variable}:?missing}}", {})
    example = (COMPOSE_DIR / "env.example").read_text()
    for variable in TEST_ENV:
        assert re.search(rf"^{variable}=$", example, flags=re.MULTILINE), variable


def _pki_hosts() -> dict[str, set[str]]:
    """The names each certificate the pki issues is valid for (besides localhost)."""
    args = [a for a in _services()["pki"]["command"] if not a.startswith("--")]
    hosts: dict[str, set[str]] = {}
    for arg in args:
        name, _, extra = arg.partition("=")
        hosts[name] = {name, *(h for h in extra.split(",") if h)}
    return hosts


def _scrape_jobs() -> dict[str, dict[str, Any]]:
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    return {job["job_name"]: job for job in config["scrape_configs"]}


def _metrics_port(name: str) -> int:
    """Where a compose service's instances answer /metrics: the gateway on its admin
    listener (when it has one), every other service on its HTTP port."""
    service, definition = _running()[name]
    env = {**_image_env(service), **_environment(definition)}
    return int(env.get("FLOTILLA_ADMIN_PORT") or env["FLOTILLA_PORT"])


def test_prometheus_scrapes_every_service_where_it_serves_metrics() -> None:
    running = _running()
    scraped: set[str] = set()
    for job in _scrape_jobs().values():
        for discovery in job.get("dns_sd_configs", []):
            for host in discovery["names"]:
                assert host in running, f"job {job['job_name']}: {host} is no compose service"
                service = running[host][0]
                assert job["job_name"] == service, host
                assert discovery["port"] == _metrics_port(host), f"{host}: metrics port"
                # Targets are addresses: the certificate is checked against this name.
                assert job["tls_config"]["server_name"] in _pki_hosts()[service], host
                scraped.add(host)
    serving = {name for name, (_, d) in running.items() if d.get("command") != ["relay"]}
    assert scraped == serving, "every serving compose service, and only those"
    admin = _environment(running["gateway"][1])["FLOTILLA_ADMIN_PORT"]
    assert f"{admin}:" not in str(running["gateway"][1]["ports"]), "the admin port is private"


def test_prometheus_reads_the_certificate_compose_gives_it(tmp_path: Path) -> None:
    prometheus = _services()["prometheus"]
    (mount,) = [v for v in prometheus["volumes"] if v.split(":")[0] == "tls"]
    mounted_at = Path(mount.split(":")[1])
    pki = _services()["pki"]["command"]
    owners = dict(
        a.removeprefix("--owner-of=").split("=") for a in pki if a.startswith("--owner-of=")
    )
    names = set()
    for job in _scrape_jobs().values():
        tls = job.get("tls_config")
        if tls is None:
            continue
        paths = {key: Path(tls[key]) for key in ("ca_file", "cert_file", "key_file")}
        assert {p.parent for p in paths.values()} == {mounted_at}, job["job_name"]
        name = paths["cert_file"].stem
        assert paths["key_file"].name == f"{name}-key.pem"
        assert paths["ca_file"].name == "ca.pem"
        names.add(name)
    assert names == {"prometheus"}
    assert "prometheus" in _pki_hosts()
    # The uid the Prometheus image runs as (the official one's `nobody`, as the stand-in's):
    # the key is readable by its owner alone.
    standin = (COMPOSE_DIR / "standins" / "prometheus" / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\S+)$", standin, flags=re.MULTILINE)
    assert owners == {"prometheus": user}
    # The pki's certificate is one a service's mTLS listener takes from a client.
    result = subprocess.run(
        [sys.executable, str(COMPOSE_DIR / "pki" / "make_certs.py"), "--out", str(tmp_path),
         "prometheus", "auth"],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    client_context(
        tmp_path / "ca.pem", tmp_path / "prometheus.pem", tmp_path / "prometheus-key.pem"
    )
    cert = x509.load_pem_x509_certificate((tmp_path / "prometheus.pem").read_bytes())
    usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH in usage
