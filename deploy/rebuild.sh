#!/bin/sh
# Rebuilds the image and redeploys one environment; replaces the seed's rebuild-apps.sh,
# rebuild-dev.sh and rebuild-prod.sh. See deploy/README.md.
#
# POSIX sh with BSD or GNU userland: macOS's /bin/sh (bash 3.2) and Debian's dash run it
# alike. So no arrays, no `local`, no pipefail (each pipeline's failure is checked where it
# matters), and only the flags BSD and GNU tools share; scripts/check-deploy.sh runs it
# under dash with wrappers that refuse GNU-only flags, and shellcheck --shell=sh.
#
#   deploy/rebuild.sh dev          Kind cluster "discbaboons-learning" (created if missing)
#   deploy/rebuild.sh prod         the current kubectl context, after a confirmation
#   deploy/rebuild.sh prod --yes   the same, without asking (CI)
#
# prod deploys releases: the image is pushed as IMAGE:<version>-<commit> (IMAGE from
# deploy/overlays/prod/params.env) and the Deployment and CronJobs are pinned to its digest,
# so `kubectl rollout undo deployment/app` returns to the previous release. It refuses a
# working tree with uncommitted changes and the placeholders of params.env.
#
# Environment: APP_BIN (an `app` binary for the seal commands; default: cargo builds one),
# DISCBABOONS_DEV_IDENTITY (dev's private key for the app's pods; default
# ~/.config/discbaboons/dev.identity), DISCBABOONS_DEV_POSTGRES_IDENTITY (the postgres pod's;
# default ~/.config/discbaboons/dev-postgres.identity),
# ROLLOUT_TIMEOUT (default 300s).
set -eu

readonly NAMESPACE=discbaboons
readonly CLUSTER=discbaboons-learning
readonly KIND_CONTEXT="kind-$CLUSTER"
readonly DEV_IMAGE=discbaboons-app:dev
readonly IDENTITY_SECRET=app-age-identity
readonly PG_IDENTITY_SECRET=postgres-age-identity
# The public key the committed sample sealed files are encrypted to. Its private key was
# thrown away: a file still sealed to it is a placeholder, not your secrets.
readonly SAMPLE_RECIPIENT=age1nm39qs4emd70h255y9mz2uatsqytgtuf65rsyrqpg4uw98ldcpdqgpqd6w
# What a value of deploy/overlays/prod/params.env holds until its user sets it.
readonly PLACEHOLDER=change-me

usage() {
    cat <<'EOF'
usage: deploy/rebuild.sh dev|prod [--yes]

  dev    build the image, load it into the Kind cluster "discbaboons-learning" (created
         if missing), create the dev identity and sealed file on first run, apply
         deploy/overlays/dev and wait for the rollout
  prod   from a clean git checkout: build the image for linux/amd64, push it as
         IMAGE:<version>-<commit> (IMAGE in deploy/overlays/prod/params.env), apply
         deploy/overlays/prod pinned to the pushed digest to the current kubectl context
         and wait for the rollout; asks for confirmation first
  --yes  deploy prod without asking

Any other environment name is an error (exit 2).
EOF
}

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'rebuild: error: %s\n' "$*" >&2; exit 1; }

env_name=""
assume_yes=false
# Not `for arg in "$@"`: bash 3.2 calls "$@" unbound under set -u when there are no arguments.
while [ "$#" -gt 0 ]; do
    arg=$1
    shift
    case "$arg" in
        dev | prod)
            if [ -n "$env_name" ]; then
                usage >&2
                exit 2
            fi
            env_name=$arg
            ;;
        -y | --yes) assume_yes=true ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            printf 'rebuild: unknown environment or option: %s\n\n' "$arg" >&2
            usage >&2
            exit 2
            ;;
    esac
done
if [ -z "$env_name" ]; then
    usage >&2
    exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
