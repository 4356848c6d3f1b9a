"""The GitHub workflows: valid against the GitHub workflow schema (check-jsonschema's
bundled copy, so the check runs offline), actions pinned by commit, CI runs the README's
lint and test commands and builds every service's image, and delivery builds and pushes
every image and deploys the prod overlay only from a version tag, through the
`production` environment, by the digests it pushed, into the namespace it is told, with
no registry or cluster named in the file. The deploy step's script is run here for real
(kubectl renders; a stand-in does `kustomize edit`, as kustomize v5.6.0 does it)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import textwrap
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


def _step(job: dict[str, Any], uses: str) -> dict[str, Any]:
    (step,) = [s for s in job["steps"] if s.get("uses", "").startswith(f"{uses}@")]
    return dict(step)


def _builds_images_from_the_wheels(job: dict[str, Any]) -> dict[str, Any]:
    """The job builds every service's image from the hermetic context: its build step."""
    assert sorted(job["strategy"]["matrix"]["service"]) == SERVICES
    runs = _run_lines(job)
    assert "make install" in runs
    assert ".venv/bin/python tools/containers/build_wheels.py" in runs
    build = _step(job, "docker/build-push-action")
    assert build["with"]["context"] == "build/wheels"
    for service in SERVICES:
        file = build["with"]["file"].replace("${{ matrix.service }}", service)
        assert (ROOT / file).is_file(), file
    return build


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


def test_ci_builds_every_image_as_delivery_does_without_pushing() -> None:
    ci = _load("ci.yml")["jobs"]
    delivery = _load("delivery.yml")["jobs"]
    build = _builds_images_from_the_wheels(ci["images"])
    assert build["with"]["push"] is False
    assert "docker/login-action" not in str(ci)
    pushed = _builds_images_from_the_wheels(delivery["images"])
    assert build["with"]["file"] == pushed["with"]["file"]


def test_delivery_checks_then_builds_every_image_then_deploys() -> None:
    jobs = _load("delivery.yml")["jobs"]
    assert jobs["images"]["needs"] == "check"
    assert jobs["deploy"]["needs"] == "images"
    assert {"make lint", "make test"} <= set(_run_lines(jobs["check"]))
    build = _builds_images_from_the_wheels(jobs["images"])
    assert build["with"]["push"] is True
    assert (
        build["with"]["tags"]
        == "${{ vars.REGISTRY }}/flotilla-${{ matrix.service }}:${{ github.ref_name }}"
    )


def test_each_image_job_hands_the_digest_it_pushed_to_the_deploy_job() -> None:
    jobs = _load("delivery.yml")["jobs"]
    steps = jobs["images"]["steps"]
    build = _step(jobs["images"], "docker/build-push-action")
    keep = next(s for s in steps if "steps.build.outputs.digest" in str(s.get("env", {})))
    assert build["id"] == "build"
    assert steps.index(build) < steps.index(keep)
    assert 'echo "$DIGEST" > "$RUNNER_TEMP/digests/$SERVICE"' in keep["run"]
    upload = _step(jobs["images"], "actions/upload-artifact")
    assert steps.index(keep) < steps.index(upload)
    assert upload["with"]["name"] == "digest-${{ matrix.service }}"
    assert upload["with"]["path"] == "${{ runner.temp }}/digests/${{ matrix.service }}"
    assert upload["with"]["if-no-files-found"] == "error"
    download = _step(jobs["deploy"], "actions/download-artifact")
    assert download["with"] == {
        "pattern": "digest-*",
        "merge-multiple": True,
        "path": "${{ runner.temp }}/digests",
    }


def _deploy_steps() -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The deploy job's steps that edit the overlay, check the release, apply it, wait."""
    steps = _load("delivery.yml")["jobs"]["deploy"]["steps"]
    edit = next(s for s in steps if "kustomize edit" in s.get("run", ""))
    check = next(s for s in steps if "check_release.py" in s.get("run", ""))
    apply = next(s for s in steps if "kubectl apply" in s.get("run", ""))
    wait = next(s for s in steps if "rollout status" in s.get("run", ""))
    assert steps.index(edit) < steps.index(check) < steps.index(apply) < steps.index(wait)
    return edit, check, apply, wait


def test_deploy_goes_through_the_production_environment_into_the_namespace_it_is_given() -> None:
    deploy = _load("delivery.yml")["jobs"]["deploy"]
    assert deploy["environment"] == {"name": "production"}
    assert deploy["env"]["NAMESPACE"] == "${{ vars.K8S_NAMESPACE || 'flotilla' }}"
    edit, check, apply, wait = _deploy_steps()
    # The namespace goes into the overlay itself (its replacements carry it into the
    # certificates' names), every step after works in it.
    assert edit["working-directory"] == "deploy/k8s/overlays/prod"
    assert 'kustomize edit set namespace "$NAMESPACE"' in edit["run"]
    assert '--namespace "$NAMESPACE"' in check["run"]
    # What is applied is the file that was checked, not a second rendering.
    assert apply["run"] == 'kubectl apply -f "$RUNNER_TEMP/release.yaml"'
    assert '"$RUNNER_TEMP/release.yaml"' in check["run"]
    assert 'kubectl -n "$NAMESPACE" rollout status' in wait["run"]
    assert "statefulsets" in wait["run"]
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
    login = _step(_load("delivery.yml")["jobs"]["images"], "docker/login-action")
    assert login["with"] == {
        "registry": "${{ vars.REGISTRY }}",
        "username": "${{ secrets.REGISTRY_USERNAME }}",
        "password": "${{ secrets.REGISTRY_PASSWORD }}",
    }


