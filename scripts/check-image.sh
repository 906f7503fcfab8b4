#!/usr/bin/env bash
# The image as a container runtime sees it. Builds the Dockerfile's final stage with podman
# from the static binary (BINARY=prebuilt: the builder stage's base cannot be pulled without a
# registry), then checks what a user's runtime gets:
#   - one layer holding nothing but /app, owned by root, mode 0555 (not writable by uid 10001);
#   - USER 10001:10001, ENTRYPOINT ["/app"], CMD ["serve"], the HEALTHCHECK, EXPOSE, the labels;
#   - `--read-only` (no tmpfs either, as readOnlyRootFilesystem) runs of `--version`, `config`,
#     `wait-db`, `migrate` and `serve` against a throwaway PostgreSQL (scripts/pg.sh), on the
#     host network; the server runs as uid 10001, answers /health and /ready, the image's
#     HEALTHCHECK passes, and `podman stop` (SIGTERM) ends it with exit 0;
#   - the runbook's replacements for a shell, `podman exec`'d into that server: `/app config`
#     (uid and gid, secrets redacted, the seed's variable names warned of), `/app healthcheck`,
#     `/app wait-db --timeout 5s` (0; 4 naming the reason: a wrong password, nothing listening).
# podman's storage lives in a temporary directory removed on exit; /etc is not touched
# (CONTAINERS_CONF=scripts/podman/containers.conf). Needs root (podman with runc, as CI runs).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

fail() { echo "check-image: FAIL: $*" >&2; exit 1; }
log() { printf '==> %s\n' "$*" >&2; }

command -v podman >/dev/null || fail "podman is not installed: run scripts/setup.sh"
[ "$(id -u)" -eq 0 ] || fail "podman here runs as root (runc, cgroupfs): run as root"

bin=$(scripts/build-static.sh)
commit=$("$bin" --version | sed -n 's/.*(commit \([^)]*\)).*/\1/p')
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