overlay="$root/deploy/overlays/$env_name"
sealed="$overlay/secrets.sealed.yaml"
pg_sealed="$overlay/postgres.sealed.yaml"
timeout=${ROLLOUT_TIMEOUT:-300s}

# The functions' variables are global (POSIX sh has no `local`): a name means the same thing
# in every function that sets it.
need() {
    for tool in "$@"; do
        command -v "$tool" >/dev/null 2>&1 || die "$tool is not installed (see deploy/README.md, Prerequisites)"
    done
}

# kubectl against the environment's cluster: dev always talks to Kind, prod to the current
# context that the user confirmed.
kube() {
    if [ "$env_name" = dev ]; then
        kubectl --context "$KIND_CONTEXT" "$@"
    else
        kubectl --context "$context" "$@"
    fi
}

# The `app` binary for `app seal` on this machine.
app_bin() {
    if [ -z "${APP_BIN:-}" ]; then
        need cargo
        log "building the app binary for the seal commands (set APP_BIN to skip)"
        (cd "$root" && cargo build --quiet --locked --bin app)
        APP_BIN="${CARGO_TARGET_DIR:-$root/target}/debug/app"
    fi
    [ -x "$APP_BIN" ] || die "APP_BIN=$APP_BIN is not an executable"
    printf '%s\n' "$APP_BIN"
}

# Sets git_commit and git_source, the image's APP_GIT_COMMIT and APP_SOURCE build arguments.
git_facts() {
    if git_commit=$(git -C "$root" rev-parse --short=12 HEAD 2>/dev/null); then
        git -C "$root" diff --quiet HEAD 2>/dev/null || git_commit="$git_commit-dirty"
    else
        git_commit=unknown
    fi
    git_source=$(git -C "$root" remote get-url origin 2>/dev/null || true)
}

confirm_prod() {
    if [ "$assume_yes" = true ]; then
        return
    fi
    if [ ! -t 0 ]; then
        die "refusing to deploy prod without a terminal to confirm on; pass --yes"
    fi
    printf '\nDeploy PRODUCTION to kubectl context "%s", namespace %s? [y/N] ' "$context" "$NAMESPACE" >&2
    answer=""
    read -r answer || true
    case "$answer" in
        y | Y | yes | YES) ;;
        *) die "aborted; nothing was changed" ;;
    esac
}

# N random bytes in base64 on one line. dd, not GNU/BSD head -c; and the output is checked,
# since without pipefail a failing dd would leave an empty password.
random_base64() {
    random_value=$(dd if=/dev/urandom bs="$1" count=1 2>/dev/null | base64 | tr -d '\n')
    [ "${#random_value}" -ge "$1" ] || die "could not read $1 random bytes from /dev/urandom"
    printf '%s' "$random_value"
}

# The namespace first: the identity Secret must exist before the pods that mount it.
apply_namespace() {
    kube apply -f "$root/deploy/base/namespace.yaml" >/dev/null
}

# Dev's first run: a private key on this machine (never in the repo), a sealed file with
# fresh random passwords encrypted to it, and the key as the cluster's identity Secret.
# Sets key_recipient to the recipient of the identity file $1, created (mode 0600, in a
# mode-0700 directory) if missing.
dev_identity() {
    if [ ! -f "$1" ]; then
        log "creating the dev identity $1"
        if [ ! -d "$(dirname "$1")" ]; then
            mkdir -p "$(dirname "$1")"
            chmod 700 "$(dirname "$1")"
        fi
        "$app" seal keygen --output "$1" >/dev/null
    fi
    key_recipient=$(sed -n 's/^# public key: //p' "$1" | head -n 1)
    [ -n "$key_recipient" ] || die "$1 has no '# public key:' line; recreate it with: $app seal keygen --output $1"
}

# The Secret $1 holding the identity file $2 as its key `identity`. In two steps, so that a
# failure of the first stops the script (no pipefail in sh).
identity_secret() {
    identity_manifest=$(kube -n "$NAMESPACE" create secret generic "$1" \
        --from-file="identity=$2" --dry-run=client -o yaml)
    printf '%s\n' "$identity_manifest" | kube apply -f - >/dev/null
    log "identity Secret $1 is in place"
}

