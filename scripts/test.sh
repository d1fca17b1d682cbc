#!/usr/bin/env bash
# Runs the whole test suite: installs missing test dependencies (scripts/test-deps.sh), then
# `cargo test --workspace --locked`. With CI=true a test whose component is missing fails instead of skipping.
#
# The scenario suites boot real components (Nginx, PostgreSQL, systemd in a namespace) and put real load on
# them; they serialise themselves, and the shared Python venv is built once under target/zdd-test-cache.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh -- --nocapture`).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

"$repo/scripts/test-deps.sh"

export ZDD_WHEELS="${ZDD_WHEELS:-/root/.cache/zdd-wheels}"
if [[ "${CI:-}" == "true" ]]; then
    export CARGO_TERM_COLOR=never
fi

start=$(date +%s)
cargo test --workspace --locked "$@"
echo "test.sh: cargo test finished in $(( $(date +%s) - start )) s"
