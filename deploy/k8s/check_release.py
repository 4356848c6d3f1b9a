"""Check a rendered release before it is applied: every Flotilla image is the one the
delivery workflow pushed, by digest (never a tag, which can be moved), and every object
is in the namespace the release is for.

    kubectl kustomize deploy/k8s/overlays/prod > release.yaml
    python deploy/k8s/check_release.py --namespace flotilla --registry REGISTRY release.yaml

Exits 1 naming each object that breaks a rule. Needs PyYAML only (the delivery workflow
runs it with the runner's Python).
"""

from __future__ import annotations

import argparse
import re
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

# The one list of services (services.toml at the repository's root), read with the standard
# library: the release job has no Flotilla package installed.
SERVICES = tuple(
    sorted(
        service["name"]
        for service in tomllib.loads(
            (Path(__file__).resolve().parents[2] / "services.toml").read_text()
        )["services"]
    )
)
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
# `flotilla/<service>` (the name the base uses), `<registry>/flotilla-<service>`.
_FLOTILLA = re.compile(r"(?:.*/)?flotilla[/-](?P<service>[a-z]+)")


def _repository(image: str) -> str:
    """The image without its digest and tag (a registry's port is no tag)."""
    reference = image.partition("@")[0]
    head, slash, last = reference.rpartition("/")
    return head + slash + last.partition(":")[0]


def _containers(obj: dict[str, Any]) -> Iterator[dict[str, Any]]:
    pod = obj.get("spec", {}).get("template", {}).get("spec", {})
    yield from pod.get("initContainers", [])
    yield from pod.get("containers", [])


def problems(objects: list[dict[str, Any]], namespace: str, registry: str) -> list[str]:
    found: list[str] = []
    seen = set()
    for obj in objects:
        kind, meta = obj.get("kind"), obj.get("metadata", {})
        where = f"{kind}/{meta.get('name')}"
        if kind == "Namespace":
            if meta.get("name") != namespace:
                found.append(f"{where}: not the namespace {namespace}")
        elif meta.get("namespace") != namespace:
            found.append(f"{where}: in namespace {meta.get('namespace')!r}, not {namespace!r}")
        for container in _containers(obj):
            image = str(container.get("image", ""))
            match = _FLOTILLA.fullmatch(_repository(image))
            if match is None:
                continue  # a third-party image (NATS, PostgreSQL, Valkey)
            seen.add(match["service"])
            wanted = f"{registry}/flotilla-{match['service']}"
            _, _, digest = image.partition("@")
            if image != f"{wanted}@{digest}" or not _DIGEST.fullmatch(digest):
                found.append(f"{where}: image {image}, not {wanted}@sha256:<digest>")
    missing = sorted(set(SERVICES) - seen)
    if missing:
        found.append(f"no workload runs the image of {', '.join(missing)}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--namespace", required=True, help="namespace the release is for")
    parser.add_argument("--registry", required=True, help="where the images were pushed")
    parser.add_argument("manifest", type=Path, help="rendered objects (kubectl kustomize)")
    args = parser.parse_args(argv)
    try:
        objects = [d for d in yaml.safe_load_all(args.manifest.read_text()) if d]
    except (OSError, yaml.YAMLError) as error:
        print(f"error: cannot read {args.manifest}: {error}", file=sys.stderr)
        return 2
    found = problems(objects, args.namespace, args.registry.rstrip("/"))
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    if found:
        return 1
    print(f"{len(objects)} objects, all in {args.namespace}; every Flotilla image by digest")
    return 0


if __name__ == "__main__":
    sys.exit(main())
