//! The process log: which process groups a [`LocalHost`](super::LocalHost) or an
//! [`SshHost`](crate::host::SshHost) started and has not reaped yet, so that after zdd itself was killed
//! (`kill -9`, a lost CI runner), `zdd recover` can stop what the interrupted run left running before undoing
//! its steps.
//!
//! One JSON line per event, appended (no fsync: a killed zdd loses nothing it wrote): `{"pgid":..,
//! "start":..,"program":..}` when a command starts, `{"pgid":..,"ended":true}` once it is reaped; a remote
//! host's lines also name it (`"host":"deploy@web1"`). The start time (clock ticks since boot, from
//! `/proc/<pid>/stat` of the host) guards against a recycled process-group id.

use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

/// How often to look whether a signalled group is gone.
const POLL: Duration = Duration::from_millis(20);

#[derive(Debug, Serialize, Deserialize)]
struct Entry {
    /// The SSH destination of a remote host; none for this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    host: Option<String>,
    pgid: i32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    start: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    program: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    ended: bool,
}

/// Appends to the log; shared by every command a host runs.
#[derive(Debug)]
pub struct ProcessLog {
    path: PathBuf,
    lock: Mutex<()>,
}

/// A process group an interrupted run left behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    pub pgid: i32,
    pub program: String,
}

impl ProcessLog {
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self { path: path.into(), lock: Mutex::new(()) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A command started as the leader of group `pgid`.
    pub fn started(&self, pgid: i32, program: &str) {
        let entry =
            Entry { host: None, pgid, start: start_time(pgid), program: Some(program.to_owned()), ended: false };
        self.append(&entry);
    }

    /// The command leading group `pgid` was reaped.
    pub fn ended(&self, pgid: i32) {
        self.append(&Entry { host: None, pgid, start: None, program: None, ended: true });
    }

    /// A command started on the remote `host` as the leader of group `pgid`, at `start` (clock ticks since the
    /// host booted; `None` if the host could not tell, and then recover leaves the group alone).
    pub fn started_on(&self, host: &str, pgid: u32, start: Option<u64>, program: &str) {
        let Ok(pgid) = i32::try_from(pgid) else { return };
        let entry = Entry { host: Some(host.to_owned()), pgid, start, program: Some(program.to_owned()), ended: false };
        self.append(&entry);
    }

    /// The command leading group `pgid` on `host` ended (and its group was waited for, if it was cancelled).
    pub fn ended_on(&self, host: &str, pgid: u32) {
        let Ok(pgid) = i32::try_from(pgid) else { return };
        self.append(&Entry { host: Some(host.to_owned()), pgid, start: None, program: None, ended: true });
    }

    /// Logging is best effort: a command must not fail because its bookkeeping could not be written.
    fn append(&self, entry: &Entry) {
        let Ok(mut line) = serde_json::to_string(entry) else { return };
        line.push('\n');
        let _guard = self.lock.lock();
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).mode(0o600).open(&self.path) {
            let _ = file.write_all(line.as_bytes());
        }
    }
}

/// `/proc/<pid>/stat` field 22: when the process started, in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// Groups started and not ended according to the log, by host (`None`: this machine), with their start times.
fn open_groups(path: &Path) -> BTreeMap<(Option<String>, i32), (Option<u64>, String)> {
    let Ok(text) = std::fs::read_to_string(path) else { return BTreeMap::new() };
    let mut open = BTreeMap::new();
    for entry in text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()) {
        if entry.ended {
            open.remove(&(entry.host, entry.pgid));
        } else {
            open.insert((entry.host, entry.pgid), (entry.start, entry.program.unwrap_or_default()));
        }
    }
    open
}

