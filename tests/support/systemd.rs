//! systemd booted as PID 1 of its own PID + mount namespace, driven through `nsenter -t <pid> -m -p`.
//!
//! The init script (`systemd-init.sh`) gives it a private tmpfs /tmp with only the test's directory bound back,
//! a tmpfs over /etc/systemd/system (the real units copied in, admin-enabled units left out, the units that
//! touch shared state masked), tmpfs /run, /var/log/journal and /var/lib/systemd, and `container=`. Without
//! this, Debian's tmpfiles rule `D /tmp` would empty the machine's /tmp. The network namespace is shared.
//! SIGKILL to systemd ends every process of the namespace.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{Guarded, wait_until};

pub(crate) const SYSTEMD: &str = "/lib/systemd/systemd";

/// Units masked inside the namespace: they would touch state shared with the machine (or just cost time).
const MASKED_UNITS: &[&str] = &[
    "systemd-tmpfiles-setup.service",
    "systemd-tmpfiles-setup-dev.service",
    "systemd-tmpfiles-setup-dev-early.service",
    "systemd-tmpfiles-clean.service",
    "systemd-tmpfiles-clean.timer",
    "systemd-udevd.service",
    "systemd-udev-trigger.service",
    "systemd-udev-settle.service",
    "systemd-sysctl.service",
    "systemd-modules-load.service",
    "proc-sys-fs-binfmt_misc.automount",
    "proc-sys-fs-binfmt_misc.mount",
    "systemd-binfmt.service",
    "systemd-timesyncd.service",
    "systemd-remount-fs.service",
    "systemd-pstore.service",
    "systemd-sysusers.service",
    "ldconfig.service",
    "systemd-hwdb-update.service",
    "systemd-journal-catalog-update.service",
    "systemd-logind.service",
    "systemd-firstboot.service",
    "systemd-random-seed.service",
    "systemd-machine-id-commit.service",
    "systemd-update-utmp.service",
    "systemd-update-utmp-runlevel.service",
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "man-db.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "e2scrub_reap.service",
    "fstrim.timer",
    "getty.target",
    "getty@tty1.service",
    "console-getty.service",
    "serial-getty@.service",
    "container-getty@.service",
    "postgresql.service",
    "postgresql@.service",
    "ssh.service",
    "sshd.service",
    "ssh.socket",
    "nginx.service",
];

pub(crate) struct Systemd {
    /// systemd's pid as the machine sees it.
    pub pid: u32,
    /// The test's directory, the only part of the machine's /tmp visible inside.
    pub test_dir: PathBuf,
    /// Where zdd writes unit files (the plan's `unit-dir`): a directory of the test, outside systemd's own
    /// directories, so zdd `systemctl link`s them.
    pub unit_dir: PathBuf,
    unshare: Guarded,
}

impl Systemd {
    /// Boots systemd and waits until it reports running (or degraded).
    pub(crate) fn boot(test_dir: &Path) -> Systemd {
        assert!(test_dir.parent() == Some(Path::new("/tmp")), "the test dir must be a directory directly under /tmp");
        let etc_units = prepare_etc_units(test_dir);
        let unit_dir = test_dir.join("units");
        std::fs::create_dir_all(&unit_dir).expect("unit dir");
        let script = test_dir.join("systemd-init.sh");
        std::fs::write(&script, include_str!("systemd-init.sh")).expect("write init script");
        let log = std::fs::File::create(test_dir.join("systemd-boot.log")).expect("boot log");
        let unshare = Guarded::spawn(
            "systemd",
            Command::new("/usr/bin/unshare")
                .args(["--pid", "--fork", "--mount", "--mount-proc", "--propagation", "private", "/bin/sh"])
                .arg(&script)
                .arg(test_dir)
                .arg(&etc_units)
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log),
        );
        let mut systemd_pid = None;
        let found = wait_until(Duration::from_secs(10), || {
            systemd_pid = child_of(unshare.pid()).filter(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "systemd")
            });
            systemd_pid.is_some()
        });
        let boot_log = || std::fs::read_to_string(test_dir.join("systemd-boot.log")).unwrap_or_default();
        assert!(found, "systemd did not start in the namespace:\n{}", boot_log());
        let sd = Systemd { pid: systemd_pid.unwrap_or_default(), test_dir: test_dir.to_path_buf(), unit_dir, unshare };
        let running = wait_until(Duration::from_secs(30), || {
            let out = sd.systemctl(&["is-system-running"]);
            let state = out.trim();
            state == "running" || state == "degraded"
        });
        assert!(running, "systemd did not finish booting:\n{}", boot_log());
        sd
    }

    /// The argv prefix that runs a command inside the namespace: `nsenter -t <pid> -m -p`.
    pub(crate) fn nsenter_prefix(&self) -> Vec<String> {
        ["nsenter", "-t", &self.pid.to_string(), "-m", "-p"].iter().map(ToString::to_string).collect()
    }

    /// Runs `systemctl <args>` inside and returns stdout (whatever the exit status).
    pub(crate) fn systemctl(&self, args: &[&str]) -> String {
        self.inside("systemctl", args)
    }

    /// A unit's journal.
    pub(crate) fn journal(&self, unit: &str) -> String {
        self.inside("journalctl", &["--no-pager", "-o", "cat", "-u", unit])
    }

    /// Runs a program inside the namespace and returns its stdout.
    pub(crate) fn inside_output(&self, program: &str, args: &[&str]) -> String {
        self.inside(program, args)
    }

    fn inside(&self, program: &str, args: &[&str]) -> String {
        let prefix = self.nsenter_prefix();
        let out = Command::new("timeout").arg("20").args(&prefix).arg(program).args(args).output().expect("nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Systemd {
    fn drop(&mut self) {
        // Killing PID 1 of the namespace kills everything in it; the mounts vanish with the last process.
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.pid.cast_signed()),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

/// `<test_dir>/systemd-etc`, the namespace's /etc/systemd/system: the machine's units without the admin's `*.wants` (nothing the admin enabled
/// starts in the namespace), plus masks for the units that would touch shared state.
fn prepare_etc_units(test_dir: &Path) -> PathBuf {
    let unit_dir = test_dir.join("systemd-etc");
    std::fs::create_dir_all(&unit_dir).expect("unit dir");
    for entry in std::fs::read_dir("/etc/systemd/system").expect("read /etc/systemd/system").flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if Path::new(&name).extension().is_some_and(|e| e == "wants" || e == "requires") {
            continue;
        }
        super::proc::run("copy a unit", Command::new("cp").arg("-a").arg(entry.path()).arg(&unit_dir));
    }
    for unit in MASKED_UNITS {
        let link = unit_dir.join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link).expect("mask unit");
    }
    unit_dir
}

/// The first child of `pid` (unshare's forked child, which execs the init script and then systemd).
fn child_of(pid: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for task in tasks.flatten() {
        if let Ok(children) = std::fs::read_to_string(task.path().join("children"))
            && let Some(first) = children.split_whitespace().next()
        {
            return first.parse().ok();
        }
    }
    None
}
