//! The deploy lock of a state directory: one run at a time, owner recorded, stale locks taken over.
//!
//! The lock is `<state-dir>/lock`, held with an advisory `flock` (`File::try_lock`) for as long as the run
//! lasts; the file holds the file's format (see [`crate::format`]) and the owner as JSON (host, pid, user, start
//! time, CI job). The kernel drops the `flock` when its holder dies, however it dies, so a lock is never stuck: a
//! file that still names an owner while nobody holds the `flock` was left by a run that was killed, and the next
//! run takes it over with a warning.
//! The file itself is never deleted while in use (deleting a locked file lets a second run lock a new inode).

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How often a run waiting for the lock (`--lock-wait`) tries again.
const POLL: Duration = Duration::from_millis(250);

/// Who holds (or held) the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub host: String,
    pub pid: u32,
    pub user: String,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// `CI_JOB_ID` or `GITHUB_RUN_ID`, when running in CI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ci_job: Option<String>,
    /// What the holder is doing (`run`, `rollback`, `recover`, `stop`).
    pub command: String,
}

impl LockOwner {
    /// This process, about to do `command`.
    pub fn current(command: &str) -> Self {
        Self {
            host: hostname(),
            pid: std::process::id(),
            user: username(),
            started_at: now_rfc3339(),
            ci_job: std::env::var("CI_JOB_ID").or_else(|_| std::env::var("GITHUB_RUN_ID")).ok(),
            command: command.to_owned(),
        }
    }

