//! The state directory: live and previous release and slot, and the history of runs.
//!
//! `<state-dir>/state.json` (mode 0600, written atomically) says which release serves from which slot, which
//! served before it, and what past runs did. The engine derives each run's [`DeployTarget`] from it. The
//! directory itself is created 0700 and refused when others may write to it: it holds the journal `recover`
//! acts on and the lock. It is refused too when a newer zdd wrote any of its files (see [`crate::format`]),
//! before anything in it is read for its content or written.

use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::events::Outcome;
use crate::format::{NewerFormat, Stamp, Stamped};
use crate::journal::RunMode;
use crate::kind::DeployTarget;

/// How many past runs `state.json` keeps.
const HISTORY_LIMIT: usize = 200;

/// A release serving (or that served) from a slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deployed {
    pub release: String,
    pub slot: String,
    /// RFC 3339, UTC.
    pub since: String,
}

/// One past run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub run_id: String,
    pub mode: RunMode,
    pub release: String,
    pub slot: String,
    pub outcome: Outcome,
    /// RFC 3339, UTC.
    pub started: String,
    pub duration_ms: u64,
    pub user: String,
    pub host: String,
}

/// The content of `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub live: Option<Deployed>,
    pub previous: Option<Deployed>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("state directory {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("state directory {path} is writable by group or others (mode {mode:o}); run `chmod 700 {path}`")]
    Unsafe { path: PathBuf, mode: u32 },
    #[error(
        "state directory {path} belongs to user {owner}, not to this user or root: whoever owns it could change the \
         journal that `zdd recover` acts on; `chown` it to the deploying user"
    )]
    Foreign { path: PathBuf, owner: u32 },
    #[error("{path} is not valid state: {source}")]
    Corrupt { path: PathBuf, source: serde_json::Error },
    #[error(transparent)]
    Newer(#[from] NewerFormat),
    #[error("{0}")]
    Target(String),
}

/// A state directory that exists and is safe to use.
#[derive(Debug, Clone)]
pub struct StateDir {
    path: PathBuf,
}

impl StateDir {
    /// Create the directory (0700) if needed; refuse one that group or others may write to.
    pub fn prepare(path: &Path) -> Result<Self, StateError> {
        let io = |source| StateError::Io { path: path.to_path_buf(), source };
        if !path.exists() {
            // Parents get the usual mode: a state dir inside the app's root must not make the root (and the
            // sockets under it) unreachable for Nginx's workers. Only the state directory itself is private.
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::DirBuilder::new().recursive(true).mode(0o755).create(parent).map_err(io)?;
            }
            std::fs::DirBuilder::new().mode(0o700).create(path).map_err(io)?;
        }
        Self::open(path)
    }

    /// An existing state directory (for `status`, `history`): nothing is created. One that a newer zdd wrote is
    /// refused.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let meta = std::fs::metadata(path).map_err(|source| StateError::Io { path: path.to_path_buf(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o022 != 0 {
            return Err(StateError::Unsafe { path: path.to_path_buf(), mode });
        }
        let owner = meta.uid();
        if owner != 0 && owner != nix::unistd::geteuid().as_raw() {
            return Err(StateError::Foreign { path: path.to_path_buf(), owner });
        }
        let dir = Self { path: path.to_path_buf() };
        dir.refuse_newer()?;
        Ok(dir)
    }

    /// Refuse the directory if any of its files is in a format this zdd does not read: `state.json`, the lock, and
    /// each journal (its header, the first line). Reads only, so a refused directory is left as it was.
    fn refuse_newer(&self) -> Result<(), StateError> {
        let journals = crate::journal::journals(&self.path)
            .map_err(|source| StateError::Io { path: crate::journal::journal_dir(&self.path), source })?;
        for path in [self.state_file(), crate::lock::lock_path(&self.path)].into_iter().chain(journals) {
            let text = match stamped_text(&path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => return Err(StateError::Io { path, source }),
            };
            if let Some(stamp) = Stamp::of(&text) {
                stamp.check(&path, &text)?;
            }
        }
        Ok(())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn state_file(&self) -> PathBuf {
        self.path.join("state.json")
    }

    /// The state; empty before the first run. Its format is checked first: a newer one is refused, not misread.
    pub fn load(&self) -> Result<State, StateError> {
        let file = self.state_file();
        let text = match std::fs::read_to_string(&file) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(source) => return Err(StateError::Io { path: file, source }),
        };
        if let Some(stamp) = Stamp::of(&text) {
            stamp.check(&file, &text)?;
        }
        serde_json::from_str(&text).map_err(|source| StateError::Corrupt { path: file, source })
    }

    /// Write `state.json` in this zdd's format, whatever format it was read in.
    pub fn save(&self, state: &State) -> Result<(), StateError> {
        let file = self.state_file();
        let json = serde_json::to_vec_pretty(&Stamped::current(state))
            .map_err(|e| StateError::Io { path: file.clone(), source: std::io::Error::other(e) })?;
        crate::host::local::write_atomically(&file, &json, 0o600)
            .map_err(|e| StateError::Io { path: file.clone(), source: std::io::Error::other(e.to_string()) })
    }
}

