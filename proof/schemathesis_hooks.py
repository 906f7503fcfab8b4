"""Bearer tokens for schemathesis (scripts/proof.sh): the account operations run as the user
that proof.sh registered, except DELETE /api/users/me, which gets a fresh throwaway user each
time so that deleting the account cannot turn every later authenticated case into a 401."""

import os
import uuid

import requests
import schemathesis

BASE = os.environ["PROOF_BASE"]
TOKEN = os.environ["PROOF_TOKEN"]


def throwaway_token() -> str:
    name = "gone_" + uuid.uuid4().hex[:12]
    password = "pw-" + uuid.uuid4().hex
    body = {"username": name, "email": f"{name}@example.com", "password": password}
    requests.post(f"{BASE}/api/auth/register", json=body, timeout=15).raise_for_status()
    login = requests.post(
        f"{BASE}/api/auth/login", json={"username": name, "password": password}, timeout=15
    )
    login.raise_for_status()
    return login.json()["token"]


@schemathesis.auth(retry_on=[])
class Bearer:
    def get(self, case, context):
        return TOKEN

    def set(self, case, data, context):
        token = data
        if case.method.upper() == "DELETE" and case.path == "/api/users/me":
            token = throwaway_token()
        case.headers = case.headers or {}
        case.headers["Authorization"] = f"Bearer {token}"
