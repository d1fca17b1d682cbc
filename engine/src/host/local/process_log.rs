//! The process log: which process groups a [`LocalHost`](super::LocalHost) started and has not reaped yet,
//! so that after zdd itself was killed (`kill -9`, a lost CI runner), `zdd recover` can stop what the
//! interrupted run left running before undoing its steps.
//!
//! One JSON line per event, appended (no fsync: a killed zdd loses nothing it wrote): `{"pgid":..,
//! "start":..,"program":..}` when a command starts, `{"pgid":..,"ended":true}` once it is reaped. The start time
//! (clock ticks since boot, from `/proc/<pid>/stat`) guards against a recycled process-group id.

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
        self.append(&Entry { pgid, start: start_time(pgid), program: Some(program.to_owned()), ended: false });
    }

    /// The command leading group `pgid` was reaped.
    pub fn ended(&self, pgid: i32) {
        self.append(&Entry { pgid, start: None, program: None, ended: true });
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

/// Groups started and not reaped according to the log whose leader is still the same process. A leader that
/// already exited while other members live cannot be told apart from a recycled id, so it is not listed.
pub fn leftovers(path: &Path) -> Vec<Leftover> {
    let Ok(text) = std::fs::read_to_string(path) else { return Vec::new() };
    let mut open: BTreeMap<i32, (Option<u64>, String)> = BTreeMap::new();
    for entry in text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()) {
        if entry.ended {
            open.remove(&entry.pgid);
        } else {
            open.insert(entry.pgid, (entry.start, entry.program.unwrap_or_default()));
        }
    }
    open.into_iter()
        .filter(|(pgid, (start, _))| start.is_some() && start_time(*pgid) == *start)
        .map(|(pgid, (_, program))| Leftover { pgid, program })
        .collect()
}

/// TERM each leftover group, KILL what is left after `grace`, and forget the log. Returns what was stopped.
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
    let _ = std::fs::remove_file(path);
    found
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
        assert!(!log.path().exists());
    }
}
