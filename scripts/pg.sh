#!/usr/bin/env bash
# The one way the scripts start a PostgreSQL of their own (scripts/dev.sh, scripts/proof.sh,
# bench/pg.py): scram-sha-256, 127.0.0.1 only, no Unix socket, the superuser `postgres` with a
# generated password (or one read from a file). Nothing here touches a server that happens to
# run on the machine.
#
#   scripts/pg.sh start [--persistent] [--port N] [--password-file F] [--db NAME]
#                       [--set name=value]... [--owner PID]
#       Starts a cluster and prints, one `NAME=value` a line (shell-quoted, for `eval`):
#       PG_DIR PG_BIN PG_PORT PG_PID PG_PASSWORD_FILE PG_STARTED, the app's
#       APP_DATABASE__HOST/PORT/USER (and __NAME with --db), and libpq's PGHOST PGPORT PGUSER
#       PGPASSFILE (and PGDATABASE), so `psql` works as is. The password itself is never
#       printed: it is in PG_PASSWORD_FILE.
#         throwaway (default): a fresh cluster in a private directory under the system temp
#           directory, on a free port unless --port; `stop` removes it. Clusters whose --owner
#           process (default: the caller) is gone are removed by the next `start`.
#         --persistent: the cluster of this clone, kept between runs (scripts/dev.sh); started
#           if it is not running (PG_STARTED=1), reused if it is (PG_STARTED=0).
#       --db NAME creates that database if it does not exist. --set passes a server setting.
#   scripts/pg.sh stop DIR      stops the cluster in DIR; a throwaway one is also removed
#   scripts/pg.sh rm DIR|--persistent   stops and removes it (the way to start over)
#   scripts/pg.sh dir --persistent      prints where this clone's persistent cluster lives
#
# The files live where the server's user can reach them wherever the clone is: initdb refuses
# root, so as root the server runs as the `postgres` user, which cannot enter a clone under a
# mode-0700 directory such as /root or `mktemp -d`. Each cluster directory is mode 0700 and
# owned by the server's user: throwaway ones as ${TMPDIR:-/tmp}/discbaboons-pg.XXXXXX (/tmp
# when that user cannot reach $TMPDIR), the persistent one as
# /var/tmp/discbaboons-pg-<uid>-<hash of the clone's path>. PG_BIN overrides the binaries.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd -P)

die() { printf 'pg.sh: %s\n' "$*" >&2; exit 1; }
usage() { sed -n '2,30p' "$0" >&2; exit 2; }

pg_bin() {
    if [ -n "${PG_BIN:-}" ]; then printf '%s\n' "$PG_BIN"; return; fi
    local initdb
    initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)
    [ -x "$initdb" ] || die "no PostgreSQL under /usr/lib/postgresql: run scripts/setup.sh postgres"
    dirname "$initdb"
}

# The server's user: `postgres` when we are root, ourselves otherwise.
as_owner=()
owner_uid=$(id -u)
if [ "$owner_uid" -eq 0 ]; then
    getent passwd postgres >/dev/null || die "running as root needs a postgres user: run scripts/setup.sh postgres"
    as_owner=(runuser -u postgres --)
    owner_uid=$(id -u postgres)
fi
own() { if [ "$(id -u)" -eq 0 ]; then chown postgres: "$@"; fi; }

persistent_dir() {
    local hash
    hash=$(printf '%s' "$repo" | sha256sum | cut -c1-12)
    printf '/var/tmp/discbaboons-pg-%s-%s\n' "$(id -u)" "$hash"
}

temp_parent() {
    local parent=${TMPDIR:-/tmp}
    if [ -d "$parent" ] && "${as_owner[@]}" test -w "$parent" -a -x "$parent"; then
        printf '%s\n' "${parent%/}"
    else
        printf '/tmp\n'
    fi
}

