#!/usr/bin/env python3
"""Runs an overlay's app pod under `podman kube play`, as rendered, for scripts/check-image.sh.

    kube_play.py OVERLAY --image IMG --app HOST_APP --pg-port N --db-password-file F --work DIR \
        --psql PSQL

Before the pod, the database gets its roles as a first deploy makes them: `app db roles
--print-sql` from the resealed file, piped into PSQL (libpq's PG* environment: the throwaway
PostgreSQL's superuser) on the rendered database; the pods then log in as the sealed logins.

Renders deploy/overlays/OVERLAY with kubectl (kustomize) and turns the app Deployment's pod
template into one Pod that podman runs for real: init containers in order (wait-db, then
migrate), then serve, with the rendered ConfigMaps (envFrom and volumes), security contexts,
command and args (and podman's annotation that keeps init containers after they ran, to read
their exit codes). The substitutions a local runtime forces are all made in `substitute` and
nowhere else:

- the image reference: the image scripts/check-image.sh built, with pull policy IfNotPresent
  (no registry to pull from);
- the identity Secret volume: a hostPath directory holding a test identity, with the mode the
  kubelet gives a Secret file of that defaultMode under the pod's fsGroup (podman 4.3.1's kube
  play crashes on `secret:` volumes); and the sealed file in the app-sealed ConfigMap, resealed
  to that identity with the same context and key names (nobody holds the committed file's key);
- the database address: the Service name becomes 127.0.0.1 and its port the throwaway
  PostgreSQL's (what cluster DNS and the Service do), and the http and metrics ports become free
  local ones (the pod shares the host's network with everything else here), so the
  containers' `ports` entries are dropped (podman refuses port mappings on the host network;
  the probes' named ports resolve to the free ones).

First the postgres StatefulSet's `open-secrets` init container runs under `podman run` as
rendered (user, read-only root, dropped capabilities, its env from app-config, its volumes:
the postgres-sealed file resealed to a postgres test identity of its own, that identity as the
Secret, a tmpfs directory for the memory-backed emptyDir): it must write POSTGRES_PASSWORD with
mode 0400 as the postgres uid, and with the app's identity in its place open nothing (exit 22).

Then it checks: every init container exited 0 in order; the startup, readiness and liveness
probe paths answer 200; `/app healthcheck` (the image's HEALTHCHECK) passes inside the
container; serve runs as the rendered runAsUser; `podman pod stop` with the rendered
terminationGracePeriodSeconds (SIGTERM) ends serve with exit 0 inside that period. Prints one
summary line; exits 1 with the reason on any failure.
"""

