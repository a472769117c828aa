#!/usr/bin/env bash
# The full chaos run: 1,000 ServiceProfiles and 10,000 ConnectivitySubscriptions on emnify, BICS
# and Telenor (simulators), seeded faults at every vendor, three operator SIGKILLs, one
# kube-apiserver restart, a token revocation; then quiet until converged, and the invariants
# (tests/chaos.rs). Prints its table. Not part of scripts/test.sh, which runs the short version.
#
#   bash scripts/chaos.sh              # seed 20261202
#   CHAOS_SEED=7 bash scripts/chaos.sh
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/control-plane.sh build >/dev/null
exec bash scripts/control-plane.sh run -- \
    cargo test --release --locked --test chaos -- --ignored --exact chaos_full --nocapture
