"""Reading the services' Dockerfiles, for the deploy checks.

Only what our Dockerfiles use is parsed: comments, line continuations, one instruction per
logical line, exec-form (JSON) arguments, ARGs before the first FROM.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from pydantic_settings import BaseSettings

__all__ = [
    "ROOT",
    "SERVICES",
    "SETTINGS_MODELS",
    "Instruction",
    "Stage",
    "dockerfile",
    "exec_form",
    "global_args",
    "parse_dockerfile",
    "settings_env_names",
]

ROOT = Path(__file__).resolve().parents[2]
# Every folder under services/ with a pyproject.toml is a service with an image.
SERVICES = sorted(p.parent.name for p in (ROOT / "services").glob("*/pyproject.toml"))


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


def parse_dockerfile(text: str) -> list[Stage]:
    stages: list[Stage] = []
    for line in _logical_lines(text):
        keyword, arguments = _split(line)
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            if not name:
                base, _, name = arguments.partition(" as ")
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
            continue
        if not stages:
            if keyword == "ARG":
                continue  # global_args() reads these
            raise ValueError(f"{keyword} before the first FROM")
        stages[-1].instructions.append(Instruction(keyword, arguments))
    return stages


def dockerfile(service: str) -> list[Stage]:
    return parse_dockerfile((ROOT / "services" / service / "Dockerfile").read_text())


def exec_form(arguments: str) -> list[str] | None:
    """The JSON array of an exec-form ENTRYPOINT/CMD, or None for the shell form."""
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        return None
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    return None


# The pydantic-settings model of each service (each reads FLOTILLA_<FIELD>).
SETTINGS_MODELS = {
    "auth": ("flotilla_auth.settings", "AuthSettings"),
    "accounts": ("flotilla_accounts.settings", "AccountsSettings"),
    "payments": ("flotilla_payments.settings", "PaymentsSettings"),
    "inventory": ("flotilla_inventory.settings", "InventorySettings"),
    "orders": ("flotilla_orders.settings", "OrdersSettings"),
    "gateway": ("flotilla_gateway.settings", "GatewaySettings"),
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