import argparse
import copy
import datetime
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def fail(msg):
    print(f"kube_play: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd, **kw):
    return subprocess.run(cmd, check=False, text=True, capture_output=True, **kw)


def kubectl():
    local = REPO / ".venv/bin/kubectl"
    return os.environ.get("KUBECTL") or (str(local) if local.exists() else "kubectl")


def render(overlay):
    out = run([kubectl(), "kustomize", str(REPO / "deploy/overlays" / overlay)])
    if out.returncode != 0:
        fail(f"kubectl kustomize deploy/overlays/{overlay}: {out.stderr}")
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def find(docs, kind, name):
    for d in docs:
        if d["kind"] == kind and d["metadata"]["name"] == name:
            return d
    fail(f"the rendered overlay has no {kind} {name}")


def is_sealed_file(text):
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError:
        return False
    return isinstance(doc, dict) and "context" in doc and "values" in doc


class Seal:
    """A test identity, and sealed files resealed to it."""

    def __init__(self, app, work, db_password, name="seal"):
        self.app, self.dir, self.db_password = app, work / name, db_password
        self.values = {}
        self.dir.mkdir(mode=0o700)
        self.identity = self.dir / "identity"
        out = run([app, "seal", "keygen", "-o", str(self.identity)])
        if out.returncode != 0:
            fail(f"app seal keygen: {out.stderr}")
        self.recipient = out.stdout.strip()
        if not self.recipient.startswith("age1"):
            fail(f"app seal keygen printed {self.recipient!r}, not a recipient")

    # The logins, as `deploy/rebuild.sh dev` seals them; every password but the API's random.
    VALUES = {"DATABASE_USER": "discbaboons_app_a", "MIGRATE_DATABASE_USER": "discbaboons_migrate_a"}

    def resealed(self, context):
        return self.dir / f"{context.replace('/', '_')}.yaml"

    def reseal(self, committed):
        doc = yaml.safe_load(committed)
        context, keys = doc["context"], list(doc["values"])
        # The postgres pod's own file (POSTGRES_PASSWORD only) has the same context.
        out_path = self.resealed(context)
        if "POSTGRES_PASSWORD" in keys:
            out_path = out_path.with_name(out_path.stem + "-postgres.yaml")
        cmd = [self.app, "seal", "set", str(out_path), "--context", context, "-r", self.recipient]
        for key in keys:
            value = self.VALUES.get(key) or (self.db_password if key == "DATABASE_PASSWORD" else secrets.token_urlsafe(36))
            self.values[key] = value
            path = self.dir / f"value-{key}"
            path.write_text(value)
            path.chmod(0o600)
            cmd += ["--from-file", f"{key}={path}"]
        out = run(cmd)
        if out.returncode != 0:
            fail(f"app seal set: {out.stderr}")
        return out_path.read_text()


def substitute(docs, args, seal, work):
    """The rendered app pod as podman can run it here; every local difference is made here."""
    deployment = find(docs, "Deployment", "app")
    spec = copy.deepcopy(deployment["spec"]["template"]["spec"])
    fs_group = spec.get("securityContext", {}).get("fsGroup")
    ports = {"http": free_port(), "metrics": free_port()}

    # The database Service and the ports.
    services = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Service"}
    config_maps = {}
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        cm = copy.deepcopy(cm)
        data = cm.setdefault("data", {})
        if "APP_DATABASE__HOST" in data:
            host = data["APP_DATABASE__HOST"]
            if host not in services:
                fail(f"APP_DATABASE__HOST={host} names no rendered Service")
            service_ports = [str(p["port"]) for p in services[host]["spec"]["ports"]]
            if data.get("APP_DATABASE__PORT", "5432") not in service_ports:
                fail(f"APP_DATABASE__PORT is not a port of Service {host}: {service_ports}")
            data["APP_DATABASE__HOST"] = "127.0.0.1"
            data["APP_DATABASE__PORT"] = str(args.pg_port)
        for key, port_name in (("PORT", "http"), ("APP_METRICS__PORT", "metrics")):
            if key in data:
                data[key] = str(ports[port_name])
        for key, text in list(data.items()):
            if is_sealed_file(text):
                data[key] = seal.reseal(text)
        config_maps[cm["metadata"]["name"]] = cm

    for container in spec.get("initContainers", []) + spec["containers"]:
        container["image"] = args.image
        # Built here, not in a registry: prod's `Always` would try to pull it.
        container["imagePullPolicy"] = "IfNotPresent"
        # On the host's network a container port is just the port the process listens on
        # (set above), and podman refuses port mappings there.
        container.pop("ports", None)

    for volume in spec.get("volumes", []):
        if "secret" in volume:
            host_dir = secret_dir(work, volume["name"], seal.identity,
                                  volume["secret"].get("defaultMode", 0o644), fs_group)
            volume.pop("secret")
            volume["hostPath"] = {"path": str(host_dir), "type": "Directory"}

    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        # podman's own annotation: keep the init containers after they ran ("always"), so
        # that their exit codes can be read (the default "once" removes them, and 4.3.1
        # sometimes tries while the container is still being reaped).
        "metadata": {
            "name": f"app-{args.overlay}",
            "labels": {"app": "check-image"},
            "annotations": {"io.podman.annotations.init.container.type": "always"},
        },
        "spec": spec,
    }
    used = {
        ref["configMapRef"]["name"]
        for c in spec.get("initContainers", []) + spec["containers"]
        for ref in c.get("envFrom", [])
        if "configMapRef" in ref
    } | {v["configMap"]["name"] for v in spec.get("volumes", []) if "configMap" in v}
    missing = used - config_maps.keys()
    if missing:
        fail(f"the pod uses ConfigMaps that are not rendered: {sorted(missing)}")
    return [config_maps[n] for n in sorted(used)] + [pod], ports, spec


