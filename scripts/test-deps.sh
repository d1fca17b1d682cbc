#!/usr/bin/env bash
# Installs what the integration tests need on Debian 12, as root, idempotently: only missing packages are
# installed (one `apt-get update` at most), and the Python wheels are downloaded into the cache only if absent.
#
#   nginx, caddy (the second proxy's scenario; its own instance, never the package's daemon), python3-venv, wrk, postgresql-15, systemd, iproute2 (ss, ip netns), procps, util-linux (unshare, nsenter),
#   openssh-server and netcat-openbsd (the SSH test hosts), iptables (Docker's FORWARD policy), mmdebstrap (the
#   container scenarios' offline base image: no registry can be reached)
#   wheels for examples/shop/requirements.txt in $ZDD_WHEELS (default /root/.cache/zdd-wheels)
#   wheels for Wagtail (the newest that installs on Debian 12's Python 3.11) and gunicorn, in the same cache: the
#   scenario that deploys a `wagtail start` site makes it with the real `wagtail` from them
#   wheels for the ASGI fixture (tests/fixtures/projects/chat: Channels, uvicorn[standard], uvicorn-worker)
#   redis-server and wheels for Celery and redis-py: the worker scenarios run Celery workers on a private Redis
#   the wheel of Astral's uv (PyPI's `uv`: a static binary in a wheel), in the same cache: `python-env` with
#   `installer "uv"` runs it from a small venv the tests install it into
#   musl-tools, Rust's x86_64-unknown-linux-musl target and cargo-deb: the packaging test builds the static binary
#   and the Debian package with scripts/package.sh and installs the package with dpkg -i
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
wheels="${ZDD_WHEELS:-/root/.cache/zdd-wheels}"

if [[ $(id -u) -ne 0 ]]; then
    echo "test-deps: must run as root (the tests start nginx, PostgreSQL and systemd)" >&2
    exit 1
fi

packages=(nginx caddy python3-venv python3-pip wrk postgresql-15 systemd iproute2 procps util-linux g++ openssh-server
    openssh-client netcat-openbsd iptables redis-server mmdebstrap musl-tools)
missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
if ((${#missing[@]})); then
    echo "test-deps: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # Packages may start their own daemons (nginx on :80, caddy on :80 and its admin API on :2019, a postgresql
    # cluster): the tests use their own instances
    # and never depend on those, so policy-rc.d keeps them from starting.
    # An existing policy (container images ship one) is left as it was.
    own_policy=false
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        own_policy=true
    fi
    apt-get install -y -q --no-install-recommends "${missing[@]}"
    if $own_policy; then rm -f /usr/sbin/policy-rc.d; fi
else
    echo "test-deps: all packages present"
fi

# The wheels are resolved for Debian's own interpreter, which is the one the tests use.
python=/usr/bin/python3

# wheels_for WHAT "PATTERN..." PIP-DOWNLOAD-ARGUMENT...: downloads into the cache unless a wheel matching each
# pattern is there already, so that once the cache holds them later runs work offline.
wheels_for() {
    local what="$1" pattern scratch
    local -a patterns
    read -ra patterns <<< "$2"
    shift 2
    for pattern in "${patterns[@]}"; do
        if ! compgen -G "$wheels/$pattern" >/dev/null; then
            echo "test-deps: downloading $what into $wheels"
            mkdir -p "$wheels"
            scratch="$(mktemp -d)"
            "$python" -m venv "$scratch/venv"
            "$scratch/venv/bin/pip" download --quiet --only-binary=:all: --dest "$wheels" "$@"
            rm -rf "$scratch"
            return
        fi
    done
    echo "test-deps: $what present in $wheels"
}

wheels_for "the shop's wheels" "[Dd]jango-*.whl gunicorn-*.whl psycopg_binary-*.whl" \
    -r "$repo/examples/shop/requirements.txt"
# Unpinned: pip picks the newest Wagtail whose requirements this Python meets (Django included).
wheels_for "Wagtail's wheels" "wagtail-*.whl" wagtail gunicorn
# The ASGI scenario's project (Channels, served by uvicorn alone and as gunicorn's worker class).
wheels_for "the ASGI fixture's wheels" "channels-*.whl uvicorn-*.whl uvicorn_worker-*.whl websockets-*.whl" \
    -r "$repo/tests/fixtures/projects/chat/requirements.txt"
# Celery with its Redis transport, for the worker scenarios (tests/fixtures/projects/celeryproj).
wheels_for "Celery's wheels" "celery-*.whl redis-*.whl packaging-*.whl" "celery[redis]"
# uv ships as a wheel holding one static binary; the tests install it offline from the cache like the others.
wheels_for "uv's wheel" "uv-*.whl" --no-deps uv

# The packaging test (tests/scenarios/packaging.rs): the static binary's target and the packager.
export PATH="${HOME:-/root}/.cargo/bin:$PATH"
if ! rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    echo "test-deps: adding Rust's x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl
fi
if ! cargo deb --version >/dev/null 2>&1; then
    echo "test-deps: installing cargo-deb (once)"
    cargo install cargo-deb --locked --version 3.6.4
fi
