#!/usr/bin/env bash
# Installs what the tests and the local run need on a fresh machine that has only Rust and
# the OS: PostgreSQL server binaries, Debian's `age` CLI (the break-glass interop test) and
# ssh-keygen (SSH recipients in the seal tests),
# musl tools and the Rust musl target (the static binary), and the offline manifest checkers
# in a virtualenv at .venv. Idempotent: installs only what is missing.
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
