#!/usr/bin/env bash
# Make sure PostgreSQL answers on 127.0.0.1:5432 (`make test-pg`, CI): start the local
# cluster if it is installed and stopped, else say what to install. The database the
# suite uses (default `test`) is created when missing; each test stack then makes a
# schema of its own in it and drops it at teardown.
#   PGHOST, PGPORT, PGUSER, LEADFLOW_TEST_PG_DB change what is checked.
set -euo pipefail

HOST="${PGHOST:-127.0.0.1}"
PORT="${PGPORT:-5432}"
USER_NAME="${PGUSER:-postgres}"
DB="${LEADFLOW_TEST_PG_DB:-test}"

ready() { pg_isready -q -h "$HOST" -p "$PORT" -t 2 2>/dev/null; }

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n "$@"; fi; }

if ! command -v pg_isready >/dev/null 2>&1; then
  echo "PostgreSQL client tools not found: install postgresql (e.g. apt-get install postgresql)" >&2
  exit 1
fi

if ! ready; then
  echo "PostgreSQL not answering on $HOST:$PORT; starting it" >&2
  as_root service postgresql start >/dev/null 2>&1 || true
  if ! ready && command -v pg_lsclusters >/dev/null 2>&1; then
    while read -r version cluster _; do
      as_root pg_ctlcluster "$version" "$cluster" start >/dev/null 2>&1 || true
    done < <(pg_lsclusters --no-header 2>/dev/null)
  fi
  for _ in $(seq 1 60); do
    if ready; then break; fi
    sleep 0.5
  done
fi
if ! ready; then
  echo "PostgreSQL did not come up on $HOST:$PORT" >&2
  exit 1
fi

if ! psql -h "$HOST" -p "$PORT" -U "$USER_NAME" -d "$DB" -Atc "SELECT 1" >/dev/null 2>&1; then
  psql -h "$HOST" -p "$PORT" -U "$USER_NAME" -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
fi
echo "PostgreSQL ready: postgresql://$USER_NAME@$HOST:$PORT/$DB"
