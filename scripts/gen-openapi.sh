#!/usr/bin/env bash
# Regenerates openapi/openapi.json and openapi/openapi.yaml from the code (the hidden
# `app openapi` subcommand, which loads no configuration). Commit the result: the `spec` test
# in tests/api fails while the committed files differ from what the binary serves.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --bin app >&2
bin="${CARGO_TARGET_DIR:-target}/debug/app"
mkdir -p openapi
"$bin" openapi --format json > openapi/openapi.json.tmp
"$bin" openapi --format yaml > openapi/openapi.yaml.tmp
mv openapi/openapi.json.tmp openapi/openapi.json
mv openapi/openapi.yaml.tmp openapi/openapi.yaml
echo "wrote openapi/openapi.json and openapi/openapi.yaml" >&2
