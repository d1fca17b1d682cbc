//! Content fingerprints of a step's inputs, recorded in each release, so that a step whose inputs are byte for
//! byte the live release's can say so and reuse what the live release's step produced: skip by content, never
//! by guess.
//!
//! The fingerprint is computed on the host by [`PRELUDE`], a Python helper run with the release's interpreter and
//! Django's settings imported but not set up: no app is loaded and no model imported, which is the Django start a
//! skip saves. What goes in is each kind's to say (`migrate`: the migration files of every app, the settings
//! that choose them and the database alias; `collectstatic`: the static sources, the storage settings and the
//! installed packages); the release's own path is written `<release>` so that the same project in another
//! release hashes the same. Anything the helper cannot read (a module it cannot find) makes the fingerprint
//! `None`: the step then runs in full.

use std::path::Path;

use serde::de::DeserializeOwned;
use zdd_engine::host::Host;

/// Python helpers shared by the fingerprint scripts: `Fingerprint` collects named inputs and hashes them.
pub const PRELUDE: &str = r#"
import hashlib, importlib.util, json, os, sys
RELEASE = os.path.realpath(os.getcwd())
# Never inputs: version control, bytecode, the frontend toolchain's own tree.
SKIP_DIRS = {".git", ".hg", "__pycache__", "node_modules"}

class Unreadable(Exception):
    pass

class Fingerprint:
    def __init__(self):
        self.h = hashlib.sha256()
        self.files = 0

    def value(self, name, value):
        """A settings value, with the release's path written <release>."""
        text = json.dumps(value, default=str, sort_keys=True)
        text = text.replace(RELEASE, "<release>").replace(os.getcwd(), "<release>")
        self.h.update(("value %s %s\n" % (name, text)).encode())

    def file(self, label, path):
        with open(path, "rb") as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        self.h.update(("file %s %s\n" % (label, digest)).encode())
        self.files += 1

    def tree(self, name, top, marker=None, suffix=None, exclude=()):
        """Every file under `top` (in a directory named `marker`, at any depth below it, when given), by path
        relative to `top` and content; symlinked directories are not followed (shared media)."""
        top = os.path.realpath(top)
        exclude = {os.path.realpath(e) for e in exclude}
        self.h.update(("tree %s\n" % name).encode())
        if not os.path.isdir(top):
            return
        for folder, dirs, files in os.walk(top):
            dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS and os.path.join(folder, d) not in exclude)
            rel = os.path.relpath(folder, top)
            if marker is not None and marker not in rel.split(os.sep):
                continue
            for f in sorted(files):
                if suffix is None or f.endswith(suffix):
                    self.file(os.path.join(rel, f), os.path.join(folder, f))

    def module(self, dotted):
        """The source of the module `dotted` names (a class's module for `a.b.Class`), found without importing
        Django's apps; a module that cannot be found makes the fingerprint unreadable."""
        parts = dotted.split(".")
        for end in range(len(parts), 0, -1):
            try:
                spec = importlib.util.find_spec(".".join(parts[:end]))
            except (ImportError, ValueError):
                spec = None
            if spec is not None and spec.origin and os.path.isfile(spec.origin):
                self.file("module " + ".".join(parts[:end]), spec.origin)
                return
        raise Unreadable(dotted)

    def hexdigest(self):
        return self.h.hexdigest()

def fingerprint_or_none(build):
    try:
        return build()
    except (Unreadable, OSError):
        return None
"#;

/// Read a JSON record a step wrote into a release (`None`: absent, or written by an older zdd in another shape —
/// either way nothing to compare with, so the step runs in full).
pub async fn read_record<T: DeserializeOwned>(host: &dyn Host, path: &Path) -> Option<T> {
    let bytes = host.read_file(path).await.ok()??;
    serde_json::from_slice(&bytes).ok()
}

/// Why a step does not skip, or `None` when the live release's recorded fingerprint is this one.
pub fn mismatch(live: Option<&str>, new: Option<&str>) -> Option<&'static str> {
    match (live, new) {
        (None, _) => Some("the live release recorded no fingerprint"),
        (_, None) => Some("an input could not be read"),
        (Some(a), Some(b)) if a != b => Some("its inputs changed"),
        _ => None,
    }
}

/// The first characters of a fingerprint, for messages.
pub fn short(fingerprint: &str) -> &str {
    fingerprint.get(..12).unwrap_or(fingerprint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fingerprint of the migration files under `release`, computed by [`PRELUDE`] with the system Python.
    fn migrations_fingerprint(release: &Path) -> String {
        let script = format!(
            "{PRELUDE}\nfp = Fingerprint()\nfp.value('STATIC_ROOT', RELEASE + '/staticfiles')\n\
             fp.tree('migrations', RELEASE, marker='migrations', suffix='.py')\nprint(fp.hexdigest())"
        );
        let out = std::process::Command::new("python3").args(["-c", &script]).current_dir(release).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    #[test]
    fn the_fingerprint_follows_the_migration_files_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let write = |release: &str, file: &str, text: &str| {
            let path = dir.path().join(release).join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        };
        for release in ["r1", "r2"] {
            write(release, "catalog/migrations/0001_initial.py", "ops = []\n");
            write(release, "venv/lib/site-packages/django/contrib/auth/migrations/0001_initial.py", "ops = [1]\n");
            write(release, "catalog/views.py", "v = 1\n");
        }
        let (r1, r2) = (dir.path().join("r1"), dir.path().join("r2"));
        let base = migrations_fingerprint(&r1);
        // The same project in another release (its own path in the settings): the same fingerprint.
        assert_eq!(migrations_fingerprint(&r2), base);
        // Not inputs: code outside migrations, bytecode, a non-Python file next to the migrations.
        write("r2", "catalog/views.py", "v = 2\n");
        write("r2", "catalog/migrations/__pycache__/0001_initial.cpython-311.pyc", "x");
        write("r2", "catalog/migrations/README.txt", "notes");
        assert_eq!(migrations_fingerprint(&r2), base);
        // Inputs: a migration's content, a new migration, an installed package's migration.
        write("r2", "catalog/migrations/0001_initial.py", "ops = ['changed']\n");
        let changed = migrations_fingerprint(&r2);
        assert_ne!(changed, base);
        write("r1", "catalog/migrations/0002_more.py", "ops = []\n");
        assert_ne!(migrations_fingerprint(&r1), base);
        write("r2", "catalog/migrations/0001_initial.py", "ops = []\n");
        assert_eq!(migrations_fingerprint(&r2), base);
        write("r2", "venv/lib/site-packages/django/contrib/auth/migrations/0001_initial.py", "ops = [2]\n");
        assert_ne!(migrations_fingerprint(&r2), base);
    }

    #[test]
    fn only_an_equal_recorded_fingerprint_skips() {
        assert_eq!(mismatch(Some("ab"), Some("ab")), None);
        assert!(mismatch(Some("ab"), Some("cd")).is_some());
        assert!(mismatch(None, Some("ab")).is_some());
        assert!(mismatch(Some("ab"), None).is_some());
        assert_eq!(short("0123456789abcdef"), "0123456789ab");
    }
}