    /// One line for messages: `pid 4242 (ci on build-7, job 991) running zdd run since 2026-...`.
    pub fn describe(&self) -> String {
        let job = self.ci_job.as_deref().map(|j| format!(", CI job {j}")).unwrap_or_default();
        format!(
            "pid {} ({} on {}{job}), running `zdd {}` since {}",
            self.pid, self.user, self.host, self.command, self.started_at
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("the deploy lock {path} is held by {}", holder_words(owner.as_deref()))]
    Held { path: PathBuf, owner: Option<Box<LockOwner>> },
    #[error("deploy lock {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

fn holder_words(owner: Option<&LockOwner>) -> String {
    owner.map_or_else(|| "another process".to_owned(), LockOwner::describe)
}

/// A held deploy lock; released (owner cleared, `flock` dropped) when dropped.
#[derive(Debug)]
pub struct DeployLock {
    file: File,
    path: PathBuf,
    /// The owner found in the file when the lock was taken over from a run that died holding it.
    pub taken_over: Option<LockOwner>,
}

pub fn lock_path(state_dir: &Path) -> PathBuf {
    state_dir.join("lock")
}

impl DeployLock {
    /// Take the lock, waiting up to `wait` for its holder to finish.
    pub fn acquire(state_dir: &Path, owner: &LockOwner, wait: Option<Duration>) -> Result<Self, LockError> {
        let deadline = wait.map(|w| Instant::now() + w);
        loop {
            match Self::try_acquire(state_dir, owner) {
                Err(LockError::Held { .. }) if deadline.is_some_and(|d| Instant::now() < d) => {
                    std::thread::sleep(POLL);
                }
                other => return other,
            }
        }
    }

    /// Take the lock if nobody holds it.
    pub fn try_acquire(state_dir: &Path, owner: &LockOwner) -> Result<Self, LockError> {
        let path = lock_path(state_dir);
        let io = |source| LockError::Io { path: path.clone(), source };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(LockError::Held { path: path.clone(), owner: read_owner(&path).map(Box::new) });
            }
            Err(TryLockError::Error(e)) => return Err(io(e)),
        }
        let mut previous = String::new();
        file.read_to_string(&mut previous).map_err(io)?;
        let taken_over = serde_json::from_str::<LockOwner>(&previous).ok();
        let json = serde_json::to_string_pretty(&crate::format::Stamped::current(owner))
            .map_err(|e| io(std::io::Error::other(e)))?;
        file.set_len(0).map_err(io)?;
        file.seek(SeekFrom::Start(0)).map_err(io)?;
        file.write_all(json.as_bytes()).map_err(io)?;
        file.write_all(b"\n").map_err(io)?;
        file.sync_data().map_err(io)?;
        Ok(Self { file, path, taken_over })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for DeployLock {
    fn drop(&mut self) {
        // Clear the owner before the flock goes, so the next run sees a clean release, not a dead holder.
        let _ = self.file.set_len(0);
        let _ = self.file.sync_data();
        let _ = self.file.unlock();
    }
}

/// The owner named in the lock file, if any.
pub fn read_owner(path: &Path) -> Option<LockOwner> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

/// Who holds the lock now, as far as the lock file tells: its recorded owner, unless that owner is a process of
/// this host that is gone (its lock is stale: the next run takes it over). An owner on another host is taken at
/// its word.
///
/// Only reads: probing with `flock` would hold the lock for a moment, and a run starting in that moment would be
/// refused as if another deploy held it (a `zdd status` poll in CI would fail deploys at random).
pub fn holder(state_dir: &Path) -> Result<Option<LockOwner>, LockError> {
    let path = lock_path(state_dir);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(LockError::Io { path, source }),
    };
    let Ok(owner) = serde_json::from_str::<LockOwner>(&text) else { return Ok(None) };
    let gone = owner.host == hostname() && !crate::host::local::pid_alive(owner.pid);
    Ok((!gone).then_some(owner))
}

/// `zdd unlock`: clear the owner a dead run left in the lock file. A lock whose holder is alive is refused: stop
/// that run. Returns the owner that was cleared, if the file named one.
///
/// The file stays: deleting it would let a run that opened it just before the deletion lock the unlinked inode
/// while the next run creates and locks a new one, and both would deploy at once.
pub fn unlock(state_dir: &Path) -> Result<Option<LockOwner>, LockError> {
    if !lock_path(state_dir).exists() {
        return Ok(None);
    }
    let lock = DeployLock::try_acquire(state_dir, &LockOwner::current("unlock"))?;
    let previous = lock.taken_over.clone();
    // Dropping the lock empties the file (see `Drop`): the next run finds no owner to take over from.
    drop(lock);
    Ok(previous)
}

pub fn hostname() -> String {
    nix::unistd::gethostname().ok().and_then(|h| h.into_string().ok()).unwrap_or_else(|| "unknown".to_owned())
}

pub fn username() -> String {
    std::env::var("USER")
        .ok()
        .filter(|u| !u.is_empty())
        .or_else(|| nix::unistd::User::from_uid(nix::unistd::getuid()).ok().flatten().map(|u| u.name))
        .unwrap_or_else(|| format!("uid {}", nix::unistd::getuid()))
}

/// Now, UTC, RFC 3339 with seconds.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_holder_is_refused_and_named() {
        let dir = tempfile::tempdir().unwrap();
        let first = DeployLock::acquire(dir.path(), &LockOwner::current("run"), None).unwrap();
        assert!(first.taken_over.is_none());
        let err = DeployLock::try_acquire(dir.path(), &LockOwner::current("run")).unwrap_err();
        let LockError::Held { owner: Some(owner), .. } = &err else { panic!("{err}") };
        assert_eq!(owner.pid, std::process::id());
        assert!(err.to_string().contains(&format!("pid {}", std::process::id())), "{err}");
        assert_eq!(holder(dir.path()).unwrap().map(|o| o.pid), Some(std::process::id()));
        drop(first);
        let again = DeployLock::try_acquire(dir.path(), &LockOwner::current("run")).unwrap();
        assert!(again.taken_over.is_none(), "a clean release is not a takeover");
    }

    #[test]
    fn looking_at_the_lock_never_refuses_a_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let looking = done.clone();
        // `zdd status` polled in a tight loop while runs take the lock.
        let looker = std::thread::spawn(move || {
            while !looking.load(std::sync::atomic::Ordering::Relaxed) {
                let _ = holder(&path);
            }
        });
        for _ in 0..300 {
            let lock = DeployLock::try_acquire(dir.path(), &LockOwner::current("run"));
            if lock.is_err() {
                done.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            assert!(lock.is_ok(), "refused while only `status` looked: {:?}", lock.err());
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        looker.join().unwrap();
    }

    #[test]
    fn waiting_gives_up_after_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let _held = DeployLock::acquire(dir.path(), &LockOwner::current("run"), None).unwrap();
        let start = Instant::now();
        let err = DeployLock::acquire(dir.path(), &LockOwner::current("run"), Some(Duration::from_millis(600)));
        assert!(matches!(err, Err(LockError::Held { .. })));
        assert!(start.elapsed() >= Duration::from_millis(500));
    }

    #[test]
    fn a_dead_holders_lock_is_taken_over() {
        let dir = tempfile::tempdir().unwrap();
        let dead = LockOwner { pid: 999_999, ..LockOwner::current("run") };
        std::fs::write(lock_path(dir.path()), serde_json::to_string(&dead).unwrap()).unwrap();
        assert_eq!(holder(dir.path()).unwrap(), None);
        let lock = DeployLock::try_acquire(dir.path(), &LockOwner::current("run")).unwrap();
        assert_eq!(lock.taken_over.as_ref().map(|o| o.pid), Some(999_999));
        assert_eq!(read_owner(lock.path()).unwrap().pid, std::process::id());
    }

    #[test]
    fn unlock_clears_a_dead_lock_and_refuses_a_live_one() {
        let dir = tempfile::tempdir().unwrap();
        let held = DeployLock::acquire(dir.path(), &LockOwner::current("run"), None).unwrap();
        assert!(matches!(unlock(dir.path()), Err(LockError::Held { .. })));
        drop(held);
        let dead = LockOwner { pid: 999_999, ..LockOwner::current("run") };
        std::fs::write(lock_path(dir.path()), serde_json::to_string(&dead).unwrap()).unwrap();
        let file = std::fs::File::open(lock_path(dir.path())).unwrap();
        let inode = std::os::unix::fs::MetadataExt::ino(&file.metadata().unwrap());
        assert_eq!(unlock(dir.path()).unwrap().map(|o| o.pid), Some(999_999));
        let after = std::fs::metadata(lock_path(dir.path())).expect("the lock file is never deleted");
        assert_eq!(std::os::unix::fs::MetadataExt::ino(&after), inode, "a second inode would allow two holders");
        assert_eq!(read_owner(&lock_path(dir.path())), None);
        let next = DeployLock::try_acquire(dir.path(), &LockOwner::current("run")).unwrap();
        assert!(next.taken_over.is_none(), "the next run sees a clean lock, not a takeover");
    }
}
