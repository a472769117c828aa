#!/usr/bin/env bash
# End-to-end test of the container image and the Helm chart on a kind cluster:
#
#   1. build the image (Dockerfile) and load it into kind
#   2. helm install the chart with the demo simulators
#   3. apply a Secret and a ProviderConfig pointing at the in-cluster emnify simulator, and the
#      quickstart ServiceProfiles, in a fresh namespace; wait for Ready=True
#   4. check the profiles exist at the simulator
#   5. delete the ProviderConfig first: it must stay, blocked with Ready=False reason InUse
#   6. delete the ServiceProfiles: the finalizers must be removed, the objects must disappear and
#      the profiles must be gone at the simulator; then the ProviderConfig disappears too
#   7. helm uninstall (and delete the cluster when this script created it)
#
#   bash scripts/e2e-kind.sh
#
# Needs docker, kind and python3; helm and kubectl come from scripts/tools.sh. Environment:
#   KIND_CLUSTER   cluster name (default connectivity-e2e; an existing one is reused and kept)
#   KEEP_CLUSTER=1 keep a cluster this script created
#   IMAGE          image reference to build (default connectivity-operator:e2e)
set -euo pipefail
cd "$(dirname "$0")/.."

CLUSTER=${KIND_CLUSTER:-connectivity-e2e}
IMAGE=${IMAGE:-connectivity-operator:e2e}
RELEASE=e2e
OPERATOR_NS=connectivity-system
NS=e2e-$(date +%s)-$RANDOM
SIM_URL=http://$RELEASE-sim-emnify.$OPERATOR_NS.svc:8081
TOKEN=emnify-sim-demo-application-token-0000000000000000
TIMEOUT=180s

for tool in docker kind python3; do
    command -v "$tool" >/dev/null 2>&1 || { echo "e2e-kind: $tool is required" >&2; exit 1; }
done
bash scripts/tools.sh
PATH=$PWD/target/tools/bin:$PATH
export PATH

step() { printf '\n==> %s\n' "$*"; }
fail() { echo "e2e-kind: FAILED: $*" >&2; exit 1; }

created_cluster=0
pf_pid=
cleanup() {
    local rc=$?
    [ -n "$pf_pid" ] && kill "$pf_pid" 2>/dev/null
    if [ $rc -ne 0 ]; then
        echo "--- diagnostics (exit $rc)" >&2
        kubectl get connectivity -n "$NS" -o yaml >&2 2>/dev/null || true
        kubectl -n "$OPERATOR_NS" logs "deploy/$RELEASE-connectivity-operator" --tail=100 >&2 2>/dev/null || true
    fi
    kubectl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
    helm uninstall "$RELEASE" -n "$OPERATOR_NS" >/dev/null 2>&1 || true
    if [ "$created_cluster" = 1 ] && [ "${KEEP_CLUSTER:-0}" != 1 ]; then
        kind delete cluster --name "$CLUSTER" || true
    fi
    exit $rc
}
trap cleanup EXIT

# until_true DESCRIPTION COMMAND...: retries COMMAND every 2 s for up to 3 minutes.
until_true() {
    local what=$1 i
    shift
    for i in $(seq 1 90); do
        if "$@"; then return 0; fi
        [ "$i" = 1 ] && echo "waiting: $what"
        sleep 2
    done
    fail "timed out: $what"
}

step "kind cluster $CLUSTER"
if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
    kind create cluster --name "$CLUSTER" --wait 120s
    created_cluster=1
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null

step "build $IMAGE and load it into kind"
docker build -t "$IMAGE" .
kind load docker-image "$IMAGE" --name "$CLUSTER"

step "helm install $RELEASE (operator + demo simulators)"
helm install "$RELEASE" charts/connectivity-operator \
    --namespace "$OPERATOR_NS" --create-namespace \
    --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never \
    --set simulators.enabled=true \
    --wait --timeout 5m
kubectl -n "$OPERATOR_NS" get deploy,svc

