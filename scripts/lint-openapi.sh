#!/usr/bin/env bash
# The committed spec (openapi/openapi.json, which the `spec` test keeps equal to what the server
# serves) under Redocly's `recommended` rules: no errors. Warnings are printed, not fatal: the
# one left is operation-4xx-response on /health, /ready and /api/info, which answer no 4xx.
# Redocly's CLI is pinned in proof/openapi-lint/package-lock.json (scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
redocly=proof/openapi-lint/node_modules/.bin/redocly
[ -x "$redocly" ] || { echo "lint-openapi: $redocly is missing: run scripts/setup.sh" >&2; exit 1; }
# No telemetry, no update check: the run needs nothing but the file.
export REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true
for spec in openapi/openapi.json openapi/openapi.yaml; do
    "$redocly" lint --extends recommended --format stylish "$spec" 2>&1 | grep -v '[║╔╚]' || true
    "$redocly" lint --extends recommended --format summary "$spec" >/dev/null 2>&1 \
        || { echo "lint-openapi: $spec breaks Redocly's recommended rules (errors above)" >&2; exit 1; }
done
echo "lint-openapi: openapi/openapi.json and openapi/openapi.yaml pass Redocly's recommended rules with no errors"
