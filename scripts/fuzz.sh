#!/usr/bin/env bash
# Fuzz zdd's plan reader: both cargo-fuzz targets for S seconds each (or N executions), then replay what they
# found on stable to name the slowest input. Prints executions, crashes and the slowest input per target.
#
#   scripts/fuzz.sh                       # 60 s per target
#   scripts/fuzz.sh --seconds 600         # longer
#   scripts/fuzz.sh --runs 100000         # a fixed number of executions per target
#   scripts/fuzz.sh --sanitizer address   # with AddressSanitizer (needs the nightly toolchain)
#   scripts/fuzz.sh --seed 1              # libFuzzer's random seed (default: a new one each run)
#   scripts/fuzz.sh --build-only          # build the targets and stop (scripts/test.sh builds them early, in the background)
#
# By default the targets are built without a sanitizer, by cargo with cargo-fuzz's flags, on the stable
# toolchain: zdd has no unsafe code of its own, so a sanitizer mostly slows the run down (about 40x here). Inputs found are kept in fuzz/corpus-work/<target>/ (not committed); crashes go to
# fuzz/artifacts/<target>/. A panic, an input over its time budget (100 ms of CPU per KiB, at least 10 ms:
# fuzz/fuzz_targets/budget.rs, judged by the thread's CPU time) or one hanging for 10 s (libFuzzer -timeout=10,
# a wall clock, so it is only a hang detector: a loaded machine must not fail the run) is a crash; the script
# exits 1 if there was one.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=60
runs=""
sanitizer=none
seed=()
build_only=false
while [ $# -gt 0 ]; do
    case "$1" in
        --seconds) seconds=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        --sanitizer) sanitizer=$2; shift 2 ;;
        --seed) seed=(-seed="$2"); shift 2 ;;
        --build-only) build_only=true; shift ;;
        *) echo "usage: $0 [--seconds S | --runs N] [--sanitizer none|address] [--seed N] [--build-only]" >&2; exit 2 ;;
    esac
done
limit=(-max_total_time="$seconds")
[ -n "$runs" ] && limit=(-runs="$runs")

# A sanitizer needs nightly's -Zsanitizer and cargo-fuzz. Without one, the default (stable) toolchain builds the
# targets with the instrumentation flags cargo-fuzz itself passes (`cargo fuzz build -s none -O`), so a test run
# needs no cargo-fuzz to be installed (compiling it took CI about 3 minutes).
toolchain=()
if [ "$sanitizer" != none ]; then
    toolchain=(+nightly)
    if ! cargo "${toolchain[@]}" fuzz --version >/dev/null 2>&1; then
        echo "fuzz.sh: --sanitizer needs cargo-fuzz (cargo install cargo-fuzz) and the nightly toolchain" >&2
        exit 2
    fi
    if "$build_only"; then
        (cd fuzz && cargo "${toolchain[@]}" fuzz build --sanitizer "$sanitizer" -O)
    fi
else
    triple=$(rustc -vV | sed -n 's/^host: //p')
    RUSTFLAGS="-Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares --cfg fuzzing" \
        cargo build --quiet --release --manifest-path fuzz/Cargo.toml --target "$triple" \
        --bin plan_bytes --bin plan_mutated
fi
"$build_only" && exit 0

status=0
for target in plan_bytes plan_mutated; do
    work="fuzz/corpus-work/$target"
    mkdir -p "$work" "fuzz/artifacts/$target"
    log="fuzz/artifacts/$target/last-run.log"
    before=$(find "fuzz/artifacts/$target" -type f ! -name '*.log' | wc -l)
    dict=()
    [ "$target" = plan_bytes ] && dict=(-dict=kdl.dict)
    # The target runs in fuzz/: paths are relative to it.
    args=("corpus-work/$target" "seeds/$target" "${limit[@]}" "${seed[@]}" -timeout=10 -rss_limit_mb=2048
        -print_final_stats=1 "${dict[@]}" -artifact_prefix="artifacts/$target/")
    if [ "$sanitizer" != none ]; then
        (cd fuzz && cargo "${toolchain[@]}" fuzz run --sanitizer "$sanitizer" -O "$target" -- "${args[@]}") \
            >"$log" 2>&1 || status=1
    else
        (cd fuzz && "target/$triple/release/$target" "${args[@]}") >"$log" 2>&1 || status=1
    fi
    after=$(find "fuzz/artifacts/$target" -type f ! -name '*.log' | wc -l)
    execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
    cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 || true)
    corpus=$(find "$work" -type f | wc -l)
    echo "$target: $execs executions ($speed/s), $((after - before)) crashes, ${cov:-cov: ?}, corpus $corpus inputs (log: $log)"
    if [ "$after" -gt "$before" ]; then
        find "fuzz/artifacts/$target" -type f ! -name '*.log' -newer "$work" | sed 's/^/  crash: /'
    fi
done

# The slowest input, timed one by one on stable (debug build); the test fails on a panic or an input over 1 s.
replay_log="fuzz/artifacts/replay.log"
if ! ZDD_FUZZ_CORPUS="$PWD/fuzz/corpus-work/plan_bytes:$PWD/fuzz/corpus-work/plan_mutated" ZDD_FUZZ_MUTATIONS=0 \
    cargo test -q --locked --test fast fuzz_corpus -- --nocapture >"$replay_log" 2>&1; then
    status=1
fi
grep -E 'inputs \(|panicked|took' "$replay_log" || echo "fuzz.sh: the replay printed no summary (log: $replay_log)"
exit $status
