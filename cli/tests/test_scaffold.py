"""`flotilla new service` into a small copy of the files it reads and changes: what it
writes and registers, and what it refuses (with nothing written). Generating a service
and running its own tests is tests/scaffold (slow)."""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tomllib
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

from flotilla_cli.main import app
from flotilla_cli.scaffold.generator import MARKERS
from flotilla_kit.manifest import load_manifest

ROOT = Path(__file__).resolve().parents[2]
ROUTES = "services/gateway/src/flotilla_gateway/routes.py"
RBAC = "libs/kit/src/flotilla_kit/rbac.py"
PLANNING = "cli/src/flotilla_cli/launcher/planning.py"
# What the generator reads: the manifest, the files it inserts lines into, and what
# tools/poetry_pins.py reads to write the Poetry tables.
READ = [
    "services.toml", "pyproject.toml", ROUTES, RBAC, PLANNING, "tools/poetry_pins.py",
    "constraints.txt", "libs/kit/pyproject.toml", "proto/pyproject.toml", "cli/pyproject.toml",
]  # fmt: skip


@pytest.fixture
def root(tmp_path: Path) -> Path:
    for name in [
        *READ,
        *(str(p.relative_to(ROOT)) for p in ROOT.glob("services/*/pyproject.toml")),
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, tmp_path / name)
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def new(root: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["new", "service", *args, "--root", str(root)], env={"COLUMNS": "200"}
    )
    assert not isinstance(result.exception, Exception) or isinstance(
        result.exception, SystemExit
    ), result.exception  # an error is a message, never a traceback
    return result.exit_code, result.output


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"_copy_of_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    return module


@pytest.mark.parametrize("framework", ["fastapi", "flask", "django"])
def test_a_new_service_is_written_and_registered(root: Path, framework: str) -> None:
    code, output = new(root, "notes", "--framework", framework)
    assert code == 0, output
    assert "wrote services/notes/" in output
    folder = root / "services" / "notes"
    assert (folder / "src/flotilla_notes/entrypoints/http.py").is_file()
    assert (folder / "src/flotilla_notes/migrations/versions/0001_items.py").is_file()
    assert not list(root.glob("services/.new-*"))  # the staging folder is gone
    assert not [p for p in folder.rglob("*") if "{{" in p.name or p.suffix == ".tmpl"]
    pyproject = tomllib.loads((folder / "pyproject.toml").read_text())
    extra = {"fastapi": "", "flask": "[flask]", "django": "[django]"}[framework]
    assert pyproject["project"]["dependencies"] == [f"flotilla-kit{extra}", "typer"]
    pins = pyproject["tool"]["poetry"]["group"]["constraints"]["dependencies"]
    assert pins["sqlalchemy"].startswith("==")
    assert ("flask" in pins) == (framework == "flask")

    # The manifest: before the gateway, which stays last.
    manifest = load_manifest(root / "services.toml")
    assert manifest.names[-2:] == ("notes", "gateway")
    assert manifest["notes"].framework == framework
    # The gateway's policy and the roles, loaded as the gateway and the kit load them.
    policy = load(root / ROUTES).POLICY
    assert {(r.method, r.path, r.service, r.access) for r in policy if r.service == "notes"} == {
        ("GET", "/api/v1/notes/items", "notes", "notes:read"),
        ("POST", "/api/v1/notes/items", "notes", "notes:write"),
        ("GET", "/api/v1/notes/items/{item_id}", "notes", "notes:read"),
    }
    rbac = load(root / RBAC)
    assert rbac.permissions_of(["admin"]) >= {"notes:read", "notes:write"}
    assert "notes:write" not in rbac.permissions_of(["customer", "support"])
    assert "notes:read" in rbac.permissions_of(["customer"])
    # The markers stay, for the next service.
    for key, marker in MARKERS.items():
        where = {"routes": ROUTES, "settings": PLANNING}.get(key, RBAC)
        assert (root / where).read_text().count(marker) == 1, marker
    assert '"notes": _no_settings,' in (root / PLANNING).read_text()
    tool = tomllib.loads((root / "pyproject.toml").read_text())["tool"]
    assert "flotilla_notes" in tool["ruff"]["lint"]["isort"]["known-first-party"]
    assert "services/notes/src" in tool["mypy"]["mypy_path"].split(":")
    assert "services/notes/tests" in tool["pytest"]["ini_options"]["testpaths"]
    contracts = {c["id"]: c for c in tool["importlinter"]["contracts"]}
    assert "flotilla_notes" in contracts["layers"]["containers"]
    assert "flotilla_notes" in contracts["services-independent"]["modules"]
    assert "flotilla_notes.domain" in contracts["domain-is-pure"]["source_modules"]


def test_a_second_service_goes_above_the_first_ones_lines_and_both_stay(root: Path) -> None:
    assert new(root, "notes")[0] == 0
    assert new(root, "tasks", "--framework", "flask")[0] == 0
    assert load_manifest(root / "services.toml").names[-3:] == ("notes", "tasks", "gateway")
    services = {r.service for r in load(root / ROUTES).POLICY}
    assert {"notes", "tasks"} <= services
    assert load(root / RBAC).permissions_of(["admin"]) >= {"notes:write", "tasks:write"}


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("Notes", "not a service name"),
        ("my-notes", "not a service name"),
        ("my_notes", "not a service name"),
        ("1notes", "not a service name"),
        ("n" * 31, "not a service name"),
        ("kit", "reserved"),  # would be flotilla_kit
        ("orders", "already names a service 'orders'"),
        ("gateway", "already names a service 'gateway'"),
    ],
)
def test_a_bad_or_taken_name_is_refused_and_nothing_is_written(
    root: Path, name: str, says: str
) -> None:
    before = snapshot(root)
    code, output = new(root, name)
    assert code == 2
    assert says in output
    assert snapshot(root) == before


def test_an_existing_folder_is_refused_and_nothing_is_written(root: Path) -> None:
    (root / "services" / "notes").mkdir()
    before = snapshot(root)
    code, output = new(root, "notes")
    assert code == 2
    assert "services/notes already exists" in output
    assert snapshot(root) == before


@pytest.mark.parametrize("file", [ROUTES, RBAC, PLANNING])
def test_a_missing_marker_is_named_and_nothing_is_written(root: Path, file: str) -> None:
    text = (root / file).read_text()
    for marker in MARKERS.values():
        text = text.replace(marker, "# gone")
    (root / file).write_text(text)
    before = snapshot(root)
    code, output = new(root, "notes")
    assert code == 2
    assert f"{file}: the marker comment" in output
    assert "restore it" in output
    assert snapshot(root) == before


def test_a_root_that_is_no_checkout_is_named(tmp_path: Path) -> None:
    code, output = new(tmp_path, "notes")
    assert code == 2
    assert "services.toml not found" in output
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_framework_is_refused_by_the_option(root: Path) -> None:
    code, output = new(root, "notes", "--framework", "rails")
    assert code == 2
    assert "rails" in output
    assert not (root / "services" / "notes").exists()


def test_the_help_names_the_frameworks_and_the_rules() -> None:
    result = CliRunner().invoke(
        app, ["new", "service", "--help"], env={"COLUMNS": "200", "NO_COLOR": "1"}
    )
    assert result.exit_code == 0
    words = " ".join(result.output.split())  # however Rich wraps it
    assert "fastapi|flask|django" in words
    assert "Nothing is written when the name is invalid or taken" in words
