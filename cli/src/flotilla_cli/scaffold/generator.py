"""Writing a new service from the templates, and registering it where the repository
names its services.

Everything is checked and prepared before anything is written: the name, the folder, the
manifest entry (validated by `flotilla_kit.manifest` as the launcher will read it), the
lines for the gateway's policy, the RBAC roles and the launcher's settings (each inserted
above a marker comment `# flotilla new service: ...` that the generator owns), and the
root pyproject.toml's lists of packages. The service is rendered into a staging folder
beside its final place (`services/.new-<name>`), its Poetry tables are written by the
repository's own `tools/poetry_pins.py`, and only then is the folder renamed into place
and the other files rewritten. A failure before that leaves the tree as it was.

Templates are plain files under `templates/` (package data): `common/` for every
framework, then the framework's own folder, whose files win. `{{name}}`, `{{Name}}`,
`{{framework}}` and `{{extra}}` are replaced in file contents; `__package__` in a path
becomes `flotilla_<name>`; the `.tmpl` suffix is dropped.
"""

from __future__ import annotations

import importlib.util
import keyword
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal, get_args

from flotilla_kit.manifest import MANIFEST_FILE, ManifestError, load_manifest, parse_manifest

__all__ = [
    "FRAMEWORKS",
    "MARKERS",
    "Framework",
    "GeneratedService",
    "ScaffoldError",
    "generate_service",
    "plan_service",
]

Framework = Literal["fastapi", "flask", "django"]
FRAMEWORKS: tuple[str, ...] = get_args(Framework)

# The manifest's own rule for a service's name (flotilla_kit.manifest): lower-case letters
# and digits, a letter first; no '-' or '_' (the name is also a package suffix, a role
# suffix and a URL segment). At most 30 characters.
_NAME = re.compile(r"[a-z][a-z0-9]{0,29}")
# Names a service may not take: the packages beside the services (flotilla_kit,
# flotilla_cli, flotilla_proto) and words that would read as something else.
_RESERVED = frozenset({"kit", "cli", "proto", "service", "services", "test", "tests", "new"})

_ROUTES = "services/gateway/src/flotilla_gateway/routes.py"
_RBAC = "libs/kit/src/flotilla_kit/rbac.py"
_PLANNING = "cli/src/flotilla_cli/launcher/planning.py"
_PYPROJECT = "pyproject.toml"
_POETRY_PINS = "tools/poetry_pins.py"

# The marker comments the generator owns: a generated service's lines go right above them.
MARKERS: dict[str, str] = {
    "routes": "# flotilla new service: routes",
    "customer": "# flotilla new service: customer",
    "support": "# flotilla new service: support",
    "admin": "# flotilla new service: admin",
    "settings": "# flotilla new service: settings",
}
_MARKED_FILES = {
    "routes": _ROUTES,
    "customer": _RBAC,
    "support": _RBAC,
    "admin": _RBAC,
    "settings": _PLANNING,
}
_TEMPLATES = "templates"
_PACKAGE_PLACEHOLDER = "__package__"
_SUFFIX = ".tmpl"
_GATEWAY = re.compile(r'framework\s*=\s*"gateway"')


class ScaffoldError(Exception):
    """Why a service cannot be generated (a message for the user, naming the fix)."""


Progress = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


@dataclass(frozen=True, slots=True)
class GeneratedService:
    """What `generate_service` wrote: the service's folder and the files it changed."""

    name: str
    framework: Framework
    folder: Path
    files: tuple[Path, ...]
    changed: tuple[Path, ...]


@dataclass
class _Plan:
    name: str
    framework: Framework
    root: Path
    rendered: dict[str, str]  # path inside the service's folder -> content
    edits: dict[Path, str] = field(default_factory=dict)  # file -> its new text

    @property
    def folder(self) -> Path:
        return self.root / "services" / self.name


# --- the name -------------------------------------------------------------------------


def check_name(name: str) -> None:
    if not _NAME.fullmatch(name):
        raise ScaffoldError(
            f"{name!r} is not a service name: lower-case letters and digits, a letter first, "
            "at most 30 characters (no '-' or '_': the name is also part of the package "
            "flotilla_<name>, the role service:<name> and the URL /api/v1/<name>/)"
        )
    if name in _RESERVED or keyword.iskeyword(name):
        raise ScaffoldError(f"{name!r} is reserved: choose another name")


# --- rendering --------------------------------------------------------------------------