# The postgres pod's own sealed file, POSTGRES_PASSWORD only, for its own identity: the app's
# identity cannot open it, and the postgres pod's identity opens nothing of the app's.
bootstrap_dev_postgres_secret() {
    pg_identity=${DISCBABOONS_DEV_POSTGRES_IDENTITY:-${XDG_CONFIG_HOME:-$HOME/.config}/discbaboons/dev-postgres.identity}
    dev_identity "$pg_identity"
    if [ -f "$pg_sealed" ] && "$app" seal verify "$pg_sealed" -i "$pg_identity" >/dev/null 2>&1; then
        log "postgres sealed file opens with the postgres pod's dev identity"
    else
        rm -f "$pg_sealed"
        # The superuser's password only matters when postgres initialises an empty volume.
        random_base64 24 | "$app" seal set "$pg_sealed" POSTGRES_PASSWORD \
            --context "$NAMESPACE/dev" -r "$key_recipient" >/dev/null
        log "wrote $pg_sealed (safe to commit: it is encrypted)"
    fi
}

bootstrap_dev_secrets() {
    app=$(app_bin)
    identity=${DISCBABOONS_DEV_IDENTITY:-${XDG_CONFIG_HOME:-$HOME/.config}/discbaboons/dev.identity}
    dev_identity "$identity"
    recipient=$key_recipient

    if [ -f "$sealed" ] && "$app" seal verify "$sealed" -i "$identity" >/dev/null 2>&1; then
        log "dev sealed file opens with your dev identity"
    else
        if [ -f "$sealed" ]; then
            log "$sealed is not sealed to your dev identity (the committed one is a sample): resealing with new random passwords"
            log "if the dev database already exists with another password: kubectl --context $KIND_CONTEXT -n $NAMESPACE delete statefulset postgres && kubectl --context $KIND_CONTEXT -n $NAMESPACE delete pvc data-postgres-0"
            rm -f "$sealed"
        fi
        # The one form of mktemp -d that BSD and GNU both take; under $TMPDIR, which macOS
        # makes per user (mode 0700). Removed on every exit, a signal included (dash runs
        # the EXIT trap only on `exit`).
        secrets_dir=$(mktemp -d "${TMPDIR:-/tmp}/discbaboons-seal.XXXXXX")
        # shellcheck disable=SC2064 # expand now: the directory is this function's
        trap "rm -rf '$secrets_dir'" EXIT
        trap 'exit 129' HUP
        trap 'exit 130' INT
        trap 'exit 143' TERM
        umask 077
        random_base64 24 >"$secrets_dir/db"
        random_base64 24 >"$secrets_dir/migrate"
        random_base64 48 >"$secrets_dir/jwt"
        printf discbaboons_app_a >"$secrets_dir/db_user"
        printf discbaboons_migrate_a >"$secrets_dir/migrate_user"
        # Each login its own password (docs/secrets.md, "Database roles"); the two logins are
        # created by `app db roles` once postgres is up. The superuser's is in the postgres
        # pod's own file (bootstrap_dev_postgres_secret).
        "$app" seal set "$sealed" \
            --context "$NAMESPACE/dev" -r "$recipient" \
            --from-file "DATABASE_USER=$secrets_dir/db_user" \
            --from-file "DATABASE_PASSWORD=$secrets_dir/db" \
            --from-file "MIGRATE_DATABASE_USER=$secrets_dir/migrate_user" \
            --from-file "MIGRATE_DATABASE_PASSWORD=$secrets_dir/migrate" \
            --from-file "JWT_SECRET=$secrets_dir/jwt"
        rm -rf "$secrets_dir"
        trap - EXIT HUP INT TERM
        log "wrote $sealed (safe to commit: it is encrypted)"
    fi

    # Files sealed before the postgres pod had its own: its value moves out of the app's.
    if "$app" seal list "$sealed" 2>/dev/null | grep -q 'POSTGRES_PASSWORD'; then
        "$app" seal rm "$sealed" POSTGRES_PASSWORD >/dev/null
        log "removed POSTGRES_PASSWORD from $sealed: the postgres pod has its own file now"
    fi
    bootstrap_dev_postgres_secret

    apply_namespace
    identity_secret "$IDENTITY_SECRET" "$identity"
    identity_secret "$PG_IDENTITY_SECRET" "$pg_identity"
}

