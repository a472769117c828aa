#!/usr/bin/env bash
# Checks the packaging with the real tools (installed by scripts/tools.sh into target/tools/):
#
#   - the chart's crds/ are byte-identical copies of crds/ (scripts/sync-chart-crds.sh fixes it)
#   - Chart.yaml appVersion equals the crate version in Cargo.toml
#   - helm lint --strict, with default values and with ci/all-options-values.yaml
#   - helm template with default values and with every option on, written to
#     target/chart-render/{default,all-options}.yaml (the RBAC coverage test reads them)
#   - kubernetes-validate --strict on every rendered object and every CRD
#   - values with unknown keys are rejected by values.schema.json
#   - the Argo CD health checks (health_test.yaml) under Lua 5.1
#   - hadolint on the Dockerfile (no Docker engine needed)
#   - shellcheck on the packaging scripts, when shellcheck is installed
#
#   bash scripts/check-chart.sh
#
# Runs every check even after a failure, prints a summary, exits 1 when any check failed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1

bash scripts/tools.sh || { echo "check-chart: installing the tools failed" >&2; exit 1; }

TOOLS=target/tools
HELM=$TOOLS/bin/helm
PY=$TOOLS/venv/bin/python
VALIDATE=$TOOLS/venv/bin/kubernetes-validate
CHART=charts/connectivity-operator
OUT=target/chart-render
# Kubernetes versions the rendered chart is validated against: the chart's floor
# (kubeVersion >=1.30) and a current one.
K8S_VERSIONS=(1.30.0 1.33.0)
RELEASE=connectivity-operator
NAMESPACE=connectivity-system

rm -rf "$OUT"
mkdir -p "$OUT"
results=()
failures=0
started=$SECONDS

# check NAME COMMAND...: runs one check, records its result, never stops the script.
check() {
    local name=$1
    shift
    printf '\n==> %s\n' "$name"
    if "$@"; then
        results+=("PASS  $name")
    else
        results+=("FAIL  $name")
        failures=$((failures + 1))
    fi
}

