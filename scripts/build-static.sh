#!/usr/bin/env bash
# Builds the shipped binary: static, x86_64-unknown-linux-musl, rustls only (no OpenSSL).
# The Dockerfile's builder stage runs this same script. Prints the binary's path.
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
# C code in dependencies (ring, mimalloc) needs musl's compiler wrapper (Debian musl-tools).
export CC_x86_64_unknown_linux_musl="${CC_x86_64_unknown_linux_musl:-musl-gcc}"
cargo build --release --locked --target "$target" >&2
bin="${CARGO_TARGET_DIR:-target}/$target/release/app"
echo "$bin"
