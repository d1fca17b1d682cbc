#!/usr/bin/env bash
# Runs the whole test suite: installs missing test dependencies (scripts/test-deps.sh), checks formatting and
# clippy, runs the unit tests, doctests and the two integration-test binaries (`tests/fast`, then `tests/scenarios`
# with one test thread, so that no two load measurements share the 2 cores), fuzzes the plan reader briefly (scripts/fuzz.sh, 30 s per
# target), then builds the book. With CI=true a test whose component is missing fails instead of skipping.
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
    # tests/scenarios/demo.rs runs the README's `cargo run --release -- run plans/demo.kdl` literally, in a fresh clone in a
    # mode-700 home (a release build there, once: 2-3 minutes). Elsewhere it runs this build's binary with the
    # same arguments.
    export ZDD_README_CARGO=1
fi

start=$(date +%s)
# Style first: it is the cheapest to fail on.
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked --lib --bins --test fast "$@"
cargo test --workspace --locked --doc
RUST_TEST_THREADS=1 cargo test --locked --test scenarios "$@"
echo "test.sh: cargo test finished in $(( $(date +%s) - start )) s"

# A short coverage-guided fuzz run of the plan reader (both targets, stable toolchain, no sanitizer): a panic or an
# input over its CPU-time budget fails the run. The seed is fixed, so a test run explores the same inputs each time
# (up to the machine's speed) and fails on a regression, not on the luck of the draw; searching for new inputs is
# the job of the longer runs with a random seed: scripts/fuzz.sh --seconds 600 (book: reliability).
"$repo/scripts/fuzz.sh" --seconds "${ZDD_FUZZ_SECONDS:-30}" --seed "${ZDD_FUZZ_SEED:-1}"
echo "test.sh: fuzzing finished in $(( $(date +%s) - start )) s"

# The book must build (every ```kdl block in it was checked by the tests above).
if ! command -v mdbook >/dev/null 2>&1; then
    echo "test.sh: installing mdbook (once)"
    cargo install mdbook --locked --version 0.5.4 --no-default-features --features search
fi
mdbook build "$repo/book"
echo "test.sh: done in $(( $(date +%s) - start )) s"