def _walk(node: Traversable, prefix: str = "") -> Iterator[tuple[str, Traversable]]:
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        path = f"{prefix}{child.name}"
        if child.is_dir():
            yield from _walk(child, f"{path}/")
        elif child.name.endswith(_SUFFIX):
            yield path.removesuffix(_SUFFIX), child


def _substitutions(name: str, framework: Framework) -> dict[str, str]:
    extra = {"fastapi": "", "flask": "[flask]", "django": "[django]"}[framework]
    return {
        "{{name}}": name,
        "{{Name}}": name.capitalize(),
        "{{framework}}": framework,
        "{{extra}}": extra,
    }


def render_templates(name: str, framework: Framework) -> dict[str, str]:
    """Every file of the new service: its path inside the service's folder -> content."""
    templates = files("flotilla_cli.scaffold").joinpath(_TEMPLATES)
    chosen: dict[str, Traversable] = {}
    for layer in ("common", framework):
        chosen.update(_walk(templates.joinpath(layer)))
    if not chosen:
        raise ScaffoldError("the templates are missing from flotilla_cli.scaffold: reinstall")
    substitutions = _substitutions(name, framework)
    rendered: dict[str, str] = {}
    for relative, template in chosen.items():
        text = template.read_text(encoding="utf-8")
        for placeholder, value in substitutions.items():
            text = text.replace(placeholder, value)
        if "{{" in text and "}}" in text.split("{{", 1)[1]:
            raise ScaffoldError(f"template {relative} has an unknown placeholder")
        rendered[relative.replace(_PACKAGE_PLACEHOLDER, f"flotilla_{name}")] = text
    return rendered


# --- the manifest -------------------------------------------------------------------------


def manifest_entry(name: str, framework: Framework) -> str:
    return (
        f"# Generated by `flotilla new service {name} --framework {framework}`.\n"
        "[[services]]\n"
        f'name = "{name}"\n'
        f'folder = "services/{name}"\n'
        f'package = "flotilla_{name}"\n'
        f'framework = "{framework}"\n'
        "http_port = 8000\n"
        "database = true\n"
        "\n"
    )


def _with_manifest_entry(text: str, name: str, framework: Framework) -> str:
    """services.toml with the new entry before the gateway's (which comes last), above
    the comment lines that belong to the gateway's entry."""
    lines = text.splitlines(keepends=True)
    headers = [i for i, line in enumerate(lines) if line.strip() == "[[services]]"]
    gateway = None
    for start in headers:
        end = next((h for h in headers if h > start), len(lines))
        if any(_GATEWAY.fullmatch(line.strip()) for line in lines[start:end]):
            gateway = start
    if gateway is None:
        raise ScaffoldError(f"{MANIFEST_FILE} has no gateway entry to insert the service before")
    at = gateway
    while at > 0 and lines[at - 1].lstrip().startswith("#"):
        at -= 1
    return "".join([*lines[:at], manifest_entry(name, framework), *lines[at:]])


# --- marker comments ---------------------------------------------------------------------


def _above_marker(text: str, where: str, marker: str, new_lines: list[str]) -> str:
    """`text` with `new_lines` inserted right above the line holding `marker`, indented
    as it is."""
    lines = text.splitlines(keepends=True)
    found = [i for i, line in enumerate(lines) if line.strip() == marker]
    if len(found) != 1:
        raise ScaffoldError(
            f"{where}: the marker comment {marker!r} is "
            f"{'missing' if not found else 'there more than once'}; the generator inserts "
            "the new service's lines above it (restore it from git)"
        )
    line = lines[found[0]]
    indent = line[: len(line) - len(line.lstrip())]
    inserted = [f"{indent}{new}\n" for new in new_lines]
    return "".join([*lines[: found[0]], *inserted, *lines[found[0] :]])


def policy_lines(name: str) -> list[str]:
    return [
        f'_r("GET", "/api/v1/{name}/items", "{name}", "{name}:read"),',
        f'_r("POST", "/api/v1/{name}/items", "{name}", "{name}:write"),',
        f'_r("GET", "/api/v1/{name}/items/{{item_id}}", "{name}", "{name}:read"),',
    ]


# Who may do what with a generated service's items: everyone signed in reads, admins write.
GRANTS: dict[str, tuple[str, ...]] = {
    "customer": ("read",),
    "support": ("read",),
    "admin": ("read", "write"),
}


# --- the root pyproject.toml -------------------------------------------------------------


