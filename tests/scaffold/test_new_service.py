"""`flotilla new service` for real, once per framework, three services side by side in one
copy of this repository's tree (what git lists, uncommitted work included): the generated
services' own unit and integration tests run there (on SQLite and PostgreSQL, each `serve`
process answering tokens of the kit's TokenMinter), and ruff, ruff format and mypy
--strict pass on them as `make lint` runs them. Then the three join `flotilla up` (the
launcher of the copy) and answer through the gateway with tokens from the auth service.
(One tree and one run of each tool for the three: the tools' start-up, mypy's above all,
is most of the time.)

Nothing is installed: the copy's packages are imported through PYTHONPATH (its `src`
folders), which the launcher's supervisor, forking parent and instances inherit.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from flotilla_kit.devservers import free_port
from flotilla_kit.tls import client_context

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
# One service per framework, each named after it.
SERVICES = {"fastapi": "notesfa", "flask": "notesfl", "django": "notesdj"}


def copy_of_the_tree(destination: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a file deleted in the work tree is still listed
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)
    return destination


def environment(tree: Path) -> dict[str, str]:
    """This environment with the copy's packages first on the import path (but the gRPC
    contracts: their generated modules are built, not listed by git; the installed
    flotilla_proto has them, and the generator does not touch it)."""
    sources = [tree / "libs/kit/src", tree / "cli/src"]
    sources += sorted((tree / "services").glob("*/src"))
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("FLOTILLA_", "OTEL_"))}
    return {**keep, "PYTHONPATH": os.pathsep.join(map(str, sources)), "COLUMNS": "160"}


def run(tree: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=tree,
        env=environment(tree),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def flotilla(tree: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run(tree, sys.executable, "-m", "flotilla_cli", *args, timeout=timeout)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the tree with one generated service per framework."""
    copy = copy_of_the_tree(tmp_path_factory.mktemp("tree"))
    for framework, name in SERVICES.items():
        made = flotilla(copy, "new", "service", name, "--framework", framework, "--root", str(copy))
        assert made.returncode == 0, made.stdout + made.stderr
        assert f"wrote services/{name}/" in made.stdout
    return copy


def test_the_generated_services_pass_their_tests_and_the_linters(tree: Path) -> None:
    folders = [f"services/{name}" for name in SERVICES.values()]
    tested = run(
        tree, str(BIN / "pytest"), "-p", "no:cacheprovider", "-q", "-rA",
        *(f"{folder}/tests" for folder in folders),
    )  # fmt: skip
    output = tested.stdout + tested.stderr
    assert tested.returncode == 0, output
    assert "skipped" not in output, output  # every test ran, PostgreSQL's too
    for folder in folders:  # each framework's tests ran
        assert f"PASSED {folder}/tests/integration/" in output, output
        assert f"PASSED {folder}/tests/unit/" in output, output
    sources = [f"{folder}/{part}" for folder in folders for part in ("src", "tests")]
    for lint in (
        [str(BIN / "ruff"), "check", *folders],
        [str(BIN / "ruff"), "format", "--check", *folders],
        # strict, with the copy's pyproject.toml: its mypy_path names the new services
        [str(BIN / "mypy"), "--strict", *sources],
    ):
        linted = run(tree, *lint)
        assert linted.returncode == 0, f"{lint}:\n{linted.stdout}{linted.stderr}"


@pytest.fixture(scope="module")
def system(tree: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The copy's system (every generated service among it), started once."""
    var_dir = tmp_path_factory.mktemp("system") / "var"
    var_dir.mkdir()
    var_dir.chmod(0o755)  # the embedded PostgreSQL runs as another user when we are root
    port = free_port()
    up = flotilla(
        tree, "up", "--detach", "--instances", "1", "--db", "sqlite",
        "--gateway-port", str(port), "--timeout", "180", "--var-dir", str(var_dir),
        timeout=300,
    )  # fmt: skip
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield var_dir, f"https://127.0.0.1:{port}"
    finally:
        down = flotilla(tree, "down", "--var-dir", str(var_dir))
        assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.e2e
@pytest.mark.parametrize("framework", list(SERVICES))
def test_a_generated_service_joins_flotilla_up_behind_the_gateway(
    tree: Path, system: tuple[Path, str], framework: str
) -> None:
    name = SERVICES[framework]
    items = f"/api/v1/{name}/items"
    var_dir, gateway = system
    status = json.loads(flotilla(tree, "status", "--json", "--var-dir", str(var_dir)).stdout)
    assert any(i["service"] == name and i["ready"] for i in status["instances"]), status
    users = json.loads((var_dir / "demo-credentials.json").read_text())["users"]
    passwords = {u["username"]: u["password"] for u in users}
    with httpx.Client(
        base_url=gateway, verify=client_context(var_dir / "tls" / "ca.pem"), timeout=10
    ) as client:

        def token(username: str) -> dict[str, str]:
            answer = client.post(
                "/api/v1/auth/token",
                data={"grant_type": "password", "username": username,
                      "password": passwords[username]},
            )  # fmt: skip
            assert answer.status_code == 200, answer.text
            return {"Authorization": f"Bearer {answer.json()['access_token']}"}

        assert client.get(items).status_code == 401  # the gateway's policy: a token first
        admin, customer = token("ada"), token("alice")
        created = client.post(items, json={"name": "Mug", "quantity": 2}, headers=admin)
        assert created.status_code == 201, created.text
        item = created.json()
        assert item["created_by"] == next(u["id"] for u in users if u["username"] == "ada")
        read = client.get(f"{items}/{item['id']}", headers=customer)
        assert read.status_code == 200, read.text
        assert read.json() == item
        # The customer role reads but may not write: refused by the gateway's policy.
        refused = client.post(items, json={"name": "Cup", "quantity": 1}, headers=customer)
        assert refused.status_code == 403, refused.text
