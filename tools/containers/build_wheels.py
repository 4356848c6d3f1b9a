#!/usr/bin/env python3
"""Build the wheels the services' images are installed from, on this host.

The images install nothing from an index: the build context of deploy/docker/Dockerfile
(every service's image) is the folder this writes (build/wheels by default), and pip runs
there with --no-index.

  deps/       every third-party dependency of the services, at the versions
              constraints.txt pins (downloaded, or built here when PyPI has no wheel),
              and deps/requirements.txt naming exactly those; nothing else is left there
  flotilla/   one wheel per Flotilla package: the kit, the gRPC contracts (with the
              modules proto/generate.sh makes, which are not committed) and each service

A second run downloads only what changed. Run it with the dev environment's Python
(`make install` first): it uses that environment's uv, pip and grpcio-tools.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from flotilla_kit.manifest import ManifestError, load_manifest

try:
    _MANIFEST = load_manifest(Path(__file__).resolve().parents[2] / "services.toml")
except ManifestError as exc:
    raise SystemExit(f"error: {exc}") from None

ROOT = Path(__file__).resolve().parents[2]
# The libraries and every service services.toml names (not the tools: no image has them).
PACKAGES = [
    *_MANIFEST.workspace.libraries,
    *sorted(service.folder for service in _MANIFEST.services),
]
# The two folders of the build context; the Dockerfile COPYs each in a layer of its own, so
# the dependencies' layer is rebuilt only when a pin changes.
DEPS, OURS = "deps", "flotilla"
_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"==> [{time.monotonic() - _STARTED:5.1f}s] {message}", flush=True)


def run(*argv: str | Path, cwd: Path = ROOT, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(  # noqa: S603 - our own tools, arguments we build
        [str(a) for a in argv], cwd=cwd, capture_output=True, text=True, check=False, env=env
    )
    if result.returncode != 0:
        raise SystemExit(
            f"error: {' '.join(str(a) for a in argv)} failed ({result.returncode}):\n"
            + (result.stderr or result.stdout).strip()[-3000:]
        )
    return result.stdout


def stage_proto(python: Path, staging: Path) -> Path:
    """A copy of proto/ with freshly generated modules, outside the repository: hatchling
    leaves out what .gitignore names, and the generated modules are ignored there."""
    copy = staging / "proto"
    shutil.copytree(
        ROOT / "proto", copy, ignore=shutil.ignore_patterns("__pycache__", "*_pb2*.py*")
    )
    run("bash", copy / "generate.sh", env={"PATH": "/usr/bin:/bin", "PYTHON": str(python)})
    return copy


def build_ours(uv: Path, python: Path, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory(prefix="flotilla-wheels-") as staging:
        sources = [
            stage_proto(python, Path(staging)) if p == "proto" else ROOT / p for p in PACKAGES
        ]
        for source in sources:
            run(uv, "build", "--quiet", "--wheel", "--out-dir", out, source)
    return sorted(out.glob("*.whl"))


def pinned_dependencies(uv: Path, wheels: list[Path]) -> list[str]:
    """name==version of every third-party package the wheels need, as constraints.txt
    pins them. Resolved for Python 3.11.0, so what an older 3.11 needs (Debian's 3.11.2)
    is there too."""
    with tempfile.NamedTemporaryFile("w", suffix=".in") as requirements:
        requirements.write("".join(f"{wheel}\n" for wheel in wheels))
        requirements.flush()
        compiled = run(
            uv, "pip", "compile", "--quiet", "--no-header", "--no-annotate",
            "--python-version", "3.11", "--constraint", ROOT / "constraints.txt",
            requirements.name,
        )  # fmt: skip
    pins = [line.strip() for line in compiled.splitlines() if "==" in line]
    unpinned = [pin for pin in pins if pin.lower() not in _constraints()]
    if unpinned:
        raise SystemExit(
            f"error: {', '.join(unpinned)} not pinned in constraints.txt: add them "
            "(make constraints) so every image gets the same versions"
        )
    return pins


def _constraints() -> set[str]:
    lines = (ROOT / "constraints.txt").read_text().splitlines()
    return {line.strip().lower() for line in lines if "==" in line}


def _pin_of(wheel: Path) -> tuple[str, Version]:
    name, version, _, _ = parse_wheel_filename(wheel.name)
    return str(name), version


def fetch_dependencies(python: Path, pins: list[str], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    wanted = {(canonicalize_name(p.split("==")[0]), Version(p.split("==")[1])): p for p in pins}
    have = {_pin_of(w): w for w in out.glob("*.whl")}
    for pin, wheel in have.items():
        if pin not in wanted:
            wheel.unlink()  # another version, or no longer a dependency
    missing = [spec for pin, spec in wanted.items() if pin not in have]
    if missing:
        say(f"fetching {len(missing)} of {len(pins)} dependencies (pip wheel, its cache first)")
        run(
            python, "-m", "pip", "wheel", "--quiet", "--no-deps", "--prefer-binary",
            "--disable-pip-version-check", "--wheel-dir", out, *missing,
        )  # fmt: skip
    fetched = {_pin_of(w) for w in out.glob("*.whl")}
    if absent := [spec for pin, spec in wanted.items() if pin not in fetched]:
        raise SystemExit(f"error: no wheel for {', '.join(absent)} in {out}")
    (out / "requirements.txt").write_text(
        "# Written by tools/containers/build_wheels.py: the images install exactly these.\n"
        + "".join(f"{pin}\n" for pin in sorted(pins))
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="The folder is then the build context of every service's image, e.g. "
        "docker build -f deploy/docker/Dockerfile --build-arg SERVICE=auth "
        "-t flotilla-auth:dev build/wheels (tools/containers/build_images.py builds them all)",
    )
    parser.add_argument(
        "--out", type=Path, default=ROOT / "build" / "wheels",
        help="folder for deps/ and flotilla/ (default: build/wheels)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    bin_dir = ROOT / ".venv" / "bin"
    python, uv = bin_dir / "python", bin_dir / "uv"
    if not (python.exists() and uv.exists()):
        parser.error(f"{bin_dir} lacks python or uv: run `make install` first")
    out: Path = args.out.resolve()
    say(f"building the Flotilla wheels into {out / OURS}")
    ours = build_ours(uv, python, out / OURS)
    say(f"built {', '.join(w.name.split('-')[0] for w in ours)}")
    pins = pinned_dependencies(uv, ours)
    fetch_dependencies(python, pins, out / DEPS)
    size = sum(w.stat().st_size for w in out.glob("*/*.whl")) / 2**20
    say(f"{len(ours)} Flotilla wheels and {len(pins)} dependencies ({size:.0f} MiB) in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
