#!/usr/bin/env bash
# Runs the test suite; starts a throwaway PostgreSQL server on loopback when one is installed.
set -euo pipefail
venv=${1:-.venv}
cd "$(dirname "$0")/.."
if [ -z "${NAS_TEST_POSTGRES_URL:-}" ] && url=$(bash scripts/postgres.sh start); then
  export NAS_TEST_POSTGRES_URL=$url
  export NAS_TEST_PG_CONTROL=scripts/postgres.sh  # ours: the fault tests may restart it
  trap 'bash scripts/postgres.sh stop' EXIT
fi
"$venv/bin/python" -m pytest -q -p no:cacheprovider "${@:2}"