check_prod_secrets() {
    app=$(app_bin)
    for file in "$sealed" "$pg_sealed"; do
        [ -f "$file" ] || die "$file is missing: see 'Prod: first deployment' in deploy/README.md"
        if grep -q "$SAMPLE_RECIPIENT" "$file"; then
            die "$file is still the committed sample: seal your own values first ('Prod: first deployment' in deploy/README.md)"
        fi
        "$app" seal list "$file" >/dev/null || die "$file cannot be read"
    done
    if "$app" seal list "$sealed" | grep -q 'POSTGRES_PASSWORD'; then
        die "$sealed holds POSTGRES_PASSWORD, which only the postgres pod may open: move it into $pg_sealed (docs/secrets.md, 'Which pod opens what')"
    fi
    apply_namespace
    for secret in "$IDENTITY_SECRET" "$PG_IDENTITY_SECRET"; do
        kube -n "$NAMESPACE" get secret "$secret" >/dev/null 2>&1 \
            || die "the cluster has no Secret $NAMESPACE/$secret: create it once with
    $app seal keygen --k8s-secret $secret --namespace $NAMESPACE | kubectl apply -f -"
    done
}

# The seed's variable names (its ConfigMap, copied into an overlay) mean nothing to this app:
# name the variable to use instead of letting the value be ignored in silence.
warn_seed_names() {
    seed_rendered=$(kubectl kustomize "$overlay") || die "kubectl kustomize deploy/overlays/$env_name failed"
    for seed_pair in \
        "NODE_ENV=APP_ENV (dev or prod)" \
        "ENABLE_METRICS=APP_METRICS__ENABLED" \
        "METRICS_PORT=APP_METRICS__PORT" \
        "REQUEST_TIMEOUT=APP_HTTP__REQUEST_TIMEOUT (a duration such as 30s)"; do
        seed_name=${seed_pair%%=*}
        # A ConfigMap's data key, or a container's env entry.
        if printf '%s\n' "$seed_rendered" | grep -Eq "^ *($seed_name:|- name: $seed_name\$)"; then
            log "warning: deploy/overlays/$env_name sets $seed_name, the seed's name, which this app ignores: use ${seed_pair#*=} (README.md, Configuration)"
        fi
    done
}

# The database's roles, made to match the sealed file over the postgres pod's local socket
# (docs/secrets.md, "Database roles"). Idempotent, so every dev run; the SQL holds password
# verifiers only. In two steps, so that a failure of the first stops the script.
dev_roles() {
    log "creating or updating the database roles (app db roles)"
    # --createdb: the restore drill's scratch database (docs/backups.md).
    roles_sql=$("$app" db roles -f "$sealed" -i "$identity" --createdb --print-sql) \
        || die "app db roles could not read $sealed with $identity"
    printf '%s\n' "$roles_sql" | kube -n "$NAMESPACE" exec -i statefulset/postgres -c postgres -- \
        psql -v ON_ERROR_STOP=1 -q -U postgres -d discbaboons_db >/dev/null \
        || die "psql refused the roles' SQL (a volume initialised before the roles? see docs/secrets.md)"
}

# The rollout of what was just applied.
wait_for_pods() {
    kube -n "$NAMESPACE" rollout status statefulset/postgres --timeout "$timeout"
    if [ "$env_name" = dev ]; then
        dev_roles
    fi
    kube -n "$NAMESPACE" rollout status deployment/app --timeout "$timeout"
    kube -n "$NAMESPACE" get pods -o wide
}