def instant(stamp):
    """An RFC 3339 time as podman prints it (nanoseconds, Z or an offset) as a datetime."""
    m = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$", stamp)
    if not m:
        fail(f"cannot read the log timestamp {stamp!r}")
    base, frac, zone = m.groups()
    zone = "+00:00" if zone == "Z" else zone
    return datetime.datetime.fromisoformat(f"{base}.{(frac or '0')[:6].ljust(6, '0')}{zone}")


def http_status(port, path):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except OSError:
        return None


def secret_dir(work, name, identity, mode, fs_group):
    """A Secret volume as the kubelet makes it: the identity with defaultMode, group-owned by
    the pod's fsGroup with group read added (podman 4.3.1's kube play crashes on `secret:`)."""
    host_dir = work / f"volume-{name}"
    host_dir.mkdir(mode=0o755)
    target = host_dir / "identity"
    target.write_bytes(identity.read_bytes())
    if fs_group is not None:
        os.chown(target, 0, fs_group)
        mode |= 0o040
    target.chmod(mode)
    return host_dir


def open_secrets(args, docs, work, podman, app_seal):
    """The postgres StatefulSet's `open-secrets` init container, run by podman as rendered (its
    `postgres` container's image cannot be pulled here): with its own sealed file (resealed to
    a postgres test identity of its own) it must write POSTGRES_PASSWORD, mode 0400, owned by
    the postgres uid, into the memory-backed volume; with the app pods' identity in its place it
    must open nothing (exit 22): each pod decrypts only its own file."""
    sts = find(docs, "StatefulSet", "postgres")
    spec = sts["spec"]["template"]["spec"]
    c = next(c for c in spec["initContainers"] if c["name"] == "open-secrets")
    pod_sc, sc = spec.get("securityContext", {}), c.get("securityContext", {})
    uid, gid = sc.get("runAsUser", pod_sc.get("runAsUser")), sc.get("runAsGroup", pod_sc.get("runAsGroup"))
    fs_group = pod_sc.get("fsGroup")
    volumes = {v["name"]: v for v in spec["volumes"]}
    config_maps = {d["metadata"]["name"]: d for d in docs if d["kind"] == "ConfigMap"}
    pg_seal = Seal(args.app, work, "", name="seal-postgres")
    mounts, secrets_dir = [], None
    for m in c["volumeMounts"]:
        v = volumes[m["name"]]
        if "configMap" in v:
            host_dir = work / f"sts-{m['name']}"
            host_dir.mkdir()
            for key, text in config_maps[v["configMap"]["name"]]["data"].items():
                (host_dir / key).write_text(pg_seal.reseal(text) if is_sealed_file(text) else text)
                (host_dir / key).chmod(v["configMap"].get("defaultMode", 0o644))
            mounts += ["-v", f"{host_dir}:{m['mountPath']}:ro"]
        elif "secret" in v:
            host_dir = secret_dir(work, f"sts-{m['name']}", pg_seal.identity, v["secret"].get("defaultMode", 0o644), fs_group)
            mounts += ["-v", f"{host_dir}:{m['mountPath']}:ro"]
            identity_mount = (len(mounts) - 1, m["mountPath"], v["secret"].get("defaultMode", 0o644))
        elif v.get("emptyDir", {}).get("medium") == "Memory":
            # A directory on the host's tmpfs, so that what the container writes can be read.
            secrets_dir = Path(f"/dev/shm/check-image-{os.getpid()}-{m['name']}")
            secrets_dir.mkdir(mode=0o777)
            secrets_dir.chmod(0o777)
            mounts += ["-v", f"{secrets_dir}:{m['mountPath']}"]
        else:
            fail(f"open-secrets mounts {m['name']}, a volume this check does not know")
    env = []
    for e in c.get("env", []):
        ref = e.get("valueFrom", {}).get("configMapKeyRef")
        value = config_maps[ref["name"]]["data"][ref["key"]] if ref else e["value"]
        env += ["-e", f"{e['name']}={value}"]
    caps = ["--cap-drop", "ALL"] if "ALL" in sc.get("capabilities", {}).get("drop", []) else []
    groups = ["--group-add", str(fs_group)] if fs_group is not None else []
    base = podman + ["run", "--rm", "--network", "none", "--user", f"{uid}:{gid}",
                     "--security-opt", "no-new-privileges"] + groups + caps
    if sc.get("readOnlyRootFilesystem"):
        base.append("--read-only")
    try:
        out = run(base + mounts + env + [args.image] + c["args"], timeout=60)
        if out.returncode != 0:
            fail(f"{args.overlay}: open-secrets: exit {out.returncode}: {out.stderr}")
        written = secrets_dir / "POSTGRES_PASSWORD"
        st = written.stat()
        if (st.st_mode & 0o777, st.st_uid) != (0o400, uid):
            fail(f"{args.overlay}: open-secrets wrote POSTGRES_PASSWORD mode {st.st_mode & 0o777:o} uid {st.st_uid}, not 400 uid {uid}")
        if written.read_text() != pg_seal.values["POSTGRES_PASSWORD"]:
            fail(f"{args.overlay}: open-secrets wrote another value than the sealed POSTGRES_PASSWORD")
        written.unlink()
        # The app pods' identity in the postgres pod's place opens nothing of its file.
        i, path, mode = identity_mount
        mounts[i] = f"{secret_dir(work, 'sts-app-identity', app_seal.identity, mode, fs_group)}:{path}:ro"
        out = run(base + mounts + env + [args.image] + c["args"], timeout=60)
        if out.returncode != 22 or written.exists():
            fail(f"{args.overlay}: open-secrets with the app's identity: exit {out.returncode} (want 22, nothing written): {out.stderr}")
    finally:
        if secrets_dir:
            for f in secrets_dir.iterdir():
                f.unlink()
            secrets_dir.rmdir()
    return f"open-secrets wrote POSTGRES_PASSWORD 0400 uid {uid}, and refused the app's identity (22)"