/// The text of a state file that holds its [`Stamp`]: a journal's header (its first line, read alone: a journal
/// can be long), or the whole of `state.json` and the lock.
fn stamped_text(path: &Path) -> std::io::Result<String> {
    if path.extension().is_none_or(|e| e != "jsonl") {
        return std::fs::read_to_string(path);
    }
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(std::fs::File::open(path)?), &mut line)?;
    Ok(line)
}

impl State {
    /// The target of `zdd run`: a new release (`release`, or now as `YYYYMMDD-HHMMSS` UTC) into the slot that
    /// is not live (the first slot on a first deploy).
    pub fn deploy_target(&self, slots: &[String], release: Option<&str>) -> Result<DeployTarget, StateError> {
        let release = match release {
            Some(r) => {
                check_release_id(r).map_err(StateError::Target)?;
                r.to_owned()
            }
            None => release_id_now(),
        };
        Ok(DeployTarget {
            release,
            slot: self.free_slot(slots)?,
            live_slot: self.live.as_ref().map(|l| l.slot.clone()),
            live_release: self.live.as_ref().map(|l| l.release.clone()),
            rollback: false,
        })
    }

    /// The target of `zdd rollback`: the previous release, into the slot that is not live.
    pub fn rollback_target(&self, slots: &[String]) -> Result<DeployTarget, StateError> {
        let Some(previous) = &self.previous else {
            return Err(StateError::Target(match &self.live {
                Some(live) => format!(
                    "there is no previous release to roll back to: {} is the only release deployed",
                    live.release
                ),
                None => "there is no previous release to roll back to: nothing was deployed yet".to_owned(),
            }));
        };
        Ok(DeployTarget {
            release: previous.release.clone(),
            slot: self.free_slot(slots)?,
            live_slot: self.live.as_ref().map(|l| l.slot.clone()),
            live_release: self.live.as_ref().map(|l| l.release.clone()),
            rollback: true,
        })
    }

    fn free_slot(&self, slots: &[String]) -> Result<String, StateError> {
        let live = self.live.as_ref().map(|l| l.slot.as_str());
        slots
            .iter()
            .find(|s| Some(s.as_str()) != live)
            .cloned()
            .ok_or_else(|| StateError::Target("the plan has no slot other than the live one".to_owned()))
    }

    /// The runs that deployed the `releases` most recently deployed releases (live and previous first), newest
    /// first: the releases still on disk, whose journals pruning keeps.
    pub fn deploying_runs(&self, releases: usize) -> Vec<&str> {
        let mut seen: Vec<&str> = Vec::new();
        let mut runs = Vec::new();
        for entry in self.history.iter().rev().filter(|e| e.outcome == Outcome::Deployed) {
            if seen.len() == releases {
                break;
            }
            if !seen.contains(&entry.release.as_str()) {
                seen.push(&entry.release);
                runs.push(entry.run_id.as_str());
            }
        }
        runs
    }

    /// Record a finished run; a deployed one becomes live and the live one previous.
    pub fn record(&mut self, entry: HistoryEntry) {
        if entry.outcome == Outcome::Deployed {
            let now = crate::lock::now_rfc3339();
            self.previous = self.live.take();
            self.live = Some(Deployed { release: entry.release.clone(), slot: entry.slot.clone(), since: now });
        }
        self.history.push(entry);
        if self.history.len() > HISTORY_LIMIT {
            let excess = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..excess);
        }
    }
}

/// A release id names a directory (`<root>/releases/<id>`), units and files, and is interpolated into plans'
/// shell scripts: letters, digits, `-`, `_` and `.`, starting with a letter or digit (so not `..`, not an option).
pub fn check_release_id(id: &str) -> Result<(), String> {
    let plain = id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if plain && id.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        return Ok(());
    }
    Err(format!(
        "release id `{}`: use letters, digits, `-`, `_` and `.`, starting with a letter or digit",
        id.escape_debug()
    ))
}

