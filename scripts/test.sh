#!/usr/bin/env bash
# Runs the test suite; starts a throwaway PostgreSQL server on loopback when one is installed.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
if [ -z "${NAS_TEST_POSTGRES_URL:-}" ]; then
  # a server of this run's own (folder and free port): two suites at once on one machine (two
  # clones) must not stop or restart each other's server, as a shared one was seen to be
  export NAS_PG_DIR=${NAS_PG_DIR:-$(mktemp -d /tmp/nas-test-pg.XXXXXX)}
  export NAS_PG_PORT=${NAS_PG_PORT:-$("$venv/bin/python" -c 'import socket; s = socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
  if url=$(bash scripts/postgres.sh start); then
    export NAS_TEST_POSTGRES_URL=$url
    export NAS_TEST_PG_CONTROL=scripts/postgres.sh  # ours: the fault tests may restart it
    trap 'bash scripts/postgres.sh stop' EXIT
  else
    rm -rf "$NAS_PG_DIR"
  fi
fi
# two processes by default (NAS_TEST_WORKERS=0: one): tests use one torch thread each; the
# fault tests share one worker, since they restart the server
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${NAS_TEST_WORKERS:-2}" --dist loadgroup \
  "${@:2}"
