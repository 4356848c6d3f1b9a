"""Reading the services' Dockerfiles and the .dockerignore, for the deploy checks.

Only what our Dockerfiles use is parsed: comments, line continuations, one instruction per
logical line, exec-form (JSON) arguments.
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
    "dockerignore_patterns",
    "excluded_by_dockerignore",
    "exec_form",
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


def parse_dockerfile(text: str) -> list[Stage]:
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
    stages: list[Stage] = []
    for line in logical:
        keyword, _, arguments = line.partition(" ")
        keyword = keyword.upper()
        arguments = re.sub(r"\s+", " ", arguments.strip())
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            if not name:
                base, _, name = arguments.partition(" as ")
            stages.append(Stage(base=base.strip(), name=name.strip() or None))
            continue
        if not stages:
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


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    """A .dockerignore pattern (Go filepath.Match plus `**`), anchored at the context root."""
    out = ""
    parts = pattern.strip("/").split("/")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out += "(?:.*/)?" if not last else ".*"
            continue
        out += "".join(
            "[^/]*" if c == "*" else "[^/]" if c == "?" else c if c in "[]" else re.escape(c)
            for c in part
        )
        if not last:
            out += "/"
    return re.compile(out)


def excluded_by_dockerignore(relative: str, patterns: list[str]) -> bool:
    """Whether the file `relative` (to the context root) is left out of the build context:
    a pattern that matches the path or one of its parent folders excludes it; later
    patterns win, `!` ones bring a path back."""
    pieces = relative.strip("/").split("/")
    candidates = ["/".join(pieces[: n + 1]) for n in range(len(pieces))]
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        regex = _pattern_regex(raw[1:] if negate else raw)
        if any(regex.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


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
