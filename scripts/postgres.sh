#!/usr/bin/env bash
# start: a throwaway PostgreSQL cluster on 127.0.0.1 (prints its URL); stop: removes it.
set -euo pipefail
dir=${NAS_PG_DIR:-/tmp/nas-test-pg}
port=${NAS_PG_PORT:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "no PostgreSQL server installed" >&2; exit 1; }
as_pg() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }

case "${1:-}" in
  start)
    if ! as_pg "'$bin/pg_ctl' -D '$dir' status" >/dev/null 2>&1; then
      rm -rf "$dir"; mkdir -p "$dir"
      [ "$(id -u)" = 0 ] && chown postgres "$dir"
      as_pg "'$bin/initdb' -D '$dir' -A md5 -U nas --pwfile=<(echo nas-test-secret)" >/dev/null
      as_pg "'$bin/pg_ctl' -D '$dir' -l '$dir/log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null
      PGPASSWORD=nas-test-secret "$bin/createdb" -h 127.0.0.1 -p "$port" -U nas nas
    fi
    echo "postgresql://nas:nas-test-secret@127.0.0.1:$port/nas"
    ;;
  stop)
    as_pg "'$bin/pg_ctl' -D '$dir' -m fast stop" >/dev/null 2>&1 || true
    rm -rf "$dir"
    ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
