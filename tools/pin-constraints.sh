#!/usr/bin/env bash
# Re-pin every third-party dependency of the workspace into constraints.txt.
# Our own packages are installed editable and left out of the file.
set -euo pipefail
cd "$(dirname "$0")/.."
input=$(mktemp --suffix=.in)
trap 'rm -f "$input"' EXIT
cat requirements-dev.txt > "$input"
for package in "$@"; do echo "-e ./$package" >> "$input"; done
.venv/bin/uv pip compile --quiet --python-version 3.11 --no-header --no-annotate \
  "$input" | grep -v -e '^-e ' -e '^#' > constraints.txt
echo "pinned $(grep -c '==' constraints.txt) packages into constraints.txt"
