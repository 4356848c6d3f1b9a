"""Poetry's copies of the pins: each distribution's pyproject.toml carries Poetry tables
(path dependencies on flotilla-kit and flotilla-proto, and an optional `constraints` group
pinning every third-party package it needs to its constraints.txt version), written here
from constraints.txt. pip, uv and hatchling ignore them.

    .venv/bin/python tools/poetry_pins.py          # list the pyproject.toml files that are stale
    .venv/bin/python tools/poetry_pins.py --write  # rewrite them (`make constraints` does)

tests/meta/test_poetry.py checks that every file is up to date and that Poetry installs a
service at these versions.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import sys
import tomllib
from pathlib import Path
from typing import Any

from packaging.markers import Marker
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
# Where the Poetry tables start in each pyproject.toml; --write replaces from here to the end.
MARKER = '# Poetry (README.md, "Installing with uv or Poetry")'
# The service `poetry install` really installs: it needs both path dependencies.


def distributions() -> list[Path]:
    """Every folder with a distribution of ours: the kit, the contracts, each service, the cli."""
    services = sorted(p.parent for p in (ROOT / "services").glob("*/pyproject.toml"))
    return [ROOT / "libs" / "kit", ROOT / "proto", *services, ROOT / "cli"]


def pyproject_of(folder: Path) -> dict[str, Any]:
    return tomllib.loads((folder / "pyproject.toml").read_text())


def our_distributions() -> dict[NormalizedName, Path]:
    return {canonicalize_name(pyproject_of(f)["project"]["name"]): f for f in distributions()}


def constraints() -> dict[NormalizedName, str]:
    pins: dict[NormalizedName, str] = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _satisfied(marker: Marker | None, extras: frozenset[str]) -> bool:
    if marker is None:
        return True
    return any(marker.evaluate({"extra": extra}) for extra in extras or {""})


def closure(folder: Path) -> set[NormalizedName]:
    """The third-party packages a distribution of ours needs (with any of its extras), on
    this Python (3.11).

    Our own requirements are read from their pyproject.toml; third-party ones from the
    metadata of what `make install` put in the venv (which is what constraints.txt pinned).
    """
    ours = our_distributions()
    needed: set[NormalizedName] = set()
    seen: set[tuple[NormalizedName, frozenset[str]]] = set()
    project = pyproject_of(folder)["project"]
    # its own extras too, so `poetry install --extras ...` is pinned as well
    texts = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        texts += extra
    todo = [(Requirement(t), frozenset[str]()) for t in texts]
    while todo:
        requirement, parent_extras = todo.pop()
        if not _satisfied(requirement.marker, parent_extras):
            continue
        name = canonicalize_name(requirement.name)
        extras = frozenset(canonicalize_name(e) for e in requirement.extras)
        if (name, extras) in seen:
            continue
        seen.add((name, extras))
        if name in ours:
            own = pyproject_of(ours[name])["project"]
            texts = list(own.get("dependencies", []))
            for extra in extras:
                texts += own.get("optional-dependencies", {}).get(extra, [])
        else:
            needed.add(name)
            try:
                texts = importlib.metadata.distribution(name).requires or []
            except importlib.metadata.PackageNotFoundError:
                raise LookupError(
                    f"{name} is not installed in this venv: run `make install`"
                ) from None
        todo += [(Requirement(t), extras) for t in texts]
    return needed


def expected_pins(folder: Path) -> dict[NormalizedName, str]:
    pins = constraints()
    needed = closure(folder)
    missing = sorted(needed - pins.keys())
    if missing:
        raise LookupError(f"{folder.name} needs {missing}, which constraints.txt does not pin")
    return {name: pins[name] for name in sorted(needed)}


def path_dependencies(folder: Path) -> dict[NormalizedName, Path]:
    """Our distributions that this one depends on, and the folder each comes from."""
    ours = our_distributions()
    found: dict[NormalizedName, Path] = {}
    for text in pyproject_of(folder)["project"].get("dependencies", []):
        name = canonicalize_name(Requirement(text).name)
        if name in ours:
            found[name] = ours[name]
    return found


def render(folder: Path) -> str:
    """The Poetry tables of one pyproject.toml: path dependencies, then the pinned group."""
    lines = [MARKER]
    dependencies = path_dependencies(folder)
    if dependencies:
        lines += [
            "# The distributions of this repository come from their folders, editable, never",
            "# from an index. pip and uv read only [project]; Poetry adds this to it.",
            "[tool.poetry.dependencies]",
        ]
        for name, source in dependencies.items():
            relative = os.path.relpath(source, folder)
            lines.append(f'{name} = {{ path = "{relative}", develop = true }}')
        lines.append("")
    lines += [
        "# constraints.txt for Poetry, which has no constraints file: an optional group is",
        "# never installed, but Poetry resolves all groups together, so every package",
        "# `poetry install` installs gets the version below. Written from constraints.txt by",
        "# `.venv/bin/python tools/poetry_pins.py --write`; tests/meta/test_poetry.py checks it.",
        "[tool.poetry.group.constraints]",
        "optional = true",
        "",
        "[tool.poetry.group.constraints.dependencies]",
    ]
    lines += [f'{name} = "=={version}"' for name, version in expected_pins(folder).items()]
    return "\n".join(lines) + "\n"


def _without_poetry_tables(text: str) -> str:
    head, _, _ = text.partition(MARKER)
    return head.rstrip("\n") + "\n"


def write() -> list[Path]:
    changed = []
    for folder in distributions():
        path = folder / "pyproject.toml"
        old = path.read_text()
        new = _without_poetry_tables(old) + "\n" + render(folder)
        if new != old:
            path.write_text(new)
            changed.append(path)
    return changed


# --- tests ---------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="tools/poetry_pins.py",
        description="Write the Poetry tables of every pyproject.toml from constraints.txt.",
    )
    parser.add_argument(
        "--write", action="store_true", help="rewrite them (otherwise list what would change)"
    )
    args = parser.parse_args(argv)
    if args.write:
        for path in write():
            print(f"wrote {path.relative_to(ROOT)}")
        return 0
    stale = [
        f.name
        for f in distributions()
        if (f / "pyproject.toml").read_text().partition(MARKER)[1:]
        != render(f).partition(MARKER)[1:]
    ]
    print("stale: " + ", ".join(stale) if stale else "every pyproject.toml is up to date")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
