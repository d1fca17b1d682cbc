#!/usr/bin/env bash
# The benchmark (not a test): failed requests by kind and latency under load for zdd's socket and reload modes,
# an in-place gunicorn restart and the seed's order; zdd's deploy wall time cold and warm against the seed's
# shell script (scripts/bench/seed-deploy.sh); cutover and rollback latency; zdd's peak memory.
# Prints a table and writes JSON (default target/zdd-bench.json).
# `soak`: 100 consecutive deploys and rollbacks under load instead, its table into book/src/soak.md and its plot into
# book/src/soak-deploy-times.svg (scripts/bench/soak.rs).
#
#   scripts/bench.sh [--runs N] [--out FILE] [--no-zdd]
#   scripts/bench.sh soak [--runs N] [--out FILE] [--no-book]
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
"$repo/scripts/test-deps.sh"
cargo build --locked --bin zdd
cargo run --locked --example bench -- "$@"
