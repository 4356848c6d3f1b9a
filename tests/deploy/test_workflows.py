"""The GitHub workflows: valid against the GitHub workflow schema (check-jsonschema's
bundled copy, so the check runs offline), CI runs the README's lint and test commands, and
delivery builds every service's image and deploys the prod overlay only from a version tag,
through the `production` environment, with no registry or cluster named in the file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfiles import ROOT, SERVICES

WORKFLOWS = ROOT / ".github" / "workflows"
TAG_GUARD = "startsWith(github.ref, 'refs/tags/v')"


def _load(name: str) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); GitHub reads it as "on".
    loaded: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    if True in loaded:
        loaded["on"] = loaded.pop(True)
    return loaded


def _check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    # A proxy that refuses everything: the bundled schema must be enough (CI may be offline).
    offline = {
        **os.environ,
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
         *map(str, paths)],
        capture_output=True, text=True, check=False, env=offline, timeout=60,
    )  # fmt: skip


def test_both_workflows_match_the_github_schema_offline() -> None:
    assert {p.name for p in WORKFLOWS.glob("*.yml")} >= {"ci.yml", "delivery.yml"}
    result = _check_jsonschema(*sorted(WORKFLOWS.glob("*.yml")))
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_bites(tmp_path: Path) -> None:
    broken = tmp_path / "delivery.yml"
    text = (WORKFLOWS / "delivery.yml").read_text().replace("runs-on:", "runs_on:", 1)
    broken.write_text(text)
    assert _check_jsonschema(broken).returncode != 0


def _run_lines(job: dict[str, Any]) -> list[str]:
    return [line.strip() for step in job["steps"] for line in str(step.get("run", "")).splitlines()]


def test_ci_lints_typechecks_and_tests() -> None:
    ci = _load("ci.yml")
    assert "pull_request" in ci["on"]
    assert ci["on"]["push"]["branches"] == ["main"]
    runs = [line for job in ci["jobs"].values() for line in _run_lines(job)]
    assert "make lint" in runs  # ruff + mypy --strict
    assert "make test" in runs
    assert ci["permissions"] == {"contents": "read"}


def test_delivery_runs_only_on_a_version_tag() -> None:
    delivery = _load("delivery.yml")
    assert delivery["on"] == {"push": {"tags": ["v*"]}}, "no branch, PR or manual trigger"
    for name, job in delivery["jobs"].items():
        assert job.get("if") == TAG_GUARD, f"{name} is guarded by the tag too"
    assert delivery["permissions"] == {"contents": "read"}


def test_delivery_checks_then_builds_every_image_then_deploys() -> None:
    jobs = _load("delivery.yml")["jobs"]
    assert jobs["images"]["needs"] == "check"
    assert jobs["deploy"]["needs"] == "images"
    assert {"make lint", "make test"} <= set(_run_lines(jobs["check"]))
    assert sorted(jobs["images"]["strategy"]["matrix"]["service"]) == SERVICES
    build = next(
        s
        for s in jobs["images"]["steps"]
        if s.get("uses", "").startswith("docker/build-push-action@")
    )
    assert build["with"]["push"] is True
    assert build["with"]["context"] == "."
    file_template = build["with"]["file"]
    for service in SERVICES:
        assert (ROOT / file_template.replace("${{ matrix.service }}", service)).is_file()
    assert (
        build["with"]["tags"]
        == "${{ vars.REGISTRY }}/flotilla-${{ matrix.service }}:${{ github.ref_name }}"
    )


def test_deploy_goes_through_the_production_environment() -> None:
    deploy = _load("delivery.yml")["jobs"]["deploy"]
    assert deploy["environment"] == {"name": "production"}
    runs = "\n".join(_run_lines(deploy))
    assert "kubectl apply -k deploy/k8s/overlays/release" in runs
    assert "resources: [../prod]" in runs, "the release overlay is the prod overlay plus images"
    assert "rollout status" in runs
    # Every service's image is re-pointed at the pushed one.
    assert (
        "for service in "
        + " ".join(["auth", "accounts", "payments", "inventory", "orders", "gateway"])
        in runs
    )
    loops = re.findall(r"for service in ([\w ]+); do", runs)
    assert [sorted(loop.split()) for loop in loops] == [SERVICES]
    # Only the deploy job (behind the environment's reviewers) gets the cluster's secret.
    text = (WORKFLOWS / "delivery.yml").read_text()
    assert text.count("secrets.KUBECONFIG") == 1
    assert "secrets.KUBECONFIG" in str(deploy)


def test_no_registry_host_or_credential_is_written_in() -> None:
    text = (WORKFLOWS / "delivery.yml").read_text()
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
    hosts = re.findall(r"\b(?:[a-z0-9-]+\.)+(?:io|com|net|org|dev|cloud|azurecr\.io)\b", code)
    # Kubernetes API groups look like host names and are none.
    assert [h for h in hosts if not h.endswith("k8s.io")] == [], hosts
    login = next(
        s for s in _load("delivery.yml")["jobs"]["images"]["steps"]
        if s.get("uses", "").startswith("docker/login-action@")
    )  # fmt: skip
    assert login["with"] == {
        "registry": "${{ vars.REGISTRY }}",
        "username": "${{ secrets.REGISTRY_USERNAME }}",
        "password": "${{ secrets.REGISTRY_PASSWORD }}",
    }


@pytest.mark.parametrize("name", ["ci.yml", "delivery.yml"])
def test_actions_are_pinned_to_a_major_version(name: str) -> None:
    for job in _load(name)["jobs"].values():
        for step in job["steps"]:
            if "uses" in step:
                assert re.fullmatch(r"[\w-]+/[\w-]+@v\d+", step["uses"]), step["uses"]


def test_the_release_overlay_names_the_images_the_k8s_base_uses() -> None:
    """The release overlay re-points `flotilla/<service>` (the names deploy/k8s uses) at
    the pushed `<registry>/flotilla-<service>:<tag>`: a rename on either side fails here."""
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / "prod")],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    images = set(re.findall(r"^\s+image: (\S+)$", rendered, flags=re.MULTILINE))
    names = {image.split(":")[0] for image in images}
    assert {f"flotilla/{s}" for s in SERVICES} <= names
    script = next(
        s["run"] for s in _load("delivery.yml")["jobs"]["deploy"]["steps"]
        if "overlays/release" in s.get("run", "") and "newName" in s.get("run", "")
    )  # fmt: skip
    assert 'echo "  - name: flotilla/$service"' in script
    assert 'echo "    newName: $REGISTRY/flotilla-$service"' in script
