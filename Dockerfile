# syntax=docker/dockerfile:1
#
# One image for every role of the app: the `wait-db` and `migrate` init containers and the
# `serve` main container (and `seal open` beside PostgreSQL). The final stage holds nothing but
# the static binary: no shell, no libc, no CA bundle (rustls carries webpki roots).
#
#   docker build --platform linux/amd64 \
#     --build-arg APP_GIT_COMMIT="$(git rev-parse --short=12 HEAD)" -t discbaboons-app:dev .
#
# `deploy/rebuild.sh dev|prod` runs this for you. The binary is x86_64-unknown-linux-musl, so
# the image is linux/amd64 only: always build with --platform linux/amd64 (on an arm64 laptop
# Docker then runs the builder under emulation, slower but right).

# Where the image's binary comes from: `builder` (the default, below) compiles it; `prebuilt`
# takes an `app` file from the build context, for a runtime with no registry to pull the
# builder's base from (scripts/check-image.sh builds the image that way with podman):
#   podman build --format docker --build-arg BINARY=prebuilt -f Dockerfile DIR_WITH_app
# Either way the final stage below is the same, written once.
ARG BINARY=builder

# ---- builder: the same static musl build as scripts/build-static.sh on a laptop or in CI ----
# Debian 12 like the development machines, so the script behaves the same in both places.
# Pinned by digest (the multi-arch index of rust:1.95-slim-bookworm, as pinned by several public
# projects; checked in the search corpus on 2026-11-30). Refresh with
#   crane digest rust:1.95-slim-bookworm
#   docker buildx imagetools inspect rust:1.95-slim-bookworm --format '{{json .Manifest.Digest}}'
FROM rust:1.95-slim-bookworm@sha256:d7482085ff5b415f84dba5647ae71606650bdef00db7aeb69f4b3d170c3e4082 AS builder

# musl-gcc compiles the C inside ring and mimalloc for the musl target. Version pinned to
# bookworm's (stable releases do not move it).
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl

WORKDIR /src
COPY . .

# A Docker build has no .git: build.rs takes the commit from this variable (build args are in
# the environment of every RUN).
ARG APP_GIT_COMMIT=unknown
# Cache mounts keep the registry and the target dir between builds (BuildKit); the binary is
# copied out of the cached target dir in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    bin="$(scripts/build-static.sh)" \
    && cp "$bin" /app \
    && /app --version

# ---- prebuilt: a static binary built outside (scripts/build-static.sh) ----
FROM scratch AS prebuilt
COPY app /app

# A stage of this file chosen by BINARY, not an image: there is no tag to pin.
# checkov:skip=CKV_DOCKER_7:FROM ${BINARY} names a stage of this file (builder or prebuilt)
FROM ${BINARY} AS binary

# ---- the image: the binary alone ----
FROM scratch

ARG APP_GIT_COMMIT=unknown
ARG APP_VERSION=0.1.0
# deploy/rebuild.sh passes the git remote's URL.
ARG APP_SOURCE=""
LABEL org.opencontainers.image.title="discbaboons-app" \
      org.opencontainers.image.description="discbaboons API: wait-db, Flyway-compatible migrate, serve and age-sealed secrets in one static binary" \
      org.opencontainers.image.version="${APP_VERSION}" \
      org.opencontainers.image.revision="${APP_GIT_COMMIT}" \
      org.opencontainers.image.source="${APP_SOURCE}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="scratch"

# Owned by root and not writable by the app's uid: the running process cannot replace itself.
COPY --from=binary --chown=0:0 --chmod=0555 /app /app

# A numeric, high uid with no entry in any passwd file; Kubernetes' runAsNonRoot can verify it.
USER 10001:10001

# http (API, Swagger UI at /docs, /health, /ready) and Prometheus metrics.
EXPOSE 3000 9090

# Asks the running server's readiness (/ready); no curl in an image FROM scratch.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 CMD ["/app", "healthcheck"]

ENTRYPOINT ["/app"]
CMD ["serve"]
