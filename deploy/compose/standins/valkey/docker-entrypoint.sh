#!/bin/sh
# As the official image's entrypoint: `valkey-server ARGS` runs the server as its own
# user, reachable from other containers (no config file, so protected mode is turned off,
# as the official image does). Here the server is Debian's redis-server.
set -eu
if [ "${1:-}" = valkey-server ]; then
  shift
  set -- redis-server --protected-mode no "$@"
fi
if [ "$(id -u)" = 0 ] && [ "${1:-}" = redis-server ]; then
  exec setpriv --reuid=redis --regid=redis --init-groups "$@"
fi
exec "$@"
