#!/usr/bin/env python3
"""The benchmark: is `app serve` limited by PostgreSQL and nothing else?

One command (`bench/run.sh`, which installs wrk and builds the binaries first). In one run on
one machine it measures the shipped static binary against its limits, measured alongside:

- `GET /api/users/{username}` req/s vs pgbench TPS for the same SQL at the same concurrency;
- `GET /health` req/s vs a bare hyper server (bench/hyper-hello) built the same way;
- `GET /api/users?limit=50`: first page and a deep page (p50), at 1 k users and, with
  `--big N`, at N users;
- peak RSS under load (VmHWM), process start to first 200, the pod's init chain
  (wait-db + migrate with nothing pending + serve ready), binary size.

Writes a table with ratios and targets to docs/BENCHMARKS.md. Ratios, not absolute numbers,
are the point: this machine is shared and absolute figures move by a quarter between runs.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(__file__))
from pg import Cluster, free_port  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
JWT = "bench-jwt-secret-that-is-long-enough-0123456789"


def log(msg):
    print(f"==> {msg}", file=sys.stderr, flush=True)


def seed(cluster, db, users):
    """Synthetic users with profiles on top of the seed's sample users."""
    # language=PostgreSQL
    cluster.psql(db, f"""
        insert into users (username, password_hash)
        select 'user_' || g, '!bench-no-login' from generate_series(1, {users}) g;
        insert into user_profiles (user_id, email, name, location, bio)
        select u.id, u.username || '@example.com', 'User ' || u.id, 'Somewhere', 'Benchmark user'
        from users u left join user_profiles p on p.user_id = u.id where p.user_id is null;
        analyze;
    """)


def wait_http(url, timeout=10.0, want=200):
    """Polls until `url` answers `want`; returns seconds waited."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == want:
                    return time.perf_counter() - start
        except Exception:
            pass
        time.sleep(0.0005)
    raise SystemExit(f"{url} did not answer {want} within {timeout}s")


def first_200(cmd, env, url):
    """Spawns a server and measures spawn -> first 200, polling as tightly as sockets allow."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    host, port = url.split("//")[1].split("/")[0].split(":")
    path = "/" + url.split("//")[1].split("/", 1)[1]
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode()
    while True:
        if time.perf_counter() - start > 10:
            proc.kill()
            raise SystemExit(f"{cmd} did not answer on {url}")
        try:
            with socket.create_connection((host, int(port)), timeout=1) as s:
                s.sendall(request)
                if s.recv(64).startswith(b"HTTP/1.1 200"):
                    return proc, time.perf_counter() - start
        except OSError:
            time.sleep(0.0002)


