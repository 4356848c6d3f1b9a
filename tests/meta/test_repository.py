"""Checks of the repository itself: CI configuration, the README's commands, hygiene."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ci_workflow_matches_the_github_schema() -> None:
    workflows = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
    assert workflows, "no workflow files"
    result = subprocess.run(
        [
            sys.executable, "-m", "check_jsonschema",
            "--builtin-schema", "vendor.github-workflows",
            *map(str, workflows),
        ],
        capture_output=True,
        text=True,
        check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_broken_workflow_is_caught() -> None:
    # The check above could pass vacuously if the schema were not applied; prove it bites.
    broken = ROOT / "var" / "meta-test-broken.yml"
    broken.parent.mkdir(exist_ok=True)
    broken.write_text("on: push\njobs:\n  x:\n    runs-on: ubuntu-24.04\n    steps: 42\n")
    try:
        result = subprocess.run(
            [sys.executable, "-m", "check_jsonschema", "--builtin-schema",
             "vendor.github-workflows", str(broken)],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert result.returncode != 0
    finally:
        broken.unlink()


def test_ci_runs_exactly_the_readme_test_command() -> None:
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme.split("\n## ", 2)[0] + readme[:2000]
    commands = [
        line.strip() for line in ci.splitlines() if line.strip() and not line.startswith("#")
    ]
    assert commands[-1] == "make test"


def test_nothing_generated_or_secret_is_tracked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    forbidden_suffixes = (".pem", ".key", ".crt", ".p12", "uv.lock", ".db")
    assert not [f for f in tracked if f.endswith(forbidden_suffixes)]
    assert not [f for f in tracked if f.startswith(("var/", ".venv/"))]
    gitignore = (ROOT / ".gitignore").read_text().split()
    assert {"var/", ".venv/", "uv.lock"} <= set(gitignore)


def test_every_service_and_library_has_a_readme() -> None:
    folders = [ROOT / "libs" / "kit", ROOT / "cli", *sorted((ROOT / "services").iterdir())]
    missing = [f.name for f in folders if f.is_dir() and not (f / "README.md").exists()]
    assert not missing


_LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def _documents() -> list[Path]:
    tracked = subprocess.run(
        ["git", "ls-files", "*.md"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [ROOT / name for name in tracked]


def _outside_references(document: Path) -> list[str]:
    """What `document` points to that is not in the repository: a relative link to a
    missing file or one above the root, or a design document the repository lacks."""
    text = document.read_text()
    wrong: list[str] = []
    for target in _LINK.findall(text):
        if "://" in target or target.startswith("mailto:"):
            continue
        resolved = (document.parent / target).resolve()
        if not resolved.is_relative_to(ROOT) or not resolved.exists():
            wrong.append(target)
    if "DESIGN.md" in text and not (ROOT / "DESIGN.md").exists():
        wrong.append("DESIGN.md")
    wrong += re.findall(r"\.\./\.\./shared/\S+", text)
    return wrong


def test_the_documents_point_only_to_what_the_repository_holds() -> None:
    wrong = {str(d.relative_to(ROOT)): _outside_references(d) for d in _documents()}
    assert {name: refs for name, refs in wrong.items() if refs} == {}


def test_a_pointer_outside_the_repository_is_caught() -> None:
    document = ROOT / "var" / "meta-test-links.md"
    document.parent.mkdir(exist_ok=True)
    document.write_text("[a](../../elsewhere.md), [b](README.md), see DESIGN.md section 2\n")
    try:
        assert _outside_references(document) == ["../../elsewhere.md", "README.md", "DESIGN.md"]
    finally:
        document.unlink()
