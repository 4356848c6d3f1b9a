#!/bin/sh
# What compose.yaml relies on of the official image's entrypoint: start as root, hand the
# data folder to `postgres`, make the cluster on the first start (superuser POSTGRES_USER
# with POSTGRES_PASSWORD, database POSTGRES_DB, then /docker-entrypoint-initdb.d/*.sql and
# *.sh), then run the server on every address with password (SCRAM) authentication.
set -eu
if [ "$(id -u)" = 0 ]; then
  install -d -o postgres -g postgres -m 0700 "$PGDATA"
  install -d -o postgres -g postgres -m 2775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" != postgres ]; then
  exec "$@"
fi
shift
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  : "${POSTGRES_PASSWORD:?is required (compose.yaml takes it from deploy/compose/.env)}"
  user=${POSTGRES_USER:-postgres}
  database=${POSTGRES_DB:-$user}
  secret=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$secret"
  initdb --pgdata="$PGDATA" --username="$user" --pwfile="$secret" --encoding=UTF8 \
    --locale=C.UTF-8 --auth-local=trust --auth-host=scram-sha-256 >/dev/null
  rm -f "$secret"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # A private socket while initialising: pg_isready (the healthcheck) reports ready only
  # once the real server listens.
  socket=$(mktemp -d)
  pg_ctl --pgdata="$PGDATA" --wait --silent \
    --options="-c listen_addresses='' -c unix_socket_directories=$socket" start
  if [ "$database" != postgres ]; then
    psql -v ON_ERROR_STOP=1 --host="$socket" --username="$user" --dbname=postgres \
      --quiet --command="CREATE DATABASE \"$database\""
  fi
  for script in /docker-entrypoint-initdb.d/*; do
    case "$script" in
      *.sql) echo "running $script"
             psql -v ON_ERROR_STOP=1 --host="$socket" --username="$user" \
               --dbname="$database" --quiet --file="$script" ;;
      *.sh) echo "running $script"; . "$script" ;;
    esac
  done
  pg_ctl --pgdata="$PGDATA" --wait --silent --mode=fast stop
  rmdir "$socket"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c jit=off "$@"
