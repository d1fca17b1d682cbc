//! The run journal: JSON lines under the state directory, fsync'd before a step's effect counts as done,
//! so `zdd recover` can roll back an interrupted run from the journal alone.
//!
//! One file per run, `<state-dir>/journal/<run-id>.jsonl`, mode 0600. The first line is the run's header
//! (`journal-opened`: the journal's format (see [`crate::format`]), plan, mode, deploy target, user, host, pid); a
//! header of a newer format is refused before any line is read. Then every event of the run as the reporters
//! see it, plus `undo-facts` lines written (and fsync'd) by [`UndoJournal::record`] before the effect they
//! describe. A journal whose last run has no `run-finished` line belongs to an interrupted run, unless its last
//! `staged` line (`zdd run --stage`) has no `resumed` line after it: that run is staged, waiting for `zdd promote`
//! or `zdd abort` ([`staged`]; [`unfinished`] passes over it). One with a `cut-over` line is of a run whose
//! release served the live traffic (`recover` marks it bad when it undoes it). One with a `commit-point` line
//! (written and fsync'd before a step that [`commits`](crate::kind::StepKind::commits) starts) is past its commit
//! point: `recover` does not undo it.
//!
//! Every line passes through the [`Redactor`] except the undo facts themselves: they are what `recover` acts on,
//! so they are stored as the kind recorded them (the state directory is 0700, the journal 0600).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::events::{Event, Outcome, Stamped, StepState};
use crate::format::{self, Stamp};
use crate::kind::{DeployTarget, RecordedPolicy, RecordedUndo, UndoFacts, UndoJournal};
use crate::redact::Redactor;

/// What a run does, recorded in its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunMode {
    /// `zdd run`.
    Deploy,
    /// `zdd rollback`: the previous release through the same steps.
    Rollback,
}

/// The first line of a journal: who ran what, where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunHeader {
    pub run_id: String,
    pub plan: String,
    pub mode: RunMode,
    pub target: DeployTarget,
    pub user: String,
    pub host: String,
    pub pid: u32,
    /// Unix milliseconds.
    pub started_at: u64,
    /// The plan's steps, in declaration order.
    pub steps: Vec<String>,
    /// What each step needs (indices into `steps`): the graph the run followed, so `recover` undoes in the
    /// same order even if the plan file changed since. Empty in journals written before it was recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<Vec<usize>>,
}

/// The lines of a journal, as read back. Events the reader does not need are `Other`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
enum Line {
    JournalOpened {
        #[serde(flatten)]
        header: Box<RunHeader>,
    },
    UndoFacts {
        step: String,
        facts: UndoFacts,
        /// Absent in journals written before the kind was recorded with the facts: the plan then supplies it.
        #[serde(default)]
        kind: String,
        #[serde(default)]
        policy: Option<RecordedPolicy>,
        /// Absent for a step that ran on this machine.
        #[serde(default)]
        host: Option<String>,
    },
    StepFinished {
        step: String,
        state: StepState,
    },
    UndoFinished {
        step: String,
        ok: bool,
    },
    RunFinished {
        outcome: Outcome,
    },
    CutOver {
        step: String,
    },
    CommitPoint {
        step: String,
    },
    Staged {
        #[serde(default)]
        bound: Option<String>,
    },
    Resumed {},
    #[serde(other)]
    Other,
}

/// The journal of the run in progress. Cheap to share (`Arc`); every write is one `write` of a whole line to a
/// file opened for appending, so lines never interleave.
#[derive(Debug)]
pub struct Journal {
    file: Option<Arc<Mutex<File>>>,
    path: Option<PathBuf>,
    redactor: Redactor,
    /// The facts recorded so far, by step (the latest facts of a step replace earlier ones).
    facts: Mutex<BTreeMap<String, RecordedUndo>>,
    /// The steps' verdicts, as `step: verdict`, for the run's history line.
    verdicts: Mutex<Vec<String>>,
    /// The first commit point recorded ([`Journal::commit_point`]).
    committed: Mutex<Option<String>>,
}

