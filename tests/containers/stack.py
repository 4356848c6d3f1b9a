"""deploy/compose/compose.yaml with standins.yaml, run by podman-compose on rootful podman.

podman-compose (1.6.0, pinned) with Debian's podman 4.3 leaves two things of compose.yaml
undone, so the stack is started in the order `depends_on` gives, one layer at a time, and
this module waits for each condition itself:
- `condition: service_healthy` is skipped with a warning (podman-compose checks it only on
  podman >= 4.6), and podman runs healthchecks only on systemd timers (none in a
  container): we run each healthcheck (`podman healthcheck run`) until it passes;
- every dependency becomes podman's `--requires`, and podman then refuses to restart a
  container whose required one-shot (`pki`) has exited: the restart policy would never
  bring back a crashed service. Each layer is started with `--no-deps`.
Also not honoured by podman-compose: `stop_grace_period` (podman stops after its default
10 s; the services drain in FLOTILLA_DRAIN_S=5 s, so nothing is cut short).
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.containers.podman import Podman, PodmanError

__all__ = ["COMPOSE_DIR", "Container", "Stack"]

COMPOSE_DIR = Path(__file__).resolve().parents[2] / "deploy" / "compose"
FILES = (COMPOSE_DIR / "compose.yaml", COMPOSE_DIR / "standins.yaml")
PODMAN_COMPOSE = Path(sys.executable).with_name("podman-compose")
# Started once everything else answers: it looks its targets up in DNS when it starts and
# then only every 30 s (dns_sd_configs' refresh), so it would miss the later replicas.
LAST = ("prometheus",)
_PROJECT_LABEL = "io.podman.compose.project"
_SERVICE_LABEL = "com.docker.compose.service"


@dataclass(frozen=True)
class Container:
    name: str
    service: str  # the compose service
    labels: dict[str, str]


@dataclass
class Stack:
    project: str
    folder: Path  # for the .env: a temporary folder, never the repository
    say: Callable[[str], None]
    tag: str
    gateway_port: int  # published on the host
    prometheus_port: int
    podman: Podman = field(default_factory=Podman)
    _met: set[tuple[str, str]] = field(default_factory=set)

    @property
    def env_file(self) -> Path:
        return self.folder / ".env"

    def write_env(self) -> None:
        """The .env compose.yaml requires: secrets made now, never kept."""
        values = {
            "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
            "FLOTILLA_KEY_ENCRYPTION_KEY": secrets.token_urlsafe(32),
            "GRAFANA_ADMIN_PASSWORD": secrets.token_urlsafe(24),
            "FLOTILLA_TAG": self.tag,
            "FLOTILLA_GATEWAY_PORT": str(self.gateway_port),
            "PROMETHEUS_PORT": str(self.prometheus_port),
        }
        self.env_file.touch(mode=0o600)
        self.env_file.write_text("".join(f"{k}={v}\n" for k, v in values.items()))

    # -- compose ---------------------------------------------------------------------------
    def compose(self, *args: str, timeout: float = 600) -> str:
        if not PODMAN_COMPOSE.exists():  # pragma: no cover - requirements-dev.txt has it
            raise PodmanError(f"{PODMAN_COMPOSE} is missing: `make install` installs it")
        result = subprocess.run(
            [str(PODMAN_COMPOSE), "--in-pod=false", "--project-name", self.project,
             "--env-file", str(self.env_file), *(a for f in FILES for a in ("-f", str(f))),
             *args],
            capture_output=True, text=True, check=False, timeout=timeout,
            env=Podman.environment(),
        )  # fmt: skip
        if result.returncode != 0:
            raise PodmanError(f"podman-compose {' '.join(args)}: {result.stderr[-3000:]}")
        return result.stdout

    @staticmethod
    def definitions() -> dict[str, dict[str, Any]]:
        """The services that run (no profile asked for), compose.yaml's definitions with
        the override's `profiles` on top."""
        base, override = (yaml.safe_load(f.read_text())["services"] for f in FILES)
        active = {}
        for name, definition in base.items():
            profiles = (override.get(name) or {}).get("profiles", definition.get("profiles"))
            if not profiles:
                active[name] = definition
        return active

    def layers(self) -> list[list[str]]:
        """The services in the order `depends_on` allows, LAST at the end."""
        definitions = self.definitions()
        placed: list[str] = []
        layers: list[list[str]] = []
        waiting = [name for name in definitions if name not in LAST]
        while waiting:
            layer = [
                name for name in waiting
                if set(definitions[name].get("depends_on", {})) <= set(placed)
            ]  # fmt: skip
            if not layer:
                raise PodmanError(f"depends_on has a cycle among {waiting}")
            layers.append(layer)
            placed += layer
            waiting = [name for name in waiting if name not in layer]
        return [*layers, [name for name in LAST if name in definitions]]

    def up(self, deadline: float) -> None:
        definitions = self.definitions()
        for layer in self.layers():
            for name in layer:
                for dependency, spec in definitions[name].get("depends_on", {}).items():
                    self._meet(dependency, spec["condition"], deadline)
            self.say(f"starting {', '.join(layer)}")
            self.compose("up", "--detach", "--no-deps", *layer)
        self.say("waiting for every healthcheck to pass")
        checked = [c.name for c in self.containers() if self._has_healthcheck(c.name)]
        self.podman.await_healthy(checked, deadline, self.diagnose)

    def _meet(self, service: str, condition: str, deadline: float) -> None:
        if (service, condition) in self._met:
            return
        names = [c.name for c in self.containers() if c.service == service]
        if not names:
            raise PodmanError(f"{service} has no container")
        remaining = max(deadline - time.monotonic(), 1)
        if condition == "service_completed_successfully":
            for name in names:
                code = self.podman.await_exit(name, timeout=remaining)
                if code != 0:
                    raise PodmanError(f"{name} exited with {code}\n{self.diagnose([name])}")
        elif condition == "service_healthy":
            self.podman.await_healthy(names, deadline, self.diagnose)
        else:
            for name in names:
                self.podman.await_running(name, timeout=remaining)
        self.say(f"{service}: {condition.removeprefix('service_').replace('_', ' ')}")
        self._met.add((service, condition))

    def _has_healthcheck(self, name: str) -> bool:
        check = self.podman.inspect(name)["Config"].get("Healthcheck") or {}
        return bool(check.get("Test")) and check["Test"][0] != "NONE"

    def down(self) -> None:
        """Containers, volumes and networks of the project, also after a failed start."""
        try:
            self.compose("down", "--volumes", "--timeout", "10")
        finally:
            label = f"label={_PROJECT_LABEL}={self.project}"
            for listing, remove in (
                (["ps", "--all"], ["rm", "--force"]),
                (["volume", "ls"], ["volume", "rm", "--force"]),
                (["network", "ls"], ["network", "rm", "--force"]),
            ):
                left = self.podman.run(*listing, "--filter", label, "--quiet", check=False)
                if left.stdout.split():
                    self.podman.run(*remove, *left.stdout.split(), check=False)

    # -- looking at it ---------------------------------------------------------------------
    def containers(self) -> list[Container]:
        listed = self.podman.run(
            "ps", "--all", "--filter", f"label={_PROJECT_LABEL}={self.project}",
            "--format", "{{.Names}}",
        )  # fmt: skip
        found = []
        for name in sorted(listed.stdout.split()):
            labels: dict[str, str] = self.podman.inspect(name)["Config"]["Labels"] or {}
            found.append(Container(name, labels[_SERVICE_LABEL], labels))
        return found

    def container(self, service: str, number: int = 1) -> str:
        return f"{self.project}_{service}_{number}"

    def volume_path(self, volume: str) -> Path:
        mountpoint = self.podman.run(
            "volume", "inspect", f"{self.project}_{volume}", "--format", "{{.Mountpoint}}"
        ).stdout.strip()
        return Path(mountpoint)

    def diagnose(self, names: list[str]) -> str:
        """The last lines of each container's log, for a failure's message."""
        out = []
        for name in names:
            logs = self.podman.run("logs", "--tail", "25", name, check=False)
            out.append(f"--- {name}\n{(logs.stdout + logs.stderr)[-4000:]}")
        return "\n".join(out)