# A process's identity that survives pid reuse: pid and start time.
proc_id() {
    local stat
    stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
    stat=${stat##*) }
    printf '%s %s\n' "$1" "$(cut -d' ' -f20 <<<"$stat")"
}

# Refuses a directory we did not create as we would have (it lives in a shared, sticky place).
check_private() {
    local dir=$1 got
    got=$(stat -c '%u %a' "$dir")
    [ "$got" = "$owner_uid 700" ] ||
        die "$dir is not a private directory of uid $owner_uid (found uid/mode $got): remove it"
}

running_pid() {
    local dir=$1 pid
    [ -f "$dir/data/postmaster.pid" ] || return 1
    "${as_owner[@]}" "$(pg_bin)/pg_ctl" -D "$dir/data" status >/dev/null 2>&1 || return 1
    pid=$(head -1 "$dir/data/postmaster.pid")
    printf '%s\n' "$pid"
}

stop_cluster() {
    local dir=$1 mode=${2:-fast}
    if [ -f "$dir/data/postmaster.pid" ]; then
        "${as_owner[@]}" "$(pg_bin)/pg_ctl" -D "$dir/data" -m "$mode" -s -w stop >/dev/null 2>&1 || true
    fi
}

remove_cluster() {
    local dir=$1
    [ -f "$dir/.discbaboons-pg" ] || die "$dir is not a cluster started by scripts/pg.sh"
    stop_cluster "$dir" immediate
    rm -rf -- "$dir"
}

# Throwaway clusters whose owner process is gone (killed before it could clean up).
sweep() {
    local parent=$1 dir want got
    for dir in "$parent"/discbaboons-pg.*; do
        [ -f "$dir/.discbaboons-pg" ] && [ -f "$dir/owner" ] || continue
        [ "$(stat -c %u "$dir")" = "$owner_uid" ] || continue
        want=$(cat "$dir/owner")
        got=$(proc_id "${want%% *}") || got=
        [ "$got" = "$want" ] || remove_cluster "$dir"
    done
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

half_started=
sql_literal() { printf "'%s'" "${1//\'/\'\'}"; }

cmd_start() {
    local persistent=0 port='' password_file='' db='' owner=$PPID settings=()
    while [ $# -gt 0 ]; do
        case $1 in
            --persistent) persistent=1 ;;
            --port) port=${2:?--port needs a value}; shift ;;
            --password-file) password_file=${2:?--password-file needs a file}; shift ;;
            --db) db=${2:?--db needs a name}; shift ;;
            --set) settings+=("${2:?--set needs name=value}"); shift ;;
            --owner) owner=${2:?--owner needs a pid}; shift ;;
            *) usage ;;
        esac
        shift
    done
    local bin dir
    bin=$(pg_bin)
    umask 077
    if [ "$persistent" -eq 1 ]; then
        dir=$(persistent_dir)
        if [ ! -d "$dir" ]; then
            mkdir -m 0700 "$dir"
            own "$dir"
            : >"$dir/.discbaboons-pg"
        fi
    else
        local parent
        parent=$(temp_parent)
        sweep "$parent"
        dir=$(mktemp -d "$parent/discbaboons-pg.XXXXXX")
        # Removed again unless the start gets to the end.
        half_started=$dir
        trap '[ -z "$half_started" ] || remove_cluster "$half_started"' EXIT
        own "$dir"
        : >"$dir/.discbaboons-pg"
        proc_id "$owner" >"$dir/owner" || die "no process $owner to own the cluster"
    fi
    check_private "$dir"

    local pwfile=$dir/password
    if [ ! -s "$pwfile" ]; then
        if [ -n "$password_file" ]; then
            cat -- "$password_file" >"$pwfile"
        else
            head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$pwfile"
        fi
        own "$pwfile"
    elif [ -n "$password_file" ] && ! cmp -s "$password_file" "$pwfile"; then
        die "$dir already has another superuser password: scripts/pg.sh rm $dir to start over"
    fi
    local password
    password=$(cat "$pwfile")
    # libpq's password file, so that psql needs nothing on its command line or environment.
    local escaped=${password//\\/\\\\}
    escaped=${escaped//:/\\:}
    printf '127.0.0.1:*:*:postgres:%s\n' "$escaped" >"$dir/pgpass"

    if [ ! -f "$dir/data/PG_VERSION" ]; then
        local sync=(--no-sync)
        [ "$persistent" -eq 1 ] && sync=()
        "${as_owner[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=scram-sha-256 \
            --pwfile="$pwfile" -E UTF8 --locale=C "${sync[@]}" --no-instructions >/dev/null ||
            die "initdb failed in $dir"
    fi

    local pid started=0
    if pid=$(running_pid "$dir"); then
        port=$(sed -n 4p "$dir/data/postmaster.pid")
    else
        local opts="-c listen_addresses=127.0.0.1 -c unix_socket_directories=''" s
        for s in "${settings[@]}"; do opts+=" -c $(printf '%q' "$s")"; done
        local fixed=$port attempt
        for attempt in 1 2 3 4 5; do
            [ -n "$fixed" ] || port=$(free_port)
            if "${as_owner[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -s \
                -o "-p $port $opts" start >/dev/null 2>&1; then
                started=1
                break
            fi
            # Another process took the port between the check and the bind: try another.
            [ -z "$fixed" ] && [ "$attempt" -lt 5 ] || {
                tail -n 20 "$dir/postgres.log" >&2 || true
                die "PostgreSQL did not start on 127.0.0.1:$port (log above)"
            }
        done
        pid=$(head -1 "$dir/data/postmaster.pid")
    fi

    if [ -n "$db" ]; then
        local exists
        exists=$(PGPASSWORD=$password "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres \
            -d postgres -tAc "select 1 from pg_database where datname = $(sql_literal "$db")")
        if [ "$exists" != 1 ]; then
            PGPASSWORD=$password "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" \
                -U postgres -d postgres -c "create database \"${db//\"/\"\"}\"" >/dev/null
        fi
    fi

    half_started=
    local name value
    for name in PG_DIR PG_BIN PG_PORT PG_PID PG_PASSWORD_FILE PG_STARTED \
        APP_DATABASE__HOST APP_DATABASE__PORT APP_DATABASE__USER APP_DATABASE__NAME \
        PGHOST PGPORT PGUSER PGPASSFILE PGDATABASE; do
        case $name in
            PG_DIR) value=$dir ;;
            PG_BIN) value=$bin ;;
            PG_PORT | APP_DATABASE__PORT | PGPORT) value=$port ;;
            PG_PID) value=$pid ;;
            PG_PASSWORD_FILE) value=$pwfile ;;
            PG_STARTED) value=$started ;;
            APP_DATABASE__HOST | PGHOST) value=127.0.0.1 ;;
            APP_DATABASE__USER | PGUSER) value=postgres ;;
            PGPASSFILE) value=$dir/pgpass ;;
            APP_DATABASE__NAME | PGDATABASE) value=$db; [ -n "$db" ] || continue ;;
        esac
        printf '%s=%q\n' "$name" "$value"
    done
}

target_dir() {
    case ${1:-} in
        --persistent) persistent_dir ;;
        '' | -*) usage ;;
        *) printf '%s\n' "${1%/}" ;;
    esac
}

case ${1:-} in
    start) shift; cmd_start "$@" ;;
    stop)
        dir=$(target_dir "${2:-}")
        [ -f "$dir/.discbaboons-pg" ] || die "$dir is not a cluster started by scripts/pg.sh"
        if [ -f "$dir/owner" ]; then remove_cluster "$dir"; else stop_cluster "$dir" fast; fi
        ;;
    rm)
        dir=$(target_dir "${2:-}")
        [ -e "$dir" ] || exit 0
        remove_cluster "$dir"
        ;;
    dir) target_dir "${2:-}" ;;
    -h | --help) sed -n '2,30p' "$0"; exit 0 ;;
    *) usage ;;
esac
