#!/usr/bin/env bash
# Installs what the tests and the local run need on a fresh machine that has only Rust and
# the OS: PostgreSQL server binaries, Debian's `age` CLI (the break-glass interop test) and
# ssh-keygen (SSH recipients in the seal tests), podman and runc (the image test),
# musl tools and the Rust musl target (the static binary), the offline manifest checkers
# in a virtualenv at .venv, and what the proofs need (nginx, Chromium, node, schemathesis in
# .venv-proof, playwright-core in proof/browser, Redocly's CLI in proof/openapi-lint). Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '==> %s\n' "$*" >&2; }

# `setup.sh postgres` installs only what a local run needs.
only=${1:-all}

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
        log "need root to run: $* (install it by hand, or run as root)"; return 1
    fi
}

missing=()
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "$only" = all ]; then
    command -v age >/dev/null || missing+=(age)
    command -v ssh-keygen >/dev/null || missing+=(openssh-client)
    command -v musl-gcc >/dev/null || missing+=(musl-tools)
    command -v readelf >/dev/null || missing+=(binutils)
    # scripts/proof.sh and tests/proof/rolling.rs: nginx in front of replicas, a real
    # browser on Swagger UI (Debian's Chromium, never a downloaded one), curl and jq.
    [ -x /usr/sbin/nginx ] || missing+=(nginx)
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    command -v node >/dev/null || missing+=(nodejs)
    command -v npm >/dev/null || missing+=(npm)
    command -v curl >/dev/null || missing+=(curl)
    command -v jq >/dev/null || missing+=(jq)
    # scripts/check-deploy.sh runs deploy/rebuild.sh under dash (Essential on Debian, so
    # normally there; not on every other image).
    command -v dash >/dev/null || missing+=(dash)
    # scripts/check-image.sh: podman builds and runs the image; Debian's runc, because crun
    # refuses some kernels' hybrid cgroup layout (scripts/podman/containers.conf).
    command -v podman >/dev/null || missing+=(podman)
    command -v runc >/dev/null || missing+=(runc)
    # `podman kube play` builds its pod's pause image locally around catatonit.
    [ -x /usr/bin/catatonit ] || [ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
fi
if [ "${#missing[@]}" -gt 0 ]; then
    log "installing Debian packages: ${missing[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# The postgresql package starts a cluster of its own on 5432; the tests never use it.
getent passwd postgres >/dev/null || { log "no postgres user after installing postgresql"; exit 1; }

[ "$only" = postgres ] && exit 0

if command -v rustup >/dev/null; then
    rustup target list --installed | grep -qx x86_64-unknown-linux-musl \
        || rustup target add x86_64-unknown-linux-musl >&2
    for component in clippy rustfmt; do
        rustup component list --installed | grep -q "^$component" || rustup component add "$component" >&2
    done
fi

# schemathesis for scripts/proof.sh, in a virtualenv of its own: it needs a newer
# `packaging` than checkov in .venv allows.
if [ -f scripts/requirements-proof.txt ]; then
    stamp=.venv-proof/.requirements-proof.sha
    want=$(sha256sum scripts/requirements-proof.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing schemathesis into .venv-proof"
        python3 -m venv .venv-proof
        .venv-proof/bin/pip install -q --disable-pip-version-check -r scripts/requirements-proof.txt
        echo "$want" >"$stamp"
    fi
fi

# playwright-core (no browser download: it drives /usr/bin/chromium) for proof/browser, and
# Redocly's CLI for scripts/lint-openapi.sh, each from its package-lock.json.
for dir in proof/browser proof/openapi-lint; do
    [ -f "$dir/package-lock.json" ] || continue
    stamp=$dir/node_modules/.package-lock.sha
    want=$(sha256sum "$dir/package-lock.json" | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing $dir's npm packages"
        (cd "$dir" && npm ci --no-audit --no-fund --loglevel=error)
        echo "$want" >"$stamp"
    fi
done

if [ -f scripts/requirements-tools.txt ]; then
    stamp=.venv/.requirements-tools.sha
    want=$(sha256sum scripts/requirements-tools.txt | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
        log "installing Python tools into .venv"
        python3 -m venv .venv
        .venv/bin/pip install -q --disable-pip-version-check -r scripts/requirements-tools.txt
        echo "$want" >"$stamp"
    fi
fi
