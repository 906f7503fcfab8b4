#!/usr/bin/env bash
# Builds the shipped binary: static, x86_64-unknown-linux-musl, rustls only (no OpenSSL).
# The Dockerfile's builder stage runs this same script. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
cargo build --release --locked --target "$target" >&2
bin="${CARGO_TARGET_DIR:-target}/$target/release/app"
echo "$bin"