impl Journal {
    /// Create `<state_dir>/journal/<run-id>.jsonl` and write its header (fsync'd).
    pub fn create(state_dir: &Path, header: &RunHeader, redactor: Redactor) -> std::io::Result<Self> {
        let dir = journal_dir(state_dir);
        // 0700 whatever the umask: the journal holds undo facts (see the module doc).
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        let path = dir.join(format!("{}.jsonl", header.run_id));
        let file = OpenOptions::new().append(true).create_new(true).mode(0o600).open(&path)?;
        let journal = Self {
            file: Some(Arc::new(Mutex::new(file))),
            path: Some(path),
            redactor,
            facts: Mutex::new(BTreeMap::new()),
            verdicts: Mutex::new(Vec::new()),
            committed: Mutex::new(None),
        };
        let mut line = serde_json::to_value(format::Stamped::current(header)).map_err(std::io::Error::other)?;
        stamp(&mut line, "journal-opened", now_millis());
        journal.write_line(&line, true)?;
        File::open(&dir)?.sync_all()?;
        Ok(journal)
    }

    /// Continue writing an existing journal (`zdd recover` appends its undo and the run's end to it). The journal
    /// keeps the format of its header: the lines appended are the same in every format this zdd reads.
    pub fn reopen(path: &Path, redactor: Redactor) -> std::io::Result<Self> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Self {
            file: Some(Arc::new(Mutex::new(file))),
            path: Some(path.to_path_buf()),
            redactor,
            facts: Mutex::new(BTreeMap::new()),
            verdicts: Mutex::new(Vec::new()),
            committed: Mutex::new(None),
        })
    }

    /// Continue a staged run's journal (`zdd promote`): as [`Journal::reopen`], knowing the facts its staged
    /// steps recorded, so a rollback of the promoted run undoes them too.
    pub fn resume(replay: &Replay, redactor: Redactor) -> std::io::Result<Self> {
        let journal = Self::reopen(&replay.path, redactor)?;
        // Without the staged facts a rollback of the promoted run could not undo the staged steps: refuse.
        journal
            .facts
            .lock()
            .map_err(|_| std::io::Error::other("journal facts lock poisoned"))?
            .extend(replay.to_undo.iter().cloned());
        if let Ok(mut committed) = journal.committed.lock() {
            committed.clone_from(&replay.committed);
        }
        Ok(journal)
    }

    /// A journal that keeps facts in memory only (tests, benchmarks).
    pub fn in_memory() -> Self {
        Self {
            file: None,
            path: None,
            redactor: Redactor::new(),
            facts: Mutex::new(BTreeMap::new()),
            verdicts: Mutex::new(Vec::new()),
            committed: Mutex::new(None),
        }
    }

    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Append an event. The run's start and end and each finished undo are fsync'd; the rest is written
    /// without waiting for the disk (it survives zdd being killed, which is what `recover` is for).
    pub fn append(&self, stamped: &Stamped) -> std::io::Result<()> {
        // The cutover too: `recover` marks the release bad from it (see [`crate::state`]).
        let durable = matches!(
            stamped.event,
            Event::RunStarted { .. }
                | Event::UndoFinished { .. }
                | Event::RunFinished { .. }
                | Event::CutOver { .. }
                | Event::Staged { .. }
                | Event::Resumed { .. }
        );
        let line = serde_json::to_value(stamped).map_err(std::io::Error::other)?;
        self.write_line(&line, durable)
    }

    /// The steps' verdicts in this run, in order, as `step: verdict`.
    pub fn verdicts(&self) -> Vec<String> {
        self.verdicts.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Durably record (fsync'd) that `step`, a commit point, starts: call it before the step runs. From this line
    /// on neither the run nor `recover` rolls back (see [`crate::kind::StepKind::commits`]).
    pub async fn commit_point(&self, step: &str) -> std::io::Result<()> {
        self.append_durably(&serde_json::json!({ "at": now_millis(), "event": "commit-point", "step": step })).await?;
        if let Ok(mut committed) = self.committed.lock() {
            committed.get_or_insert_with(|| step.to_owned());
        }
        Ok(())
    }

    /// The first commit point this run recorded, if one started.
    pub fn committed(&self) -> Option<String> {
        self.committed.lock().ok().and_then(|c| c.clone())
    }

    /// The undo facts recorded in this run, by step.
    pub fn facts(&self) -> BTreeMap<String, RecordedUndo> {
        self.facts.lock().map(|f| f.clone()).unwrap_or_default()
    }

    fn write_line(&self, line: &serde_json::Value, durable: bool) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let mut line = line.clone();
        redact_strings(&mut line, &self.redactor);
        let mut text = line.to_string();
        text.push('\n');
        let mut file = file.lock().map_err(|_| std::io::Error::other("journal lock poisoned"))?;
        file.write_all(text.as_bytes())?;
        if durable { file.sync_data() } else { Ok(()) }
    }

    /// The undo-facts line is not redacted (see the module doc) and always fsync'd, on a blocking thread so a
    /// step waiting for the disk does not hold up the runtime's workers.
    async fn write_facts(&self, step: &str, undo: &RecordedUndo) -> std::io::Result<()> {
        let mut line = serde_json::json!({
            "at": now_millis(),
            "event": "undo-facts",
            "step": step,
            "kind": undo.kind,
            "policy": undo.policy,
            "facts": undo.facts,
        });
        // The host the step ran on: its undo acts there, whatever the plan says by then.
        if let Some(host) = &undo.host {
            line["host"] = serde_json::Value::from(host.as_str());
        }
        self.append_durably(&line).await
    }

    /// Append `line` unredacted and fsync it, on a blocking thread so a step waiting for the disk does not hold
    /// up the runtime's workers.
    async fn append_durably(&self, line: &serde_json::Value) -> std::io::Result<()> {
        let Some(file) = &self.file else { return Ok(()) };
        let mut text = line.to_string();
        text.push('\n');
        let file = file.clone();
        tokio::task::spawn_blocking(move || {
            let mut file = file.lock().map_err(|_| std::io::Error::other("journal lock poisoned"))?;
            file.write_all(text.as_bytes())?;
            file.sync_data()
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

#[async_trait]
impl UndoJournal for Journal {
    fn verdict(&self, step: &str, verdict: &str) {
        if let Ok(mut verdicts) = self.verdicts.lock() {
            verdicts.push(format!("{step}: {verdict}"));
        }
    }

    async fn record(&self, step: &str, undo: &RecordedUndo) -> std::io::Result<()> {
        self.write_facts(step, undo).await?;
        if let Ok(mut map) = self.facts.lock() {
            map.insert(step.to_owned(), undo.clone());
        }
        Ok(())
    }
}

/// Mask secrets in every string of a line before it is serialized: masking the JSON text would miss a secret
/// that JSON escapes (one with a `"`, a `\\` or a control character in it).
fn redact_strings(value: &mut serde_json::Value, redactor: &Redactor) {
    match value {
        serde_json::Value::String(s) => *s = redactor.redact(s),
        serde_json::Value::Array(items) => items.iter_mut().for_each(|v| redact_strings(v, redactor)),
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_strings(v, redactor)),
        _ => {}
    }
}

fn stamp(line: &mut serde_json::Value, event: &str, at: u64) {
    if let Some(map) = line.as_object_mut() {
        map.insert("event".into(), event.into());
        map.insert("at".into(), at.into());
    }
}

pub fn now_millis() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// A journal read back: what `recover` needs to undo an interrupted run.
#[derive(Debug, Clone)]
pub struct Replay {
    pub path: PathBuf,
    pub header: RunHeader,
    /// Steps with undo facts, with their latest facts, in the order the undo must run: steps that were still
    /// running when the run stopped first (most recent facts first), then finished steps in reverse completion
    /// order. Steps whose undo already succeeded are left out.
    pub to_undo: Vec<(String, RecordedUndo)>,
    /// Did the run end (a `run-finished` line)?
    pub finished: bool,
    /// The step that cut the live traffic over to the run's release, if one did (a `cut-over` line).
    pub cut_over: Option<String>,
    /// The first commit point that started (a `commit-point` line): the run is not to be undone.
    pub committed: Option<String>,
    /// The run was staged (`zdd run --stage`) and waits for `zdd promote` or `zdd abort`: a `staged` line with
    /// no `resumed` line after it. Such a run is not unfinished (see [`unfinished`]) but [`staged`].
    pub staged: bool,
    /// The steps that succeeded and were not undone since, in the order they finished: what `zdd promote` does
    /// not run again.
    pub succeeded: Vec<String>,
    /// The staged run's fingerprint of its bound steps (the `staged` line's `bound`).
    pub staged_bound: Option<String>,
}

impl Replay {
    /// [`Replay::to_undo`] in waves, by the graph recorded in the header: the undos of one wave can run at the
    /// same time, and a step is undone after every step that needs it. A journal without a recorded graph is
    /// undone one step at a time, in `to_undo`'s order.
    pub fn undo_waves(&self) -> Vec<Vec<(String, RecordedUndo)>> {
        let steps = &self.header.steps;
        if self.header.needs.len() != steps.len() || steps.is_empty() {
            return self.to_undo.iter().map(|entry| vec![entry.clone()]).collect();
        }
        let needs: Vec<Vec<crate::plan::StepId>> =
            self.header.needs.iter().map(|n| n.iter().map(|&i| crate::plan::StepId(i)).collect()).collect();
        let graph = crate::graph::StepGraph::from_needs(&needs);
        let facts: BTreeMap<&str, &RecordedUndo> = self.to_undo.iter().map(|(s, f)| (s.as_str(), f)).collect();
        let mut waves: Vec<Vec<(String, RecordedUndo)>> = graph
            .undo_order(|id| facts.contains_key(steps[id.0].as_str()))
            .into_iter()
            .map(|wave| wave.into_iter().map(|id| (steps[id.0].clone(), facts[steps[id.0].as_str()].clone())).collect())
            .collect();
        // Facts of a step the header does not name (cannot happen with zdd's own journals): undone last.
        let unknown: Vec<(String, RecordedUndo)> =
            self.to_undo.iter().filter(|(s, _)| !steps.contains(s)).cloned().collect();
        waves.extend(unknown.into_iter().map(|entry| vec![entry]));
        waves
    }
}

/// Read a journal. Unreadable trailing garbage (a line cut by a crash) is ignored. A journal of a newer format
/// (its header says) is an error of kind `Unsupported`, carrying the [`format::NewerFormat`].
pub fn replay(path: &Path) -> std::io::Result<Replay> {
    let reader = BufReader::new(File::open(path)?);
    let mut header = None;
    let mut facts: BTreeMap<String, RecordedUndo> = BTreeMap::new();
    let mut first_facts: Vec<String> = Vec::new();
    let mut completed: Vec<String> = Vec::new();
    let mut undone: BTreeSet<String> = BTreeSet::new();
    let mut finished = false;
    let mut cut_over = None;
    let mut committed = None;
    let mut staged = false;
    let mut staged_bound = None;
    let mut succeeded: Vec<String> = Vec::new();
    for (index, line) in reader.lines().enumerate() {
        let line = line?;
        if index == 0
            && let Some(stamp) = Stamp::of(&line)
        {
            stamp.check(path, &line).map_err(|e| std::io::Error::new(std::io::ErrorKind::Unsupported, e))?;
        }
        let Ok(parsed) = serde_json::from_str::<Line>(&line) else { continue };
        match parsed {
            Line::JournalOpened { header: h } => header = Some(*h),
            Line::UndoFacts { step, facts: f, kind, policy, host } => {
                if !facts.contains_key(&step) {
                    first_facts.push(step.clone());
                }
                let policy = policy.unwrap_or_else(|| crate::plan::StepPolicy::default().into());
                facts.insert(step.clone(), RecordedUndo { kind, host, policy, facts: f });
                // New facts after an undo mean the step ran again: it needs undoing again.
                undone.remove(&step);
            }
            Line::StepFinished { step, state } => {
                succeeded.retain(|s| s != &step);
                if state == StepState::Succeeded {
                    succeeded.push(step.clone());
                }
                if state != StepState::Skipped {
                    completed.retain(|s| s != &step);
                    completed.push(step);
                }
            }
            Line::UndoFinished { step, ok } => {
                if ok {
                    succeeded.retain(|s| s != &step);
                    undone.insert(step);
                }
            }
            Line::Staged { bound } => {
                staged = true;
                staged_bound = bound;
            }
            Line::Resumed {} => staged = false,
            // A run whose rollback did not complete is not over: `recover` retries the undos that failed.
            Line::RunFinished { outcome } => finished = outcome != Outcome::RollbackIncomplete,
            Line::CutOver { step } => {
                cut_over.get_or_insert(step);
            }
            Line::CommitPoint { step } => {
                committed.get_or_insert(step);
            }
            Line::Other => {}
        }
    }
    let header = header.ok_or_else(|| {
        std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{} has no journal header", path.display()))
    })?;
    let mut order: Vec<String> = first_facts.iter().rev().filter(|s| !completed.contains(s)).cloned().collect();
    order.extend(completed.iter().rev().filter(|s| facts.contains_key(*s)).cloned());
    let to_undo = order
        .into_iter()
        .filter(|s| !undone.contains(s))
        .filter_map(|s| facts.get(&s).map(|f| (s.clone(), f.clone())))
        .collect();
    Ok(Replay {
        path: path.to_path_buf(),
        header,
        to_undo,
        finished,
        cut_over,
        committed,
        staged: staged && !finished,
        succeeded,
        staged_bound,
    })
}

/// The journals of a state directory, oldest first (run ids start with their UTC start time).
pub fn journals(state_dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let dir = journal_dir(state_dir);
    let mut paths = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
            .collect::<Vec<_>>(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e),
    };
    paths.sort();
    Ok(paths)
}

/// Delete the journals of finished runs but the newest `keep` and those of the runs in `kept` (by run id).
/// Unfinished ones are never deleted (`recover` needs them), nor any this zdd cannot read (a newer format's).
/// Returns how many were deleted.
pub fn prune(state_dir: &Path, keep: usize, kept: &[&str]) -> std::io::Result<usize> {
    let mut finished: Vec<Replay> =
        journals(state_dir)?.iter().filter_map(|path| replay(path).ok()).filter(|r| r.finished).collect();
    // Newest first, by the start the header records: run ids sort by time only to the second.
    finished.sort_by(|a, b| b.header.started_at.cmp(&a.header.started_at).then_with(|| b.path.cmp(&a.path)));
    let mut deleted = 0;
    for old in finished.iter().skip(keep).filter(|r| !kept.contains(&r.header.run_id.as_str())) {
        std::fs::remove_file(&old.path)?;
        deleted += 1;
    }
    Ok(deleted)
}

/// The most recent run that did not finish (zdd killed, machine lost), if any. A staged run is not one: it
/// waits for `zdd promote` or `zdd abort` ([`staged`]).
pub fn unfinished(state_dir: &Path) -> std::io::Result<Option<Replay>> {
    latest(state_dir, |r| !r.finished && !r.staged)
}

/// The staged run (`zdd run --stage`) waiting for `zdd promote` or `zdd abort`, if there is one.
pub fn staged(state_dir: &Path) -> std::io::Result<Option<Replay>> {
    latest(state_dir, |r| r.staged)
}

/// The most recent journal that `wanted`.
fn latest(state_dir: &Path, wanted: impl Fn(&Replay) -> bool) -> std::io::Result<Option<Replay>> {
    for path in journals(state_dir)?.into_iter().rev() {
        match replay(&path) {
            Ok(r) if wanted(&r) => return Ok(Some(r)),
            Ok(_) => {}
            // A journal without even a header: the run died before doing anything.
            Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    fn header(run_id: &str) -> RunHeader {
        RunHeader {
            run_id: run_id.to_owned(),
            plan: "shop".into(),
            mode: RunMode::Deploy,
            target: DeployTarget {
                release: "r1".into(),
                slot: "a".into(),
                live_slot: None,
                live_release: None,
                rollback: false,
            },
            user: "ci".into(),
            host: "box".into(),
            pid: 1,
            started_at: 0,
            steps: vec!["a".into(), "b".into(), "c".into()],
            needs: Vec::new(),
        }
    }

    fn event(journal: &Journal, event: Event) {
        journal.append(&Stamped { at: SystemTime::now(), event }).unwrap();
    }

    fn recorded(facts: UndoFacts) -> RecordedUndo {
        RecordedUndo { kind: "fake".into(), host: None, policy: crate::plan::StepPolicy::default().into(), facts }
    }

    fn finished(step: &str) -> Event {
        Event::StepFinished { step: step.into(), state: StepState::Succeeded, attempts: 1, duration_ms: 1, error: None }
    }

    #[tokio::test]
    async fn replay_orders_undo_running_first_then_reverse_completion() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::new();
        redactor.add("hunter22");
        let j = Journal::create(dir.path(), &header("20261126-000000-aaaa"), redactor).unwrap();
        j.record("a", &recorded(serde_json::json!({"n": 1}))).await.unwrap();
        j.record("b", &recorded(serde_json::json!({"n": 2}))).await.unwrap();
        j.record("c", &recorded(serde_json::json!({"n": 3}))).await.unwrap();
        event(&j, finished("b"));
        event(&j, finished("a"));
        event(&j, Event::StepOutput { step: "c".into(), line: "password hunter22".into() });
        j.record("a", &recorded(serde_json::json!({"n": 11}))).await.unwrap();

        let text = std::fs::read_to_string(j.path().unwrap()).unwrap();
        assert!(!text.contains("hunter22"), "{text}");
        let r = unfinished(dir.path()).unwrap().unwrap();
        assert!(!r.finished);
        assert_eq!(r.header.plan, "shop");
        let order: Vec<(&str, i64)> =
            r.to_undo.iter().map(|(s, f)| (s.as_str(), f.facts["n"].as_i64().unwrap())).collect();
        assert_eq!(order, vec![("c", 3), ("a", 11), ("b", 2)]);
    }

    #[tokio::test]
    async fn recover_undoes_in_the_recorded_graphs_order_not_the_plans() {
        let dir = tempfile::tempdir().unwrap();
        // b and c need a; the run recorded that graph, whatever the plan file says later.
        let mut h = header("20261126-000000-bbbb");
        h.needs = vec![vec![], vec![0], vec![0]];
        let j = Journal::create(dir.path(), &h, Redactor::new()).unwrap();
        for step in ["a", "b", "c"] {
            j.record(step, &recorded(serde_json::json!({ "step": step }))).await.unwrap();
        }
        event(&j, finished("a"));
        event(&j, finished("c"));
        let r = unfinished(dir.path()).unwrap().unwrap();
        let waves = r.undo_waves();
        let names: Vec<Vec<&str>> = waves.iter().map(|w| w.iter().map(|(s, _)| s.as_str()).collect()).collect();
        assert_eq!(names, [vec!["b", "c"], vec!["a"]]);
        // A journal from before the graph was recorded: one step at a time, in replay order.
        h.needs.clear();
        let old = Replay { header: h, ..r };
        assert_eq!(old.undo_waves().len(), 3);
    }

    #[test]
    fn a_secret_that_json_escapes_is_masked_too() {
        let dir = tempfile::tempdir().unwrap();
        let redactor = Redactor::new();
        redactor.add("pa\"ss\\wo\trd");
        let j = Journal::create(dir.path(), &header("r"), redactor).unwrap();
        event(&j, Event::Warning { message: "the password is pa\"ss\\wo\trd".into() });
        let text = std::fs::read_to_string(j.path().unwrap()).unwrap();
        assert!(!text.contains(r#"pa\"ss\\wo\trd"#), "{text}");
        assert!(text.contains("the password is ***"), "{text}");
    }

    #[tokio::test]
    async fn undone_steps_and_finished_runs_are_not_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), &header("20261126-000000-bbbb"), Redactor::new()).unwrap();
        j.record("a", &recorded(serde_json::json!({}))).await.unwrap();
        j.record("b", &recorded(serde_json::json!({}))).await.unwrap();
        event(&j, Event::UndoFinished { step: "b".into(), ok: true, error: None, duration_ms: 1 });
        let r = replay(j.path().unwrap()).unwrap();
        assert_eq!(r.to_undo.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), vec!["a"]);
        event(&j, Event::RunFinished { outcome: Outcome::RolledBack, duration_ms: 1, summary: vec![] });
        assert!(unfinished(dir.path()).unwrap().is_none());
    }

    #[test]
    fn the_first_cutover_of_a_run_is_replayed() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), &header("20261126-000000-cccc"), Redactor::new()).unwrap();
        assert_eq!(replay(j.path().unwrap()).unwrap().cut_over, None);
        event(&j, Event::CutOver { step: "switch".into(), release: "r1".into() });
        event(&j, Event::CutOver { step: "switch-2".into(), release: "r1".into() });
        assert_eq!(replay(j.path().unwrap()).unwrap().cut_over.as_deref(), Some("switch"));
    }

    #[test]
    fn prune_keeps_the_newest_finished_the_named_and_every_unfinished_journal() {
        let dir = tempfile::tempdir().unwrap();
        for (id, finished) in [("r1", false), ("r2", true), ("r3", true), ("r4", true)] {
            let j = Journal::create(dir.path(), &header(id), Redactor::new()).unwrap();
            if finished {
                event(&j, Event::RunFinished { outcome: Outcome::Deployed, duration_ms: 1, summary: vec![] });
            }
        }
        let left = || -> Vec<String> {
            journals(dir.path())
                .unwrap()
                .iter()
                .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(prune(dir.path(), 3, &[]).unwrap(), 0, "three finished runs: none to delete");
        assert_eq!(prune(dir.path(), 1, &["r2"]).unwrap(), 1, "r2 deployed a release still kept");
        assert_eq!(left(), ["r1", "r2", "r4"]);
        assert_eq!(prune(dir.path(), 1, &[]).unwrap(), 1);
        assert_eq!(left(), ["r1", "r4"]);
    }

    #[test]
    fn prune_orders_runs_by_their_start_not_their_id() {
        let dir = tempfile::tempdir().unwrap();
        // Two runs in the same second: the later one's random suffix sorts first.
        for (id, started_at) in [("20261126-000000-ffff", 1), ("20261126-000000-0000", 2)] {
            let j = Journal::create(dir.path(), &RunHeader { started_at, ..header(id) }, Redactor::new()).unwrap();
            event(&j, Event::RunFinished { outcome: Outcome::Deployed, duration_ms: 1, summary: vec![] });
        }
        assert_eq!(prune(dir.path(), 1, &[]).unwrap(), 1);
        let left = journals(dir.path()).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(replay(&left[0]).unwrap().header.started_at, 2);
    }

    #[tokio::test]
    async fn an_incomplete_rollback_stays_unfinished_until_recover_completes_it() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), &header("r"), Redactor::new()).unwrap();
        j.record("a", &recorded(serde_json::json!({}))).await.unwrap();
        j.record("b", &recorded(serde_json::json!({}))).await.unwrap();
        event(&j, Event::UndoFinished { step: "b".into(), ok: true, error: None, duration_ms: 1 });
        event(&j, Event::UndoFinished { step: "a".into(), ok: false, error: Some("no".into()), duration_ms: 1 });
        event(&j, Event::RunFinished { outcome: Outcome::RollbackIncomplete, duration_ms: 1, summary: vec![] });
        let r = unfinished(dir.path()).unwrap().expect("an incomplete rollback needs recover");
        assert_eq!(r.to_undo.iter().map(|(s, _)| s.as_str()).collect::<Vec<_>>(), ["a"]);
        event(&j, Event::UndoFinished { step: "a".into(), ok: true, error: None, duration_ms: 1 });
        event(&j, Event::RunFinished { outcome: Outcome::RolledBack, duration_ms: 1, summary: vec![] });
        assert!(unfinished(dir.path()).unwrap().is_none());
    }

    #[test]
    fn the_header_carries_the_format_and_a_newer_one_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), &header("r"), Redactor::new()).unwrap();
        let path = j.path().unwrap().to_path_buf();
        drop(j);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(Stamp::of(text.lines().next().unwrap()), Some(Stamp::current()));
        assert_eq!(replay(&path).unwrap().header, header("r"));

        std::fs::write(&path, text.replacen(&format!("\"format\":{}", format::CURRENT), "\"format\":99", 1)).unwrap();
        let err = replay(&path).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::Unsupported, "{err}");
        assert!(err.to_string().contains("is in state format 99"), "{err}");
        assert!(unfinished(dir.path()).is_err(), "a newer journal is not taken for a finished or an empty one");
        assert_eq!(prune(dir.path(), 0, &[]).unwrap(), 0, "nor deleted");
    }

    #[test]
    fn a_cut_last_line_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::create(dir.path(), &header("r"), Redactor::new()).unwrap();
        let path = j.path().unwrap().to_path_buf();
        drop(j);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"event\":\"undo-fa").unwrap();
        let r = replay(&path).unwrap();
        assert!(r.to_undo.is_empty());
        assert!(!r.finished);
    }
}
