//! The state directory: live and previous release and slot, the history of runs, and what zdd remembers of each
//! release (bad, stable).
//!
//! `<state-dir>/state.json` (mode 0600, written atomically) says which release serves from which slot, which
//! served before it, and what past runs did. The engine derives each run's [`DeployTarget`] from it. The
//! directory itself is created 0700 and refused when others may write to it: it holds the journal `recover`
//! acts on and the lock. It is refused too when a newer zdd wrote any of its files (see [`crate::format`]),
//! before anything in it is read for its content or written.
//!
//! # Bad and stable releases
//!
//! A release is **bad** once a run of it failed after its cutover: a step that moves the live traffic
//! ([`crate::kind::StepKind::cuts_over`]: `proxy-switch`, an `exec` with `cutover #true`) had succeeded, so the
//! release served real requests, and then a later step (smoke, log check) failed, or zdd was interrupted and
//! `recover` undid it. The run's journal holds a `cut-over` line from that moment, which is how `recover` knows.
//! A failure *before* the cutover says nothing against the release (the health gate refused it before anyone saw
//! it) and marks nothing. `zdd rollback` never chooses a bad release; `zdd run --release ID` refuses one unless
//! `--allow-bad` says it is meant, and a deliberate deploy of it that succeeds clears the mark.
//!
//! A release is **stable** once it has been live for the plan's `stable-after` (10 minutes unless the plan says)
//! without failing after its cutover. Reaching live already means its run passed every step (the smoke checks and
//! log checks are steps of the plan). No daemon watches the clock: the rule is judged whenever zdd reads the state
//! ([`State::judge`]): by `run`, `rollback` and `recover`, which save the mark with their run, and by `status` and
//! `history`, which show it without writing. A mark says when the release became stable: `since` + `stable-after`.
//!
//! `zdd rollback` targets the newest stable release that is not live. When none is, it falls back, with a
//! warning, to the newest earlier release that is not bad (what `previous` names, unless that is bad): refusing
//! would leave no rollback in the first minutes after a deploy, when one is most often wanted. It says which
//! releases it passed over and why.
//!
//! The marks live in `state.json` under `releases`, an optional field: a state file without it (format 1 and 2
//! files of earlier zdds) reads as "nothing marked", and the format is unchanged (see [`crate::format`]).

use std::collections::BTreeMap;
use std::os::unix::fs::{DirBuilderExt as _, MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    /// The step that cut the live traffic over to this run's release, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cut_over: Option<String>,
    /// Why a run that did not deploy stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cause: Option<String>,
    /// What its steps judged, with the numbers (a canary's analysis), as `step: verdict`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verdicts: Vec<String>,
}

/// What zdd remembers of one release beyond its runs (see the module doc).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReleaseMarks {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bad: Option<BadMark>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stable: Option<StableMark>,
}

/// A release failed after its cutover.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadMark {
    /// The run that failed.
    pub run_id: String,
    /// The step that had cut the live traffic over to it.
    pub cut_over: String,
    /// Why the run failed.
    pub cause: String,
    /// When the failed run was recorded; RFC 3339, UTC.
    pub at: String,
}

impl BadMark {
    /// "run X failed after its cutover (`switch`) at T: cause".
    pub fn describe(&self) -> String {
        format!("run {} failed after its cutover (`{}`) at {}: {}", self.run_id, self.cut_over, self.at, self.cause)
    }
}

/// A release served for `stable-after` without failing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StableMark {
    /// When it had been live for `stable-after`; RFC 3339, UTC.
    pub since: String,
}

/// The content of `state.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub live: Option<Deployed>,
    pub previous: Option<Deployed>,
    #[serde(default)]
    pub history: Vec<HistoryEntry>,
    /// Bad and stable marks, by release id; releases without a mark are absent.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub releases: BTreeMap<String, ReleaseMarks>,
}

/// The release `zdd rollback` puts back, and what it passed over on the way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollbackChoice {
    pub target: DeployTarget,
    /// Is the target stable? If not, no earlier release was, and it is the newest one that is not bad.
    pub stable: bool,
    /// The newer releases passed over, each with why ("r3: marked bad: run ... failed after its cutover ...").
    pub skipped: Vec<String>,
}

