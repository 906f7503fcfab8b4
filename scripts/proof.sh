#!/usr/bin/env bash
# The proofs that are not cargo tests (docs/reliability.md), against a live `app serve` on a
# throwaway PostgreSQL, everything on 127.0.0.1:
#   1. a headless Chromium (Debian's) uses Swagger UI at /docs (proof/browser/);
#   2. schemathesis fuzzes every operation of /openapi.json, the account operations with a
#      bearer token, with a fixed seed: 0 server errors, 0 responses that break the spec;
#   3. the server ran at LOG_LEVEL=trace all along: its log holds none of the secrets in play.
#
#   scripts/proof.sh            the bounded run of scripts/test.sh
#   scripts/proof.sh --more     ten times the examples per operation
#   PROOF_SEED=n scripts/proof.sh   another seed
#
# Needs what scripts/setup.sh installs (.venv-proof, proof/browser/node_modules, chromium).
# Artifacts (screenshot, schemathesis reports, the server's log) go to target/proof/.
set -euo pipefail
cd "$(dirname "$0")/.."

examples=40
seed=${PROOF_SEED:-20261130}
for arg in "$@"; do
    case $arg in
        --more) examples=400 ;;
        -h | --help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "usage: $0 [--more]" >&2; exit 2 ;;
    esac
done

log() { printf '==> %s\n' "$*" >&2; }
out=$PWD/target/proof
mkdir -p "$out"
for tool in .venv-proof/bin/schemathesis proof/browser/node_modules/playwright-core /usr/bin/chromium; do
    [ -e "$tool" ] || { log "$tool is missing: run scripts/setup.sh"; exit 1; }
done

# `--examples` (there are none) resolves features as `cargo test` does, dev-dependencies
# included: the dependencies are then built once for this and for the tests, not twice.
cargo build --locked --bin app --examples
app=$PWD/${CARGO_TARGET_DIR:-target}/debug/app

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
secret() { head -c 24 /dev/urandom | base64 | tr -d '/+='; }

db_password="pg-$(secret)"
jwt_secret="jwt-$(secret)-$(secret)"
work=$(mktemp -d "$out/run.XXXXXX")
serve_pid=
PG_DIR=

# shellcheck disable=SC2329 # invoked by the trap
cleanup() {
    [ -n "$serve_pid" ] && kill "$serve_pid" 2>/dev/null && wait "$serve_pid" 2>/dev/null
    [ -z "$PG_DIR" ] || scripts/pg.sh stop "$PG_DIR" || true
    rm -rf "$work"
}
trap cleanup EXIT

# A throwaway PostgreSQL (scripts/pg.sh): a random port, our random password, removed on exit.
(umask 077; printf '%s' "$db_password" >"$work/pw")
pg_vars=$(scripts/pg.sh start --password-file "$work/pw" --db proof --set fsync=off --owner $$)
eval "$pg_vars"
rm -f "$work/pw"

export APP_DATABASE__HOST APP_DATABASE__PORT APP_DATABASE__USER APP_DATABASE__NAME
export APP_DATABASE__PASSWORD=$db_password APP_JWT__SECRET=$jwt_secret
export APP_HTTP__HOST=127.0.0.1 APP_METRICS__ENABLED=false APP_HTTP__SHUTDOWN_GRACE=0s
export APP_SEALED__FILE=/nonexistent LOG_LEVEL=trace
# The fuzzer logs in and registers far more often than the rate limits allow one address;
# it proves the spec, and tests/api/ratelimit.rs the limits.
export APP_RATE__PER_CLIENT_PER_MINUTE=0 APP_RATE__PER_ACCOUNT_PER_MINUTE=0
"$app" migrate 2>"$work/migrate.log" || { cat "$work/migrate.log" >&2; exit 1; }
port=$(free_port)
base=http://127.0.0.1:$port
serve_log=$out/serve.log
APP_HTTP__PORT=$port "$app" serve >"$serve_log" 2>&1 &
serve_pid=$!
for _ in $(seq 300); do
    curl -fsS "$base/ready" >/dev/null 2>&1 && break
    kill -0 "$serve_pid" 2>/dev/null || { cat "$serve_log" >&2; exit 1; }
    sleep 0.1
done
curl -fsS "$base/ready" >/dev/null

# A user and a token for the account operations.
user=proof_$RANDOM
password="pw-$(secret)"
curl -fsS -H 'content-type: application/json' "$base/api/auth/register" \
    -d "{\"username\":\"$user\",\"email\":\"$user@example.com\",\"password\":\"$password\"}" >/dev/null
token=$(curl -fsS -H 'content-type: application/json' "$base/api/auth/login" \
    -d "{\"username\":\"$user\",\"password\":\"$password\"}" | jq -r .token)

status=0

log "browser: headless Chromium on $base/docs"
if ! node proof/browser/swagger-ui.mjs --base "$base" --user "$user" --shot "$out/swagger-ui.png"; then
    status=1
fi

log "schemathesis: every operation of /openapi.json, $examples examples each, seed $seed"
report=$out/schemathesis
rm -rf "$report"
set +e
# Run from target/proof so that schemathesis' cache stays out of the work tree.
(
    cd "$out" &&
        PROOF_BASE=$base PROOF_TOKEN=$token PYTHONPATH=$OLDPWD/proof \
        SCHEMATHESIS_HOOKS=schemathesis_hooks \
        "$OLDPWD/.venv-proof/bin/schemathesis" --config-file "$OLDPWD/proof/schemathesis.toml" \
        run "$base/openapi.json" \
        --checks all --max-examples "$examples" --seed "$seed" --workers 1 \
        --request-timeout 15 --generation-database none --no-color \
        --report junit,ndjson --report-dir "$report"
) >"$out/schemathesis.txt" 2>&1
st_status=$?
set -e
tail -n 40 "$out/schemathesis.txt"
summary=$(python3 proof/schemathesis_summary.py "$report"/*.ndjson) || summary="schemathesis: no report"
[ "$st_status" -eq 0 ] || status=1

log "the server's trace-level log must hold no secret"
kill "$serve_pid"
wait "$serve_pid" || true
serve_pid=
leaks=0
for value in "$db_password" "$jwt_secret" "$password" "$token"; do
    if grep -qF -- "$value" "$serve_log"; then leaks=$((leaks + 1)); fi
done
lines=$(wc -l <"$serve_log")
if [ "$leaks" -ne 0 ]; then
    log "$leaks secret values appear in $serve_log"
    status=1
fi
echo "proof: trace log of $lines lines checked for 4 secrets (database password, JWT secret, user password, token): $leaks found"
echo "proof: $summary (seed $seed, --max-examples $examples, exit $st_status); reports in $report"
exit "$status"
