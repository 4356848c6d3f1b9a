"""Poetry >= 2 beside uv (issue 17, item 5).

Every distribution's pyproject.toml passes `poetry check`; Poetry takes flotilla-kit and
flotilla-proto from this repository (path dependencies in [tool.poetry.dependencies], which
pip, uv and hatchling ignore); and the versions Poetry resolves are constraints.txt's.
Poetry has no constraints file, so each pyproject.toml carries an optional dependency group,
`constraints`, pinning every third-party package the distribution needs to its version in
constraints.txt: Poetry resolves all groups together, so the pins hold for the packages
`poetry install` installs, while the group itself is never installed (it is optional).

The tests prove: `poetry check` passes everywhere; each group is exactly constraints.txt
over the distribution's dependency closure (so `make constraints` without this step fails
here); and one real `poetry install` of a service, from a copy of the repository into a
fresh virtualenv, imports the service with every installed package at its pinned version.

After `make constraints`, rewrite the groups with:
    .venv/bin/python tools/poetry_pins.py --write
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from tools.poetry_pins import (
    MARKER,
    ROOT,
    closure,
    constraints,
    distributions,
    expected_pins,
    our_distributions,
    path_dependencies,
    pyproject_of,
    render,
)

POETRY = Path(sys.executable).parent / "poetry"
INSTALLED_SERVICE = "orders"


def _poetry() -> Path:
    if not POETRY.exists():
        pytest.skip(f"poetry is not installed at {POETRY}: run `make install`")
    return POETRY


def _poetry_env(home: Path) -> dict[str, str]:
    """Poetry with its cache, configuration and data under `home`, never in a venv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POETRY_", "VIRTUAL_ENV"))}
    env |= {
        "POETRY_CACHE_DIR": str(home / "cache"),
        "POETRY_CONFIG_DIR": str(home / "config"),
        "POETRY_DATA_DIR": str(home / "data"),
        "POETRY_VIRTUALENVS_IN_PROJECT": "true",
        "POETRY_NO_INTERACTION": "1",
    }
    return env


@pytest.fixture(scope="module")
def poetry_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One cache for the module: what one lock downloaded, the next one and the install reuse.
    return tmp_path_factory.mktemp("poetry-home")


