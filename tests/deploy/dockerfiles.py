"""Reading the services' Dockerfile, for the deploy checks.

Every service's image is built from the one deploy/docker/Dockerfile with the service's
build arguments (tools/containers/build_images.py's IMAGES); `dockerfile(service)` is that
file as the engine reads it for the service: each declared ARG replaced by its value where
the engine replaces it (not in exec-form JSON, which the engine leaves alone).

Only what our Dockerfiles use is parsed: comments, line continuations, one instruction per
logical line, exec-form (JSON) arguments, ARGs before the first FROM and in stages.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from pydantic_settings import BaseSettings

from flotilla_kit.manifest import load_manifest

__all__ = [
    "DOCKERFILE",
    "IMAGES",
    "ROOT",
    "SERVICES",
    "SETTINGS_MODELS",
    "Instruction",
    "Stage",
    "container_tool",
    "dockerfile",
    "exec_form",
    "global_args",
    "parse_dockerfile",
    "settings_env_names",
]

ROOT = Path(__file__).resolve().parents[2]
# Every folder under services/ with a pyproject.toml is a service with an image.
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


def container_tool(name: str) -> ModuleType:
    """tools/containers/<name>.py (a script, not a package), loaded as a module."""
    spec = importlib.util.spec_from_file_location(
        name, ROOT / "tools" / "containers" / f"{name}.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# Each service's build arguments, as the images are built.
IMAGES: dict[str, dict[str, str]] = container_tool("build_images").IMAGES
# Where the engine replaces an ARG's value (exec-form JSON excepted, see _substitute).
_EXPANDED = {"ADD", "COPY", "ENV", "EXPOSE", "FROM", "LABEL", "STOPSIGNAL", "USER", "WORKDIR"}


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[str]:
        return [i.arguments for i in self.instructions if i.keyword == keyword]

    def last(self, keyword: str) -> str | None:
        found = self.all(keyword)
        return found[-1] if found else None


def _logical_lines(text: str) -> list[str]:
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("#") and not current:
            continue
        if line.startswith("#"):  # a comment inside a continued instruction
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            logical.append(current.strip())
        current = ""
    return logical


def _split(line: str) -> tuple[str, str]:
    keyword, _, arguments = line.partition(" ")
    return keyword.upper(), re.sub(r"\s+", " ", arguments.strip())


def global_args(text: str) -> dict[str, str]:
    """The ARGs declared before the first FROM (what FROM lines may use), with their
    defaults ('' when none)."""
    found: dict[str, str] = {}
    for line in _logical_lines(text):
        keyword, arguments = _split(line)
        if keyword == "FROM":
            break
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            found[name] = default
    return found


def _substitute(keyword: str, arguments: str, values: dict[str, str]) -> str:
    """`arguments` with each `${NAME}` / `$NAME` of a declared ARG replaced by its value, as
    the engine does for `keyword`; RUN gets them from its shell, which comes to the same."""
    if keyword not in _EXPANDED and keyword != "RUN":
        return arguments
    if exec_form(arguments) is not None:
        return arguments
    pattern = r"\$\{(\w+)\}|\$(\w+)"
    return re.sub(
        pattern,
        lambda m: values.get(m.group(1) or m.group(2), m.group(0)),
        arguments,
    ).strip()


def parse_dockerfile(text: str, build_args: dict[str, str] | None = None) -> list[Stage]:
    """The stages of `text`; with `build_args`, each declared ARG replaced by its value (the
    build argument, else the ARG's default, else empty), as in a build with them: the ARGs
    before the first FROM in FROM lines, a stage's own ARGs from there to its end."""
    given = build_args if build_args is not None else {}
    before_from: dict[str, str] = {}
    scope: dict[str, str] = {}
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, arguments = _split(line)
        if keyword == "ARG":
            name, _, default = arguments.partition("=")
            (scope if stages else before_from)[name] = given.get(name, default)
        if build_args is not None and keyword != "ARG":
            arguments = _substitute(keyword, arguments, before_from if keyword == "FROM" else scope)
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            if not name:
                base, _, name = arguments.partition(" as ")
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
            scope = {}  # a stage sees only the ARGs it declares itself
            continue
        if not stages:
            if keyword == "ARG":
                continue  # global_args() reads these
            raise ValueError(f"{keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def dockerfile(service: str) -> list[Stage]:
    """deploy/docker/Dockerfile as the engine reads it for `service`'s image."""
    return parse_dockerfile(DOCKERFILE.read_text(), IMAGES[service])


def exec_form(arguments: str) -> list[str] | None:
    """The JSON array of an exec-form ENTRYPOINT/CMD, or None for the shell form."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


# The pydantic-settings model of each service of services.toml (each reads
# FLOTILLA_<FIELD>): `<Name>Settings` in its package's settings module.
SETTINGS_MODELS = {
    service.name: (f"{service.package}.settings", f"{service.name.capitalize()}Settings")
    for service in load_manifest(ROOT / "services.toml").services
}


def settings_env_names(service: str) -> set[str]:
    """Every environment variable the service's settings model reads: FLOTILLA_<FIELD>,
    and the nested TLS model's own variables (FLOTILLA_TLS_<FIELD>)."""
    module_name, class_name = SETTINGS_MODELS[service]
    model = getattr(importlib.import_module(module_name), class_name)
    names: set[str] = set()
    prefix = str(model.model_config.get("env_prefix", ""))
    for name, info in model.model_fields.items():
        nested = info.annotation
        if isinstance(nested, type) and issubclass(nested, BaseSettings):
            nested_prefix = str(nested.model_config.get("env_prefix", ""))
            names |= {f"{nested_prefix}{n}".upper() for n in nested.model_fields}
        else:
            names.add(f"{prefix}{name}".upper())
    return names
