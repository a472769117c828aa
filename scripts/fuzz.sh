#!/usr/bin/env bash
# Coverage-guided fuzzing of every target in fuzz/ (cargo-fuzz, libFuzzer, nightly), each for a
# set time, two at a time (one per core). New coverage lands in fuzz/corpus/<target>/ (minimised
# afterwards with `cargo fuzz cmin`); a crash stops its target, is left in
# fuzz/artifacts/<target>/, and this script exits 1 naming it: copy it to
# fuzz/regressions/<target>/ with the fix, so tests/fuzz_corpus.rs replays it in every test run.
#
#   bash scripts/fuzz.sh                 # every target, 600 s each
#   FUZZ_SECONDS=60 bash scripts/fuzz.sh manifests quantities
#
# Not part of scripts/test.sh (which replays the corpora); needs the nightly toolchain.
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-2}
root=$PWD
tools="$root/target/tools"
if ! command -v cargo-fuzz >/dev/null && [ ! -x "$tools/bin/cargo-fuzz" ]; then
    cargo install --locked --root "$tools" cargo-fuzz@0.13.2
fi
export PATH="$tools/bin:$PATH"
rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal

mapfile -t all < <(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^connectivity')
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")

cargo +nightly fuzz build --release
logs="$root/target/fuzz-logs"
mkdir -p "$logs"

run() {
    local t=$1
    mkdir -p "fuzz/corpus/$t"
    # -timeout: an input slower than 10 s is a finding (alias bombs, quadratic parsing);
    # -rss_limit_mb: so is one that needs more than 2 GiB.
    if cargo +nightly fuzz run --release "$t" -- -max_total_time="$seconds" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$logs/$t.log" 2>&1; then
        echo "$t: ok"
    else
        echo "$t: CRASH (see $logs/$t.log and fuzz/artifacts/$t/)"
        return 1
    fi
}

failed=0
running=0
for t in "${targets[@]}"; do
    run "$t" &
    running=$((running + 1))
    # A free core goes to the next target as soon as any one ends (a crash ends one early).
    if [ "$running" -ge "$jobs" ]; then
        wait -n || failed=1
        running=$((running - 1))
    fi
done
while [ "$running" -gt 0 ]; do
    wait -n || failed=1
    running=$((running - 1))
done

# Figures per target: executions, rate, coverage, corpus; then minimise the corpus.
printf '\n%-22s %12s %10s %8s %8s %8s\n' target runs "execs/s" cov ft corpus
for t in "${targets[@]}"; do
    log="$logs/$t.log"
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
    cargo +nightly fuzz cmin --release "$t" "fuzz/corpus/$t" >/dev/null 2>&1 || true
    printf '%-22s %12s %10s %8s %8s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" \
        "$(find "fuzz/corpus/$t" -type f | wc -l)"
done
exit $failed