def _add_to_list(text: str, key: str, item: str, *, after: str | None = None) -> str:
    """Add `"item"` to the TOML array `key = [...]` (the first one after the line `after`,
    when given), keeping its layout: one more element before the closing bracket."""
    start = 0
    if after is not None:
        start = text.find(after)
        if start < 0:
            raise ScaffoldError(f"{_PYPROJECT}: no {after!r}")
    match = re.compile(rf"^{re.escape(key)} = \[(.*?)\]", re.MULTILINE | re.DOTALL).search(
        text, start
    )
    if match is None:
        raise ScaffoldError(f"{_PYPROJECT}: no list {key} (after {after!r})")
    body = match.group(1)
    if f'"{item}"' in body:
        return text
    if "\n" in body:
        stripped = body.rstrip()
        sep = "" if stripped.endswith(",") else ","
        indent = re.search(r"\n([ \t]*)\S", body)
        pad = indent.group(1) if indent else "  "
        new_body = f'{stripped}{sep}\n{pad}"{item}",\n'
    else:
        new_body = f'{body}, "{item}"' if body.strip() else f'"{item}"'
    return text[: match.start(1)] + new_body + text[match.end(1) :]


def _with_root_pyproject(text: str, name: str) -> str:
    package = f"flotilla_{name}"
    text = _add_to_list(text, "known-first-party", package, after="[tool.ruff.lint.isort]")
    mypy = re.search(r'^mypy_path = "([^"]*)"', text, re.MULTILINE)
    if mypy is None:
        raise ScaffoldError(f"{_PYPROJECT}: no [tool.mypy] mypy_path")
    paths = mypy.group(1).split(":")
    if f"services/{name}/src" not in paths:
        services = [i for i, p in enumerate(paths) if p.startswith("services/")]
        at = services[-1] + 1 if services else len(paths)
        paths.insert(at, f"services/{name}/src")
        text = text[: mypy.start(1)] + ":".join(paths) + text[mypy.end(1) :]
    tests = re.search(r"^testpaths = \[(.*?)\]", text, re.MULTILINE | re.DOTALL)
    if tests is None:
        raise ScaffoldError(f"{_PYPROJECT}: no [tool.pytest.ini_options] testpaths")
    if f'"services/{name}/tests"' not in tests.group(1):
        # After the last service's tests, before cli/tests and tests.
        last = list(re.finditer(r'^(\s*)"services/[^"]+",\n', tests.group(1), re.MULTILINE))
        if not last:
            raise ScaffoldError(f"{_PYPROJECT}: testpaths names no services/*/tests")
        at = tests.start(1) + last[-1].end()
        text = f'{text[:at]}{last[-1].group(1)}"services/{name}/tests",\n{text[at:]}'
    text = _add_to_list(text, "root_packages", package, after="[tool.importlinter]")
    text = _add_to_list(text, "modules", package, after='id = "services-independent"')
    text = _add_to_list(text, "forbidden_modules", package, after='id = "kit-imports-no-service"')
    text = _add_to_list(text, "containers", package, after='id = "layers"')
    text = _add_to_list(
        text, "source_modules", f"{package}.domain", after='id = "adapters-outside-the-core"'
    )
    text = _add_to_list(
        text, "source_modules", f"{package}.service_layer", after='id = "adapters-outside-the-core"'
    )
    text = _add_to_list(
        text, "forbidden_modules", f"{package}.adapters", after='id = "adapters-outside-the-core"'
    )
    text = _add_to_list(text, "source_modules", f"{package}.domain", after='id = "domain-is-pure"')
    return _add_to_list(text, "forbidden_modules", f"{package}.*", after='id = "domain-is-pure"')


# --- Poetry tables -------------------------------------------------------------------------


def _poetry_tables(root: Path, staging: Path) -> str:
    """The Poetry tables of the service staged in `staging`, as the repository's
    `tools/poetry_pins.py` (loaded from `root`) writes them for every distribution."""
    script = root / _POETRY_PINS
    spec = importlib.util.spec_from_file_location("_flotilla_poetry_pins", script)
    if spec is None or spec.loader is None or not script.is_file():
        raise ScaffoldError(f"{script} not found: the Poetry tables are written by it")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        tables: str = module.render(staging)
    except LookupError as exc:  # a package not installed or not pinned
        raise ScaffoldError(f"the Poetry tables cannot be written: {exc}") from None
    return tables


# --- tidying --------------------------------------------------------------------------------


def _ruff() -> str | None:
    beside = Path(sys.executable).parent / "ruff"
    return str(beside) if beside.is_file() else shutil.which("ruff")