work=$(mktemp -d /var/tmp/check-image.XXXXXX)
export CONTAINERS_CONF=$repo/scripts/podman/containers.conf
pm() { podman --root "$work/storage" --runroot "$work/run" "$@"; }
PG_DIR=
ctr=
# shellcheck disable=SC2329 # invoked by the trap
cleanup() {
    [ -z "$ctr" ] || pm rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
    [ -z "$PG_DIR" ] || scripts/pg.sh stop "$PG_DIR" || true
    pm rm -af -t 0 >/dev/null 2>&1 || true
    pm rmi -af >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT

log "build the final stage from $bin (BINARY=prebuilt)"
mkdir "$work/context"
cp "$bin" "$work/context/app"
image=localhost/discbaboons-app:check
# docker format: OCI image configs have no HEALTHCHECK, and Docker (the users' runtime) builds
# docker-format images.
pm build --quiet --format docker --build-arg BINARY=prebuilt --build-arg APP_GIT_COMMIT="$commit" \
    --build-arg APP_VERSION="$version" -t "$image" -f Dockerfile "$work/context" >/dev/null

log "the image's config and contents"
field() { pm image inspect "$image" --format "$1"; }
expect() { [ "$2" = "$3" ] || fail "$1: expected $3, got $2"; }
expect USER "$(field '{{.Config.User}}')" "10001:10001"
expect ENTRYPOINT "$(field '{{json .Config.Entrypoint}}')" '["/app"]'
expect CMD "$(field '{{json .Config.Cmd}}')" '["serve"]'
expect HEALTHCHECK "$(field '{{json .HealthCheck.Test}}')" '["CMD","/app","healthcheck"]'
# shellcheck disable=SC2016 # a Go template, not a shell expression
expect EXPOSE "$(field '{{range $p, $_ := .Config.ExposedPorts}}{{$p}} {{end}}')" "3000/tcp 9090/tcp "
expect "label revision" "$(field '{{index .Config.Labels "org.opencontainers.image.revision"}}')" "$commit"
expect "label version" "$(field '{{index .Config.Labels "org.opencontainers.image.version"}}')" "$version"
expect "label base" "$(field '{{index .Config.Labels "org.opencontainers.image.base.name"}}')" "scratch"

mkdir "$work/saved"
pm save --quiet --format docker-archive -o "$work/saved/image.tar" "$image"
tar -C "$work/saved" -xf "$work/saved/image.tar"
layers=$(python3 -c 'import json, sys; print("\n".join(json.load(open(sys.argv[1]))[0]["Layers"]))' "$work/saved/manifest.json")
expect "layers" "$(printf '%s\n' "$layers" | wc -l | tr -d ' ')" 1
entries=$(tar -tvf "$work/saved/$layers" | awk '{ print $1, $2, $NF }')
expect "the layer's files" "$entries" "-r-xr-xr-x 0/0 app"

run() { pm run --rm --read-only --read-only-tmpfs=false --no-healthcheck --network host "$@"; }
out=$(run "$image" --version) || fail "podman run --read-only $image --version failed"
expect "--version" "$out" "app $version (commit $commit)"
run "$image" config >/dev/null || fail "podman run --read-only $image config failed"

# A value of the base's app-config as kustomize renders it (both overlays keep these).
rendered_dev=$(.venv/bin/kubectl kustomize deploy/overlays/dev)
kubectl_render_value() {
    printf '%s\n' "$rendered_dev" | sed -n "s/^  $1: \(.*\)\$/\1/p" | head -1 | tr -d '"'
}

log "wait-db, migrate and serve against a throwaway PostgreSQL, as the pod runs them"
mkdir -m 0700 "$work/pg"
# No newline at the end: the file is the password, byte for byte.
head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$work/pg/pw"
eval "$(scripts/pg.sh start --password-file "$work/pg/pw" --db app --owner $$)"
export PGHOST PGPORT PGUSER PGPASSFILE
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
env_args=(
    -e APP_DATABASE__HOST="$APP_DATABASE__HOST" -e APP_DATABASE__PORT="$APP_DATABASE__PORT"
    -e APP_DATABASE__USER="$APP_DATABASE__USER" -e APP_DATABASE__NAME="$APP_DATABASE__NAME"
    -e APP_DATABASE__PASSWORD="$(cat "$work/pg/pw")" -e APP_JWT__SECRET="check-image-$(head -c 24 /dev/urandom | base64)"
    -e APP_HTTP__HOST=127.0.0.1 -e APP_HTTP__PORT="$port" -e APP_METRICS__ENABLED=false
    -e APP_SEALED__FILE=/nonexistent
)
run "${env_args[@]}" "$image" wait-db --timeout 30s >"$work/wait-db.log" 2>&1 \
    || { cat "$work/wait-db.log" >&2; fail "wait-db in the image failed"; }
run "${env_args[@]}" "$image" migrate >"$work/migrate.log" 2>&1 \
    || { cat "$work/migrate.log" >&2; fail "migrate in the image failed"; }
ctr=$(pm run -d --read-only --read-only-tmpfs=false --network host "${env_args[@]}" "$image" 2>/dev/null)
ready=
for _ in $(seq 100); do
    if curl -fsS "http://127.0.0.1:$port/ready" >/dev/null 2>&1; then ready=1; break; fi
    [ "$(pm inspect "$ctr" --format '{{.State.Running}}')" = true ] || break
    sleep 0.2
done
[ -n "$ready" ] || { pm logs "$ctr" >&2; fail "serve in the image never became ready on port $port"; }
curl -fsS "http://127.0.0.1:$port/health" >/dev/null || fail "/health did not answer"
pid=$(pm inspect "$ctr" --format '{{.State.Pid}}')
uids=$(awk '/^Uid:/ { print $2, $3 }' "/proc/$pid/status")
expect "serve's uid (real, effective)" "$uids" "10001 10001"
pm healthcheck run "$ctr" >/dev/null || fail "the image's HEALTHCHECK (/app healthcheck) failed on a ready server"

log "the runbook's checks without a shell (docs/runbook.md), exec'd into the running serve"
# exec_app NAME WANT-EXIT ARGS...: `podman exec` of /app in the serve container (its env, its
# uid), output in $work/exec-NAME.log; fails unless the exit code is WANT-EXIT.
exec_app() {
    local name=$1 want=$2 code=0
    shift 2
    pm exec "$@" >"$work/exec-$name.log" 2>&1 || code=$?
    [ "$code" -eq "$want" ] || { cat "$work/exec-$name.log" >&2; fail "podman exec $*: exit $code, expected $want"; }
}
exec_app config 0 "$ctr" /app config
expect "/app config's first line (in place of id)" "$(head -n 1 "$work/exec-config.log")" "# process: uid=10001 gid=10001 groups=10001"
grep -q '^password = "<redacted>"' "$work/exec-config.log" || fail "/app config does not show the database password as <redacted>"
! grep -qF "$(cat "$work/pg/pw")" "$work/exec-config.log" || fail "/app config printed the database password"
exec_app healthcheck 0 "$ctr" /app healthcheck
exec_app wait-db 0 "$ctr" /app wait-db --timeout 5s
# The two failures the runbook tells apart, both exit 4 after the timeout, by the reason
# wait-db logs: the credentials refused, nothing listening. Neither prints the password.
exec_app wait-db-password 4 -e APP_DATABASE__PASSWORD=not-the-password "$ctr" /app wait-db --timeout 5s
grep -q 'last reason: authentication failed' "$work/exec-wait-db-password.log" \
    || { cat "$work/exec-wait-db-password.log" >&2; fail "wait-db with a wrong password does not say: authentication failed"; }
! grep -q 'not-the-password' "$work/exec-wait-db-password.log" || fail "wait-db printed the password it was given"
closed=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
exec_app wait-db-closed 4 -e APP_DATABASE__PORT="$closed" "$ctr" /app wait-db --timeout 5s
grep -q 'last reason: connection refused' "$work/exec-wait-db-closed.log" \
    || { cat "$work/exec-wait-db-closed.log" >&2; fail "wait-db against a closed port does not say: connection refused"; }
exec_app healthcheck-closed 1 -e APP_HTTP__PORT="$closed" "$ctr" /app healthcheck
# The seed's names, as its ConfigMap would set them: a warning naming ours, never silence.
exec_app seed-names 0 -e NODE_ENV=production -e ENABLE_METRICS=true -e METRICS_PORT=9100 -e REQUEST_TIMEOUT=30000 \
    "$ctr" /app config
for pair in NODE_ENV=APP_ENV ENABLE_METRICS=APP_METRICS__ENABLED METRICS_PORT=APP_METRICS__PORT REQUEST_TIMEOUT=APP_HTTP__REQUEST_TIMEOUT; do
    grep -q "${pair%%=*}.*${pair#*=}" "$work/exec-seed-names.log" || { cat "$work/exec-seed-names.log" >&2; fail "no warning naming ${pair#*=} for ${pair%%=*}"; }
done

log "podman stop (SIGTERM) ends serve with exit 0"
# (podman without systemd logs that it cannot remove the healthcheck's timer: harmless.)
pm stop -t 30 "$ctr" >/dev/null 2>"$work/stop.log" || { cat "$work/stop.log" >&2; fail "podman stop failed"; }
code=$(pm inspect "$ctr" --format '{{.State.ExitCode}}')
expect "serve's exit code after SIGTERM" "$code" 0

log "each overlay's app pod under podman kube play (scripts/podman/kube_play.py)"
# A fresh database for each overlay, owned by the superuser as the postgres image makes it;
# kube_play.py gives it the roles from the resealed file (`app db roles --print-sql | psql`),
# and the rendered pods log in as the sealed logins.
# SQL on stdin: psql interpolates :"name" and :'name' there, not in -c.
psql_pg() { "$PG_BIN/psql" -v ON_ERROR_STOP=1 -qAt -d postgres "$@" >/dev/null; }
host_app=${CARGO_TARGET_DIR:-target}/debug/app
[ -x "$host_app" ] || cargo build --locked --bin app >&2
db=$(kubectl_render_value APP_DATABASE__NAME)
pods=()
for overlay in dev prod; do
    psql_pg -v db="$db" <<<"drop database if exists :\"db\"; create database :\"db\";"
    line=$(.venv/bin/python3 scripts/podman/kube_play.py "$overlay" --image "$image" --app "$host_app" \
        --pg-port "$APP_DATABASE__PORT" --db-password-file "$work/pg/pw" --work "$work/kube" \
        --psql "$PG_BIN/psql" \
        --podman "podman --root $work/storage --runroot $work/run") || fail "the $overlay pod under podman kube play"
    echo "$line"
    pods+=("$overlay")
done

echo "check-image: ok: $image ($(field '{{.Size}}') bytes, 1 layer: /app 0555 root), USER 10001:10001, read-only: --version, config, wait-db, migrate, serve (uid 10001, /health, /ready, HEALTHCHECK), exec of config/healthcheck/wait-db, SIGTERM -> exit 0; kube play of ${pods[*]}"
