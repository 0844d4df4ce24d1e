#!/usr/bin/env bash
# Fuzzes probewatch's parsers of outside input with cargo fuzz (libFuzzer).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]
#
# Builds every target of fuzz/ once, regenerates the seed corpora from the
# real data (scripts/fuzz_seeds.py, from ../shared/data), then runs each
# target (all of them when none is named) for SECONDS_PER_TARGET (default 60)
# seconds, one after the other, in one process each: the inputs found so far
# (fuzz/corpus/<target>/, where new ones are added), the seeds
# (fuzz/seeds/<target>/) and the kept crashers (fuzz/regressions/<target>/)
# first, then mutations. Prints the executions
# and findings per target; exits non-zero when any target found a crash, a
# timeout (one input over 20 s) or an out-of-memory (over 1 GiB); the
# input is left in fuzz/artifacts/<target>/ and the log in
# fuzz/artifacts/<target>.log.
#
# FUZZ_PROFILE=dev builds without optimisation (`cargo fuzz --dev`): a much
# cheaper build for short smoke passes, fewer executions per second.
#
# Uses the nightly toolchain when rustup has one, else (or with
# FUZZ_TOOLCHAIN=stable) stable with RUSTC_BOOTSTRAP=1 (cargo fuzz passes
# nightly-only flags). Installs
# cargo-fuzz from crates.io when it is missing. Builds without a sanitizer
# (`--sanitizer none`): the library forbids unsafe code except one
# runtime-dispatched AVX2 call, so AddressSanitizer would find little that
# Rust's own checks (bounds, overflow: debug assertions stay on) do not,
# while it doubles the build time and halves the executions per second.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
case "$seconds" in
    '' | *[!0-9]*) echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]" >&2; exit 2 ;;
esac

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz (crates.io)"
    cargo install cargo-fuzz --locked
fi
if [ "${FUZZ_TOOLCHAIN:-}" != stable ] && rustup run nightly rustc --version >/dev/null 2>&1; then
    fuzz=(cargo +nightly fuzz)
    toolchain="nightly ($(rustup run nightly rustc --version))"
else
    export RUSTC_BOOTSTRAP=1
    fuzz=(cargo fuzz)
    toolchain="stable with RUSTC_BOOTSTRAP=1 ($(rustc --version))"
fi

# The fuzz crate's Cargo.lock is committed: refuse to build when it no
# longer matches the library's dependencies (cargo fuzz would re-lock).
if ! cargo fetch --locked --manifest-path fuzz/Cargo.toml --target "$(rustc -vV | sed -n "s/^host: //p")" >/dev/null 2>&1; then
    echo "error: fuzz/Cargo.lock is out of date; run 'cargo update --workspace --manifest-path fuzz/Cargo.toml' and commit it" >&2
    exit 1
fi

case "${FUZZ_PROFILE:-release}" in
    release) profile=() ;;
    dev) profile=(--dev) ;;
    *) echo "FUZZ_PROFILE must be release or dev" >&2; exit 2 ;;
esac

if [ $# -eq 0 ]; then
    mapfile -t targets < <("${fuzz[@]}" list)
else
    targets=("$@")
fi

# The targets that read files write them here (one folder per process).
scratch_base=/dev/shm
[ -d "$scratch_base" ] || scratch_base=${TMPDIR:-/tmp}
PROBEWATCH_FUZZ_SCRATCH=$(mktemp -d "$scratch_base/probewatch-fuzz.XXXXXX")
export PROBEWATCH_FUZZ_SCRATCH
trap 'rm -rf "$PROBEWATCH_FUZZ_SCRATCH"' EXIT

echo "== seeds from the real data"
python3 scripts/fuzz_seeds.py

echo "== build (${toolchain}, --sanitizer none, ${FUZZ_PROFILE:-release} with debug assertions)"
build_start=$(date +%s)
"${fuzz[@]}" build --sanitizer none "${profile[@]}"
echo "build: $(( $(date +%s) - build_start )) s"

failed=()
summary=()
for target in "${targets[@]}"; do
    mkdir -p "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" \
        "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target.log"
    before=$(find "fuzz/artifacts/$target" -type f | wc -l)
    echo "== $target: ${seconds} s"
    start=$(date +%s)
    status=0
    "${fuzz[@]}" run --sanitizer none "${profile[@]}" "$target" \
        "fuzz/corpus/$target" "fuzz/seeds/$target" "fuzz/regressions/$target" -- \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=1024 -print_final_stats=1 \
        >"$log" 2>&1 || status=$?
    elapsed=$(( $(date +%s) - start ))
    execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | tail -1 | grep -o '[0-9]*$' || true)
    rate=$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))
    corpus=$(find "fuzz/corpus/$target" -type f | wc -l)
    after=$(find "fuzz/artifacts/$target" -type f | wc -l)
    if [ "$status" -ne 0 ] || [ "$after" -gt "$before" ]; then
        result="FOUND (exit $status; see $log and fuzz/artifacts/$target/)"
        failed+=("$target")
        grep -E 'panicked at|ERROR: libFuzzer|SUMMARY' "$log" | head -5 >&2 || true
    else
        result="no finding"
    fi
    line=$(printf '%-18s %6s s %12s execs %8s exec/s %6s corpus  %s' \
        "$target" "$elapsed" "${execs:-?}" "${rate:-?}" "$corpus" "$result")
    echo "$line"
    summary+=("$line")
done

echo "== summary (${seconds} s per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz: findings in ${failed[*]}" >&2
    exit 1
fi
