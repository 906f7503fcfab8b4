"""Counts what a schemathesis run did, from its NDJSON report: test cases generated, requests
sent, server errors, checks run and failed. Prints one line for docs/reliability.md."""

import json
import sys

cases = requests = server_errors = checks = failed = 0
operations = set()
for path in sys.argv[1:]:
    with open(path) as report:
        for line in report:
            event = json.loads(line).get("ScenarioFinished")
            if not event:
                continue
            recorder = event["recorder"]
            method, _, path = recorder["label"].partition(" ")
            if path.startswith("/"):
                operations.add((method, path))
            cases += len(recorder.get("cases", {}))
            for interaction in recorder.get("interactions", {}).values():
                requests += 1
                response = interaction.get("response") or {}
                if response.get("status_code", 0) >= 500:
                    server_errors += 1
            for results in recorder.get("checks", {}).values():
                for check in results:
                    checks += 1
                    failed += check.get("status") == "failure"
print(
    f"schemathesis: {len(operations)} operations, {cases} test cases generated, "
    f"{requests} requests sent, {server_errors} server errors, "
    f"{checks} checks run, {failed} failed"
)
