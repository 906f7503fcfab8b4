#!/usr/bin/env bash
# The benchmark, one command: installs wrk, builds the shipped static binary and the bare
# hyper server the same way, then runs bench/run.py (which writes docs/BENCHMARKS.md).
# Options pass through: bench/run.sh --users 1000 --big 1000000 --duration 10
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
if ! command -v wrk >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
app=$(scripts/build-static.sh)
CC_x86_64_unknown_linux_musl=musl-gcc \
    cargo build --release --locked --target x86_64-unknown-linux-musl \
    --manifest-path bench/hyper-hello/Cargo.toml >&2
exec python3 bench/run.py --app "$app" "$@"
