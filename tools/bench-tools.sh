#!/usr/bin/env bash
# The external programs `make bench` compares against: wrk (the load generator of the
# gateway and stacks benches) and nginx (the reference proxy). Installed from the
# distribution's packages where this can (root and apt-get); otherwise it says what is
# missing and how to get it, and the benches print which rows they had to leave out.
set -euo pipefail
missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
if [ ${#missing[@]} -eq 0 ]; then
  echo "==> wrk and nginx are installed"
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "==> installing ${missing[*]} (apt-get)"
  if apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q "${missing[@]}" >/dev/null 2>&1; }; then
    echo "==> installed ${missing[*]}"
    exit 0
  fi
  echo "==> could not install ${missing[*]} with apt-get; the benches run without them" >&2
  exit 0
fi
echo "==> missing: ${missing[*]}. Install them (Debian/Ubuntu: sudo apt-get install ${missing[*]})" \
     "to get the wrk load and the nginx reference rows; the benches run without them." >&2