deploy_dev() {
    need docker kind kubectl
    if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
        log "creating the Kind cluster $CLUSTER"
        kind create cluster --config "$root/deploy/kind-config.yaml"
    fi
    log "building $DEV_IMAGE"
    git_facts
    # The binary is x86_64 (scripts/build-static.sh), so the image is linux/amd64 everywhere;
    # on an arm64 laptop Docker and Kind run it under emulation (deploy/README.md).
    DOCKER_BUILDKIT=1 docker build --platform linux/amd64 \
        --build-arg "APP_GIT_COMMIT=$git_commit" --build-arg "APP_SOURCE=$git_source" \
        -t "$DEV_IMAGE" "$root"
    log "loading $DEV_IMAGE into Kind"
    kind load docker-image "$DEV_IMAGE" --name "$CLUSTER"
    bootstrap_dev_secrets
    warn_seed_names
    log "applying deploy/overlays/dev"
    kube apply -k "$overlay"
    # The tag is always `dev`: restart so that the pods run the image just loaded.
    kube -n "$NAMESPACE" rollout restart deployment/app
    wait_for_pods
    if ! kube get namespace ingress-nginx >/dev/null 2>&1; then
        log "no ingress controller yet; http://localhost/ needs it (deploy/README.md), or use a port-forward:"
    fi
    log "kubectl --context $KIND_CONTEXT -n $NAMESPACE port-forward svc/app 8080:3000, then curl http://localhost:8080/health"
}

# The value of NAME in params.env, the prod overlay's one file of parameters.
param() {
    sed -n "s/^$1=//p" "$params" | tail -n 1
}

# Refuses while a parameter of params.env is missing or still its placeholder, naming each.
check_params() {
    [ -f "$params" ] || die "deploy/overlays/prod/params.env is missing: it holds the production parameters (deploy/README.md, 'Prod: first deployment')"
    unset_params=""
    for name in IMAGE DOMAIN ACME_EMAIL STORAGE_CLASS; do
        case "$(param "$name")" in
            "" | *"$PLACEHOLDER"*) unset_params="$unset_params $name" ;;
        esac
    done
    [ -z "$unset_params" ] || die "deploy/overlays/prod/params.env still has the placeholder (or no value) for:$unset_params. Set each to yours (the comments there say what it is), commit, and deploy again"
    image_repo=$(param IMAGE)
    case "${image_repo##*/}" in
        *:* | *@*) die "IMAGE in deploy/overlays/prod/params.env is $image_repo: give the repository only, without a tag or digest (each release gets its own tag)" ;;
    esac
}

# A release is named after its commit, so the tree must be exactly that commit.
require_clean_tree() {
    git -C "$root" rev-parse --verify --quiet HEAD >/dev/null 2>&1 \
        || die "$root is not a git checkout with a commit: a release is named after the commit it is built from; deploy from a clone of the repository"
    changes=$(git -C "$root" status --porcelain) || die "git status failed in $root"
    if [ -n "$changes" ]; then
        printf '%s\n' "$changes" | head -n 10 >&2
        die "the working tree has changes that are not committed (above, as \`git status\` shows them): commit them, or \`git stash\` them, and deploy again; a release's tag names its commit, so the image must hold exactly that commit"
    fi
}

