"""A throwaway PostgreSQL cluster for the benchmark (and nothing else on the machine).

Started by scripts/pg.sh, the one way the scripts start PostgreSQL: a private directory
outside the clone (reachable by the `postgres` user the server runs as when we are root),
a random loopback port, a generated superuser password, everything removed by `stop()` (or by
the next start, should this process die first). Tuned like a small production server, not like
the test clusters: fsync stays on, so pgbench and the app pay the same commit cost (the
benchmark reads, so it hardly matters).
"""

import os
import shlex
import socket
import subprocess

PG_SH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "scripts", "pg.sh")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """scripts/pg.sh start on a random loopback port; `stop()` removes everything."""

    def __init__(self, max_connections: int = 200):
        out = subprocess.run(
            [PG_SH, "start", "--owner", str(os.getpid()),
             "--set", f"max_connections={max_connections}", "--set", "shared_buffers=256MB"],
            check=True, stdout=subprocess.PIPE, text=True,
        ).stdout
        self.vars = {}
        for line in out.splitlines():
            name, _, value = line.partition("=")
            self.vars[name] = shlex.split(value)[0] if value else ""
        self.dir = self.vars["PG_DIR"]
        self.bin = self.vars["PG_BIN"]
        self.port = int(self.vars["PG_PORT"])
        # The postmaster, whose CPU (and its backends') the benchmark meters.
        self.pid = int(self.vars["PG_PID"])
        with open(self.vars["PG_PASSWORD_FILE"]) as f:
            self.password = f.read()

    def env(self, db: str) -> dict:
        """Environment for `app` and for libpq tools (psql, pgbench)."""
        return {
            "APP_DATABASE__HOST": self.vars["APP_DATABASE__HOST"],
            "APP_DATABASE__PORT": str(self.port),
            "APP_DATABASE__USER": self.vars["APP_DATABASE__USER"],
            "APP_DATABASE__PASSWORD": self.password,
            "APP_DATABASE__NAME": db,
            "APP_DATABASE__SSLMODE": "disable",
            "PGHOST": self.vars["PGHOST"],
            "PGPORT": str(self.port),
            "PGUSER": self.vars["PGUSER"],
            "PGPASSWORD": self.password,
            "PGDATABASE": db,
        }

    def psql(self, db: str, sql: str) -> str:
        out = subprocess.run(
            [f"{self.bin}/psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, **self.env(db)}, check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def stop(self):
        subprocess.run([PG_SH, "stop", self.dir], check=False)