impl RollbackChoice {
    /// What `zdd rollback` says before it starts: the releases it passed over, and a fallback to one that is not
    /// stable.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.skipped.iter().map(|why| format!("rollback: passed over release {why}")).collect();
        // The migrate step's safety gate proved each migration compatible with the release live when it ran, not
        // with older ones: say so when the rollback goes further back than the previous release.
        if !self.skipped.is_empty() {
            out.push(format!(
                "rollback: release {} is older than the previous release; migrations applied since it served were \
                 checked against the releases live then, not against it",
                self.target.release
            ));
        }
        if !self.stable {
            out.push(format!(
                "rollback: no earlier release is stable yet (live for the plan's `stable-after` without failing): \
                 rolling back to {}, the newest earlier release that is not marked bad",
                self.target.release
            ));
        }
        out
    }
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

    /// The target of `zdd rollback`: the newest stable release that is not live and not bad, else (no earlier
    /// release is stable) the newest earlier one that is not bad, into the slot that is not live. Judge the
    /// marks first ([`State::judge`]).
    pub fn rollback_target(&self, slots: &[String]) -> Result<RollbackChoice, StateError> {
        let earlier = self.earlier_releases();
        let bad: Vec<String> =
            earlier.iter().filter_map(|r| self.bad(r).map(|b| format!("{r}: marked bad: {}", b.describe()))).collect();
        let good: Vec<&str> = earlier.iter().copied().filter(|r| self.bad(r).is_none()).collect();
        let stable = good.iter().position(|r| self.is_stable(r));
        let Some(&release) = stable.map_or(good.first(), |i| good.get(i)) else {
            return Err(StateError::Target(match (&self.live, bad.is_empty()) {
                (Some(live), true) => format!(
                    "there is no previous release to roll back to: {} is the only release deployed",
                    live.release
                ),
                (None, _) => "there is no previous release to roll back to: nothing was deployed yet".to_owned(),
                (Some(_), false) => format!(
                    "there is no release to roll back to: every earlier release is marked bad ({}); deploy one \
                     again on purpose with `zdd run --release ID --allow-bad`",
                    bad.join("; ")
                ),
            }));
        };
        // Passed over: the bad ones newer than the target, and the good ones newer than a stable target.
        let position = earlier.iter().position(|r| *r == release).unwrap_or(0);
        let skipped = earlier[..position]
            .iter()
            .map(|r| match self.bad(r) {
                Some(b) => format!("{r}: marked bad: {}", b.describe()),
                None => format!("{r}: not stable (it was not live for the plan's `stable-after`)"),
            })
            .collect();
        Ok(RollbackChoice {
            target: DeployTarget {
                release: release.to_owned(),
                slot: self.free_slot(slots)?,
                live_slot: self.live.as_ref().map(|l| l.slot.clone()),
                live_release: self.live.as_ref().map(|l| l.release.clone()),
                rollback: true,
            },
            stable: stable.is_some(),
            skipped,
        })
    }

    /// The releases that were live before the live one, newest first, each once: `previous`, then those the
    /// history's deploying runs name.
    pub fn earlier_releases(&self) -> Vec<&str> {
        let live = self.live.as_ref().map(|l| l.release.as_str());
        let deployed = self.history.iter().rev().filter(|e| e.outcome.leaves_live()).map(|e| e.release.as_str());
        let mut out: Vec<&str> = Vec::new();
        for release in self.previous.iter().map(|p| p.release.as_str()).chain(deployed) {
            if Some(release) != live && !out.contains(&release) {
                out.push(release);
            }
        }
        out
    }

    /// The bad mark of `release`, if it has one.
    pub fn bad(&self, release: &str) -> Option<&BadMark> {
        self.releases.get(release).and_then(|m| m.bad.as_ref())
    }

    /// Is `release` stable (and not bad since)?
    pub fn is_stable(&self, release: &str) -> bool {
        self.releases.get(release).is_some_and(|m| m.stable.is_some() && m.bad.is_none())
    }

    /// The mark `status` and `history` show for `release`: `bad`, `stable`, or none.
    pub fn mark(&self, release: &str) -> Option<&'static str> {
        if self.bad(release).is_some() {
            Some("bad")
        } else if self.is_stable(release) {
            Some("stable")
        } else {
            None
        }
    }

    /// When the live release becomes stable if it goes on serving (RFC 3339, UTC).
    pub fn live_stable_at(&self, stable_after: Duration) -> Option<String> {
        let since = humantime::parse_rfc3339(&self.live.as_ref()?.since).ok()?;
        Some(humantime::format_rfc3339_seconds(since.checked_add(stable_after)?).to_string())
    }

    /// Judge the live release at `now`: once it has been live for `stable_after` (and is not bad) it is marked
    /// stable, as of the moment it reached that. Marks already given stay. See the module doc for why this is
    /// lazy.
    pub fn judge(&mut self, now: SystemTime, stable_after: Duration) {
        let Some(live) = &self.live else { return };
        if self.bad(&live.release).is_some() || self.is_stable(&live.release) {
            return;
        }
        let Ok(since) = humantime::parse_rfc3339(&live.since) else { return };
        let Some(stable_at) = since.checked_add(stable_after).filter(|at| *at <= now) else { return };
        let since = humantime::format_rfc3339_seconds(stable_at).to_string();
        self.releases.entry(live.release.clone()).or_default().stable = Some(StableMark { since });
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
        for entry in self.history.iter().rev().filter(|e| e.outcome.leaves_live()) {
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

    /// Record a finished run; a deployed one becomes live and the live one previous, and so does a committed one
    /// (it failed after its commit point: the release before cannot serve, this one can). A run that failed after
    /// its cutover and rolled back marks its release bad; one that deployed a bad release (on purpose) clears the
    /// mark.
    pub fn record(&mut self, entry: HistoryEntry) {
        let now = crate::lock::now_rfc3339();
        match (entry.outcome, &entry.cut_over) {
            (Outcome::Deployed | Outcome::Committed, _) => {
                self.previous = self.live.take();
                self.live = Some(Deployed { release: entry.release.clone(), slot: entry.slot.clone(), since: now });
                if let Some(marks) = self.releases.get_mut(&entry.release) {
                    marks.bad = None;
                }
            }
            (_, Some(step)) => {
                let marks = self.releases.entry(entry.release.clone()).or_default();
                marks.stable = None;
                marks.bad = Some(BadMark {
                    run_id: entry.run_id.clone(),
                    cut_over: step.clone(),
                    cause: entry.cause.clone().unwrap_or_else(|| "the run failed".to_owned()),
                    at: now,
                });
            }
            (_, None) => {}
        }
        self.history.push(entry);
        if self.history.len() > HISTORY_LIMIT {
            let excess = self.history.len() - HISTORY_LIMIT;
            self.history.drain(..excess);
        }
        // Marks of releases the history no longer names go with them.
        let named: Vec<String> = self
            .history
            .iter()
            .map(|e| e.release.clone())
            .chain(self.live.iter().chain(&self.previous).map(|d| d.release.clone()))
            .collect();
        self.releases.retain(|release, marks| named.contains(release) && *marks != ReleaseMarks::default());
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
            cut_over: None,
            cause: None,
            verdicts: Vec::new(),
        }
    }

    /// A run of `release` that failed after its cutover step `switch`.
    fn failed_after_cutover(release: &str, slot: &str) -> HistoryEntry {
        HistoryEntry {
            cut_over: Some("switch".into()),
            cause: Some("step `smoke` failed: 500".into()),
            verdicts: Vec::new(),
            run_id: format!("run-{release}-bad"),
            ..entry(release, slot, Outcome::RolledBack)
        }
    }

    /// A run's verdicts are kept with it; a run without any writes none, and a `state.json` from before
    /// verdicts reads as none.
    #[test]
    fn verdicts_are_kept_with_their_run() {
        let mut judged = entry("r1", "a", Outcome::Deployed);
        judged.verdicts = vec!["canary: verdict after 6s: pass; canary 418 requests".into()];
        let text = serde_json::to_string(&judged).unwrap();
        assert_eq!(serde_json::from_str::<HistoryEntry>(&text).unwrap(), judged);
        let plain = serde_json::to_value(entry("r2", "b", Outcome::Deployed)).unwrap();
        assert!(plain.get("verdicts").is_none(), "{plain}");
        let old: HistoryEntry = serde_json::from_value(plain).unwrap();
        assert!(old.verdicts.is_empty());
    }

    /// Mark the live release as if it had been live since the Unix epoch: stable for any `stable-after`.
    fn serve_long(state: &mut State) {
        if let Some(live) = &mut state.live {
            live.since = "1970-01-01T00:00:00Z".into();
        }
        state.judge(SystemTime::now(), Duration::from_mins(10));
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
        let choice = state.rollback_target(&slots()).unwrap();
        let t = &choice.target;
        assert_eq!((t.release.as_str(), t.slot.as_str(), t.rollback), ("r1", "blue", true));
        assert!(!choice.stable, "r1 was live for no time");
        assert!(choice.skipped.is_empty());
        assert_eq!(choice.warnings().len(), 1, "the fallback is said");
    }

    #[test]
    fn a_release_that_failed_after_its_cutover_is_bad_and_one_that_failed_before_is_not() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        state.record(entry("r2", "green", Outcome::RolledBack));
        assert_eq!(state.mark("r2"), None, "refused before its cutover: nothing against it");
        state.record(failed_after_cutover("r3", "green"));
        let bad = state.bad("r3").unwrap();
        assert_eq!((bad.run_id.as_str(), bad.cut_over.as_str()), ("run-r3-bad", "switch"));
        assert_eq!(bad.cause, "step `smoke` failed: 500");
        assert_eq!(state.mark("r3"), Some("bad"));
        assert_eq!(state.live.as_ref().unwrap().release, "r1", "a failed run changes nothing live");
        // Deployed again on purpose, and it passed: no longer bad.
        state.record(entry("r3", "green", Outcome::Deployed));
        assert_eq!(state.mark("r3"), None);
    }

    /// A run that failed after its commit point leaves its release live, as a deployed one would: the release
    /// before becomes previous, the rollback target, and nothing is marked bad, though it had cut over.
    #[test]
    fn a_committed_run_makes_its_release_live_and_marks_nothing_bad() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        let committed = HistoryEntry {
            cut_over: Some("switch".into()),
            cause: Some("step `migrate-post` failed: column in use".into()),
            ..entry("r2", "green", Outcome::Committed)
        };
        state.record(committed);
        let live = state.live.as_ref().unwrap();
        assert_eq!((live.release.as_str(), live.slot.as_str()), ("r2", "green"));
        assert_eq!(state.previous.as_ref().unwrap().release, "r1");
        assert_eq!(state.mark("r2"), None, "a committed release serves: not bad");
        assert_eq!(state.earlier_releases(), ["r1"]);
        assert_eq!(state.deploying_runs(2), ["run-r2", "run-r1"], "its journal is kept like a deploy's");
        let choice = state.rollback_target(&slots()).unwrap();
        assert_eq!((choice.target.release.as_str(), choice.target.slot.as_str()), ("r1", "blue"));
        // The outcome is kept as such in the history, and reads back.
        let text = serde_json::to_string(state.history.last().unwrap()).unwrap();
        assert!(text.contains(r#""outcome":"committed""#), "{text}");
    }

    /// A committed release that was marked bad by an earlier run is live now: the mark goes, as for a deploy.
    #[test]
    fn a_committed_run_of_a_bad_release_clears_its_mark() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        state.record(failed_after_cutover("r2", "green"));
        assert_eq!(state.mark("r2"), Some("bad"));
        state.record(entry("r2", "green", Outcome::Committed));
        assert_eq!(state.mark("r2"), None);
        assert_eq!(state.live.as_ref().unwrap().release, "r2");
    }

    #[test]
    fn the_live_release_becomes_stable_after_stable_after_and_not_before() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        let since = humantime::parse_rfc3339(&state.live.as_ref().unwrap().since).unwrap();
        let ten = Duration::from_mins(10);
        state.judge(since + Duration::from_secs(599), ten);
        assert_eq!(state.mark("r1"), None);
        state.judge(since + Duration::from_hours(1), ten);
        assert_eq!(state.mark("r1"), Some("stable"));
        let mark = state.releases["r1"].stable.clone().unwrap();
        assert_eq!(humantime::parse_rfc3339(&mark.since).unwrap(), since + ten, "stable as of since + stable-after");
        // A later judgement keeps the first mark.
        state.judge(since + Duration::from_hours(2), ten);
        assert_eq!(state.releases["r1"].stable, Some(mark));
    }

    #[test]
    fn rollback_targets_the_newest_stable_release_passing_over_bad_and_unstable_ones() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        serve_long(&mut state);
        state.record(entry("r2", "green", Outcome::Deployed));
        state.record(entry("r3", "blue", Outcome::Deployed));
        let choice = state.rollback_target(&slots()).unwrap();
        assert_eq!((choice.target.release.as_str(), choice.stable), ("r1", true));
        assert_eq!(choice.skipped, ["r2: not stable (it was not live for the plan's `stable-after`)"]);
        assert_eq!(choice.target.slot, "green", "into the slot that is not live");

        // A rollback to r1 that fails after its cutover: r1 is bad, and nothing earlier is stable.
        let mut back = failed_after_cutover("r1", "green");
        back.mode = RunMode::Rollback;
        state.record(back);
        assert_eq!(state.mark("r1"), Some("bad"), "bad wins over stable");
        let choice = state.rollback_target(&slots()).unwrap();
        assert_eq!((choice.target.release.as_str(), choice.stable), ("r2", false));
        assert!(choice.skipped.is_empty(), "{:?}", choice.skipped);
        let warnings = choice.warnings();
        assert!(warnings[0].contains("no earlier release is stable yet"), "{warnings:?}");
    }

    #[test]
    fn rollback_passes_over_a_bad_previous_release_and_says_why() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        state.record(entry("r2", "green", Outcome::Deployed));
        state.record(entry("r3", "blue", Outcome::Deployed));
        // r2 is previous; a rollback to it failed after its cutover.
        let mut back = failed_after_cutover("r2", "green");
        back.mode = RunMode::Rollback;
        state.record(back);
        let choice = state.rollback_target(&slots()).unwrap();
        assert_eq!(choice.target.release, "r1");
        assert_eq!(choice.skipped.len(), 1);
        assert!(
            choice.skipped[0].starts_with("r2: marked bad: run run-r2-bad failed after its cutover (`switch`) at "),
            "{:?}",
            choice.skipped
        );
        assert!(choice.warnings()[0].starts_with("rollback: passed over release r2: marked bad"));
    }

    #[test]
    fn rollback_refuses_when_every_earlier_release_is_bad() {
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        state.record(entry("r2", "green", Outcome::Deployed));
        let mut back = failed_after_cutover("r1", "blue");
        back.mode = RunMode::Rollback;
        state.record(back);
        let err = state.rollback_target(&slots()).unwrap_err().to_string();
        assert!(err.contains("every earlier release is marked bad (r1: marked bad: run run-r1-bad"), "{err}");
        assert!(err.contains("--allow-bad"), "{err}");
    }

    #[test]
    fn marks_read_from_a_state_file_without_them_and_round_trip() {
        let old: State = serde_json::from_str(r#"{"live": null, "previous": null, "history": []}"#).unwrap();
        assert!(old.releases.is_empty());
        let mut state = State::default();
        state.record(entry("r1", "blue", Outcome::Deployed));
        let unmarked = serde_json::to_value(&state).unwrap();
        assert!(unmarked.get("releases").is_none(), "nothing marked, nothing written: {unmarked}");
        assert!(unmarked["history"][0].get("cut_over").is_none());
        serve_long(&mut state);
        state.record(failed_after_cutover("r2", "green"));
        let text = serde_json::to_string(&state).unwrap();
        assert_eq!(serde_json::from_str::<State>(&text).unwrap(), state);
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
