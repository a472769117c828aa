#!/usr/bin/env bash
# Copies the generated CRDs (crds/*.yaml, from `connectivity-operator crd`) into the Helm chart's
# crds/ folder, byte for byte, removing chart CRDs that no longer exist at the top level.
# Re-run it after regenerating the CRDs; scripts/check-chart.sh fails while the two differ.
set -euo pipefail
cd "$(dirname "$0")/.."
dest=charts/connectivity-operator/crds
mkdir -p "$dest"
shopt -s nullglob
for old in "$dest"/*.yaml; do
    [ -f "crds/$(basename "$old")" ] || { rm -f "$old"; echo "removed $old"; }
done
for crd in crds/*.yaml; do
    if ! cmp -s "$crd" "$dest/$(basename "$crd")"; then
        cp "$crd" "$dest/"
        echo "copied $crd -> $dest/"
    fi
done
