"""A throwaway PostgreSQL cluster for the benchmark (and nothing else on the machine).

Runs as the `postgres` user when we are root, as initdb refuses root. Tuned like a small
production server, not like the test clusters: fsync stays on, so pgbench and the app pay
the same commit cost (the benchmark reads, so it hardly matters).
"""

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time


def pg_bin() -> str:
    if os.environ.get("PG_BIN"):
        return os.environ["PG_BIN"]
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(p.split("/")[-2]),
    )
    if not candidates:
        raise SystemExit("no PostgreSQL under /usr/lib/postgresql: run scripts/setup.sh")
    return candidates[-1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + postgres on a random loopback port; `stop()` removes everything."""

    PASSWORD = "bench-superuser-pw"

    def __init__(self, base: str, max_connections: int = 200):
        os.makedirs(base, exist_ok=True)
        self.dir = tempfile.mkdtemp(prefix="pg-", dir=base)
        os.chmod(self.dir, 0o755)
        self.port = free_port()
        self.bin = pg_bin()
        self.preexec = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

            def demote():
                os.setgid(pw.pw_gid)
                os.setuid(pw.pw_uid)

            self.preexec = demote
        pwfile = os.path.join(self.dir, "pw")
        with open(pwfile, "w") as f:
            f.write(self.PASSWORD)
        if os.geteuid() == 0:
            os.chown(pwfile, pw.pw_uid, pw.pw_gid)
        subprocess.run(
            [f"{self.bin}/initdb", "-D", f"{self.dir}/data", "-U", "postgres",
             "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C",
             "--no-instructions"],
            check=True, stdout=subprocess.DEVNULL, preexec_fn=self.preexec,
        )
        self.proc = subprocess.Popen(
            [f"{self.bin}/postgres", "-D", f"{self.dir}/data", "-p", str(self.port),
             "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=",
             "-c", f"max_connections={max_connections}", "-c", "shared_buffers=256MB"],
            stdout=subprocess.DEVNULL, stderr=open(f"{self.dir}/postgres.log", "w"),
            preexec_fn=self.preexec,
        )
        deadline = time.time() + 30
        while time.time() < deadline:
            if subprocess.run(
                [f"{self.bin}/pg_isready", "-q", "-h", "127.0.0.1", "-p", str(self.port)]
            ).returncode == 0:
                return
            time.sleep(0.05)
        raise SystemExit(f"benchmark PostgreSQL did not start; see {self.dir}/postgres.log")

    def env(self, db: str) -> dict:
        """Environment for `app` and for libpq tools (psql, pgbench)."""
        return {
            "APP_DATABASE__HOST": "127.0.0.1",
            "APP_DATABASE__PORT": str(self.port),
            "APP_DATABASE__USER": "postgres",
            "APP_DATABASE__PASSWORD": self.PASSWORD,
            "APP_DATABASE__NAME": db,
            "APP_DATABASE__SSLMODE": "disable",
            "PGHOST": "127.0.0.1",
            "PGPORT": str(self.port),
            "PGUSER": "postgres",
            "PGPASSWORD": self.PASSWORD,
            "PGDATABASE": db,
        }

    def psql(self, db: str, sql: str) -> str:
        out = subprocess.run(
            [f"{self.bin}/psql", "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-c", sql],
            env={**os.environ, **self.env(db)}, check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)