# Builds and pushes IMAGE:<version>-<commit>; sets release_tag and release_digest, the digest
# the registry stored, which is what the cluster runs.
build_and_push() {
    version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n 1)
    [ -n "$version" ] || die "cannot read the version from $root/Cargo.toml"
    git_facts
    release_tag="$version-$git_commit"
    # The nodes are amd64 even when this laptop is arm64 (the seed's exec format lesson).
    log "building and pushing $image_repo:$release_tag for linux/amd64"
    docker buildx build --platform linux/amd64 \
        --build-arg "APP_GIT_COMMIT=$git_commit" --build-arg "APP_SOURCE=$git_source" \
        -t "$image_repo:$release_tag" --metadata-file "$release_dir/build.json" --push "$root"
    release_digest=$(sed -n 's/.*"containerimage\.digest": *"\(sha256:[0-9a-f]\{64\}\)".*/\1/p' \
        "$release_dir/build.json" 2>/dev/null | head -n 1)
    [ -n "$release_digest" ] || die "docker buildx wrote no pushed digest (containerimage.digest) to its --metadata-file: update Docker's buildx plugin"
}

# The postgres StatefulSet's open-secrets init container runs our image too, but a new image
# there would restart the database on every release. So it keeps the image the cluster runs
# now; only the first deployment (no StatefulSet yet) gives it this release's. Moving it on is
# a choice: deploy/README.md, "Releases and rollback".
kept_secrets_image() {
    secrets_image=$(kube -n "$NAMESPACE" get statefulset postgres --ignore-not-found \
        -o 'jsonpath={.spec.template.spec.initContainers[?(@.name=="open-secrets")].image}') \
        || die "cannot read statefulset/postgres from context $context"
    [ -n "$secrets_image" ] || secrets_image="$image_repo@$release_digest"
}

# Renders the overlay, pinned to this release, into $release_dir/manifests.yaml: a copy of
# deploy/ (kustomize takes no absolute paths) with two kustomizations on top, never the
# committed overlay. The images transformer would also repin the StatefulSet, hence the
# second step that sets it back.
render_release() {
    cp -R "$root/deploy" "$release_dir/deploy"
    mkdir -p "$release_dir/deploy/release/pinned" "$release_dir/deploy/release/final"
    cat >"$release_dir/deploy/release/pinned/kustomization.yaml" <<YAML
resources:
  - ../../overlays/prod
images:
  - name: $image_repo
    digest: $release_digest
YAML
    cat >"$release_dir/deploy/release/final/kustomization.yaml" <<YAML
resources:
  - ../pinned
patches:
  - patch: |-
      apiVersion: apps/v1
      kind: StatefulSet
      metadata: {name: postgres, namespace: $NAMESPACE}
      spec:
        template:
          spec:
            initContainers:
              - name: open-secrets
                image: "$secrets_image"
  # What \`kubectl rollout history deployment/app\` shows for this revision.
  - patch: |-
      apiVersion: apps/v1
      kind: Deployment
      metadata:
        name: app
        namespace: $NAMESPACE
        annotations:
          kubernetes.io/change-cause: "release $release_tag ($image_repo@$release_digest)"
YAML
    kubectl kustomize "$release_dir/deploy/release/final" >"$release_dir/manifests.yaml" \
        || die "rendering release $release_tag failed"
}

deploy_prod() {
    need docker kubectl git
    context=$(kubectl config current-context 2>/dev/null) || die "kubectl has no current context"
    confirm_prod
    params="$overlay/params.env"
    check_params
    require_clean_tree
    check_prod_secrets
    warn_seed_names
    release_dir=$(mktemp -d "${TMPDIR:-/tmp}/discbaboons-release.XXXXXX")
    # shellcheck disable=SC2064 # expand now: the directory is this run's
    trap "rm -rf '$release_dir'" EXIT
    trap 'exit 129' HUP
    trap 'exit 130' INT
    trap 'exit 143' TERM
    build_and_push
    kept_secrets_image
    render_release
    log "applying release $release_tag ($image_repo@$release_digest) to context $context"
    kube apply -f "$release_dir/manifests.yaml"
    # The pod template changed with the digest: the pods roll by themselves.
    wait_for_pods
    log "released $release_tag; to go back to the previous release: kubectl --context $context -n $NAMESPACE rollout undo deployment/app"
}

context=""
case "$env_name" in
    dev) deploy_dev ;;
    prod) deploy_prod ;;
esac
log "$env_name is up to date"
