#!/usr/bin/env bash
# Runs the whole test suite: installs missing test dependencies (scripts/test-deps.sh), checks formatting and
# clippy, runs the unit tests, doctests and the two integration-test binaries (`tests/fast`, then `tests/scenarios`
# with one test thread, so that no two load measurements share the 2 cores), fuzzes the plan reader briefly
# (scripts/fuzz.sh, 30 s per target), then builds the book. With CI=true a test whose component is missing fails
# instead of skipping.
#
# The scenario suites boot real components (Nginx, PostgreSQL, systemd in a namespace) and put real load on
# them; they serialise themselves, and the shared Python venv is built once under target/zdd-test-cache.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -- --nocapture`).
set -euo pipefail

export PATH="${HOME:-/root}/.cargo/bin:$PATH"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

"$repo/scripts/test-deps.sh"

export ZDD_WHEELS="${ZDD_WHEELS:-/root/.cache/zdd-wheels}"
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never
    # tests/scenarios/demo.rs runs the README's `cargo run --release -- run plans/demo.kdl` literally, in a fresh
    # clone in a mode-700 home. Elsewhere it runs this build's binary with the same arguments.
    export ZDD_README_CARGO=1
fi

start=$(date +%s)
# Builds that no test waits for at once run beside the tests, at the lowest CPU priority: they take what the tests
# leave idle (the scenarios mostly wait on servers), so the load measurements keep both cores when they want
# them, and the run does not wait for these builds one after another. A test that needs one of them waits for
# cargo's lock on its target directory, and the build then has the machine to itself.
# - the fuzz targets (scripts/fuzz.sh runs them after the tests);
# - the static binary the packaging scenario packages (scripts/package.sh --build-only, so that its full run
#   finds it built);
# - with ZDD_README_CARGO=1, the README's release build, in its own target directory, which the README
#   scenario's clone then shares: the registry's crates compile once, the clone's own crates in the clone;
# - mdbook, once.
mkdir -p "$repo/target"
declare -A pids
# A run that fails early leaves no build behind it.
trap 'for pid in "${pids[@]}"; do kill -- "-$pid" 2>/dev/null || true; done' EXIT
background() { # LOG COMMAND...: runs COMMAND niced, in its own session; `finish LOG` waits for it
    local log="$repo/target/$1"
    shift
    # One compiler process each: four builds at once already fill both cores, and this bounds their memory. A
    # new session is a new scheduler autogroup where the kernel has them (sched_autogroup_enabled), and there
    # a process's nice value counts only inside its group: the group itself is niced too, or each build would
    # get as much CPU as all the tests (measured: the steps before the scenarios took 17 minutes instead of 6).
    # shellcheck disable=SC2016
    CARGO_BUILD_JOBS=1 setsid bash -c '[ -w /proc/self/autogroup ] && echo 19 >/proc/self/autogroup; exec nice -n 19 "$@"' \
        background "$@" >"$log" 2>&1 &
    pids["$log"]=$!
}
finish() {
    local log="$repo/target/$1"
    [[ -v pids["$log"] ]] || return 0
    if ! wait "${pids[$log]}"; then
        cat "$log" >&2
        echo "test.sh: the background build logged in $log failed" >&2
        exit 1
    fi
}
background fuzz-build.log "$repo/scripts/fuzz.sh" --build-only
background musl-build.log "$repo/scripts/package.sh" --build-only
if [[ "${ZDD_README_CARGO:-}" == "1" ]]; then
    export ZDD_README_TARGET_DIR="$repo/target/readme"
    background readme-build.log env CARGO_TARGET_DIR="$ZDD_README_TARGET_DIR" \
        cargo build --release --locked --bin zdd
fi
if ! command -v mdbook >/dev/null 2>&1; then
    echo "test.sh: installing mdbook (once, in the background)"
    background mdbook-install.log cargo install mdbook --locked --version 0.5.4 --no-default-features --features search
fi

# Style first: it is the cheapest to fail on.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --lib --bins --test fast "$@"
cargo test --workspace --locked --doc
# The scenarios that compile zdd in release mode (the README's fresh clone, the packages) run last, when the
# background builds they share have had the whole run to finish. Extra arguments (a filter, say) run the binary
# once, as given.
late=(demo::the_readme_demo_works_from_a_fresh_clone_in_a_mode_700_home packaging::)
# Each scenario notes when it starts (tests/support/env.rs): the slowest are listed after the run, to see where
# the suite's time goes.
export ZDD_TEST_TIMES="$repo/target/scenario-times.log"
rm -f "$ZDD_TEST_TIMES"
if [[ $# -eq 0 ]]; then
    RUST_TEST_THREADS=1 cargo test --locked --test scenarios -- "${late[@]/#/--skip=}"
    RUST_TEST_THREADS=1 cargo test --locked --test scenarios -- "${late[@]}"
else
    RUST_TEST_THREADS=1 cargo test --locked --test scenarios "$@"
fi
echo "test.sh: cargo test finished in $(( $(date +%s) - start )) s"
if [[ -s "$ZDD_TEST_TIMES" ]]; then
    echo "test.sh: the slowest scenarios (seconds from their start to the next one's):"
    awk -v end="$(date +%s%3N)" 'NR > 1 { printf "%8.1f %s\n", ($1 - t) / 1000, n } { t = $1; n = $2 }
        END { printf "%8.1f %s (to the end)\n", (end - t) / 1000, n }' "$ZDD_TEST_TIMES" | sort -rn | head -25
fi

# A short coverage-guided fuzz run of the plan reader (both targets, stable toolchain, no sanitizer): a panic or an
# input over its CPU-time budget fails the run. The seed is fixed, so a test run explores the same inputs each time
# (up to the machine's speed) and fails on a regression, not on the luck of the draw; searching for new inputs is
# the job of the longer runs with a random seed: scripts/fuzz.sh --seconds 600 (book: reliability).
finish fuzz-build.log
"$repo/scripts/fuzz.sh" --seconds "${ZDD_FUZZ_SECONDS:-30}" --seed "${ZDD_FUZZ_SEED:-1}"
echo "test.sh: fuzzing finished in $(( $(date +%s) - start )) s"

# The book must build (every ```kdl block in it was checked by the tests above).
finish mdbook-install.log
mdbook build "$repo/book"
for log in musl-build.log readme-build.log; do finish "$log"; done
echo "test.sh: done in $(( $(date +%s) - start )) s"