/// A release id for now: `YYYYMMDD-HHMMSS`, UTC.
pub fn release_id_now() -> String {
    let format = time::macros::format_description!("[year][month][day]-[hour][minute][second]");
    time::OffsetDateTime::now_utc().format(format).unwrap_or_else(|_| "release".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slots() -> Vec<String> {
        vec!["blue".into(), "green".into()]
    }

    #[test]
    fn release_ids_are_plain_names() {
        for good in ["20260101-000000", "v1.2.3", "r_1"] {
            assert!(check_release_id(good).is_ok(), "{good}");
        }
        for bad in ["", ".", "..", "-rf", "a/b", "a b", "a;b", "$(id)", "a\nb"] {
            assert!(check_release_id(bad).is_err(), "{bad:?}");
            assert!(matches!(State::default().deploy_target(&slots(), Some(bad)), Err(StateError::Target(_))));
        }
    }

    fn entry(release: &str, slot: &str, outcome: Outcome) -> HistoryEntry {
        HistoryEntry {
            run_id: format!("run-{release}"),
            mode: RunMode::Deploy,
            release: release.into(),
            slot: slot.into(),
            outcome,
            started: "2026-11-26T17:00:00Z".into(),
            duration_ms: 10,
            user: "ci".into(),
            host: "box".into(),
        }
    }

    #[test]
    fn first_deploy_takes_the_first_slot_then_alternates() {
        let mut state = State::default();
        let t = state.deploy_target(&slots(), Some("r1")).unwrap();
        assert_eq!((t.slot.as_str(), t.live_slot.as_deref()), ("blue", None));
        state.record(entry("r1", &t.slot, Outcome::Deployed));
        let t = state.deploy_target(&slots(), Some("r2")).unwrap();
        assert_eq!(
            (t.slot.as_str(), t.live_slot.as_deref(), t.live_release.as_deref()),
            ("green", Some("blue"), Some("r1"))
        );
        state.record(entry("r2", &t.slot, Outcome::Deployed));
        assert_eq!(state.previous.as_ref().unwrap().release, "r1");
        let t = state.deploy_target(&slots(), None).unwrap();
        assert_eq!(t.slot, "blue");
        assert_eq!(t.release.len(), "20261126-171500".len());
    }

    #[test]
    fn failed_runs_change_nothing_but_history() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        state.record(entry("r2", "green", Outcome::RolledBack));
        assert_eq!(state.live.as_ref().unwrap().release, "r1");
        assert!(state.previous.is_none());
        assert_eq!(state.history.len(), 2);
    }

    #[test]
    fn deploying_runs_are_the_latest_run_that_deployed_each_recent_release() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        state.record(entry("r2", "green", Outcome::Deployed));
        state.record(entry("r3", "blue", Outcome::RolledBack));
        let mut back = entry("r1", "blue", Outcome::Deployed);
        back.run_id = "run-r1-again".into();
        state.record(back);
        assert_eq!(state.deploying_runs(5), ["run-r1-again", "run-r2"]);
        assert_eq!(state.deploying_runs(1), ["run-r1-again"]);
        assert!(state.deploying_runs(0).is_empty());
    }

    #[test]
    fn rollback_targets_the_previous_release_and_refuses_without_one() {
        let mut state = State::default();
        assert!(state.rollback_target(&slots()).unwrap_err().to_string().contains("nothing was deployed"));
        state.record(entry("r1", "blue", Outcome::Deployed));
        assert!(state.rollback_target(&slots()).unwrap_err().to_string().contains("r1 is the only release"));
        state.record(entry("r2", "green", Outcome::Deployed));
        let t = state.rollback_target(&slots()).unwrap();
        assert_eq!((t.release.as_str(), t.slot.as_str(), t.rollback), ("r1", "blue", true));
    }

    #[test]
    fn state_dir_is_private_and_round_trips() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("a/b");
        let dir = StateDir::prepare(&path).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o700);
        let mut state = dir.load().unwrap();
        assert_eq!(state, State::default());
        state.record(entry("r1", "blue", Outcome::Deployed));
        dir.save(&state).unwrap();
        assert_eq!(dir.load().unwrap(), state);
        let file = path.join("state.json");
        assert_eq!(std::fs::metadata(file).unwrap().permissions().mode() & 0o777, 0o600);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(matches!(StateDir::prepare(&path), Err(StateError::Unsafe { .. })));
    }

    #[test]
    fn state_is_saved_in_this_format_and_a_newer_one_is_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::prepare(root.path()).unwrap();
        let file = root.path().join("state.json");
        std::fs::write(&file, r#"{"live": null, "previous": null}"#).unwrap();
        assert_eq!(dir.load().unwrap(), State::default(), "a file without a format is format 1");
        dir.save(&State::default()).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert_eq!(Stamp::of(&text), Some(Stamp::current()));

        std::fs::write(&file, text.replacen(&format!("\"format\": {}", crate::format::CURRENT), "\"format\": 99", 1))
            .unwrap();
        assert!(matches!(dir.load(), Err(StateError::Newer(_))));
        assert!(matches!(StateDir::open(root.path()), Err(StateError::Newer(_))));
    }
}
