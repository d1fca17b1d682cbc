//! Each release's own copy of the plan's environment file. The `release` step (with `env-file`) writes the file's
//! bytes to `<release>/.zdd-env` and its key names, each with a hash of its value, to `<release>/.zdd-env.json`,
//! both mode 600. Everything that runs a release's code (service instances, units, workers, `manage.py` steps)
//! reads [`for_release`]: the release's snapshot when it has one of that file, so a later edit of the shared file
//! changes neither a running release nor one rolled back to.
//!
//! Values are never printed or recorded: the next deploy compares hashes. A hash of a low-entropy value (`DEBUG=1`)
//! can be guessed by trying values, so the record stays mode 600 under the root-owned release, as the journal does.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zdd_engine::host::Host;
use zdd_engine::kind::StepError;

/// The snapshot of the env file, in the release directory.
pub const SNAPSHOT: &str = ".zdd-env";
/// The snapshot's key names and value hashes ([`EnvRecord`]), in the release directory.
pub const RECORD: &str = ".zdd-env.json";

/// What a release records of its environment: the shared file it was taken from, and each key with a hash of its
/// value. Also the `release` step's undo facts' `env`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvRecord {
    pub source: PathBuf,
    pub keys: BTreeMap<String, String>,
}

impl EnvRecord {
    /// The record of `vars` read from `source`: values replaced by their [`hash`].
    pub fn of(source: &Path, vars: &BTreeMap<String, String>) -> Self {
        Self { source: source.to_path_buf(), keys: vars.iter().map(|(k, v)| (k.clone(), hash(v))).collect() }
    }
}

/// The first 16 hex digits of the value's SHA-256: enough to tell a changed value, short in a record.
pub fn hash(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    digest.iter().take(8).fold(String::with_capacity(16), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Which keys a new environment adds, removes and changes against the live release's, by name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct KeyDiff {
    pub added: Vec<String>,
    pub removed: Vec<String>,
    pub changed: Vec<String>,
}

/// Compare two records' keys and hashes.
pub fn diff(live: &BTreeMap<String, String>, new: &BTreeMap<String, String>) -> KeyDiff {
    let mut d = KeyDiff::default();
    for (key, value) in new {
        match live.get(key) {
            None => d.added.push(key.clone()),
            Some(old) if old != value => d.changed.push(key.clone()),
            Some(_) => {}
        }
    }
    d.removed = live.keys().filter(|k| !new.contains_key(*k)).cloned().collect();
    d
}

impl KeyDiff {
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }

    /// `added A, B; removed C; changed D (values hidden)`, or `no key added, removed or changed`.
    pub fn describe(&self) -> String {
        if self.is_empty() {
            return "no key added, removed or changed".to_owned();
        }
        let parts: Vec<String> = [("added", &self.added), ("removed", &self.removed), ("changed", &self.changed)]
            .into_iter()
            .filter(|(_, keys)| !keys.is_empty())
            .map(|(what, keys)| format!("{what} {}", keys.join(", ")))
            .collect();
        format!("{} (values hidden)", parts.join("; "))
    }

    /// The removed keys the plan does not allow (`allow-removed-keys`; `*` allows any).
    pub fn refused(&self, allowed: &BTreeSet<String>) -> Vec<String> {
        if allowed.contains("*") {
            return vec![];
        }
        self.removed.iter().filter(|k| !allowed.contains(*k)).cloned().collect()
    }
}

/// The message and hint of a refused removal, shared by the preflight finding and the step's error.
pub fn refusal(keys: &[String], live_release: &str) -> (String, String) {
    (
        format!(
            "the env file no longer has {} that the live release {live_release} runs with",
            keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
        ),
        format!(
            "the old code may still read it while both releases run: keep the key for this release and remove it in \
             a later one, or allow it with `allow-removed-keys {}` on the release step",
            keys.iter().map(|k| format!("\"{k}\"")).collect::<Vec<_>>().join(" ")
        ),
    )
}

