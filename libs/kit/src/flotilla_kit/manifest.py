"""The one list of services, `services.toml` at the repository's root, read and checked.

The launcher plans a system from it and the build tools take each image's build arguments
from it; tests/deploy/test_manifest.py checks what cannot read it (compose, Kubernetes,
the workflows, Prometheus, the root pyproject.toml, `flotilla_kit.rbac`) against it.

A manifest that is wrong stops whoever reads it with `ManifestError`, whose message names
the file and the field (`services.toml: services[2] (payments).grpc_port: ...`).
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path, PurePosixPath
from typing import Annotated, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "MANIFEST_FILE",
    "Framework",
    "Manifest",
    "ManifestError",
    "Service",
    "Workspace",
    "find_manifest",
    "load_manifest",
    "parse_manifest",
]

MANIFEST_FILE = "services.toml"
Framework = Literal["fastapi", "flask", "django", "gateway"]
Port = Annotated[int, Field(ge=1, le=65535)]
_NAME = re.compile(r"[a-z][a-z0-9]*")
# An event's name (the last part of its CloudEvents type) and a NATS subject with wildcards.
_EVENT = re.compile(r"[a-z][a-z0-9_]*")
_SUBJECT = re.compile(r"flotilla\.[a-z][a-z0-9]*(\.([a-z0-9_-]+|\*))*(\.>)?")
_PERMISSION = re.compile(r"[a-z][a-z0-9-]*(:[a-z][a-z0-9-]*){1,2}")


class ManifestError(ValueError):
    """services.toml is missing, not TOML, or says something the model refuses."""


def _relative_folder(value: str) -> str:
    path = PurePosixPath(value)
    if path.is_absolute() or ".." in path.parts or not path.parts or str(path) != value:
        raise ValueError(f"{value!r} is not a folder relative to the repository's root")
    return value


class Service(BaseModel):
    """One service: where it lives, how it is served, what it owns, says and may do."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    folder: str
    package: str
    framework: Framework
    http_port: Port
    admin_port: Port | None = None
    grpc_port: Port | None = None
    database: bool = False
    sharded: bool = False
    relay: bool = False
    audit: bool = False
    publishes: tuple[str, ...] = ()
    consumes: tuple[str, ...] = ()
    role: str | None = None
    permissions: tuple[str, ...] = ()
    proto: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.fullmatch(value):
            raise ValueError(f"{value!r}: lower-case letters and digits, a letter first")
        return value

    _folder = field_validator("folder")(_relative_folder)

    @field_validator("publishes")
    @classmethod
    def _events(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for event in value:
            if not _EVENT.fullmatch(event):
                raise ValueError(f"{event!r} is not an event name (snake_case)")
        return value

    @field_validator("consumes")
    @classmethod
    def _subjects(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for subject in value:
            if not _SUBJECT.fullmatch(subject):
                raise ValueError(f"{subject!r} is not a subject flotilla.<service>.<event>...")
        return value

    @field_validator("permissions")
    @classmethod
    def _permissions(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for permission in value:
            if not _PERMISSION.fullmatch(permission):
                raise ValueError(f"{permission!r} is not resource:action[:scope]")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.package != f"flotilla_{self.name}":
            raise ValueError(f"package must be flotilla_{self.name}, not {self.package}")
        if self.sharded and not self.database:
            raise ValueError("sharded needs database = true (each shard has its own)")
        if self.relay and not (self.database and self.publishes):
            raise ValueError("relay needs database = true and the events it publishes")
        if self.publishes and not self.relay:
            raise ValueError("publishes needs relay = true (events leave through the outbox)")
        if self.grpc_port is not None and not self.proto:
            raise ValueError("grpc_port needs proto = true (the gRPC contracts)")
        if self.permissions and self.role is None:
            raise ValueError("permissions need the role that carries them")
        if self.role is not None and self.role != f"service:{self.name}":
            raise ValueError(f"role must be service:{self.name}, not {self.role}")
        if self.framework == "gateway" and (self.database or self.relay or self.sharded):
            raise ValueError("the gateway owns nothing durable: no database, relay or shards")
        return self

    @property
    def metrics_port(self) -> int:
        """Where Prometheus scrapes it: its admin port if it has one, else its HTTP port."""
        return self.admin_port if self.admin_port is not None else self.http_port

    @property
    def build_args(self) -> dict[str, str]:
        """Its image's build arguments for deploy/docker/Dockerfile (what they mean: its
        header); the Dockerfile's defaults (port 8000, no proto, no gRPC) are left out."""
        args = {"SERVICE": self.name}
        if self.proto:
            args["PROTO"] = "true"
        if self.http_port != 8000:
            args["PORT"] = str(self.http_port)
        if self.grpc_port is not None:
            args["GRPC_PORT"] = str(self.grpc_port)
        return args


class Workspace(BaseModel):
    """The packages beside the services: libraries first, then tools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    libraries: tuple[str, ...]
    tools: tuple[str, ...]

    @field_validator("libraries", "tools")
    @classmethod
    def _folders(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_relative_folder(folder) for folder in value)


class Manifest(BaseModel):
    """Every service, in the order a system starts them (the gateway last)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    workspace: Workspace
    services: tuple[Service, ...]

    @field_validator("services")
    @classmethod
    def _whole(cls, services: tuple[Service, ...]) -> tuple[Service, ...]:
        names = [s.name for s in services]
        if twice := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"services named twice: {', '.join(twice)}")
        gateways = [s.name for s in services if s.framework == "gateway"]
        if len(gateways) != 1:
            raise ValueError(f"one service has framework = 'gateway', not {len(gateways)}")
        if services[-1].framework != "gateway":
            raise ValueError("the gateway comes last (it starts once its upstreams are planned)")
        if len(sharded := [s.name for s in services if s.sharded]) > 1:
            raise ValueError(f"one sharded service at most, not {', '.join(sharded)}")
        return services

    def __getitem__(self, name: str) -> Service:
        for service in self.services:
            if service.name == name:
                return service
        raise KeyError(f"{MANIFEST_FILE} names no service {name!r}")

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.services)

    @property
    def gateway(self) -> Service:
        (gateway,) = [s for s in self.services if s.framework == "gateway"]
        return gateway

    @property
    def backends(self) -> tuple[Service, ...]:
        """The services behind the gateway, in the order they start."""
        return tuple(s for s in self.services if s.framework != "gateway")

    @property
    def folders(self) -> tuple[str, ...]:
        """Every package's folder, as the Makefile installs them: libraries, services,
        tools."""
        return (*self.workspace.libraries, *(s.folder for s in self.services),
                *self.workspace.tools)  # fmt: skip


def find_manifest(start: Path | None = None) -> Path:
    """services.toml in `start` (default: this checkout, found from this module's own
    place, then the working directory) or the nearest folder above it."""
    starts = [start] if start is not None else [Path(__file__).resolve().parent, Path.cwd()]
    for first in starts:
        for folder in [first.resolve(), *first.resolve().parents]:
            if (folder / MANIFEST_FILE).is_file():
                return folder / MANIFEST_FILE
    looked = " or ".join(str(s) for s in starts)
    raise ManifestError(
        f"{MANIFEST_FILE} not found in {looked} or above: run from a Flotilla checkout "
        f"(it lives at the repository's root)"
    )


def _where(path: Path, data: object, loc: tuple[int | str, ...]) -> str:
    """`services[2] (payments).grpc_port` for a pydantic error location."""
    parts: list[str] = []
    node = data
    for key in loc:
        if isinstance(key, int):
            parts[-1] += f"[{key}]"
            node = node[key] if isinstance(node, list) and key < len(node) else None
            if isinstance(node, dict) and isinstance(node.get("name"), str):
                parts[-1] += f" ({node['name']})"
        else:
            parts.append(key)
            node = node.get(key) if isinstance(node, dict) else None
    return f"{path.name}: {'.'.join(parts) or '(the whole file)'}"


def parse_manifest(text: str, path: Path = Path(MANIFEST_FILE)) -> Manifest:
    """The manifest in `text` (read from `path`, which error messages name)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ManifestError(f"{path}: not valid TOML: {exc}") from None
    try:
        return Manifest.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{_where(path, data, tuple(error['loc']))}: {error['msg']}"
            for error in exc.errors(include_url=False)
        ]
        raise ManifestError(f"{path} is wrong:\n  " + "\n  ".join(problems)) from None


def load_manifest(path: Path | None = None) -> Manifest:
    """The manifest at `path`, or the one `find_manifest` finds."""
    path = path if path is not None else find_manifest()
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"{path}: cannot be read ({exc.strerror})") from None
    return parse_manifest(text, path)
