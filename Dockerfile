# syntax=docker/dockerfile:1
# connectivity-operator container image.
#
#   docker build -t connectivity-operator:0.1.0 .
#   docker run --rm connectivity-operator:0.1.0 --help
#
# Three stages: `planner` reduces the source tree to the Cargo manifests, so `builder` compiles
# the dependencies in a layer that is reused until Cargo.toml/Cargo.lock change; `builder` then
# compiles the operator; the final image is distroless (glibc, CA certificates, no shell) running
# as the unprivileged user 65532. The process writes nothing to disk, so it runs with a
# read-only root filesystem (the Helm chart sets readOnlyRootFilesystem: true).

ARG RUST_IMAGE=rust:1.95-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12:nonroot

FROM ${RUST_IMAGE} AS planner
WORKDIR /src
COPY . .
# The workspace's manifests and lock file, with empty targets in place of the sources.
RUN set -eu; \
    mkdir -p /recipe/src; \
    cp Cargo.toml Cargo.lock /recipe/; \
    cp -r .cargo /recipe/; \
    printf 'fn main() {}\n' >/recipe/src/main.rs; \
    touch /recipe/src/lib.rs; \
    for manifest in crates/*/Cargo.toml; do \
        dir=$(dirname "$manifest"); \
        mkdir -p "/recipe/$dir/src"; \
        cp "$manifest" "/recipe/$dir/"; \
        touch "/recipe/$dir/src/lib.rs"; \
    done

FROM ${RUST_IMAGE} AS builder
WORKDIR /src
# make builds jemalloc, the operator's allocator (tikv-jemalloc-sys runs its configure script);
# the version is bookworm's, as the Rust image is.
RUN apt-get update && apt-get install -y --no-install-recommends make=4.3-4.1 && rm -rf /var/lib/apt/lists/*
# 1. Dependencies only: this layer is rebuilt only when a manifest or Cargo.lock changes.
COPY --from=planner /recipe/ ./
RUN cargo build --release --locked --bin connectivity-operator
# 2. The operator itself. COPY keeps the files' times, which can be older than the stub build:
#    touch the sources so cargo rebuilds the workspace crates instead of reusing the stubs.
COPY . .
RUN set -eu; \
    find src crates -name '*.rs' -exec touch {} +; \
    cargo build --release --locked --bin connectivity-operator; \
    install -D -m 0755 target/release/connectivity-operator /out/connectivity-operator; \
    /out/connectivity-operator --version

FROM ${RUNTIME_IMAGE}
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="connectivity-operator" \
      org.opencontainers.image.description="Kubernetes operator that keeps IoT SIM connectivity in Git and reconciles it at the connectivity vendor (emnify, BICS SIM for Things, Telenor IoT Connect)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/connectivity-operator/connectivity-operator"
COPY --from=builder /out/connectivity-operator /usr/local/bin/connectivity-operator
USER 65532:65532
# /healthz, /readyz and /metrics (run --metrics-addr); the demo simulators listen on 8081-8083.
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/connectivity-operator"]
CMD ["run"]