def wrk(url, threads, connections, duration, script=None, warmup=2):
    base = ["wrk", f"-t{threads}", f"-c{connections}", "--latency"]
    if script:
        base += ["-s", script]
    if warmup:
        subprocess.run(base + [f"-d{warmup}s", url], check=True, capture_output=True)
    out = subprocess.run(
        base + [f"-d{duration}s", url], check=True, capture_output=True, text=True
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(m.group(1)), m.group(2)
        return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {
        "rps": rps,
        "p50_ms": pct(50),
        "p99_ms": pct(99),
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": sum(map(int, errors.groups())) if errors else 0,
    }


def pgbench(cluster, db, script, users, clients, threads, duration, warmup=2):
    env = {**os.environ, **cluster.env(db)}
    cmd = [f"{cluster.bin}/pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(threads),
           "-D", f"users={users}", "-f", script]
    if warmup:
        subprocess.run(cmd + ["-T", str(warmup)], env=env, check=True, capture_output=True)
    out = subprocess.run(cmd + ["-T", str(duration)], env=env, check=True,
                         capture_output=True, text=True).stdout
    return float(re.search(r"tps = ([\d.]+)", out).group(1))


TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid, children=False):
    """CPU seconds a process used (with `children`, also its reaped children's)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def postgres_cpu(postmaster):
    """CPU of the whole server: postmaster, reaped backends, and live backends."""
    total = proc_cpu(postmaster, children=True)
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                with open(f"/proc/{pid}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                if int(fields[1]) == postmaster:
                    total += proc_cpu(int(pid))
            except (FileNotFoundError, ProcessLookupError):
                pass
    return total


class CpuMeter:
    """Where the CPU went during one load run: the app, PostgreSQL, and the load generator
    (wrk or pgbench, counted as our reaped children)."""

    def __init__(self, postmaster, app_pid=None):
        self.postmaster, self.app_pid = postmaster, app_pid

    def __enter__(self):
        import resource
        self.t0 = time.perf_counter()
        self.pg0 = postgres_cpu(self.postmaster)
        self.app0 = proc_cpu(self.app_pid) if self.app_pid else 0.0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.load0 = ru.ru_utime + ru.ru_stime
        return self

    def __exit__(self, *exc):
        import resource
        self.wall = time.perf_counter() - self.t0
        self.pg = postgres_cpu(self.postmaster) - self.pg0
        self.app = (proc_cpu(self.app_pid) - self.app0) if self.app_pid else 0.0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.load = ru.ru_utime + ru.ru_stime - self.load0

    def per_request_us(self, requests):
        return {name: value / requests * 1e6 for name, value in
                [("app", self.app), ("postgres", self.pg), ("load", self.load)]}


def vm_hwm_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def seal_secrets(app, work, password):
    """Prod requires sealed secrets: an identity and a sealed file, as the pod mounts them."""
    ident_dir = os.path.join(work, "identity")
    shutil.rmtree(ident_dir, ignore_errors=True)
    os.makedirs(ident_dir)
    key = os.path.join(ident_dir, "key")
    recipient = subprocess.run([app, "seal", "keygen", "-o", key], check=True,
                               capture_output=True, text=True).stdout.strip().split()[-1]
    sealed = os.path.join(work, "secrets.yaml")
    if os.path.exists(sealed):
        os.remove(sealed)
    # The first `set` creates the file for its recipients; later ones use what it records.
    # The context the prod server expects (sealed.context defaults to discbaboons/<APP_ENV>).
    create = ["--context", "discbaboons/prod", "-r", recipient]
    for name, value in [("JWT_SECRET", JWT), ("DATABASE_PASSWORD", password)]:
        subprocess.run([app, "seal", "set", sealed, name, *create], input=value, text=True,
                       check=True, capture_output=True)
        create = []
    return sealed, ident_dir


def app_env(cluster, db, port, metrics_port, sealed):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("APP_", "PG")) and k not in ("DATABASE_URL", "PORT", "LOG_LEVEL")}
    env.update({k: v for k, v in cluster.env(db).items() if k.startswith("APP_")})
    env.update({
        "APP_ENV": "prod",
        "LOG_LEVEL": "info",
        "PORT": str(port),
        "APP_METRICS__PORT": str(metrics_port),
        "APP_SEALED__FILE": sealed[0],
        "APP_SEALED__IDENTITY_DIR": sealed[1],
    })
    # The password arrives through the sealed file, as in the pod.
    del env["APP_DATABASE__PASSWORD"]
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=1000, help="synthetic users (default 1000)")
    ap.add_argument("--big", type=int, default=0,
                    help="also measure the deep page on a second database with this many users (e.g. 1000000)")
    ap.add_argument("--duration", type=int, default=10, help="seconds per wrk/pgbench run")
    ap.add_argument("--connections", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--app", default=os.path.join(ROOT, "target/x86_64-unknown-linux-musl/release/app"))
    ap.add_argument("--hyper", default=os.path.join(BENCH, "hyper-hello/target/x86_64-unknown-linux-musl/release/hyper-hello"))
    ap.add_argument("--out", default=os.path.join(ROOT, "docs/BENCHMARKS.md"))
    args = ap.parse_args()

    results = {}
    work = os.path.join(ROOT, "target", "bench")
    cluster = Cluster(max_connections=args.connections + 50)
    procs = []
    try:
        cluster.psql("postgres", "create database bench")
        port, metrics_port = free_port(), free_port()
        sealed = seal_secrets(args.app, work, cluster.password)
        env = app_env(cluster, "bench", port, metrics_port, sealed)
        base = f"http://127.0.0.1:{port}"

        # `app migrate`: a fresh apply of V2..V5, then process start to exit with nothing pending.
        t0 = time.perf_counter()
        subprocess.run([args.app, "migrate"], env=env, check=True, capture_output=True)
        results["migrate_fresh_ms"] = (time.perf_counter() - t0) * 1000
        noop = []
        for _ in range(5):
            t0 = time.perf_counter()
            subprocess.run([args.app, "migrate"], env=env, check=True, capture_output=True)
            noop.append((time.perf_counter() - t0) * 1000)
        results["migrate_noop_ms"] = sorted(noop)[2]
        seed(cluster, "bench", args.users)
        log(f"seeded {args.users} users")

        # Init chain with nothing pending, as a pod restart runs it.
        t0 = time.perf_counter()
        subprocess.run([args.app, "wait-db"], env=env, check=True, capture_output=True)
        t1 = time.perf_counter()
        subprocess.run([args.app, "migrate"], env=env, check=True, capture_output=True)
        t2 = time.perf_counter()
        proc, _ = first_200([args.app, "serve"], env, f"{base}/ready")
        t3 = time.perf_counter()
        results["init_chain_ms"] = (t3 - t0) * 1000
        results["init_parts_ms"] = {"wait_db": (t1 - t0) * 1000, "migrate": (t2 - t1) * 1000,
                                    "serve_ready": (t3 - t2) * 1000}
        proc.terminate()
        proc.wait()

        # Process start to first 200 (median of 5).
        samples = []
        for _ in range(5):
            proc, took = first_200([args.app, "serve"], env, f"{base}/health")
            samples.append(took * 1000)
            proc.terminate()
            proc.wait()
        results["first_200_ms"] = sorted(samples)[2]

        proc = subprocess.Popen([args.app, "serve"], env=env, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        procs.append(proc)
        wait_http(f"{base}/ready")

        lua = os.path.join(BENCH, "wrk")
        c, t, d = args.connections, args.threads, args.duration
        log("wrk: /health")
        results["health"] = wrk(f"{base}/health", t, c, d)
        log("wrk: /api/users/{username}")
        os.environ["BENCH_USERS"] = str(args.users)
        wrk(base, t, c, 2, script=f"{lua}/user.lua", warmup=0)
        with CpuMeter(cluster.pid, proc.pid) as meter:
            results["user"] = wrk(base, t, c, d, script=f"{lua}/user.lua", warmup=0)
        results["user_cpu_us"] = meter.per_request_us(results["user"]["rps"] * meter.wall)
        log("wrk: /api/users?limit=50 first page")
        results["page_first"] = wrk(f"{base}/api/users?limit=50", t, c, d)
        deep = deep_page_url(base, args.users)
        log("wrk: /api/users?limit=50 deep page")
        results["page_deep"] = wrk(deep, t, c, d)
        results["rss_mib"] = vm_hwm_mib(proc.pid)

        log("pgbench: the SQL of /api/users/{username}")
        pgbench(cluster, "bench", f"{BENCH}/pgbench/user.sql", args.users, c, t, 2, warmup=0)
        with CpuMeter(cluster.pid) as meter:
            results["pgbench_user_tps"] = pgbench(
                cluster, "bench", f"{BENCH}/pgbench/user.sql", args.users, c, t, d, warmup=0)
        results["pgbench_cpu_us"] = meter.per_request_us(results["pgbench_user_tps"] * meter.wall)

        log("wrk: logins (argon2id), a server with the rate limits off")
        results["login"], results["login_rss_mib"] = login_throughput(args, env, t)

        log("hyper-hello: the HTTP limit")
        hport = free_port()
        hyper = subprocess.Popen([args.hyper, str(hport)], stdout=subprocess.DEVNULL)
        procs.append(hyper)
        wait_http(f"http://127.0.0.1:{hport}/health")
        results["hyper_health"] = wrk(f"http://127.0.0.1:{hport}/health", t, c, d)

        if args.big:
            cluster.psql("postgres", "create database bench_big")
            big_env = app_env(cluster, "bench_big", free_port(), free_port(), sealed)
            subprocess.run([args.app, "migrate"], env=big_env, check=True, capture_output=True)
            log(f"seeding {args.big} users")
            seed(cluster, "bench_big", args.big)
            big = subprocess.Popen([args.app, "serve"], env=big_env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL)
            procs.append(big)
            big_base = f"http://127.0.0.1:{big_env['PORT']}"
            wait_http(f"{big_base}/ready")
            log(f"wrk: deep page at {args.big} users")
            results["page_deep_big"] = wrk(deep_page_url(big_base, args.big), t, c, d)
    finally:
        for p in procs:
            p.terminate()
            p.wait()
        cluster.stop()

    results["binary_mib"] = os.path.getsize(args.app) / 1024 / 1024
    write_report(args, results)


def login_throughput(args, env, threads):
    """Correct-password logins as fast as 8 connections send them, on a second server with the
    rate limits off (they would answer 429 after ten): the hashes a replica verifies per
    second, bounded by auth.hash_concurrency (one per core). Also its peak RSS."""
    port = free_port()
    login_env = {**env, "PORT": str(port), "APP_METRICS__ENABLED": "false",
                 "APP_RATE__PER_CLIENT_PER_MINUTE": "0", "APP_RATE__PER_ACCOUNT_PER_MINUTE": "0"}
    proc = subprocess.Popen([args.app, "serve"], env=login_env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_http(f"{base}/ready")
        user, password = "bench_login", "bench-login-password-0123"
        request = urllib.request.Request(
            f"{base}/api/auth/register", method="POST", headers={"Content-Type": "application/json"},
            data=json.dumps({"username": user, "email": "bench@example.com", "password": password}).encode())
        urllib.request.urlopen(request).read()
        os.environ["BENCH_LOGIN_USER"], os.environ["BENCH_LOGIN_PASSWORD"] = user, password
        result = wrk(base, threads, 8, args.duration, script=os.path.join(BENCH, "wrk", "login.lua"))
        return result, vm_hwm_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait()


def deep_page_url(base, users):
    """The page that starts 90 % of the way through the table. The API's cursor is opaque to
    clients; the benchmark knows it is base64url("id:<last id>") (src/api/users.rs) and builds
    one from the id of the user at that position, instead of walking thousands of pages."""
    import base64
    with urllib.request.urlopen(f"{base}/api/users/user_{int(users * 0.9)}") as r:
        body = json.load(r)
    user = body.get("data", body)
    cursor = base64.urlsafe_b64encode(f"id:{user['id']}".encode()).decode().rstrip("=")
    return f"{base}/api/users?limit=50&cursor={cursor}"


def write_report(args, r):
    def ratio(a, b):
        return a / b if b else float("nan")

    rows = [
        ("`GET /api/users/{username}` req/s vs pgbench TPS (same SQL, same concurrency)",
         f"{r['user']['rps']:.0f} / {r['pgbench_user_tps']:.0f}",
         ratio(r["user"]["rps"], r["pgbench_user_tps"]), "≥ 0.85", lambda x: x >= 0.85),
        ("`GET /health` req/s vs bare hyper",
         f"{r['health']['rps']:.0f} / {r['hyper_health']['rps']:.0f}",
         ratio(r["health"]["rps"], r["hyper_health"]["rps"]), "≥ 0.70", lambda x: x >= 0.70),
    ]
    deep = r.get("page_deep_big", r["page_deep"])
    deep_n = args.big or args.users
    rows.append((f"deep page p50 at {deep_n} users vs first page p50 at {args.users}",
                 f"{deep['p50_ms']:.2f} ms / {r['page_first']['p50_ms']:.2f} ms",
                 ratio(deep["p50_ms"], r["page_first"]["p50_ms"]), "≤ 1.5×", lambda x: x <= 1.5))
    absolute = [
        ("peak RSS under load (VmHWM)", f"{r['rss_mib']:.1f} MiB", "≤ 40 MiB", r["rss_mib"] <= 40),
        ("process start → first 200 (median of 5)", f"{r['first_200_ms']:.1f} ms", "≤ 20 ms",
         r["first_200_ms"] <= 20),
        ("init chain: wait-db + no-op migrate + serve ready", f"{r['init_chain_ms']:.0f} ms "
         f"({r['init_parts_ms']['wait_db']:.0f} + {r['init_parts_ms']['migrate']:.0f} + "
         f"{r['init_parts_ms']['serve_ready']:.0f})", "≤ 150 ms", r["init_chain_ms"] <= 150),
        ("static binary size", f"{r['binary_mib']:.1f} MiB", "≤ 20 MiB", r["binary_mib"] <= 20),
        ("peak RSS of a server verifying logins flat out (8 connections, limits off)",
         f"{r['login_rss_mib']:.1f} MiB", "≤ 128 MiB (the pod's limit)", r["login_rss_mib"] <= 128),
    ]
    migrate_rows = [
        ("`app migrate`, fresh database: V2..V5 applied, process start to exit",
         f"{r['migrate_fresh_ms']:.0f} ms"),
        ("`app migrate`, up to date: process start to exit (median of 5)",
         f"{r['migrate_noop_ms']:.0f} ms"),
    ]
    cores = os.cpu_count() or 1
    login_rows = [
        ("correct-password logins (one argon2id verification each, m=19 MiB, t=2), 8 connections",
         f"{r['login']['rps']:.1f} /s, {r['login']['rps'] / cores:.1f} /s per core, "
         f"p50 {r['login']['p50_ms']:.0f} ms"),
    ]
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1024 ** 3
    lines = [
        "# Benchmarks",
        "",
        f"Run on {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
        f"{os.cpu_count()} cores (`nproc`), {mem:.0f} GiB memory, {platform.platform()}.",
        "",
        f"Command: `bench/run.sh --users {args.users}"
        + (f" --big {args.big}" if args.big else "")
        + f" --duration {args.duration} --connections {args.connections} --threads {args.threads}`",
        "",
        "The app is the release static musl binary, `APP_ENV=prod`, request logging on at `info`.",
        "wrk and pgbench run on the same machine as the server; ratios compare figures taken in",
        "this one run. Absolute numbers on these shared machines move by ±25 % between runs.",
        "",
        "## Ratios",
        "",
        "| figure | measured | ratio | target | |",
        "|---|---|---|---|---|",
    ]
    for name, measured, value, target, ok in rows:
        lines.append(f"| {name} | {measured} | {value:.2f} | {target} | {'✅' if ok(value) else '❌'} |")
    lines += ["", "## Process", "", "| figure | measured | target | |", "|---|---|---|---|"]
    for name, measured, target, ok in absolute:
        lines.append(f"| {name} | {measured} | {target} | {'✅' if ok else '❌'} |")
    lines += ["", "## Migrations (recorded, no target)", "", "| figure | measured |", "|---|---|"]
    lines += [f"| {name} | {measured} |" for name, measured in migrate_rows]
    lines += ["", "## Logins (recorded, no target)", "", "| figure | measured |", "|---|---|"]
    lines += [f"| {name} | {measured} |" for name, measured in login_rows]
    lines += ["", "## Every wrk run", "",
              "| endpoint | req/s | p50 ms | p99 ms | non-2xx | socket errors |",
              "|---|---|---|---|---|---|"]
    for key, name in [("health", "`/health`"), ("hyper_health", "bare hyper `/health`"),
                      ("user", "`/api/users/{username}` (random user)"),
                      ("page_first", "`/api/users?limit=50` first page"),
                      ("page_deep", f"`/api/users?limit=50` deep page ({args.users} users)"),
                      ("page_deep_big", f"`/api/users?limit=50` deep page ({args.big} users)"),
                      ("login", "`POST /api/auth/login` (8 connections, limits off)")]:
        if key in r:
            w = r[key]
            lines.append(f"| {name} | {w['rps']:.0f} | {w['p50_ms']:.2f} | {w['p99_ms']:.2f} | "
                         f"{w['non2xx']} | {w['socket_errors']} |")
    lines += ["", f"pgbench (`-M prepared`, bench/pgbench/user.sql): {r['pgbench_user_tps']:.0f} TPS.",
              "", "## Where the CPU goes (µs of CPU per request, all processes on the same cores)", "",
              "| run | app | PostgreSQL | load generator | total |", "|---|---|---|---|---|"]
    for key, name in [("user_cpu_us", "wrk → app → PostgreSQL, `/api/users/{username}`"),
                      ("pgbench_cpu_us", "pgbench → PostgreSQL, the same SQL")]:
        u = r[key]
        lines.append(f"| {name} | {u['app']:.1f} | {u['postgres']:.1f} | {u['load']:.1f} | "
                     f"{sum(u.values()):.1f} |")
    lines.append("")
    notes = os.path.join(BENCH, "NOTES.md")
    if os.path.exists(notes):
        lines += [open(notes).read().rstrip(), ""]
    # bench/backup.py's section is measured separately: keep it.
    if os.path.exists(args.out):
        kept = open(args.out).read().partition("\n## Backups\n")[2]
        if kept:
            lines += ["## Backups", kept.split("\n## ", 1)[0].rstrip(), ""]
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    if not shutil.which("wrk"):
        raise SystemExit("wrk not found: run bench/run.sh, which installs it")
    main()