_USES = re.compile(r"^\s*(?:- )?uses: (?P<action>[\w.-]+/[\w.-]+)@(?P<ref>\S+)(?P<comment>.*)$")


@pytest.mark.parametrize("name", ["ci.yml", "delivery.yml"])
def test_actions_are_pinned_by_commit_with_the_version_in_a_comment(name: str) -> None:
    lines = [line for line in (WORKFLOWS / name).read_text().splitlines() if "uses:" in line]
    assert lines
    for line in lines:
        match = _USES.fullmatch(line)
        assert match, line
        assert re.fullmatch(r"[0-9a-f]{40}", match["ref"]), f"not a commit: {line.strip()}"
        assert re.fullmatch(r" # v\d+\.\d+\.\d+", match["comment"]), f"no version: {line.strip()}"


def test_an_action_is_pinned_to_the_same_commit_everywhere() -> None:
    pins: dict[str, set[tuple[str, str]]] = {}
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for line in path.read_text().splitlines():
            if match := _USES.fullmatch(line):
                pins.setdefault(match["action"], set()).add((match["ref"], match["comment"]))
    assert {a for a, p in pins.items() if len(p) > 1} == set()
    assert {"actions/checkout", "docker/build-push-action", "actions/download-artifact"} <= set(
        pins
    )


# A stand-in for the two `kustomize edit` commands the deploy step runs, doing what
# kustomize v5.6.0 does (kustomize/commands/edit/set/setimage.go, setnamespace.go): the
# namespace field is set; `set image NAME=NEWNAME@DIGEST` replaces NAME's entry whole
# (so the overlay's newTag goes), entries of other names stay.
_KUSTOMIZE = textwrap.dedent(r"""
    import sys, yaml

    def split(image):  # api/internal/image/image.go: Split
        slash = image.find("/")
        search, offset = (image[slash:], slash) if slash > 0 else (image, 0)
        at, colon = search.find("@"), search.find(":")
        if colon < 0 and at < 0:
            return image, "", ""
        if at >= 0 and (at < colon or colon < 0):
            return image[: at + offset], "", image[at + offset + 1 :]
        if at >= 0:
            return image[: colon + offset], image[colon + offset + 1 : at + offset], image[at + offset + 1 :]
        return image[: colon + offset], image[colon + offset + 1 :], ""

    args = sys.argv[1:]
    assert args[:2] == ["edit", "set"] and len(args) == 4, args
    data = yaml.safe_load(open("kustomization.yaml"))
    if args[2] == "namespace":
        data["namespace"] = args[3]
    else:
        assert args[2] == "image" and "=" in args[3], args
        name, value = args[3].split("=", 1)
        new_name, tag, digest = split(value)
        entry = {"name": name, "newName": new_name, "newTag": tag, "digest": digest}
        entry = {k: v for k, v in entry.items() if v}
        data["images"] = [i for i in data.get("images", []) if i["name"] != name] + [entry]
    yaml.safe_dump(data, open("kustomization.yaml", "w"), sort_keys=False)
""")
REGISTRY = "localhost:5000/flotilla-ci"


def _run_deploy_edit(tmp_path: Path, namespace: str) -> Path:
    """Runs the deploy step that edits the prod overlay, on a copy of deploy/k8s, with the
    digests an images job would have left: the release.yaml it renders."""
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed (the deploy step renders with it)")
    edit, *_ = _deploy_steps()
    shutil.copytree(ROOT / "deploy" / "k8s", tmp_path / "deploy" / "k8s")
    runner = tmp_path / "runner"
    (runner / "digests").mkdir(parents=True)
    for service in SERVICES:
        digest = "sha256:" + hashlib.sha256(service.encode()).hexdigest()
        (runner / "digests" / service).write_text(digest + "\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "kustomize"
    shim.write_text(f"#!{sys.executable}\n{_KUSTOMIZE}")
    shim.chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "NAMESPACE": namespace,
        "REGISTRY": REGISTRY,
        "RUNNER_TEMP": str(runner),
    }
    result = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", edit["run"]],
        cwd=tmp_path / edit["working-directory"], env=env, capture_output=True, text=True,
        check=False, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return runner / "release.yaml"


def _check_release(manifest: Path, namespace: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "deploy" / "k8s" / "check_release.py"),
         "--namespace", namespace, "--registry", REGISTRY, str(manifest)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip


def test_the_deploy_step_renders_every_image_by_its_pushed_digest_in_the_given_namespace(
    tmp_path: Path,
) -> None:
    release = _run_deploy_edit(tmp_path, "shop-prod")
    objects = [d for d in yaml.safe_load_all(release.read_text()) if d]
    images = {
        c["image"]
        for o in objects
        for c in o.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    }
    for service in SERVICES:
        digest = "sha256:" + hashlib.sha256(service.encode()).hexdigest()
        assert f"{REGISTRY}/flotilla-{service}@{digest}" in images
    assert not [i for i in images if "flotilla" in i and "@sha256:" not in i]
    assert {o["metadata"].get("namespace") for o in objects if o["kind"] != "Namespace"} == {
        "shop-prod"
    }
    result = _check_release(release, "shop-prod")
    assert result.returncode == 0, result.stderr
    # The check bites: the committed overlay (images by tag) and another namespace fail.
    assert _check_release(release, "flotilla").returncode == 1
    committed = tmp_path / "committed.yaml"
    rendered = subprocess.run(
        ["kubectl", "kustomize", str(ROOT / "deploy" / "k8s" / "overlays" / "prod")],
        capture_output=True, text=True, check=True, timeout=60,
    )  # fmt: skip
    committed.write_text(rendered.stdout)
    refused = _check_release(committed, "flotilla")
    assert refused.returncode == 1
    assert "image flotilla/auth:" in refused.stderr
