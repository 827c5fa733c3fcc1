#!/usr/bin/env bash
# start: a throwaway PostgreSQL cluster on 127.0.0.1 (prints its URL); stop: removes it;
# restart / pause N: what the fault tests do to it while searches run.
set -euo pipefail
dir=${NAS_PG_DIR:-/tmp/nas-test-pg}
port=${NAS_PG_PORT:-55432}
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
[ -n "$bin" ] || { echo "no PostgreSQL server installed" >&2; exit 1; }
# run as the postgres user when root, from / (a clone under /root is not readable by it)
as_pg() { if [ "$(id -u)" = 0 ]; then (cd / && su postgres -s /bin/bash -c "$*"); else bash -c "$*"; fi; }

start_cluster() {
  if [ "$(id -u)" = 0 ]; then chown postgres "$dir" || return 1; fi
  as_pg "'$bin/initdb' -D '$dir' -A md5 -U nas --pwfile=<(echo nas-test-secret)" >/dev/null &&
  as_pg "'$bin/pg_ctl' -D '$dir' -l '$dir/log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null &&
  PGPASSWORD=nas-test-secret "$bin/createdb" -h 127.0.0.1 -p "$port" -U nas nas
}

stop_cluster() {
  as_pg "'$bin/pg_ctl' -D '$dir' -m fast stop" >/dev/null 2>&1 || true
  rm -rf "$dir"
}

case "${1:-}" in
  start)
    if ! as_pg "'$bin/pg_ctl' -D '$dir' status" >/dev/null 2>&1; then
      rm -rf "$dir"; mkdir -p "$dir"
      if ! start_cluster; then  # leave nothing half-started behind
        echo "could not start PostgreSQL in $dir on port $port" >&2
        stop_cluster; exit 1
      fi
    fi
    echo "postgresql://nas:nas-test-secret@127.0.0.1:$port/nas"
    ;;
  stop) stop_cluster ;;
  restart)  # as a database upgrade or fail-over does: every connection is cut
    as_pg "'$bin/pg_ctl' -D '$dir' -m fast -w restart -l '$dir/log' -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200\"" >/dev/null ;;
  pause)  # stop the server for $2 seconds, then start it again
    as_pg "'$bin/pg_ctl' -D '$dir' -m fast -w stop" >/dev/null
    sleep "${2:-5}"
    as_pg "'$bin/pg_ctl' -D '$dir' -l '$dir/log' -w -o \"-p $port -k /tmp -c listen_addresses=127.0.0.1 -c max_connections=200\" start" >/dev/null ;;
  *) echo "usage: $0 start|stop|restart|pause [seconds]" >&2; exit 2 ;;
esac