/// Groups of this machine started and not reaped according to the log whose leader is still the same process.
/// A leader that already exited while other members live cannot be told apart from a recycled id, so it is not
/// listed.
pub fn leftovers(path: &Path) -> Vec<Leftover> {
    open_groups(path)
        .into_iter()
        .filter(|((host, pgid), (start, _))| host.is_none() && start.is_some() && start_time(*pgid) == *start)
        .map(|((_, pgid), (_, program))| Leftover { pgid, program })
        .collect()
}

/// A process group a remote host started and the log does not say ended: whether it still runs (with the same
/// leader) is for the host to tell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteLeftover {
    pub pgid: u32,
    /// Clock ticks since the host booted, when its leader started.
    pub start: u64,
    pub program: String,
}

/// The remote groups the log says started and did not end, by host (those without a start time are left out:
/// they cannot be told from a recycled id).
pub fn remote_leftovers(path: &Path) -> BTreeMap<String, Vec<RemoteLeftover>> {
    let mut found: BTreeMap<String, Vec<RemoteLeftover>> = BTreeMap::new();
    for ((host, pgid), (start, program)) in open_groups(path) {
        if let (Some(host), Some(start), Ok(pgid)) = (host, start, u32::try_from(pgid)) {
            found.entry(host).or_default().push(RemoteLeftover { pgid, start, program });
        }
    }
    found
}

/// TERM each leftover group of this machine and KILL what is left after `grace`. Returns what was stopped.
/// The log is kept (the remote groups in it may be next): [`forget`] it once every host's are stopped.
pub fn stop_leftovers(path: &Path, grace: Duration) -> Vec<Leftover> {
    let found = leftovers(path);
    for group in &found {
        let _ = signal::killpg(Pid::from_raw(group.pgid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline && found.iter().any(|g| signal::killpg(Pid::from_raw(g.pgid), None).is_ok()) {
        std::thread::sleep(POLL);
    }
    for group in &found {
        let _ = signal::killpg(Pid::from_raw(group.pgid), Signal::SIGKILL);
    }
    found
}

/// Remove the log: nothing it lists runs any more.
pub fn forget(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use std::os::unix::process::CommandExt as _;

    use super::*;

    #[test]
    fn lists_only_unreaped_groups_whose_leader_is_the_same_process() {
        let dir = tempfile::tempdir().unwrap();
        let log = ProcessLog::new(dir.path().join("processes.jsonl"));
        let mut child = std::process::Command::new("sleep").arg("30").process_group(0).spawn().unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        log.started(pgid, "sleep");
        log.started(999_999, "gone");
        log.started(1, "ended");
        log.ended(1);
        assert_eq!(leftovers(log.path()), vec![Leftover { pgid, program: "sleep".into() }]);
        let stopped = stop_leftovers(log.path(), Duration::from_millis(500));
        assert_eq!(stopped.len(), 1);
        let status = child.wait().unwrap();
        assert!(!status.success(), "sleep was not stopped");
        forget(log.path());
        assert!(!log.path().exists());
    }

    #[test]
    fn remote_groups_are_listed_by_host_and_not_taken_for_local_ones() {
        let dir = tempfile::tempdir().unwrap();
        let log = ProcessLog::new(dir.path().join("processes.jsonl"));
        log.started_on("root@web1", 4242, Some(777), "gunicorn");
        log.started_on("root@web1", 4343, Some(778), "sleep");
        log.ended_on("root@web1", 4343);
        log.started_on("root@web2", 4343, Some(779), "sleep");
        log.started_on("root@web2", 5000, None, "unknown start");
        // The same pgid on this machine is another group: no remote line ends or lists it.
        log.ended(4242);
        assert_eq!(leftovers(log.path()), vec![]);
        let remote = remote_leftovers(log.path());
        let listed: Vec<(&str, u32, u64)> =
            remote.iter().flat_map(|(h, gs)| gs.iter().map(move |g| (h.as_str(), g.pgid, g.start))).collect();
        assert_eq!(listed, vec![("root@web1", 4242, 777), ("root@web2", 4343, 779)]);
    }
}