@pytest.mark.parametrize("folder", distributions(), ids=lambda f: f.name)
def test_poetry_check_passes(folder: Path, poetry_home: Path) -> None:
    result = subprocess.run(
        [_poetry(), "check", "--strict", "--no-ansi"],
        cwd=folder,
        env=_poetry_env(poetry_home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("folder", distributions(), ids=lambda f: f.name)
def test_the_poetry_tables_are_written_from_constraints_txt(folder: Path) -> None:
    text = (folder / "pyproject.toml").read_text()
    fix = "run `.venv/bin/python tools/poetry_pins.py --write`"
    assert MARKER in text, f"{folder.name}: no Poetry tables; {fix}"
    assert text.partition(MARKER)[1:] == render(folder).partition(MARKER)[1:], (
        f"{folder.name}: the Poetry tables differ from constraints.txt; {fix}"
    )
    poetry = pyproject_of(folder)["tool"]["poetry"]
    for name, source in path_dependencies(folder).items():
        entry = poetry["dependencies"][name]
        assert (folder / entry["path"]).resolve() == source
        assert entry["develop"] is True


def test_poetry_check_catches_a_brokenpyproject_of(tmp_path: Path, poetry_home: Path) -> None:
    # The check above could pass vacuously; a group Poetry cannot read must fail it.
    folder = tmp_path / "broken"
    folder.mkdir()
    text = (ROOT / "services" / "auth" / "pyproject.toml").read_text()
    (folder / "pyproject.toml").write_text(text.replace("optional = true", 'optional = "yes"'))
    result = subprocess.run(
        [_poetry(), "check", "--strict", "--no-ansi"],
        cwd=folder,
        env=_poetry_env(poetry_home),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "tool.poetry.group.constraints.optional must be boolean" in result.stderr


def test_poetry_lock_files_and_venvs_are_never_committed() -> None:
    # `poetry install` writes poetry.lock (and, in-project, .venv/) beside pyproject.toml.
    paths = [
        f"{folder.relative_to(ROOT)}/{name}"
        for folder in distributions()
        for name in ("poetry.lock", ".venv/")
    ]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert sorted(result.stdout.split()) == sorted(paths)


def _copy_for(folder: Path, into: Path, *, only_pyproject: bool = False) -> Path:
    """A distribution and those of ours it needs, as in the checkout, without venvs or locks.

    The gRPC modules generated by `make install` (proto/generate.sh) are copied too. With
    only_pyproject, each folder gets its pyproject.toml alone (enough to lock).
    """
    ignore = shutil.ignore_patterns(".venv", "__pycache__", "poetry.lock", "tests", "var")
    for source in [folder, *path_dependencies(folder).values()]:
        target = into / source.relative_to(ROOT)
        if only_pyproject:
            target.mkdir(parents=True)
            shutil.copy(source / "pyproject.toml", target)
        else:
            shutil.copytree(source, target, ignore=ignore)
    return into / folder.relative_to(ROOT)


def _run_poetry(args: list[str], cwd: Path, env: dict[str, str]) -> None:
    result = subprocess.run(
        [_poetry(), *args, "--no-ansi"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.slow
@pytest.mark.parametrize("folder", distributions(), ids=lambda f: f.name)
def test_poetry_locks_every_distribution_at_the_pinned_versions(
    folder: Path, tmp_path: Path, poetry_home: Path
) -> None:
    # Needs PyPI. Poetry resolves for every Python the project allows (>= 3.11), every
    # platform and every group at once: the pins must hold together there, not only here.
    copy = _copy_for(folder, tmp_path / "repo", only_pyproject=True)
    _run_poetry(["lock"], copy, _poetry_env(poetry_home))
    locked = {
        canonicalize_name(package["name"]): package["version"]
        for package in tomllib.loads((copy / "poetry.lock").read_text())["package"]
    }
    pins = expected_pins(folder)
    assert {name: locked.get(name) for name in pins} == pins


@pytest.mark.slow
def test_poetry_installs_a_service_at_the_pinned_versions(
    tmp_path: Path, poetry_home: Path
) -> None:
    # Needs PyPI. A copy of the repository, so no lock file or venv lands in the checkout.
    copy = _copy_for(ROOT / "services" / INSTALLED_SERVICE, tmp_path / "repo")
    env = _poetry_env(poetry_home)
    # the venv on the Python that runs Poetry (this one, 3.11: what constraints.txt is for)
    env["POETRY_VIRTUALENVS_USE_POETRY_PYTHON"] = "true"
    _run_poetry(["install"], copy, env)
    assert (copy / "poetry.lock").exists()
    python = copy / ".venv" / "bin" / "python"
    module = f"flotilla_{INSTALLED_SERVICE}"
    listing = (
        f"import importlib.metadata as m, {module}.entrypoints.http\n"
        "for d in m.distributions(): print(d.metadata['Name'], d.version)\n"
    )
    shown = subprocess.run(
        [python, "-c", listing], capture_output=True, text=True, check=True
    ).stdout.split("\n")
    installed = {
        canonicalize_name(name): version
        for name, version in (line.split(" ") for line in shown if line)
    }
    ours = our_distributions()
    assert ours.keys() & installed.keys() == {
        canonicalize_name(f"flotilla-{INSTALLED_SERVICE}"),
        *path_dependencies(ROOT / "services" / INSTALLED_SERVICE),
    }
    # What a virtualenv is seeded with is not a dependency (Poetry leaves pip in it).
    third_party = {
        name: version
        for name, version in installed.items()
        if name not in ours and name not in {"pip", "setuptools", "wheel"}
    }
    pins = constraints()
    assert {name: pins.get(name) for name in third_party} == third_party
    assert third_party.keys() == closure(ROOT / "services" / INSTALLED_SERVICE)
    fastapi = canonicalize_name("fastapi")
    assert third_party[fastapi] == pins[fastapi]
