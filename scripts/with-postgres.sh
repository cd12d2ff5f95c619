#!/usr/bin/env bash
# Runs a command with REGRASP_TEST_DATABASE_URL pointing at a reachable PostgreSQL.
#
# Order: an explicit REGRASP_TEST_DATABASE_URL; else the server on 127.0.0.1:5432 when it
# answers; else a throwaway cluster started by pg_virtualenv (installing the Debian
# packages first when they are missing). The tests create and drop their own databases
# on that server, so any of the three works.
set -euo pipefail

if [[ -n "${REGRASP_TEST_DATABASE_URL:-}" ]]; then
    exec "$@"
fi

port_answers() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432
    else
        (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
    fi
}

if port_answers; then
    export REGRASP_TEST_DATABASE_URL="postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
    exec "$@"
fi

if ! command -v pg_virtualenv >/dev/null 2>&1; then
    echo "with-postgres: no PostgreSQL on 127.0.0.1:5432; installing one to start a throwaway cluster" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq postgresql postgresql-common >/dev/null
fi

echo "with-postgres: starting a throwaway cluster with pg_virtualenv" >&2
# pg_virtualenv exports PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE for the command.
exec pg_virtualenv bash -c '
    export REGRASP_TEST_DATABASE_URL="postgresql+psycopg://${PGUSER}:${PGPASSWORD}@127.0.0.1:${PGPORT}/${PGDATABASE}"
    exec "$@"
' with-postgres "$@"
