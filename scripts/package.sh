#!/usr/bin/env bash
# Builds what an operator installs: a static zdd (musl, no shared library but the kernel's ABI) and a Debian
# package of it made by cargo-deb, with the man page, the shell completions and the shipped plans as examples.
#
#   scripts/package.sh            # -> target/x86_64-unknown-linux-musl/release/zdd and target/debian/zdd_<v>_amd64.deb
#   scripts/package.sh --build-only   # only the static binary (scripts/test.sh builds it early, in the background)
#
# Needs the musl target (`rustup target add x86_64-unknown-linux-musl`), musl-tools (the C parts: mimalloc,
# aws-lc) and cargo-deb; scripts/test-deps.sh installs all three. Prints the two paths, one per line, last.
set -euo pipefail

export PATH="${HOME:-/root}/.cargo/bin:$PATH"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

triple=x86_64-unknown-linux-musl
target_dir="${CARGO_TARGET_DIR:-$repo/target}"

# Static, and position-independent so ASLR still applies (musl's default on this target).
cargo build --release --locked --target "$triple" --bin zdd >&2
binary="$target_dir/$triple/release/zdd"
[ "${1:-}" = --build-only ] && exit 0

# The man page and the completions come from the binary itself (clap), so they never drift from its flags.
assets="$target_dir/package-assets"
mkdir -p "$assets"
"$binary" man >"$assets/zdd.1"
"$binary" completions bash >"$assets/zdd.bash"
"$binary" completions zsh >"$assets/_zdd"
"$binary" completions fish >"$assets/zdd.fish"

# --no-build: the binary above is the one packaged (cargo-deb maps the `target/release/zdd` asset to it).
deb="$(cargo deb --no-build --locked --target "$triple" --output "$target_dir/debian" 2>&2 | tail -n 1)"
echo "$binary"
echo "$deb"
