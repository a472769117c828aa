#!/usr/bin/env bash
# The whole test suite, exactly as CI runs it. Needs a Rust toolchain, Go (1.26+, with the Go module
# proxy), python3, openssl and (for lua5.1 and shellcheck, via apt) root; installs everything else
# it uses under target/: helm, kubectl, kubernetes-validate, hadolint, gopher-lua
# (scripts/tools.sh) and a Python venv with emnify's official SDK. The cluster tier builds etcd,
# kube-apiserver and kube-controller-manager once per Kubernetes version into
# ~/.cache/connectivity-operator/control-plane (scripts/control-plane.sh; K8S_VERSION picks another).
#
#   bash scripts/test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
step() { printf '\n==> %s (%ss)\n' "$*" "$((SECONDS - started))"; }

# rustfmt and clippy are toolchain components that cannot be fetched from a registry: on a
# machine without them the script says so in one line and carries on.
step "rustfmt"
if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --all --check
else
    echo "rustfmt is not installed on this machine: formatting not checked"
fi

step "clippy"
if cargo clippy --version >/dev/null 2>&1; then
    cargo clippy --workspace --all-targets --locked -- -D warnings
else
    echo "clippy is not installed on this machine: lints not checked"
fi

step "no unused dependencies (cargo-machete)"
# Installed from crates.io into target/tools/cargo once, then reused.
machete=target/tools/cargo/bin/cargo-machete
if [ ! -x "$machete" ]; then
    cargo install --quiet --locked cargo-machete --version 0.9.2 --root target/tools/cargo
fi
"$machete"

step "generated files (README reasons table, Argo CD health reason tables) match src/reason.rs"
cargo run --quiet --locked -- generate --check

step "CRDs in crds/ are generated from the Rust types"
cargo run --quiet --locked -- crd --output-dir target/crds-check
diff -ru crds target/crds-check

step "packaging: chart, CRD copies, kubernetes-validate, Argo CD health checks (Lua 5.1, gopher-lua), Dockerfile lint"
# Also renders the chart into target/chart-render/, which the RBAC coverage test reads.
bash scripts/check-chart.sh

step "emnify's OpenAPI spec as the oracle (tests/emnify_openapi.rs, in the tests below)"
# The spec is emnify's reference data, not part of this repository: read from EMNIFY_OPENAPI or
# shared/vendors/emnify-openapi.yml above the repository. When it is there the test must check
# against it (REQUIRE_EMNIFY_OPENAPI); the line below says which.
if [ -z "${EMNIFY_OPENAPI:-}" ]; then
    dir=$PWD
    while [ "$dir" != / ]; do
        dir=$(dirname "$dir")
        if [ -f "$dir/shared/vendors/emnify-openapi.yml" ]; then
            export EMNIFY_OPENAPI="$dir/shared/vendors/emnify-openapi.yml"
            break
        fi
    done
fi
if [ -n "${EMNIFY_OPENAPI:-}" ]; then
    export REQUIRE_EMNIFY_OPENAPI=1
    echo "simulator and client checked against $EMNIFY_OPENAPI"
else
    echo "emnify's OpenAPI spec is not on this machine (set EMNIFY_OPENAPI): simulator and client NOT checked against it"
fi

step "tests (unit, simulator, client, reconcile, controller, offline CLI, RBAC coverage)"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --no-fail-fast
    cargo test --workspace --locked --doc
else
    cargo test --workspace --locked --no-fail-fast
fi

step "control plane: etcd, kube-apiserver, kube-controller-manager (built once, cached)"
bash scripts/control-plane.sh build

step "cluster tier: CRDs, chart, RBAC, operator process, namespace deletion, leader election on a real kube-apiserver"
# One test at a time: a cluster-wide operator of one test would also see another test's objects.
bash scripts/control-plane.sh run -- \
    cargo test --locked --test e2e_cluster -- --ignored --test-threads=1

step "chaos run (short): faults at every vendor, operator SIGKILLs, an apiserver restart; invariants"
# The full run (1,000 ServiceProfiles, 10,000 subscriptions) is scripts/chaos.sh.
bash scripts/control-plane.sh run -- \
    cargo test --locked --test chaos -- --ignored --exact chaos_short --nocapture

step "docs"
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --locked --quiet

step "emnify's official Python SDK against the emnify simulator"
venv=target/pyvenv
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --disable-pip-version-check 'emnify-sdk==0.5.3'
bin=target/debug/connectivity-operator
simlog=$(mktemp)
"$bin" sim --vendor emnify --listen 127.0.0.1:0 >"$simlog" &
simpid=$!
trap 'kill $simpid 2>/dev/null || true; rm -f "$simlog"' EXIT
for _ in $(seq 1 100); do [ -s "$simlog" ] && break; sleep 0.1; done
url=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["url"])' "$simlog")
token=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).readline())["credentials"]["application_token"])' "$simlog")
EMNIFY_SDK_API_ENDPOINT_URL="$url/api" EMNIFY_SDK_APPLICATION_TOKEN="$token" "$venv/bin/python" tests/python/emnify_sdk_smoke.py

step "README quick start: apply -f examples/quickstart --simulate"
"$bin" apply -f examples/quickstart --simulate >target/quickstart.yaml
grep -c "reason: Available" target/quickstart.yaml | grep -qx 2

step "done in $((SECONDS - started))s"
