#!/bin/sh
# PID 1 of a fresh PID + mount namespace (see tests/support/systemd.rs): hides every piece of shared state a
# booting systemd would touch, then execs systemd. Debian's tmpfiles rules include `D /tmp`: a systemd that
# saw the machine's /tmp would empty it. Argument: the test's own directory (bound back into the private /tmp).
set -eu
test_dir="$1"
mask_units="$2"

# A private /run first: it holds the test's directory while /tmp is replaced.
mount -t tmpfs -o mode=755 zdd-run /run
mkdir -p /run/zdd-hold
mount --bind "$test_dir" /run/zdd-hold

# A private, empty /tmp with only the test's directory in it.
mount -t tmpfs -o mode=1777 zdd-tmp /tmp
mkdir -p "$test_dir"
mount --move /run/zdd-hold "$test_dir"
rmdir /run/zdd-hold

# Units: the machine's own, minus whatever the admin enabled (nginx, postgresql, timers...), on a tmpfs that
# vanishes with the namespace; units that touch shared state are masked.
mkdir -p /run/zdd-units
cp -a /etc/systemd/system/. /run/zdd-units/
mount -t tmpfs -o mode=755 zdd-units /etc/systemd/system
for entry in /run/zdd-units/*; do
    case "$entry" in
        *.wants|*.requires) ;;
        *) cp -a "$entry" /etc/systemd/system/ ;;
    esac
done
rm -rf /run/zdd-units
for unit in $mask_units; do
    ln -sf /dev/null "/etc/systemd/system/$unit"
done

# A volatile journal, and systemd's own state (timer stamps, random seed) kept from the machine's.
mkdir -p /var/log/journal
mount -t tmpfs -o mode=755 zdd-journal /var/log/journal
mount -t tmpfs -o mode=755 zdd-state /var/lib/systemd

export container=zdd-test
exec /lib/systemd/systemd --log-target=console --show-status=false
