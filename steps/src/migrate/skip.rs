//! Skipping `migrate` by content. After each full run the step records in the release, per database alias, a
//! fingerprint of what decides which migrations exist — every `.py` file in a directory named `migrations` in
//! the release (the project's apps and, through the venv inside it, every installed package's), the
//! `INSTALLED_APPS`, `MIGRATION_MODULES` (and those modules' files) and the alias's database (engine, name, host,
//! port, user; never the password) — and the migrations `django_migrations` then listed as applied.
//!
//! The next deploy computes the same fingerprint with Django's settings imported but not set up. When it is the
//! live release's, one query checks that every migration the live release recorded is still applied (a
//! database restored from an older backup is not): then no migration can be unapplied, and the gate, the
//! inspection and `migrate` itself are skipped. Anything else runs the full step, and says why.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::{mismatch, short};

/// Run after [`crate::fingerprint::PRELUDE`] with the alias as argument; prints one marked JSON line.
pub const SCRIPT: &str = r#"
alias = sys.argv[1]
from django.conf import settings

def build():
    fp = Fingerprint()
    fp.value("alias", alias)
    fp.value("INSTALLED_APPS", list(settings.INSTALLED_APPS))
    modules = dict(getattr(settings, "MIGRATION_MODULES", None) or {})
    fp.value("MIGRATION_MODULES", modules)
    db = settings.DATABASES.get(alias, {})
    fp.value("database", {k: db.get(k) for k in ("ENGINE", "NAME", "HOST", "PORT", "USER")})
    fp.tree("migrations", RELEASE, marker="migrations", suffix=".py")
    for label, module in sorted((k, v) for k, v in modules.items() if v):
        spec = importlib.util.find_spec(module)
        if spec is None or not spec.submodule_search_locations:
            raise Unreadable(module)
        for location in spec.submodule_search_locations:
            fp.tree("MIGRATION_MODULES " + label, location, suffix=".py")
    return fp.hexdigest()

fingerprint = fingerprint_or_none(build)
import warnings
# The one query is the point: Django's warning about queries before the apps are loaded is for app code.
warnings.filterwarnings("ignore", message="Accessing the database during app initialization")
from django.db import connections
connection = connections[alias]
applied = []
with connection.cursor() as cursor:
    if "django_migrations" in connection.introspection.table_names(cursor):
        cursor.execute("SELECT app, name FROM django_migrations")
        applied = sorted([app, name] for app, name in cursor.fetchall())
print("ZDD-MIGRATE-FP " + json.dumps({"fingerprint": fingerprint, "applied": applied}))
"#;

const MARKER: &str = "ZDD-MIGRATE-FP ";

/// What a release's migrate step recorded (and what the check reads now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// `None`: an input could not be read (such a record never lets a later deploy skip).
    pub fingerprint: Option<String>,
    /// `(app, name)` of every row of `django_migrations`.
    pub applied: Vec<(String, String)>,
}

/// The file in a release that holds its [`Record`] for `alias`.
pub fn record_file(release_dir: &Path, alias: &str) -> PathBuf {
    let safe: String = alias.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '-' }).collect();
    release_dir.join(format!(".zdd-migrate-{safe}.json"))
}

/// The script's [`Record`] from its output.
pub fn parse(stdout: &str) -> Result<Record, String> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| "the fingerprint check printed no result".to_owned())?;
    serde_json::from_str(line).map_err(|e| format!("the fingerprint check's result: {e}"))
}

/// Whether this deploy's migrate step may skip.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Same inputs as the live release, and all the migrations it applied are still applied.
    Skip { fingerprint: String, applied: usize },
    /// Run the full step, and why.
    Run(String),
}

/// Compare what the live release recorded with what the check read now.
pub fn verdict(live: &Record, now: &Record) -> Verdict {
    if let Some(why) = mismatch(live.fingerprint.as_deref(), now.fingerprint.as_deref()) {
        return Verdict::Run(why.to_owned());
    }
    let applied: HashSet<&(String, String)> = now.applied.iter().collect();
    let missing: Vec<String> =
        live.applied.iter().filter(|m| !applied.contains(m)).map(|(app, name)| format!("{app}.{name}")).collect();
    if missing.is_empty() {
        Verdict::Skip {
            fingerprint: short(now.fingerprint.as_deref().unwrap_or_default()).to_owned(),
            applied: live.applied.len(),
        }
    } else {
        let shown = missing.iter().take(3).cloned().collect::<Vec<_>>().join(", ");
        Verdict::Run(format!(
            "{} migration(s) the live release had applied are not in django_migrations now ({shown}{})",
            missing.len(),
            if missing.len() > 3 { ", ..." } else { "" }
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fingerprint: &str, applied: &[(&str, &str)]) -> Record {
        Record {
            fingerprint: Some(fingerprint.into()),
            applied: applied.iter().map(|(a, n)| ((*a).to_owned(), (*n).to_owned())).collect(),
        }
    }

    #[test]
    fn skips_only_when_the_inputs_match_and_nothing_was_unapplied() {
        let live = record("abc", &[("catalog", "0001_initial")]);
        let more = record("abc", &[("catalog", "0001_initial"), ("contenttypes", "0001_initial")]);
        assert_eq!(verdict(&live, &more), Verdict::Skip { fingerprint: "abc".into(), applied: 1 });
        let Verdict::Run(why) = verdict(&live, &record("abd", &[("catalog", "0001_initial")])) else { panic!() };
        assert_eq!(why, "its inputs changed");
        // The database went back to before the live release's migrations: the full step applies them again.
        let Verdict::Run(why) = verdict(&live, &record("abc", &[])) else { panic!() };
        assert!(why.contains("catalog.0001_initial"), "{why}");
        let unreadable = Record { fingerprint: None, applied: vec![] };
        assert!(matches!(verdict(&unreadable, &unreadable), Verdict::Run(_)));
    }

    #[test]
    fn reads_the_scripts_line_and_names_the_file_per_alias() {
        let out = "noise\nZDD-MIGRATE-FP {\"fingerprint\": \"ff\", \"applied\": [[\"catalog\", \"0001_initial\"]]}\n";
        assert_eq!(parse(out).unwrap(), record("ff", &[("catalog", "0001_initial")]));
        assert!(parse("Traceback").is_err());
        assert_eq!(record_file(Path::new("/r"), "default"), PathBuf::from("/r/.zdd-migrate-default.json"));
        assert_eq!(record_file(Path::new("/r"), "../x"), PathBuf::from("/r/.zdd-migrate----x.json"));
    }
}