def _tidy(root: Path, folder: Path, progress: Progress) -> None:
    """Sort the new service's imports and format it as the repository's ruff settings say
    (its package is first-party once the root pyproject.toml names it, and where it sorts
    beside `flotilla_kit` depends on its name)."""
    ruff = _ruff()
    if ruff is None:
        progress("ruff not found: imports left in the templates' order (run `make format`)")
        return
    for args in (["check", "--fix", "--select", "I,RUF022"], ["format"]):
        done = subprocess.run(  # noqa: S603 - the venv's ruff, our own arguments
            [ruff, *args, "--quiet", str(folder)],
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            progress(f"ruff {args[0]} left something to fix: {done.stdout}{done.stderr}")
            return
    progress("sorted its imports and formatted it (ruff)")


# --- the whole -----------------------------------------------------------------------------


def _read(root: Path, relative: str) -> str:
    path = root / relative
    try:
        return path.read_text()
    except OSError as exc:
        raise ScaffoldError(f"{path}: cannot be read ({exc.strerror}): is --root a Flotilla "
                            "checkout?") from None  # fmt: skip


def plan_service(name: str, framework: Framework, root: Path) -> _Plan:
    """Everything the new service needs, checked, with nothing written yet."""
    check_name(name)
    if framework not in FRAMEWORKS:
        raise ScaffoldError(f"{framework!r} is not one of {', '.join(FRAMEWORKS)}")
    manifest_path = root / MANIFEST_FILE
    if not manifest_path.is_file():
        raise ScaffoldError(f"{manifest_path} not found: run in a Flotilla checkout or pass "
                            "--root with the repository's root")  # fmt: skip
    try:
        manifest = load_manifest(manifest_path)
    except ManifestError as exc:
        raise ScaffoldError(f"{exc}\n(fix {MANIFEST_FILE} first)") from None
    if name in manifest.names:
        raise ScaffoldError(f"{MANIFEST_FILE} already names a service {name!r}: choose another")
    plan = _Plan(name, framework, root, render_templates(name, framework))
    for where in (plan.folder, plan.folder.with_name(f".new-{name}")):
        if where.exists():
            raise ScaffoldError(f"{where} already exists: remove it or choose another name")

    new_manifest = _with_manifest_entry(manifest_path.read_text(), name, framework)
    try:
        parse_manifest(new_manifest, manifest_path)
    except ManifestError as exc:
        raise ScaffoldError(f"the new entry would break {MANIFEST_FILE}: {exc}") from None
    plan.edits[manifest_path] = new_manifest

    texts = {relative: _read(root, relative) for relative in {*_MARKED_FILES.values(), _PYPROJECT}}
    texts[_ROUTES] = _above_marker(texts[_ROUTES], _ROUTES, MARKERS["routes"], policy_lines(name))
    for role, actions in GRANTS.items():
        granted = [f'"{name}:{action}",' for action in actions]
        texts[_RBAC] = _above_marker(texts[_RBAC], _RBAC, MARKERS[role], granted)
    texts[_PLANNING] = _above_marker(
        texts[_PLANNING], _PLANNING, MARKERS["settings"], [f'"{name}": _no_settings,']
    )
    texts[_PYPROJECT] = _with_root_pyproject(texts[_PYPROJECT], name)
    for relative, text in texts.items():
        plan.edits[root / relative] = text
    return plan


def generate_service(
    name: str, framework: Framework, root: Path, *, progress: Progress = _quiet
) -> GeneratedService:
    """Write services/<name> and register it (see the module's docstring)."""
    root = root.resolve()
    plan = plan_service(name, framework, root)
    progress(f"checked: {name!r} is free, the markers and {MANIFEST_FILE} take it")
    staging = plan.folder.with_name(f".new-{name}")
    try:
        for relative, text in plan.rendered.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        progress(f"rendered {len(plan.rendered)} files of a {framework} service")
        pyproject = staging / "pyproject.toml"
        pyproject.write_text(
            pyproject.read_text().rstrip("\n") + "\n\n" + _poetry_tables(root, staging)
        )
        progress("wrote its Poetry tables from constraints.txt (tools/poetry_pins.py)")
        os.rename(staging, plan.folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"wrote {plan.folder.relative_to(root)}/")
    for path, text in plan.edits.items():
        path.write_text(text)
        progress(f"updated {path.relative_to(root)}")
    _tidy(root, plan.folder, progress)
    try:
        load_manifest(root / MANIFEST_FILE)
    except ManifestError as exc:  # written by someone else meanwhile
        raise ScaffoldError(f"{MANIFEST_FILE} no longer loads: {exc}") from None
    written = tuple(sorted(plan.folder / relative for relative in plan.rendered))
    return GeneratedService(name, framework, plan.folder, written, tuple(plan.edits))
