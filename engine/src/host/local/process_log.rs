//! The process log: which process groups a [`LocalHost`](super::LocalHost) or an
//! [`SshHost`](crate::host::SshHost) started and has not reaped yet, so that after zdd itself was killed
//! (`kill -9`, a lost CI runner), `zdd recover` can stop what the interrupted run left running before undoing
//! its steps.
//!
//! One JSON line per event, appended (no fsync: a killed zdd loses nothing it wrote): `{"pgid":..,
//! "start":..,"program":..}` when a command starts, `{"pgid":..,"ended":true}` once it is reaped; a remote
//! host's lines also name it (`"host":"deploy@web1"`). The start time (clock ticks since boot, from
//! `/proc/<pid>/stat` of the host) guards against a recycled process-group id.
//!
//! A local command's group id is known only once it has started, and a zdd killed between the two would leave a
//! group the log never names. So before it spawns, the host writes `{"spawning":TOKEN,..}` and gives the command
//! `ZDD_SPAWN=TOKEN` in its environment; the `started` line repeats the token. A token that never got its
//! `started` line is looked for in `/proc/*/environ`: the command found there, leading its own group in zdd's
//! session (not a daemon that left it with `setsid`), is the group to stop.

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

#[derive(Debug, Default, Serialize, Deserialize)]
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
    /// The token of a local command about to start (its `ZDD_SPAWN`), on its `spawning` and `started` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    token: Option<String>,
    /// Set on the line written before the command is spawned (no group id yet).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    spawning: bool,
}