crds_in_sync() {
    local ok=0 f
    for f in crds/*.yaml; do
        cmp -s "$f" "$CHART/crds/$(basename "$f")" || { echo "differs or missing in $CHART/crds: $f"; ok=1; }
    done
    for f in "$CHART"/crds/*.yaml; do
        [ -f "crds/$(basename "$f")" ] || { echo "not in crds/: $f"; ok=1; }
    done
    [ $ok = 0 ] && echo "$(find crds -maxdepth 1 -name '*.yaml' | wc -l) CRDs identical"
    [ $ok = 0 ] || echo "run: bash scripts/sync-chart-crds.sh"
    return $ok
}

app_version_matches_crate() {
    "$PY" - "$CHART/Chart.yaml" Cargo.toml <<'PY'
import re, sys, yaml
chart = yaml.safe_load(open(sys.argv[1]))
package = re.search(r'^\[package\]\s*$(.*?)(?=^\[|\Z)', open(sys.argv[2]).read(), re.S | re.M).group(1)
crate = re.search(r'^version\s*=\s*"([^"]+)"', package, re.M).group(1)
print(f"Chart appVersion {chart['appVersion']!r}, chart version {chart['version']!r}, crate version {crate!r}")
sys.exit(0 if str(chart["appVersion"]) == crate else 1)
PY
}

lint() {
    "$HELM" lint --strict "$CHART" && "$HELM" lint --strict "$CHART" -f "$CHART/ci/all-options-values.yaml"
}

render() {
    local out=$1
    shift
    "$HELM" template "$RELEASE" "$CHART" --namespace "$NAMESPACE" --kube-version 1.33.0 "$@" >"$out" \
        && echo "$(grep -c '^kind:' "$out") objects -> $out"
}

# Splits the renders into one file per object (skipping the ServiceMonitor, a Prometheus Operator
# kind kubernetes-validate has no schema for) and validates them and the CRDs.
validate() {
    local objects=$OUT/objects version
    rm -rf "$objects"
    mkdir -p "$objects"
    "$PY" - "$objects" "$OUT/default.yaml" "$OUT/all-options.yaml" <<'PY' || return 1
import os, sys, yaml
dest = sys.argv[1]
for render in sys.argv[2:]:
    prefix = os.path.basename(render).removesuffix(".yaml")
    for i, doc in enumerate(d for d in yaml.safe_load_all(open(render)) if d):
        kind, name = doc["kind"], doc["metadata"]["name"]
        if doc["apiVersion"].startswith("monitoring.coreos.com/"):
            print(f"skipped {prefix}: {kind}/{name} ({doc['apiVersion']} is not a core Kubernetes kind)")
            continue
        with open(os.path.join(dest, f"{prefix}-{i:02d}-{kind}-{name}.yaml"), "w") as f:
            yaml.safe_dump(doc, f)
PY
    for version in "${K8S_VERSIONS[@]}"; do
        "$VALIDATE" --strict --quiet -k "$version" "$objects"/*.yaml crds/*.yaml || return 1
        echo "Kubernetes $version: $(find "$objects" -name '*.yaml' | wc -l) rendered objects and $(find crds -maxdepth 1 -name '*.yaml' | wc -l) CRDs valid (strict)"
    done
}

# Every misspelt key, at the top and nested, must make `helm template` fail on the schema.
unknown_keys_rejected() {
    local ok=0 case values err
    for case in 'replicas: 2' 'operator: {resyncIntervall: 5m}' 'simulators: {emnify: {prot: 9000}}' \
        'networkPolicy: {metrics: {from: [{namespaceSelecter: {}}]}}' 'securityContext: {readOnlyRootFileSystem: true}'; do
        values=$(mktemp --suffix=.yaml)
        echo "$case" >"$values"
        if err=$("$HELM" template "$RELEASE" "$CHART" -f "$values" 2>&1 >/dev/null); then
            echo "NOT rejected: $case"
            ok=1
        elif grep -qi 'additional properties' <<<"$err"; then
            echo "rejected: $case"
        else
            echo "failed for another reason than the unknown key: $case: $err"
            ok=1
        fi
        rm -f "$values"
    done
    return $ok
}

argocd_health_checks() {
    local dir=argocd/resource_customizations/connectivity-operator.dev
    # One script for every kind: the copies must not drift apart.
    local kind
    for kind in ProviderConfig ConnectivitySubscription; do
        if ! cmp -s "$dir/ServiceProfile/health.lua" "$dir/$kind/health.lua"; then
            echo "$dir/$kind/health.lua differs from the ServiceProfile one"
            return 1
        fi
    done
    "$PY" scripts/argocd-health-test.py argocd/resource_customizations --gopher-lua target/tools/bin/gopher-lua
}

dockerfile_lint() {
    "$TOOLS/venv/bin/hadolint" Dockerfile && echo "hadolint: Dockerfile clean"
}

PACKAGING_SCRIPTS=(scripts/tools.sh scripts/sync-chart-crds.sh scripts/check-chart.sh scripts/e2e-kind.sh
    scripts/control-plane.sh scripts/test.sh scripts/chaos.sh scripts/fuzz.sh)
lint_scripts() {
    if ! command -v shellcheck >/dev/null 2>&1; then
        echo "shellcheck not installed: skipped"
        return 0
    fi
    shellcheck "${PACKAGING_SCRIPTS[@]}" && echo "shellcheck: ${PACKAGING_SCRIPTS[*]} clean"
}

check "chart crds/ identical to crds/" crds_in_sync
check "Chart appVersion == Cargo.toml version" app_version_matches_crate
check "helm lint --strict (default, all options)" lint
check "helm template, default values" render "$OUT/default.yaml"
check "helm template, all options" render "$OUT/all-options.yaml" \
    -f "$CHART/ci/all-options-values.yaml" --api-versions monitoring.coreos.com/v1
check "kubernetes-validate --strict (rendered objects, CRDs)" validate
check "values with unknown keys are rejected" unknown_keys_rejected
check "Argo CD health checks under Lua 5.1 and gopher-lua" argocd_health_checks
check "hadolint Dockerfile" dockerfile_lint
check "shellcheck (packaging scripts)" lint_scripts

printf '\n==> summary (%ss)\n' "$((SECONDS - started))"
printf '%s\n' "${results[@]}"
echo "packaging: $((${#results[@]} - failures)) passed, $failures failed"
[ "$failures" = 0 ]
