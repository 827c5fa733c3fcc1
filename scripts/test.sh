#!/usr/bin/env bash
# Runs the test suite; starts a throwaway PostgreSQL server on loopback when one is installed
# (not with NAS_TEST_SERVERS=0: `make test-fast` runs no test that needs one).
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
free_port() {
  "$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}
if [ -z "${NAS_TEST_POSTGRES_URL:-}" ] && [ "${NAS_TEST_SERVERS:-1}" != 0 ]; then
  # servers of this run's own (folders and free ports), so two suites at once on one machine
  # (two clones) cannot stop each other's: one that no test disrupts, and one that only the
  # server fault tests (tests/test_faults_server.py) restart and pause under their searches
  export NAS_PG_DIR=${NAS_PG_DIR:-$(mktemp -d /tmp/nas-test-pg.XXXXXX)}
  export NAS_PG_PORT=${NAS_PG_PORT:-$(free_port)}
  if url=$(bash scripts/postgres.sh start); then
    export NAS_TEST_POSTGRES_URL=$url
    trap 'bash scripts/postgres.sh stop' EXIT
    fault_dir=$(mktemp -d /tmp/nas-test-pg-faults.XXXXXX)
    fault_port=$(free_port)
    if fault_url=$(NAS_PG_DIR=$fault_dir NAS_PG_PORT=$fault_port bash scripts/postgres.sh start)
    then
      export NAS_TEST_PG_FAULT_URL=$fault_url NAS_TEST_PG_FAULT_DIR=$fault_dir
      export NAS_TEST_PG_FAULT_PORT=$fault_port
      export NAS_TEST_PG_CONTROL=scripts/postgres.sh  # restarts and pauses the fault server
      trap 'bash scripts/postgres.sh stop
            NAS_PG_DIR=$fault_dir NAS_PG_PORT=$fault_port bash scripts/postgres.sh stop
            rm -f "$fault_dir.lock"' EXIT  # the fault tests take turns through this lock
    else
      rm -rf "$fault_dir"
    fi
  else
    rm -rf "$NAS_PG_DIR"
  fi
fi
# two processes by default (NAS_TEST_WORKERS=0: one), tests handed out one by one; each uses
# one torch thread. Nothing relies on xdist groups: with pytest 9.2 and xdist 3.8 xdist_group
# marks are silently ignored (xdist renames items through a private attribute pytest no longer
# reads), which once let fault tests stop the server under each other. The server fault tests
# now have a server of their own and take turns on it through a file lock.
"$venv/bin/python" -m pytest -q -p no:cacheprovider -n "${NAS_TEST_WORKERS:-2}" --dist load \
  "${@:2}"
