#!/usr/bin/env python3
"""Print the folder of every package services.toml names, in the order they are
installed (libraries, services, tools), on one line: the Makefile's PACKAGES.

The standard library only (tomllib), so it runs before the virtual environment exists;
the checked reading of the manifest is flotilla_kit.manifest, and
tests/deploy/test_manifest.py checks that both give the same folders.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

MANIFEST = Path(__file__).resolve().parents[1] / "services.toml"


def folders(manifest: Path = MANIFEST) -> list[str]:
    data = tomllib.loads(manifest.read_text())
    workspace = data["workspace"]
    return [
        *workspace["libraries"],
        *(service["folder"] for service in data["services"]),
        *workspace["tools"],
    ]


def main(argv: list[str]) -> int:
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 0 if argv[1] in ("-h", "--help") else 2
    try:
        print(" ".join(folders()))
    except (OSError, tomllib.TOMLDecodeError, KeyError, TypeError) as exc:
        print(f"error: {MANIFEST}: {exc!r}; `.venv/bin/python -c 'import flotilla_kit.manifest "
              "as m; m.load_manifest()'` says which field is wrong", file=sys.stderr)  # fmt: skip
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
