#!/usr/bin/env bash
# scripts/pg.sh works wherever a user cloned the repo, as whoever runs it (root in a container
# or CI, where the server runs as `postgres`): the committed tree is cloned into a fresh
# `mktemp -d` parent (mode 0700, as /root is), and from that clone
#   1. a throwaway cluster starts, answers `select 1` with the printed settings, and `stop`
#      leaves no process and no file behind;
#   2. a throwaway cluster whose owner process died is removed by the next start;
#   3. the persistent cluster (scripts/dev.sh's) keeps its data across a stop and a start, and
#      `rm --persistent` removes it;
# and nothing is written inside the clone. Bounded: every step has a timeout.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }
fail() { printf 'check-clone: %s\n' "$*" >&2; exit 1; }

parent=$(mktemp -d)
[ "$(stat -c %a "$parent")" = 700 ] || fail "mktemp -d did not give a mode-0700 directory"
clone=$parent/clone
PG_DIR=
# shellcheck disable=SC2329 # invoked by the trap
cleanup() {
    [ -z "$PG_DIR" ] || "$clone/scripts/pg.sh" rm "$PG_DIR" >/dev/null 2>&1 || true
    [ ! -x "$clone/scripts/pg.sh" ] || "$clone/scripts/pg.sh" rm --persistent >/dev/null 2>&1 || true
    rm -rf "$parent"
}
trap cleanup EXIT
git clone -q "$PWD" "$clone"
pg() { timeout 120 "$clone/scripts/pg.sh" "$@"; }
# Only the printed settings, never the caller's.
unset PGHOST PGPORT PGUSER PGPASSWORD PGPASSFILE PGDATABASE PGSERVICE
select1() {
    local got
    got=$(PGHOST=$PGHOST PGPORT=$PGPORT PGUSER=$PGUSER PGPASSFILE=$PGPASSFILE PGDATABASE=$1 \
        timeout 30 "$PG_BIN/psql" -X -q -tA -w -c "${2:-select 1}") || fail "psql failed on $PGPORT"
    printf '%s\n' "$got"
}
# A process runs until it is reaped or a zombie (pg_ctl -w returns as the pid file goes).
runs() {
    local i state
    for i in $(seq 50); do
        state=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
        state=${state##*) }
        [ "${state%% *}" != Z ] || return 1
        [ "$i" -eq 50 ] || sleep 0.1
    done
}
gone() {
    local dir=$1 pid=$2
    [ ! -e "$dir" ] || fail "$dir is left behind"
    ! runs "$pid" || fail "postmaster $pid still runs"
}

log "throwaway cluster from a clone under $parent (mode 0700), as $(id -un)"
vars=$(pg start --db check --owner $$)
eval "$vars"
[ "$(select1 check)" = 1 ] || fail "select 1 did not answer 1"
[ "$APP_DATABASE__HOST:$APP_DATABASE__PORT:$APP_DATABASE__USER:$APP_DATABASE__NAME" = \
    "127.0.0.1:$PGPORT:postgres:check" ] || fail "APP_DATABASE__* do not name the cluster"
case $PG_DIR in "$clone"/*) fail "the cluster lives inside the clone: $PG_DIR" ;; esac
[ "$(stat -c %a "$PG_DIR")" = 700 ] || fail "$PG_DIR is not mode 0700"
pg stop "$PG_DIR"
gone "$PG_DIR" "$PG_PID"
PG_DIR=

log "a cluster whose owner died is swept by the next start"
sleep 60 &
owner=$!
vars=$(pg start --owner "$owner")
eval "$vars"
orphan_dir=$PG_DIR orphan_pid=$PG_PID
kill "$owner"
wait "$owner" 2>/dev/null || true
vars=$(pg start --owner $$)
eval "$vars"
gone "$orphan_dir" "$orphan_pid"
pg stop "$PG_DIR"
gone "$PG_DIR" "$PG_PID"
PG_DIR=

log "the persistent cluster keeps its data between runs"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
vars=$(pg start --persistent --port "$port" --db dev)
eval "$vars"
[ "$PG_STARTED" = 1 ] || fail "the persistent cluster was not started"
[ "$PG_DIR" = "$(pg dir --persistent)" ] || fail "start and dir disagree on the persistent cluster"
select1 dev "create table kept (x int); insert into kept values (42)" >/dev/null
vars=$(pg start --persistent --port "$port" --db dev)
eval "$vars"
[ "$PG_STARTED" = 0 ] || fail "a running persistent cluster was started again"
pg stop "$PG_DIR"
! runs "$PG_PID" || fail "the persistent cluster still runs after stop"
vars=$(pg start --persistent --port "$port" --db dev)
eval "$vars"
[ "$(select1 dev 'select x from kept')" = 42 ] || fail "the persistent cluster lost its data"
pg rm --persistent
gone "$PG_DIR" "$PG_PID"

log "scripts/dev.sh reaches its PostgreSQL (stand-ins for cargo and app)"
stubs=$parent/stubs
mkdir -p "$stubs" "$parent/target/debug"
printf '#!/bin/sh\nexit 0\n' >"$stubs/cargo"
cat >"$parent/target/debug/app" <<STUB
#!/bin/sh
# wait-db: an authenticated select 1 with what dev.sh exported; migrate, serve: nothing.
[ "\$1" = wait-db ] || exit 0
[ -z "\$DATABASE_URL" ] || exit 3
PGPASSWORD=\$APP_DATABASE__PASSWORD exec "$PG_BIN/psql" -X -q -tA -w -h "\$APP_DATABASE__HOST" \\
    -p "\$APP_DATABASE__PORT" -U "\$APP_DATABASE__USER" -d "\$APP_DATABASE__NAME" -c 'select 1' >"$parent/wait-db.out"
STUB
chmod +x "$stubs/cargo" "$parent/target/debug/app"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
(
    unset DATABASE_URL APP_DATABASE__HOST APP_DATABASE__URL APP_CONFIG
    PATH=$stubs:$PATH CARGO_TARGET_DIR=$parent/target DEV_PG_PORT=$port \
        timeout 120 "$clone/scripts/dev.sh" >"$parent/dev.log" 2>&1
) || { cat "$parent/dev.log" >&2; fail "scripts/dev.sh failed"; }
[ "$(cat "$parent/wait-db.out" 2>/dev/null)" = 1 ] ||
    { cat "$parent/dev.log" >&2; fail "dev.sh's wait-db did not reach PostgreSQL"; }
! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" || fail "dev.sh left its PostgreSQL running"
PG_DIR=$(pg dir --persistent)
[ -d "$PG_DIR/data" ] || fail "dev.sh's PostgreSQL keeps no data in $PG_DIR"
pg rm --persistent
[ ! -e "$PG_DIR" ] || fail "$PG_DIR is left behind"
PG_DIR=

[ -z "$(git -C "$clone" status --porcelain --ignored)" ] || fail "files were written inside the clone"
log "ok: PostgreSQL starts, answers and is cleaned up from a clone under a private directory"