/// The environment variable that carries a local command's spawn token (see the module docs).
pub const SPAWN_TOKEN_ENV: &str = "ZDD_SPAWN";

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

    /// A local command is about to be spawned with `ZDD_SPAWN=<token>`: the token to give it.
    pub fn spawning(&self, program: &str) -> String {
        let token = next_token();
        self.append(&Entry {
            program: Some(program.to_owned()),
            token: Some(token.clone()),
            spawning: true,
            ..Entry::default()
        });
        token
    }

    /// A command started as the leader of group `pgid` (with the token [`spawning`](Self::spawning) gave it).
    pub fn started(&self, pgid: i32, program: &str, token: Option<&str>) {
        let entry = Entry {
            pgid,
            start: start_time(pgid),
            program: Some(program.to_owned()),
            token: token.map(str::to_owned),
            ..Entry::default()
        };
        self.append(&entry);
    }

    /// The command leading group `pgid` was reaped.
    pub fn ended(&self, pgid: i32) {
        self.append(&Entry { pgid, ended: true, ..Entry::default() });
    }

    /// A command is about to be started on the remote `host` with `ZDD_SPAWN=<token>`: the token to give it.
    pub fn spawning_on(&self, host: &str, program: &str) -> String {
        let token = next_token();
        self.append(&Entry {
            host: Some(host.to_owned()),
            program: Some(program.to_owned()),
            token: Some(token.clone()),
            spawning: true,
            ..Entry::default()
        });
        token
    }

    /// A command started on the remote `host` as the leader of group `pgid`, at `start` (clock ticks since the
    /// host booted; `None` if the host could not tell, and then recover leaves the group alone), with the token
    /// [`spawning_on`](Self::spawning_on) gave it.
    pub fn started_on(&self, host: &str, pgid: u32, start: Option<u64>, program: &str, token: Option<&str>) {
        let Ok(pgid) = i32::try_from(pgid) else { return };
        let entry = Entry {
            host: Some(host.to_owned()),
            pgid,
            start,
            program: Some(program.to_owned()),
            token: token.map(str::to_owned),
            ..Entry::default()
        };
        self.append(&entry);
    }

    /// The command leading group `pgid` on `host` ended (and its group was waited for, if it was cancelled).
    pub fn ended_on(&self, host: &str, pgid: u32) {
        let Ok(pgid) = i32::try_from(pgid) else { return };
        self.append(&Entry { host: Some(host.to_owned()), pgid, ended: true, ..Entry::default() });
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

/// A spawn token unique among the commands of every zdd that may share a log: this zdd's pid, when it started,
/// and a counter.
fn next_token() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let me = std::process::id();
    let since = start_time(i32::try_from(me).unwrap_or(0)).unwrap_or(0);
    format!("{me}-{since}-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

/// `/proc/<pid>/stat` field 22: when the process started, in clock ticks since boot.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

/// What the log says is open: groups started and not ended, by host (`None`: this machine), with their start
/// times; and the tokens of commands that were being started when the log stops, with their host and program.
#[derive(Default)]
struct Open {
    groups: BTreeMap<(Option<String>, i32), (Option<u64>, String)>,
    spawning: BTreeMap<String, (Option<String>, String)>,
}

fn open_groups(path: &Path) -> Open {
    let Ok(text) = std::fs::read_to_string(path) else { return Open::default() };
    let mut open = Open::default();
    for entry in text.lines().filter_map(|l| serde_json::from_str::<Entry>(l).ok()) {
        if entry.spawning {
            if let Some(token) = entry.token {
                open.spawning.insert(token, (entry.host, entry.program.unwrap_or_default()));
            }
        } else if entry.ended {
            open.groups.remove(&(entry.host, entry.pgid));
        } else {
            if let Some(token) = &entry.token {
                open.spawning.remove(token);
            }
            open.groups.insert((entry.host, entry.pgid), (entry.start, entry.program.unwrap_or_default()));
        }
    }
    open
}

/// Groups of this machine started and not reaped according to the log whose leader is still the same process,
/// and the groups of commands whose spawn the log saw begin but not end (found by their token). A leader that
/// already exited while other members live cannot be told apart from a recycled id, so it is not listed.
pub fn leftovers(path: &Path) -> Vec<Leftover> {
    let mut open = open_groups(path);
    open.spawning.retain(|_, (host, _)| host.is_none());
    let mut found: Vec<Leftover> = open
        .groups
        .into_iter()
        .filter(|((host, pgid), (start, _))| host.is_none() && start.is_some() && start_time(*pgid) == *start)
        .map(|((_, pgid), (_, program))| Leftover { pgid, program })
        .collect();
    if !open.spawning.is_empty() {
        for (pgid, token) in spawned_leaders(&open.spawning) {
            if !found.iter().any(|l| l.pgid == pgid) {
                found.push(Leftover { pgid, program: open.spawning[&token].1.clone() });
            }
        }
    }
    found
}

/// The processes of this machine whose environment holds one of `tokens` as `ZDD_SPAWN` and that lead their own
/// process group inside another session (as a command zdd spawned does; a daemon that called `setsid` leads its
/// session and is not zdd's to stop), with the token each carries.
fn spawned_leaders<V>(tokens: &BTreeMap<String, V>) -> Vec<(i32, String)> {
    let Ok(procs) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut found = Vec::new();
    for entry in procs.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else { continue };
        let token = environ.split(|b| *b == 0).find_map(|var| {
            let value = var.strip_prefix(SPAWN_TOKEN_ENV.as_bytes())?.strip_prefix(b"=")?;
            let value = std::str::from_utf8(value).ok()?;
            tokens.contains_key(value).then(|| value.to_owned())
        });
        let Some(token) = token else { continue };
        if let Some((pgid, sid)) = group_and_session(pid)
            && pgid == pid
            && sid != pid
        {
            found.push((pid, token));
        }
    }
    found
}

/// `/proc/<pid>/stat` fields 5 and 6: the process group and the session.
fn group_and_session(pid: i32) -> Option<(i32, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(2);
    Some((fields.next()?.parse().ok()?, fields.next()?.parse().ok()?))
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
    for ((host, pgid), (start, program)) in open_groups(path).groups {
        if let (Some(host), Some(start), Ok(pgid)) = (host, start, u32::try_from(pgid)) {
            found.entry(host).or_default().push(RemoteLeftover { pgid, start, program });
        }
    }
    found
}

/// The commands each remote host was about to start when the log stops (their `started` line never came), as
/// `(token, program)`: the host finds them by the token in their environment.
pub fn remote_spawning(path: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut found: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for (token, (host, program)) in open_groups(path).spawning {
        if let Some(host) = host {
            found.entry(host).or_default().push((token, program));
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
        log.started(pgid, "sleep", None);
        log.started(999_999, "gone", None);
        log.started(1, "ended", None);
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
        log.started_on("root@web1", 4242, Some(777), "gunicorn", None);
        log.started_on("root@web1", 4343, Some(778), "sleep", None);
        log.ended_on("root@web1", 4343);
        log.started_on("root@web2", 4343, Some(779), "sleep", None);
        log.started_on("root@web2", 5000, None, "unknown start", None);
        let confirmed = log.spawning_on("root@web2", "migrate");
        log.started_on("root@web2", 6000, Some(780), "migrate", Some(&confirmed));
        let pending = log.spawning_on("root@web1", "collectstatic");
        // The same pgid on this machine is another group: no remote line ends or lists it.
        log.ended(4242);
        assert_eq!(leftovers(log.path()), vec![]);
        let remote = remote_leftovers(log.path());
        let listed: Vec<(&str, u32, u64)> =
            remote.iter().flat_map(|(h, gs)| gs.iter().map(move |g| (h.as_str(), g.pgid, g.start))).collect();
        assert_eq!(listed, vec![("root@web1", 4242, 777), ("root@web2", 4343, 779), ("root@web2", 6000, 780)]);
        let spawning = remote_spawning(log.path());
        assert_eq!(spawning.len(), 1, "{spawning:?}");
        assert_eq!(spawning["root@web1"], vec![(pending, "collectstatic".to_owned())]);
    }

    /// zdd killed after it spawned a command and before it logged the group: the `spawning` line's token, in the
    /// command's environment, finds the group; a daemon carrying the same token in a session of its own does not
    /// count, and a command whose `started` line was written is listed once.
    #[test]
    fn a_command_whose_start_was_never_logged_is_found_by_its_token() {
        let dir = tempfile::tempdir().unwrap();
        let log = ProcessLog::new(dir.path().join("processes.jsonl"));
        let token = log.spawning("sleep");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(SPAWN_TOKEN_ENV, &token)
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        let daemon_token = log.spawning("setsid sleep");
        let mut daemon = std::process::Command::new("setsid")
            .args(["sleep", "30"])
            .env(SPAWN_TOKEN_ENV, &daemon_token)
            .spawn()
            .unwrap();
        assert_eq!(leftovers(log.path()), vec![Leftover { pgid, program: "sleep".into() }]);
        let stopped = stop_leftovers(log.path(), Duration::from_millis(500));
        assert_eq!(stopped.len(), 1);
        assert!(!child.wait().unwrap().success(), "sleep was not stopped");
        assert!(daemon.try_wait().unwrap().is_none(), "the daemon in its own session was stopped");
        daemon.kill().unwrap();
        daemon.wait().unwrap();

        // Logged as started too: one leftover, not two.
        let log = ProcessLog::new(dir.path().join("second.jsonl"));
        let token = log.spawning("sleep");
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .env(SPAWN_TOKEN_ENV, &token)
            .process_group(0)
            .spawn()
            .unwrap();
        let pgid = i32::try_from(child.id()).unwrap();
        log.started(pgid, "sleep", Some(&token));
        assert_eq!(leftovers(log.path()), vec![Leftover { pgid, program: "sleep".into() }]);
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
