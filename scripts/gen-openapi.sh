#!/usr/bin/env bash
# Regenerates openapi/openapi.json and openapi/openapi.yaml from the code (the hidden
# `app openapi` subcommand). Commit the result: the `spec` test in tests/api fails while the
# committed files differ from what the binary serves.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin app >&2
bin="${CARGO_TARGET_DIR:-target}/debug/app"
# The spec does not depend on configuration: run with an empty environment so that nothing
# (APP_ENV=prod without a sealed file, a bad DATABASE_URL) can stop it.
run() { env -i LOG_LEVEL=error "$bin" openapi "$@"; }
mkdir -p openapi
run --format json > openapi/openapi.json.tmp
run --format yaml > openapi/openapi.yaml.tmp
mv openapi/openapi.json.tmp openapi/openapi.json
mv openapi/openapi.yaml.tmp openapi/openapi.yaml
echo "wrote openapi/openapi.json and openapi/openapi.yaml" >&2
