#!/usr/bin/env bash
# Regenerates openapi/openapi.json and openapi/openapi.yaml from the code (the hidden
# `app openapi` subcommand). Commit the result: the `spec` test in tests/api fails while the
# committed files differ from what the binary serves.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin app >&2
bin="${CARGO_TARGET_DIR:-target}/debug/app"
# The spec does not depend on configuration; keep the environment from steering the binary.
run() { env -u APP_CONFIG -u DATABASE_URL APP_LOG__LEVEL=error "$bin" openapi "$@"; }
mkdir -p openapi
run --format json > openapi/openapi.json.tmp
run --format yaml > openapi/openapi.yaml.tmp
mv openapi/openapi.json.tmp openapi/openapi.json
mv openapi/openapi.yaml.tmp openapi/openapi.yaml
echo "wrote openapi/openapi.json and openapi/openapi.yaml" >&2
