#!/bin/sh
# PID 1 of a fresh PID + mount namespace (see tests/support/systemd.rs): hides every piece of shared state a
# booting systemd would touch, then execs systemd. Debian's tmpfiles rules include `D /tmp`: a systemd that
# saw the machine's /tmp would empty it.
# Arguments: the test's own directory (bound back into the private /tmp) and the directory that becomes
# /etc/systemd/system.
set -eu
test_dir="$1"
etc_units="$2"

# A private /run first: it holds the test's directory while /tmp is replaced.
mount -t tmpfs -o mode=755 zdd-run /run
mkdir -p /run/zdd-hold
mount --bind "$test_dir" /run/zdd-hold

# A private, empty /tmp with only the test's directory in it.
mount -t tmpfs -o mode=1777 zdd-tmp /tmp
mkdir -p "$test_dir"
mount --move /run/zdd-hold "$test_dir"
rmdir /run/zdd-hold

# Units: a directory of the test (prepared by the harness: the machine's units minus whatever the admin enabled,
# the units that touch shared state masked) replaces /etc/systemd/system, so `systemctl link` and `enable` leave
# nothing on the machine.
mount --bind "$etc_units" /etc/systemd/system

# A volatile journal, and systemd's own state (timer stamps, random seed) kept from the machine's.
mkdir -p /var/log/journal
mount -t tmpfs -o mode=755 zdd-journal /var/log/journal
mount -t tmpfs -o mode=755 zdd-state /var/lib/systemd

# Refuse to boot unless the isolation holds: /tmp shows only the test's directory, tmpfiles is masked.
if [ "$(ls -A /tmp)" != "$(basename "$test_dir")" ] || [ "$(dirname "$test_dir")" != /tmp ]; then
    echo "zdd-test init: /tmp is not private, refusing to boot systemd" >&2
    exit 1
fi
if [ "$(readlink /etc/systemd/system/systemd-tmpfiles-setup.service)" != /dev/null ]; then
    echo "zdd-test init: systemd-tmpfiles-setup.service is not masked, refusing to boot systemd" >&2
    exit 1
fi

export container=zdd-test
exec /lib/systemd/systemd --log-target=console --show-status=false