/// A release's record of its environment, if it has one (releases from before snapshots, or of a plan without
/// `env-file` on its release step, do not). An unreadable record counts as none.
pub async fn read_record(host: &dyn Host, release_dir: &Path) -> Result<Option<EnvRecord>, StepError> {
    let Some(bytes) = host.read_file(&release_dir.join(RECORD)).await? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice(&bytes).ok())
}

/// The env file a release's processes read instead of `shared`: the release's snapshot when the release took one
/// of that same file, else `shared` itself (an older release, or a plan whose release step snapshots nothing).
pub async fn for_release(
    host: &dyn Host,
    release_dir: &Path,
    shared: Option<&Path>,
) -> Result<Option<PathBuf>, StepError> {
    let Some(shared) = shared else {
        return Ok(None);
    };
    Ok(Some(match read_record(host, release_dir).await? {
        Some(record) if record.source == shared => release_dir.join(SNAPSHOT),
        _ => shared.to_path_buf(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), hash(v))).collect()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_hash_is_short_stable_and_hides_the_value() {
        assert_eq!(hash("1"), "6b86b273ff34fce1");
        assert_eq!(hash("1").len(), 16);
        assert_ne!(hash("1"), hash("2"));
    }

    #[test]
    fn diff_names_added_removed_and_changed_keys() {
        let live = keys(&[("FOO", "1"), ("OLD", "x"), ("SAME", "s")]);
        let new = keys(&[("FOO", "2"), ("NEW", "y"), ("SAME", "s")]);
        let d = diff(&live, &new);
        assert_eq!(d, KeyDiff { added: names(&["NEW"]), removed: names(&["OLD"]), changed: names(&["FOO"]) });
        assert_eq!(d.describe(), "added NEW; removed OLD; changed FOO (values hidden)");
        assert_eq!(diff(&live, &live).describe(), "no key added, removed or changed");
    }

    #[test]
    fn a_removed_key_is_refused_unless_allowed_by_name_or_star() {
        let d = diff(&keys(&[("A", "1"), ("B", "2"), ("C", "3")]), &keys(&[("C", "3")]));
        assert_eq!(d.refused(&BTreeSet::new()), names(&["A", "B"]));
        assert_eq!(d.refused(&BTreeSet::from(["A".to_owned()])), names(&["B"]));
        assert!(d.refused(&BTreeSet::from(["*".to_owned()])).is_empty());
        let (message, help) = refusal(&names(&["A", "B"]), "r1");
        assert_eq!(message, "the env file no longer has `A`, `B` that the live release r1 runs with");
        assert!(help.contains("allow-removed-keys \"A\" \"B\""), "{help}");
    }

    #[test]
    fn adding_or_changing_is_never_refused() {
        let d = diff(&keys(&[("A", "1")]), &keys(&[("A", "2"), ("B", "3")]));
        assert!(d.refused(&BTreeSet::new()).is_empty());
    }

    #[tokio::test]
    async fn a_release_reads_its_own_snapshot_of_the_same_file_only() {
        let dir = tempfile::tempdir().unwrap();
        let host = zdd_engine::host::LocalHost::new();
        let shared = Path::new("/etc/shop/shop.env");
        assert_eq!(for_release(&host, dir.path(), None).await.unwrap(), None);
        assert_eq!(for_release(&host, dir.path(), Some(shared)).await.unwrap().as_deref(), Some(shared));
        let record = EnvRecord::of(shared, &BTreeMap::from([("FOO".to_owned(), "1".to_owned())]));
        std::fs::write(dir.path().join(RECORD), serde_json::to_vec(&record).unwrap()).unwrap();
        let snapshot = dir.path().join(SNAPSHOT);
        assert_eq!(for_release(&host, dir.path(), Some(shared)).await.unwrap(), Some(snapshot));
        let other = Path::new("/etc/other.env");
        assert_eq!(for_release(&host, dir.path(), Some(other)).await.unwrap().as_deref(), Some(other));
    }
}
