#!/usr/bin/env bash
# Runs the app locally the way the pod does: wait-db, then migrate, then serve.
#
# With no database configured (no DATABASE_URL, APP_DATABASE__HOST or APP_CONFIG), it starts
# a private PostgreSQL of its own under target/dev-pg (kept between runs, stopped on exit),
# listening on 127.0.0.1:${DEV_PG_PORT:-55432} with a generated password. Anything else in
# the environment (APP_ENV, LOG_LEVEL, PORT, ...) is passed through: see `app config`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh postgres
cargo build --locked --bin app
app="${CARGO_TARGET_DIR:-target}/debug/app"

log() { printf '==> %s\n' "$*" >&2; }

start_private_postgres() {
    local base=$PWD/target/dev-pg port=${DEV_PG_PORT:-55432}
    local data=$base/data pwfile=$PWD/target/dev-pg.password
    local bin run=()
    bin=$(dirname "$(ls -d /usr/lib/postgresql/*/bin/initdb | sort -V | tail -1)")
    if [ "$(id -u)" -eq 0 ]; then run=(runuser -u postgres --); fi

    mkdir -p "$base"
    [ "$(id -u)" -eq 0 ] && chown postgres: "$base"
    if [ ! -s "$pwfile" ]; then
        (umask 077; head -c 18 /dev/urandom | base64 | tr -d '/+=' >"$pwfile")
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        log "initialising a private PostgreSQL in $data"
        local tmp=$base/pw.tmp
        install -m 0600 "$pwfile" "$tmp"
        [ "$(id -u)" -eq 0 ] && chown postgres: "$tmp"
        "${run[@]}" "$bin/initdb" -D "$data" -U postgres --auth=scram-sha-256 \
            --pwfile="$tmp" -E UTF8 --locale=C --no-instructions >/dev/null
        rm -f "$tmp"
    fi
    if ! "${run[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
        log "starting the private PostgreSQL on 127.0.0.1:$port"
        "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$base/postgres.log" -w -s \
            -o "-p $port -c listen_addresses=127.0.0.1 -c unix_socket_directories=''" start
        # Expanded now: the function's locals are gone by the time the trap runs.
        # shellcheck disable=SC2064
        trap "$(printf '%q ' "${run[@]}" "$bin/pg_ctl" -D "$data" -m fast -s stop)" EXIT
    fi
    export APP_DATABASE__HOST=127.0.0.1 APP_DATABASE__PORT=$port
    export APP_DATABASE__USER=postgres APP_DATABASE__NAME=discbaboons_db
    APP_DATABASE__PASSWORD=$(cat "$pwfile")
    export APP_DATABASE__PASSWORD
    # The database itself: created once, as the image's POSTGRES_DB would be.
    if ! PGPASSWORD=$APP_DATABASE__PASSWORD "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres \
        -d postgres -tAc "select 1 from pg_database where datname = 'discbaboons_db'" | grep -q 1; then
        PGPASSWORD=$APP_DATABASE__PASSWORD "$bin/psql" -X -q -h 127.0.0.1 -p "$port" -U postgres \
            -d postgres -c "create database discbaboons_db"
    fi
}

if [ -z "${DATABASE_URL:-}${APP_DATABASE__HOST:-}${APP_DATABASE__URL:-}${APP_CONFIG:-}" ]; then
    start_private_postgres
fi

"$app" wait-db --timeout 30s
"$app" migrate
log "serving on http://localhost:${PORT:-3000} (Swagger UI at /docs); Ctrl-C stops"
"$app" serve
