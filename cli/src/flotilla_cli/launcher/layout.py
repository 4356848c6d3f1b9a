"""Where a running system keeps its state: everything lives under one `var/` directory."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["VarLayout"]


@dataclass(frozen=True, slots=True)
class VarLayout:
    root: Path

    @classmethod
    def at(cls, root: Path) -> VarLayout:
        return cls(root.resolve())

    @property
    def tls(self) -> Path:
        return self.root / "tls"

    @property
    def logs(self) -> Path:
        return self.root / "log"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    @property
    def postgres(self) -> Path:
        return self.root / "pg" / "data"

    @property
    def state_file(self) -> Path:
        return self.run / "state.json"

    @property
    def plan_file(self) -> Path:
        return self.run / "plan.json"

    @property
    def topology_file(self) -> Path:
        return self.run / "topology.json"

    @property
    def supervisor_log(self) -> Path:
        return self.logs / "supervisor.log"

    @property
    def credentials_file(self) -> Path:
        return self.root / "demo-credentials.json"

    def sqlite_url(self, service: str) -> str:
        return f"sqlite+aiosqlite:///{self.root / (service + '.db')}"

    def log_file(self, instance: str) -> Path:
        return self.logs / f"{instance}.log"

    def ensure(self) -> None:
        for directory in (self.root, self.tls, self.logs, self.run, self.secrets):
            directory.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(0o700)
