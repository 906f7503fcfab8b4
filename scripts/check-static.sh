#!/usr/bin/env bash
# Proves the shipped binary is what a `FROM scratch` image needs: statically linked (no
# interpreter, no shared libraries) and able to run in an empty root as an unprivileged uid.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=$(scripts/build-static.sh)
fail() { echo "check-static: FAIL: $*" >&2; exit 1; }

readelf -lW "$bin" | grep -q 'Requesting program interpreter' && fail "$bin has a program interpreter"
readelf -dW "$bin" | grep -q '(NEEDED)' && fail "$bin needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
install -m 0755 "$bin" "$root/app"
chmod 0755 "$root"

# uid 1000 as the design says; the image itself runs as 10001 (Dockerfile USER).
uid=1000
in_empty_root() {
    if [ "$(id -u)" -eq 0 ]; then
        chroot --userspec=$uid:$uid "$root" /app "$@"
    else
        unshare --map-root-user --root="$root" /app "$@"
    fi
}

version=$(in_empty_root --version) || fail "app --version failed in an empty root"
case "$version" in
    "app $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1) (commit "*) ;;
    *) fail "unexpected version output: $version" ;;
esac
# Loading the configuration must not need /etc, a home directory or any file.
in_empty_root config >/dev/null || fail "app config failed in an empty root"
if [ "$(id -u)" -eq 0 ]; then
    uid=10001
    in_empty_root --version >/dev/null || fail "app --version failed as the image's uid 10001"
fi

size=$(stat -c %s "$bin")
echo "check-static: ok: $version; static, runs as uid 1000 and 10001 in an empty root; $((size / 1024 / 1024)) MiB"
