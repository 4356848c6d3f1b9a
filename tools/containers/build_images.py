#!/usr/bin/env python3
"""Build Flotilla's service images, one per service of services.toml (hermetic: from
build/wheels, made first), and for a machine that cannot pull from Docker Hub, their base
and the compose stack's stand-ins from Debian packages.

Every image is built from the one deploy/docker/Dockerfile with the service's build
arguments (IMAGES below, from services.toml; compose.yaml and the workflows pass the
same, which tests/deploy/test_images.py and test_manifest.py check). Run it with the dev
environment's Python (`make install` first): it reads the manifest with flotilla_kit.

  --debian      the Python base made from Debian bookworm's packages (mmdebstrap, then
                imported), passed to the Dockerfile as PYTHON_IMAGE
  --standins    also the stand-ins deploy/compose/standins.yaml runs in place of the
                official PostgreSQL, NATS, Valkey and Prometheus images (implies --debian)

The Debian images are made once and kept (--refresh makes them again). Each step prints
what it did and how long it took.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

try:
    from flotilla_kit.manifest import Manifest, ManifestError, load_manifest
except ImportError:  # pragma: no cover - run by another Python than the dev environment's
    raise SystemExit("error: run it with .venv/bin/python (`make install` first)") from None

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "deploy" / "docker" / "Dockerfile"


def _manifest() -> Manifest:
    try:
        return load_manifest(ROOT / "services.toml")
    except ManifestError as exc:
        raise SystemExit(f"error: {exc}") from None


# Each service's build arguments for DOCKERFILE (what they mean: its header), from
# services.toml (the one list of services), by service name.
IMAGES: dict[str, dict[str, str]] = {
    service.name: service.build_args
    for service in sorted(_manifest().services, key=lambda s: s.name)
}
SERVICES = list(IMAGES)
STANDINS = ["postgres", "nats", "valkey", "prometheus"]
STANDINS_DIR = ROOT / "deploy" / "compose" / "standins"
# Made from Debian packages; the names deploy/compose/standins.yaml and the stand-ins'
# Dockerfiles use.
DEBIAN_PYTHON = "localhost/flotilla-debian-python:bookworm"
DEBIAN_STANDINS = "localhost/flotilla-debian-standins:bookworm"
STANDIN_IMAGE = "localhost/flotilla-standin-{}:bookworm"
_EXCLUDED = [  # what no container here reads: documentation, and the stand-ins' bulk
    "/usr/share/man/*", "/usr/share/doc/*", "/usr/share/locale/*", "/usr/share/info/*",
    # prometheus' classic UI's time zones (214 MB); the API, which is all we read, is whole
    "/usr/share/javascript/moment-timezone/*",
    # PostgreSQL's JIT (LLVM and its bitcode, 150 MB): the stand-in runs with jit=off
    "/usr/lib/x86_64-linux-gnu/libLLVM*", "/usr/lib/x86_64-linux-gnu/libz3*",
    "/usr/lib/postgresql/*/lib/bitcode/*",
]  # fmt: skip
_DEBIAN_PACKAGES = {
    DEBIAN_PYTHON: ["python3", "python3-venv", "python-is-python3", "ca-certificates", "passwd"],
    DEBIAN_STANDINS: [
        "ca-certificates", "postgresql-15", "nats-server", "redis-server", "prometheus"
    ],
}  # fmt: skip
_STARTED = time.monotonic()


def say(message: str) -> None:
    print(f"==> [{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr, flush=True)
    raise SystemExit(1)


def run(argv: list[str], *, what: str) -> str:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        fail(f"{what} failed ({' '.join(argv[:3])} ...):\n{result.stdout[-2000:]}"
             f"{result.stderr[-3000:]}")  # fmt: skip
    return result.stdout + result.stderr


def image_exists(engine: str, image: str) -> bool:
    found = subprocess.run(  # noqa: S603 - the engine, our image names
        [engine, "image", "inspect", image], capture_output=True, check=False
    )
    return found.returncode == 0


def debian_image(engine: str, image: str, refresh: bool) -> None:
    """A Debian bookworm root file system with `packages`, imported as `image`."""
    if image_exists(engine, image) and not refresh:
        say(f"{image}: kept (--refresh makes it again)")
        return
    if shutil.which("mmdebstrap") is None:
        fail("mmdebstrap is missing: apt-get install mmdebstrap (Debian/Ubuntu)")
    packages = _DEBIAN_PACKAGES[image]
    say(f"{image}: mmdebstrap bookworm with {', '.join(packages)}")
    options = [f"--dpkgopt=path-exclude={path}" for path in _EXCLUDED]
    options.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
    if image == DEBIAN_STANDINS:
        # The package makes a cluster; the stand-in makes its own on first start.
        options.append('--customize-hook=rm -rf "$1/var/lib/postgresql/15" "$1/etc/postgresql/15"')
    command = ["mmdebstrap", "--quiet", "--variant=apt", f"--include={','.join(packages)}"]
    strap = subprocess.Popen(  # noqa: S603 - found on PATH above, our arguments
        [*command, *options, "bookworm", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    imported = subprocess.run(  # noqa: S603
        [engine, "import", "-", image], stdin=strap.stdout, capture_output=True, check=False
    )
    _, strap_err = strap.communicate()
    if strap.returncode != 0 or imported.returncode != 0:
        fail(f"{image}: {strap_err.decode()[-3000:]}{imported.stderr.decode()[-2000:]}")
    say(f"{image}: imported")


def build(engine: str, image: str, dockerfile: Path, context: Path, args: dict[str, str]) -> None:
    started = time.monotonic()
    argv = [engine, "build", "--file", str(dockerfile), "--tag", image]
    if Path(engine).name == "podman":
        argv.append("--format=docker")  # the OCI format has no HEALTHCHECK
    argv += [f"--build-arg={k}={v}" for k, v in args.items()]
    output = run([*argv, str(context)], what=f"building {image}")
    cached = output.count("Using cache") + output.count("CACHED")
    say(f"{image}: built in {time.monotonic() - started:.1f} s ({cached} steps from the cache)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n\n".join(__doc__.split("\n\n")[1:]) if __doc__ else None,
    )
    parser.add_argument(
        "--engine", default=os.environ.get("CONTAINER_ENGINE"),
        help="podman or docker (default: $CONTAINER_ENGINE, else podman if installed)",
    )  # fmt: skip
    parser.add_argument("--tag", default="dev", help="tag of the service images (dev)")
    parser.add_argument("--debian", action="store_true", help="base made from Debian packages")
    parser.add_argument("--standins", action="store_true", help="the compose stand-ins too")
    parser.add_argument("--refresh", action="store_true", help="make the Debian images again")
    args = parser.parse_args(argv)
    engine = args.engine or ("podman" if shutil.which("podman") else "docker")
    if shutil.which(engine) is None:
        parser.error(f"{engine} is not installed (apt-get install podman, or install Docker)")
    build_args: dict[str, str] = {}
    if args.debian or args.standins:
        debian_image(engine, DEBIAN_PYTHON, args.refresh)
        build_args["PYTHON_IMAGE"] = DEBIAN_PYTHON
    if args.standins:
        debian_image(engine, DEBIAN_STANDINS, args.refresh)
        for name in STANDINS:
            folder = STANDINS_DIR / name
            build(engine, STANDIN_IMAGE.format(name), folder / "Dockerfile", folder,
                  {"ROOTFS": DEBIAN_STANDINS})  # fmt: skip
    say("wheels (tools/containers/build_wheels.py)")
    wheels = ROOT / "build" / "wheels"
    wheel_run = subprocess.run(  # noqa: S603 - our own script
        [str(ROOT / ".venv" / "bin" / "python"), str(Path(__file__).with_name("build_wheels.py")),
         "--out", str(wheels)],
        check=False,
    )  # fmt: skip
    if wheel_run.returncode != 0:
        return wheel_run.returncode
    for service, image_args in IMAGES.items():
        build(engine, f"flotilla-{service}:{args.tag}", DOCKERFILE, wheels,
              {**build_args, **image_args})  # fmt: skip
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