step "ProviderConfig, Secret and the quickstart ServiceProfiles in namespace $NS"
kubectl create namespace "$NS"
kubectl -n "$NS" create secret generic emnify-credentials --from-literal=applicationToken="$TOKEN"
kubectl apply -f - <<EOF
apiVersion: connectivity-operator.dev/v1alpha1
kind: ProviderConfig
metadata:
  name: emnify
  namespace: $NS
spec:
  vendor: emnify
  endpoint: $SIM_URL
  credentialsSecretRef:
    name: emnify-credentials
EOF
for f in examples/quickstart/02-serviceprofile-basic.yaml examples/quickstart/03-serviceprofile-services.yaml; do
    sed "s/^  namespace: default$/  namespace: $NS/" "$f" | kubectl apply -f -
done

step "wait for Ready"
kubectl -n "$NS" wait --for=condition=Ready --timeout="$TIMEOUT" \
    providerconfig/emnify serviceprofile/lpwa-sensors serviceprofile/fleet-trackers
kubectl -n "$NS" get connectivity

step "the profiles exist at the simulator"
kubectl -n "$OPERATOR_NS" port-forward "svc/$RELEASE-sim-emnify" 18081:8081 >/dev/null 2>&1 &
pf_pid=$!
# Prints the names of the service profiles at the simulator, one a line.
sim_profiles() {
    python3 - "$TOKEN" <<'PY'
import json, sys, urllib.request
base = "http://127.0.0.1:18081/api/v1"
req = urllib.request.Request(base + "/authenticate", method="POST",
                             data=json.dumps({"application_token": sys.argv[1]}).encode(),
                             headers={"Content-Type": "application/json"})
token = json.load(urllib.request.urlopen(req, timeout=5))["auth_token"]
req = urllib.request.Request(base + "/service_profile", headers={"Authorization": "Bearer " + token})
for profile in json.load(urllib.request.urlopen(req, timeout=5)):
    print(profile["name"])
PY
}
until_true "simulator port-forward" sim_profiles >/dev/null
profiles=$(sim_profiles)
echo "$profiles"
grep -qx "lpwa-sensors" <<<"$profiles" || fail "lpwa-sensors is not at the simulator"
grep -qx "Fleet trackers EU" <<<"$profiles" || fail "Fleet trackers EU is not at the simulator"

step "deleting the ProviderConfig is blocked while profiles use it"
kubectl -n "$NS" delete providerconfig emnify --wait=false
pc_in_use() {
    [ "$(kubectl -n "$NS" get providerconfig emnify \
        -o jsonpath='{.status.conditions[?(@.type=="Ready")].reason}')" = InUse ]
}
until_true "ProviderConfig emnify Ready reason InUse" pc_in_use
kubectl -n "$NS" get providerconfig emnify -o jsonpath='{.metadata.finalizers}{"\n"}'

step "delete the ServiceProfiles: finalizers removed, objects gone, vendor profiles deleted"
kubectl -n "$NS" delete serviceprofile lpwa-sensors fleet-trackers --wait=false
for obj in serviceprofile/lpwa-sensors serviceprofile/fleet-trackers providerconfig/emnify; do
    if ! kubectl -n "$NS" wait --for=delete "$obj" --timeout="$TIMEOUT"; then
        kubectl -n "$NS" get "$obj" -o jsonpath='finalizers: {.metadata.finalizers}{"\n"}' || true
        fail "$obj was not deleted (finalizer still present?)"
    fi
    echo "$obj deleted"
done
left=$(kubectl -n "$NS" get connectivity -o name)
[ -z "$left" ] || fail "objects left: $left"
profiles=$(sim_profiles)
if grep -qx -e "lpwa-sensors" -e "Fleet trackers EU" <<<"$profiles"; then
    fail "profiles still at the simulator: $profiles"
fi

step "helm uninstall"
kill "$pf_pid" 2>/dev/null || true
pf_pid=
helm uninstall "$RELEASE" -n "$OPERATOR_NS" --wait
echo "e2e-kind: passed"
