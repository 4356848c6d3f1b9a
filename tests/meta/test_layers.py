"""The layer rules of DESIGN.md section 2 are import-linter contracts (pyproject.toml,
`[tool.importlinter]`, run by `make lint`). These tests run the real `lint-imports` with the
repository's contracts on a copy of the packages: the copy as it is keeps every contract, and
one module added that breaks a rule fails the run, naming the contract it breaks. The
contracts' lists of the kit's modules are checked to name every module, so a new kit module
is classified (pure or not) when it is added."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from flotilla_kit.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = ROOT / "pyproject.toml"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Where each root package's source lives (the folder that holds the package).
SOURCES = {
    "flotilla_kit": ROOT / "libs/kit/src",
    "flotilla_proto": ROOT / "proto",
    "flotilla_cli": ROOT / "cli/src",
    **{service.package: ROOT / service.folder / "src" for service in load_manifest().services},
}
# The kit's modules a domain may import: no I/O, no framework (the `kit-pure-modules`
# contract keeps them so). Everything else in the kit is forbidden to a domain.
PURE_KIT = {"clock", "money", "pacing", "rbac", "sharding", "text"}


def _config() -> dict[str, Any]:
    config: dict[str, Any] = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return config


def _contract(contract_id: str) -> dict[str, Any]:
    contracts: list[dict[str, Any]] = _config()["contracts"]
    (found,) = [c for c in contracts if c["id"] == contract_id]
    return found


def _kit_modules() -> set[str]:
    kit = SOURCES["flotilla_kit"] / "flotilla_kit"
    return {
        p.stem if p.is_file() else p.name
        for p in kit.iterdir()
        if (p.suffix == ".py" and p.stem != "__init__")
        or (p.is_dir() and (p / "__init__.py").is_file())
    }


@pytest.fixture
def packages(tmp_path: Path) -> Path:
    """A copy of every root package, first on the path of the `lint-imports` run."""
    if not LINT_IMPORTS.exists():  # pragma: no cover - requirements-dev.txt installs it
        pytest.fail(f"{LINT_IMPORTS} is missing: `make install` installs import-linter")
    copy = tmp_path / "src"
    for package, source in SOURCES.items():
        shutil.copytree(
            source / package,
            copy / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
        )
    return copy


def _lint(packages: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(packages), "COLUMNS": "200"}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(PYPROJECT), "--no-cache", "--no-logo"],
        capture_output=True, text=True, check=False, cwd=packages, env=env, timeout=60,
    )  # fmt: skip


def test_the_repository_keeps_every_contract(packages: Path) -> None:
    result = _lint(packages)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"Contracts: {len(_config()['contracts'])} kept, 0 broken." in result.stdout
    # the run read the copy, not the installed packages
    assert "Analyzed" in result.stdout


# (module to add, its source, the id of the contract it breaks)
VIOLATIONS = [
    ("flotilla_accounts/domain/_bad.py", "import sqlalchemy\n", "domain-is-pure"),
    ("flotilla_orders/domain/_bad.py", "from flotilla_kit import db\n", "domain-is-pure"),
    (
        "flotilla_payments/domain/_bad.py",
        "from flotilla_payments import settings\n",
        "domain-is-pure",
    ),
    (
        "flotilla_inventory/domain/_bad.py",
        "from flotilla_inventory.entrypoints import http\n",
        "layers",
    ),
    (
        "flotilla_auth/service_layer/_bad.py",
        "from flotilla_auth.entrypoints import http\n",
        "layers",
    ),
    (
        "flotilla_orders/service_layer/_bad.py",
        "from flotilla_orders import adapters\n",
        "adapters-outside-the-core",
    ),
    (
        "flotilla_orders/adapters/_bad.py",
        "from flotilla_payments.domain import money\n",
        "services-independent",
    ),
    ("flotilla_kit/_bad.py", "import flotilla_cli\n", "kit-imports-no-service"),
    ("flotilla_kit/_bad.py", "from flotilla_gateway import settings\n", "kit-imports-no-service"),
]


@pytest.mark.parametrize(
    ("path", "source", "contract_id"),
    VIOLATIONS,
    ids=[f"{contract}:{path}" for path, _, contract in VIOLATIONS],
)
def test_a_violation_fails_the_run_and_names_the_contract(
    packages: Path, path: str, source: str, contract_id: str
) -> None:
    (packages / path).write_text(f'"""Breaks a rule on purpose."""\n\n{source}')
    result = _lint(packages)
    assert result.returncode != 0, result.stdout
    name = _contract(contract_id)["name"]
    assert f"{name} BROKEN" in " ".join(result.stdout.split()), result.stdout


def test_a_pure_kit_module_may_not_reach_io_even_indirectly(packages: Path) -> None:
    # text.py importing a helper module that imports the database layer: the chain is
    # reported, not only the direct import.
    (packages / "flotilla_kit" / "_helper.py").write_text(
        '"""Helper."""\n\nfrom flotilla_kit import db\n'
    )
    text = packages / "flotilla_kit" / "text.py"
    text.write_text(text.read_text() + "\nfrom flotilla_kit import _helper  # noqa: E402\n")
    result = _lint(packages)
    assert result.returncode != 0, result.stdout
    output = " ".join(result.stdout.split())
    assert f"{_contract('kit-pure-modules')['name']} BROKEN" in output, result.stdout
    assert "flotilla_kit._helper -> flotilla_kit.db" in output, result.stdout


def test_the_contracts_name_every_kit_module() -> None:
    # A domain may import the pure modules and none of the others: the forbidden list is the
    # kit less the pure modules, and the pure modules are the ones checked for purity.
    modules = _kit_modules()
    forbidden_to_domains = {
        m.removeprefix("flotilla_kit.")
        for m in _contract("domain-is-pure")["forbidden_modules"]
        if m.startswith("flotilla_kit.")
    }
    assert forbidden_to_domains == modules - PURE_KIT
    pure = {
        m.removeprefix("flotilla_kit.") for m in _contract("kit-pure-modules")["source_modules"]
    }
    assert pure == PURE_KIT & modules
    impure = {
        m.removeprefix("flotilla_kit.")
        for m in _contract("kit-pure-modules")["forbidden_modules"]
        if m.startswith("flotilla_kit.")
    }
    assert impure == modules - PURE_KIT


def test_every_service_with_layers_is_a_container() -> None:
    layered = {
        f"flotilla_{p.name}"
        for p in (ROOT / "services").iterdir()
        if (p / "src" / f"flotilla_{p.name}" / "domain").is_dir()
    }
    assert set(_contract("layers")["containers"]) == layered
    services = {f"flotilla_{p.parent.name}" for p in (ROOT / "services").glob("*/pyproject.toml")}
    assert set(_contract("services-independent")["modules"]) == services
