#!/usr/bin/env bash
# A real Kubernetes control plane on 127.0.0.1, for the cluster test tier and for trying the operator
# without a cluster: etcd, kube-apiserver and kube-controller-manager, built from the Go module proxy
# and run as plain processes. No kubelet and no nodes: Deployments get no pods, and nothing here
# needs them (the operator runs as a process).
#
#   bash scripts/control-plane.sh build          build (or find cached) binaries; prints their folder
#   bash scripts/control-plane.sh up DIR         start in DIR (state, logs, DIR/kubeconfig); returns
#                                                when /readyz answers; processes keep running
#   bash scripts/control-plane.sh down DIR       stop what `up DIR` started
#   bash scripts/control-plane.sh restart-apiserver DIR
#                                                kill kube-apiserver with SIGKILL (a crash) and start
#                                                it again on the same port, etcd and certificates;
#                                                returns when /readyz answers (chaos runs)
#   bash scripts/control-plane.sh run -- CMD...  up in a temporary folder, run CMD with KUBECONFIG
#                                                (and CONTROL_PLANE_DIR) set, down on exit
#
# Versions: K8S_VERSION (default below: the newest 1.37 patch the module proxy serves) picks
# k8s.io/kubernetes; its staging modules (k8s.io/api, k8s.io/apiserver, ...) are replaced by their
# published v0.Y.Z, as listed in that release's own go.mod; etcd is go.etcd.io/etcd/server/v3 at the
# version that release pins (ETCD_VERSION in its hack/lib/etcd.sh). Binaries are cached in
# $CONTROL_PLANE_CACHE (default ~/.cache/connectivity-operator/control-plane), one folder per
# Kubernetes version, outside the repository.
#
# Identities (static tokens, written to DIR/tokens.csv, random per start):
#   admin                          group system:masters: the kubeconfig DIR/kubeconfig, for tests
#   system:kube-controller-manager the controller manager, whose controllers use their own
#                                  service accounts (--use-service-account-credentials), as in a
#                                  kubeadm cluster
# TLS: a CA made per start (DIR/pki/ca.crt, in the kubeconfig) signs the apiserver's serving
# certificate for 127.0.0.1 and localhost; service-account tokens are signed with DIR/pki/sa.key.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-1.37.2}
CACHE=${CONTROL_PLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connectivity-operator/control-plane}
BIN=$CACHE/v$K8S_VERSION
GOPROXY_URL=${GOPROXY:-https://proxy.golang.org}
GOPROXY_URL=${GOPROXY_URL%%,*}

log() { printf 'control-plane: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# --- build -------------------------------------------------------------------------------------
build() {
    if [ -x "$BIN/kube-apiserver" ] && [ -x "$BIN/kube-controller-manager" ] && [ -x "$BIN/etcd" ]; then
        echo "$BIN"
        return
    fi
    command -v go >/dev/null 2>&1 || die "go is required to build the control plane (Go 1.26 or newer)"
    local work minor etcd_version mod
    work=$(mktemp -d)
    # shellcheck disable=SC2064 # expand $work now
    trap "rm -rf '$work'" RETURN
    minor=${K8S_VERSION#1.}
    minor=${minor%%.*}
    log "building kube-apiserver, kube-controller-manager v$K8S_VERSION into $BIN (cold: ~10 min on 2 cores)"
    mkdir -p "$work/k8s" "$work/etcd" "$BIN.tmp"
    (
        cd "$work/k8s"
        go mod init connectivity-operator.dev/control-plane-build >/dev/null 2>&1
        # The release's go.mod lists its staging modules as `k8s.io/x => ./staging/src/k8s.io/x`.
        if ! curl -fsS "$GOPROXY_URL/k8s.io/kubernetes/@v/v$K8S_VERSION.mod" -o kubernetes.mod; then
            die "the Go module proxy did not serve k8s.io/kubernetes v$K8S_VERSION (try another K8S_VERSION)"
        fi
        replaces=()
        while read -r m; do
            replaces+=(-replace "$m=$m@v0.${K8S_VERSION#1.}")
        done < <(sed -n 's#^[[:space:]]*\(k8s\.io/[A-Za-z0-9._-]*\) => \./staging/.*#\1#p' kubernetes.mod)
        [ ${#replaces[@]} -gt 0 ] || die "no staging modules found in k8s.io/kubernetes v$K8S_VERSION's go.mod"
        go mod edit "${replaces[@]}" -require "k8s.io/kubernetes@v$K8S_VERSION"
        go get "k8s.io/kubernetes/cmd/kube-apiserver@v$K8S_VERSION" \
            "k8s.io/kubernetes/cmd/kube-controller-manager@v$K8S_VERSION"
        # The version the binaries report (`kubectl version`, helm's kubeVersion checks); a plain
        # `go build` leaves it at v0.0.0-master.
        ldflags="-s"
        for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
            ldflags="$ldflags -X $pkg.gitVersion=v$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
            ldflags="$ldflags -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
        done
        go build -trimpath -ldflags="$ldflags" -o "$BIN.tmp/" \
            k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
    )
    mod=$(cd "$work/k8s" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)
    # shellcheck disable=SC2016 # a literal ${ETCD_VERSION:-...} is what the file holds
    etcd_version=$(sed -n 's/^ETCD_VERSION=\${ETCD_VERSION:-\([0-9.]*\)}.*/\1/p' "$mod/hack/lib/etcd.sh")
    [ -n "$etcd_version" ] || die "could not read the pinned etcd version from $mod/hack/lib/etcd.sh"
    log "building etcd v$etcd_version (pinned by Kubernetes v$K8S_VERSION)"
    (
        cd "$work/etcd"
        go mod init connectivity-operator.dev/etcd-build >/dev/null 2>&1
        go get "go.etcd.io/etcd/server/v3@v$etcd_version"
        go build -trimpath -ldflags=-s -o "$BIN.tmp/etcd" go.etcd.io/etcd/server/v3
    )
    echo "$etcd_version" >"$BIN.tmp/etcd.version"
    rm -rf "$BIN"
    mv "$BIN.tmp" "$BIN"
    echo "$BIN"
}

# --- up / down ---------------------------------------------------------------------------------
free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

wait_ready() { # url token seconds
    local deadline=$((SECONDS + $3))
    until curl -fsS --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $2" "$1" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || return 1
        sleep 0.2
    done
}

pki() {
    local p=$DIR/pki
    mkdir -p "$p"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=connectivity-operator test CA" \
        -keyout "$p/ca.key" -out "$p/ca.crt" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=kube-apiserver" \
        -keyout "$p/apiserver.key" -out "$p/apiserver.csr" 2>/dev/null
    printf 'subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes.default.svc\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n' >"$p/apiserver.ext"
    openssl x509 -req -in "$p/apiserver.csr" -CA "$p/ca.crt" -CAkey "$p/ca.key" -CAcreateserial \
        -days 2 -extfile "$p/apiserver.ext" -out "$p/apiserver.crt" 2>/dev/null
    openssl genrsa -out "$p/sa.key" 2048 2>/dev/null
    openssl rsa -in "$p/sa.key" -pubout -out "$p/sa.pub" 2>/dev/null
}

kubeconfig() { # file user token
    cat >"$1" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: control-plane
  cluster:
    server: https://127.0.0.1:$(cat "$DIR/apiserver.port")
    certificate-authority-data: $(base64 -w0 <"$DIR/pki/ca.crt")
users:
- name: $2
  user:
    token: $3
contexts:
- name: $2
  context: {cluster: control-plane, user: $2, namespace: default}
current-context: $2
EOF
}

start_apiserver() {
    local port
    port=$(cat "$DIR/apiserver.port")
    "$BIN/kube-apiserver" \
        --etcd-servers="http://127.0.0.1:$(cat "$DIR/etcd.port")" \
        --bind-address=127.0.0.1 --advertise-address=127.0.0.1 --secure-port="$port" \
        --tls-cert-file="$DIR/pki/apiserver.crt" --tls-private-key-file="$DIR/pki/apiserver.key" \
        --client-ca-file="$DIR/pki/ca.crt" \
        --token-auth-file="$DIR/tokens.csv" \
        --authorization-mode=RBAC \
        --service-account-issuer=https://kubernetes.default.svc.cluster.local \
        --service-account-key-file="$DIR/pki/sa.pub" \
        --service-account-signing-key-file="$DIR/pki/sa.key" \
        --service-cluster-ip-range=10.96.0.0/24 \
        --endpoint-reconciler-type=none \
        >>"$DIR/kube-apiserver.log" 2>&1 &
    echo $! >"$DIR/kube-apiserver.pid"
    wait_ready "https://127.0.0.1:$port/readyz" "$(cat "$DIR/admin.token")" 120 ||
        { tail -30 "$DIR/kube-apiserver.log" >&2; die "kube-apiserver did not become ready (log: $DIR/kube-apiserver.log)"; }
}

up() {
    build >/dev/null
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd)
    [ ! -f "$DIR/etcd.pid" ] || die "$DIR already holds a control plane (down it first)"
    pki
    local admin kcm etcd_port peer_port
    admin=$(openssl rand -hex 24)
    kcm=$(openssl rand -hex 24)
    echo "$admin" >"$DIR/admin.token"
    printf '%s,admin,admin,system:masters\n%s,system:kube-controller-manager,kcm\n' "$admin" "$kcm" >"$DIR/tokens.csv"
    chmod 600 "$DIR/tokens.csv" "$DIR/admin.token" "$DIR/pki/"*.key
    etcd_port=$(free_port)
    peer_port=$(free_port)
    free_port >"$DIR/apiserver.port"
    echo "$BIN" >"$DIR/bin"
    echo "$etcd_port" >"$DIR/etcd.port"

    # Test data only: fsync off keeps a 2-core CI machine fast.
    "$BIN/etcd" --name control-plane --data-dir "$DIR/etcd" \
        --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
        --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
        --initial-cluster "control-plane=http://127.0.0.1:$peer_port" \
        --unsafe-no-fsync --log-level warn \
        >>"$DIR/etcd.log" 2>&1 &
    echo $! >"$DIR/etcd.pid"
    local deadline=$((SECONDS + 60))
    until curl -fsS "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1; do
        [ $SECONDS -lt $deadline ] || { tail -20 "$DIR/etcd.log" >&2; die "etcd did not start"; }
        sleep 0.2
    done

    start_apiserver
    kubeconfig "$DIR/kubeconfig" admin "$admin"
    kubeconfig "$DIR/kube-controller-manager.kubeconfig" system:kube-controller-manager "$kcm"

    "$BIN/kube-controller-manager" \
        --kubeconfig="$DIR/kube-controller-manager.kubeconfig" \
        --controllers=namespace-controller,garbage-collector-controller,serviceaccount-controller,serviceaccount-token-controller,root-ca-certificate-publisher-controller \
        --use-service-account-credentials \
        --service-account-private-key-file="$DIR/pki/sa.key" \
        --root-ca-file="$DIR/pki/ca.crt" \
        --leader-elect=false --secure-port=0 \
        >>"$DIR/kube-controller-manager.log" 2>&1 &
    echo $! >"$DIR/kube-controller-manager.pid"
    # Ready when its controllers work: the service-account controller makes `default` in `default`.
    deadline=$((SECONDS + 120))
    until curl -fsS --cacert "$DIR/pki/ca.crt" -H "Authorization: Bearer $admin" \
        "https://127.0.0.1:$(cat "$DIR/apiserver.port")/api/v1/namespaces/default/serviceaccounts/default" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ] || ! kill -0 "$(cat "$DIR/kube-controller-manager.pid")" 2>/dev/null; then
            tail -30 "$DIR/kube-controller-manager.log" >&2
            die "kube-controller-manager did not start its controllers"
        fi
        sleep 0.2
    done
    log "ready: KUBECONFIG=$DIR/kubeconfig (Kubernetes v$K8S_VERSION, etcd v$(cat "$BIN/etcd.version" 2>/dev/null || echo '?'))"
}

stop_pid() { # pidfile
    [ -f "$1" ] || return 0
    local pid
    pid=$(cat "$1")
    if kill "$pid" 2>/dev/null; then
        for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$1"
}

restart_apiserver() {
    [ -f "$DIR/kube-apiserver.pid" ] || die "$DIR holds no running control plane (up it first)"
    BIN=$(cat "$DIR/bin")
    local pid
    pid=$(cat "$DIR/kube-apiserver.pid")
    kill -9 "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$DIR/kube-apiserver.pid"
    start_apiserver
}

down() {
    [ -d "$DIR" ] || return 0
    stop_pid "$DIR/kube-controller-manager.pid"
    stop_pid "$DIR/kube-apiserver.pid"
    stop_pid "$DIR/etcd.pid"
}

cmd=${1:-}
shift || true
case "$cmd" in
build) build ;;
up) DIR=${1:?usage: control-plane.sh up DIR}; up ;;
down) DIR=${1:?usage: control-plane.sh down DIR}; down ;;
restart-apiserver) DIR=${1:?usage: control-plane.sh restart-apiserver DIR}; restart_apiserver ;;
run)
    [ "${1:-}" = "--" ] && shift
    [ $# -gt 0 ] || die "usage: control-plane.sh run -- CMD..."
    DIR=$(mktemp -d "${TMPDIR:-/tmp}/control-plane.XXXXXX")
    # shellcheck disable=SC2064 # expand $DIR now
    trap "DIR='$DIR'; down; [ -n \"\${KEEP_CONTROL_PLANE:-}\" ] || rm -rf '$DIR'" EXIT
    up
    KUBECONFIG=$DIR/kubeconfig CONTROL_PLANE_DIR=$DIR "$@"
    ;;
*)
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
    ;;
esac