def create_roles(args, seal, docs):
    """`app db roles --print-sql | psql`, as the first deploy runs it."""
    # app-config, by its content (kustomize appends a hash to the name).
    data = next(d["data"] for d in docs if d["kind"] == "ConfigMap" and "APP_DATABASE__NAME" in d.get("data", {}))
    env = {k: v for k, v in os.environ.items() if not k.startswith("APP_")}
    for key in ("APP_MIGRATE__OWNER_ROLE", "APP_MIGRATE__RUNTIME_ROLE"):
        env[key] = data[key]
    sql = subprocess.run(
        [args.app, "db", "roles", "--print-sql", "-f", str(seal.resealed(data["APP_SEALED__CONTEXT"])),
         "-i", str(seal.identity)], capture_output=True, text=True, env=env, check=False)
    if sql.returncode != 0:
        fail(f"app db roles: {sql.stderr}")
    out = subprocess.run([args.psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", data["APP_DATABASE__NAME"]],
                         input=sql.stdout, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        fail(f"psql of the roles' SQL: {out.stderr}")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("overlay")
    p.add_argument("--image", required=True)
    p.add_argument("--app", required=True, help="a host build of app, for `app seal`")
    p.add_argument("--pg-port", type=int, required=True)
    p.add_argument("--db-password-file", required=True)
    p.add_argument("--work", required=True)
    p.add_argument("--psql", required=True, help="psql, to create the roles as the superuser")
    p.add_argument("--podman", default="podman", help="the podman command (split on spaces)")
    args = p.parse_args()
    podman = args.podman.split()
    work = Path(args.work) / args.overlay
    work.mkdir(parents=True)

    docs = render(args.overlay)
    seal = Seal(args.app, work, Path(args.db_password_file).read_text())
    objects, ports, spec = substitute(docs, args, seal, work)
    opened = open_secrets(args, docs, work, podman, seal)
    create_roles(args, seal, docs)
    kube_file = work / "pod.yaml"
    kube_file.write_text(yaml.safe_dump_all(objects, sort_keys=False))
    pod = f"app-{args.overlay}"
    grace = spec.get("terminationGracePeriodSeconds", 30)
    app_name = spec["containers"][0]["name"]

    def logs(container):
        return run(podman + ["logs", f"{pod}-{container}"]).stdout[-4000:]

    # A clean working directory: kube play takes a directory named like an image as a build
    # context.
    # kube play returns once the init containers have run (or one failed) and the main
    # container started; wait-db's own --timeout bounds it, this bounds the rest.
    try:
        out = run(podman + ["kube", "play", "--network", "host", str(kube_file)], cwd=work, timeout=300)
    except subprocess.TimeoutExpired:
        run(podman + ["kube", "down", str(kube_file)], cwd=work)
        fail(f"podman kube play ({args.overlay}) did not return within 300s")
    if out.returncode != 0:
        fail(f"podman kube play ({args.overlay}): {out.stderr}{out.stdout}")
    try:
        deadline = time.monotonic() + 90
        while http_status(ports["http"], "/ready") != 200:
            state = run(podman + ["inspect", f"{pod}-{app_name}", "--format", "{{.State.Status}}"]).stdout.strip()
            if time.monotonic() > deadline or state in ("exited", "stopped"):
                inits = "\n".join(
                    f"--- {c['name']}:\n{logs(c['name'])}" for c in spec.get("initContainers", [])
                )
                fail(f"{args.overlay}: serve never became ready (state {state or 'not created'})\n{inits}\n--- {app_name}:\n{logs(app_name)}")
            time.sleep(0.3)

        inits = []
        for c in spec.get("initContainers", []):
            info = json.loads(run(podman + ["inspect", f"{pod}-{c['name']}"]).stdout)[0]["State"]
            # (podman 4.3.1 can report an "always" init container that ended as "running":
            # its exit code and end time are what count.)
            if info["ExitCode"] != 0 or info["FinishedAt"].startswith("0001-"):
                fail(f"{args.overlay}: init container {c['name']}: {info['Status']}, exit {info['ExitCode']}, finished {info['FinishedAt']}")
            # The first line each one logged, as conmon stamped it: podman 4.3.1 rewrites an
            # "always" init container's StartedAt/FinishedAt when the pod starts, so those
            # say nothing about the order kube play ran them in.
            stamped = run(podman + ["logs", "--timestamps", f"{pod}-{c['name']}"])
            first = (stamped.stdout + stamped.stderr).strip().splitlines()
            if not first:
                fail(f"{args.overlay}: init container {c['name']} logged nothing")
            inits.append((instant(first[0].split()[0]), c["name"]))
        if [n for _, n in sorted(inits)] != [c["name"] for c in spec.get("initContainers", [])]:
            fail(f"{args.overlay}: init containers did not run in order: {sorted(inits)}")

        container = spec["containers"][0]
        for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
            http = container.get(probe, {}).get("httpGet")
            if not http:
                fail(f"{args.overlay}: {probe} has no httpGet")
            port = ports[http["port"]] if isinstance(http["port"], str) else http["port"]
            status = http_status(port, http["path"])
            if status != 200:
                fail(f"{args.overlay}: {probe} {http['path']} answered {status}")
        out = run(podman + ["exec", f"{pod}-{app_name}", "/app", "healthcheck"])
        if out.returncode != 0:
            fail(f"{args.overlay}: /app healthcheck in the container: exit {out.returncode}: {out.stderr}")
        pid = run(podman + ["inspect", f"{pod}-{app_name}", "--format", "{{.State.Pid}}"]).stdout.strip()
        uid = next(l.split()[1] for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:"))
        want_uid = str(container.get("securityContext", {}).get("runAsUser", spec["securityContext"]["runAsUser"]))
        if uid != want_uid:
            fail(f"{args.overlay}: serve runs as uid {uid}, the manifest says {want_uid}")

        started = time.monotonic()
        out = run(podman + ["pod", "stop", "-t", str(grace), pod])
        took = time.monotonic() - started
        info = json.loads(run(podman + ["inspect", f"{pod}-{app_name}"]).stdout)[0]["State"]
        if info["ExitCode"] != 0:
            fail(f"{args.overlay}: serve exited {info['ExitCode']} after SIGTERM\n{logs(app_name)}")
        if took >= grace:
            fail(f"{args.overlay}: serve took {took:.1f}s to stop, terminationGracePeriodSeconds is {grace}")
    finally:
        run(podman + ["kube", "down", str(kube_file)], cwd=work)
    names = ", ".join(c["name"] for c in spec.get("initContainers", []))
    print(
        f"kube_play: ok: {args.overlay}: pod {pod} ran {names} (exit 0, in order) then {app_name}; "
        f"startup/readiness/liveness 200, healthcheck ok, uid {uid}; SIGTERM -> exit 0 in {took:.1f}s (grace {grace}s); {opened}"
    )


if __name__ == "__main__":
    main()
