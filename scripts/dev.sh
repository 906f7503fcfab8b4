#!/usr/bin/env bash
# Runs the app locally the way the pod does: wait-db, then migrate, then serve.
#
# With no database configured (no DATABASE_URL, APP_DATABASE__HOST or APP_CONFIG), it starts
# this clone's private PostgreSQL (scripts/pg.sh start --persistent: kept between runs outside
# the clone, stopped on exit), listening on 127.0.0.1:${DEV_PG_PORT:-55432} with a generated
# password. `scripts/pg.sh dir --persistent` says where its data is; `scripts/pg.sh rm
# --persistent` starts over. Anything else in the environment (APP_ENV, LOG_LEVEL, PORT, ...)
# is passed through: see `app config`.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh postgres
# `--examples` (there are none) resolves features as `cargo test` does, dev-dependencies
# included: the dependencies are then built once for this and for the tests, not twice.
cargo build --locked --bin app --examples
app="${CARGO_TARGET_DIR:-target}/debug/app"

log() { printf '==> %s\n' "$*" >&2; }

start_private_postgres() {
    local vars
    vars=$(scripts/pg.sh start --persistent --port "${DEV_PG_PORT:-55432}" --db discbaboons_db)
    eval "$vars"
    if [ "$PG_STARTED" -eq 1 ]; then
        log "started this clone's PostgreSQL on 127.0.0.1:$PG_PORT (data in $PG_DIR)"
        # Expanded now: the variables may be gone by the time the trap runs.
        # shellcheck disable=SC2064
        trap "$(printf '%q ' scripts/pg.sh stop "$PG_DIR")" EXIT
    else
        log "using this clone's PostgreSQL, already running on 127.0.0.1:$PG_PORT (data in $PG_DIR)"
    fi
    export APP_DATABASE__HOST APP_DATABASE__PORT APP_DATABASE__USER APP_DATABASE__NAME
    APP_DATABASE__PASSWORD=$(cat "$PG_PASSWORD_FILE")
    export APP_DATABASE__PASSWORD
}

if [ -z "${DATABASE_URL:-}${APP_DATABASE__HOST:-}${APP_DATABASE__URL:-}${APP_CONFIG:-}" ]; then
    start_private_postgres
fi

"$app" wait-db --timeout 30s
"$app" migrate
log "serving on http://localhost:${PORT:-3000} (Swagger UI at /docs); Ctrl-C stops"
# In the background, so that a SIGTERM to this script (not only Ctrl-C, which the whole
# process group gets) reaches serve and its graceful shutdown before the EXIT trap stops
# PostgreSQL; otherwise serve would outlive the script.
"$app" serve &
serve=$!
trap 'kill -TERM "$serve" 2>/dev/null || true' INT TERM
while kill -0 "$serve" 2>/dev/null; do wait "$serve" || true; done
wait "$serve"
