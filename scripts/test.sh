#!/usr/bin/env bash
# Every test and check the project has, in the order a failure is cheapest to find.
# Installs what it needs first (scripts/setup.sh). Set TEST_LOG=debug to see the app's logs.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"

step() { printf '\n==> %s\n' "$*" >&2; }

step "cargo fmt --check"
cargo fmt --all --check

step "cargo clippy"
cargo clippy --locked --all-targets -- -D warnings

step "the committed OpenAPI spec under Redocly's recommended rules (scripts/lint-openapi.sh)"
scripts/lint-openapi.sh

step "cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --locked --all-targets --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e

step "proofs: schemathesis on the live API, headless Chromium on Swagger UI (scripts/proof.sh)"
set +e
scripts/proof.sh
proof_status=$?
set -e
[ "$status" -eq 0 ] && status=$proof_status

step "static binary"
scripts/check-static.sh

step "the image under a real container runtime (scripts/check-image.sh)"
scripts/check-image.sh

step "a clone under a mode-0700 directory starts its PostgreSQL (scripts/check-clone.sh)"
scripts/check-clone.sh

step "deploy manifests and Dockerfile (offline)"
scripts/check-deploy.sh

awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;/) p += $(i-1); if ($i ~ /^failed;/) f += $(i-1) } }
     END { printf "\ncargo: %d passed, %d failed\n", p, f }' "$log"
exit "$status"
