//! What a project's settings say that decides whether a deploy works (`STATIC_URL`, `STATIC_ROOT`, the static
//! storage, the database, `DEBUG`, `SECRET_KEY`, `ALLOWED_HOSTS`), and the warnings `zdd init` prints about them.
//!
//! Django is asked first, as the collectstatic kind asks it at deploy time: a Python that imports Django (the
//! project's own venv, else `python3`) imports the settings and prints the effective values. That fails when the
//! project's dependencies are not installed here, or its settings need secrets from the environment: then the
//! settings files' text is read instead (the module and the `from .base import *` it builds on), which sees
//! literal assignments only. The report says which way the values were found.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::module_file;

/// How long importing the settings may take (a settings module that connects somewhere could hang).
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Printed by [`PROBE`] before its JSON line.
const MARKER: &str = "ZDD-SETTINGS ";

/// Run with `python -c`, `DJANGO_SETTINGS_MODULE` set, in the directory of `manage.py`: imports the settings
/// (no `django.setup()`: the apps are not needed, and may not import here) and prints the effective values.
const PROBE: &str = r#"
import json, os
from django.conf import settings
def get(name, default=None):
    try:
        return getattr(settings, name)
    except Exception:
        return default
db = (get("DATABASES") or {}).get("default", {})
storages = get("STORAGES") or {}
storage = storages.get("staticfiles", {}).get("BACKEND") or get("STATICFILES_STORAGE") or ""
root = get("STATIC_ROOT")
hosts = get("ALLOWED_HOSTS")
print("ZDD-SETTINGS " + json.dumps({
    "static_url": get("STATIC_URL"),
    "static_root": os.fspath(root) if root else None,
    "storage": storage,
    "db_engine": db.get("ENGINE"),
    "db_name": os.fspath(db["NAME"]) if db.get("NAME") else None,
    "debug": bool(get("DEBUG")),
    "secret_key_insecure": str(get("SECRET_KEY", "")).startswith("django-insecure-"),
    "secret_key_set": bool(get("SECRET_KEY", "")),
    "allowed_hosts": list(hosts) if hosts is not None else None,
}))
"#;

/// Where the values came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FoundBy {
    /// Django imported the settings with this interpreter.
    Django { python: PathBuf },
    /// Read from these files' text, because Django could not be asked (`why`).
    SettingsText { files: Vec<PathBuf>, why: String },
}

/// What the chosen settings module says. `None`: not found (not set, or not a literal the text reading sees).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SettingsFacts {
    pub static_url: Option<String>,
    pub static_root: Option<String>,
    pub storage: Option<String>,
    pub db_engine: Option<String>,
    /// The database's `NAME`: a path for SQLite (from the text: the expression as written).
    pub db_name: Option<String>,
    pub debug: Option<bool>,
    pub secret_key_insecure: bool,
    /// Whether the files assign `SECRET_KEY` at all (from Django: always).
    pub secret_key_set: bool,
    pub allowed_hosts: Option<Vec<String>>,
    /// A `local` settings module the settings import when it exists (`try: from .local import *`, as
    /// `wagtail start` writes it), as a path relative to the directory of `manage.py`.
    pub local_module: Option<PathBuf>,
}

/// Ask Django, else read the text: the facts and how they were found.
pub(crate) fn gather(root: &Path, app_dir: &Path, settings: &str) -> (SettingsFacts, FoundBy) {
    // Django does not tell which optional modules the settings tried: the text does, either way.
    let local_module = module_file(app_dir, settings)
        .and_then(|file| fs::read_to_string(&file).ok().and_then(|src| local_import(&file, settings, &src)));
    // Said about the first interpreter tried: the project's own venv, when it has one, tells the most.
    let mut why = None;
    for python in &python_candidates(root, app_dir) {
        match ask_django(python, app_dir, settings) {
            Ok(facts) => return (SettingsFacts { local_module, ..facts }, FoundBy::Django { python: python.clone() }),
            Err(e) => {
                why.get_or_insert_with(|| format!("{} could not import the settings: {e}", python.display()));
            }
        }
    }
    let why = why.unwrap_or_else(|| "no Python was found".to_owned());
    let (facts, files) = read_text(app_dir, settings);
    (SettingsFacts { local_module, ..facts }, FoundBy::SettingsText { files, why })
}

/// The project's own venv first (where its dependencies are), then the active one, then `python3`.
fn python_candidates(root: &Path, app_dir: &Path) -> Vec<PathBuf> {
    let mut found: Vec<PathBuf> = [app_dir, root]
        .iter()
        .flat_map(|dir| [".venv", "venv", "env"].map(|v| dir.join(v).join("bin/python")))
        .chain(std::env::var_os("VIRTUAL_ENV").map(|v| PathBuf::from(v).join("bin/python")))
        .filter(|p| p.is_file())
        .collect();
    found.dedup();
    found.push(PathBuf::from("python3"));
    found
}

fn ask_django(python: &Path, app_dir: &Path, settings: &str) -> Result<SettingsFacts, String> {
    let child = Command::new(python)
        .args(["-c", PROBE])
        .current_dir(app_dir)
        .env("DJANGO_SETTINGS_MODULE", settings)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run it: {e}"))?;
    let out = wait_with_timeout(child)?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let Some(line) = stdout.lines().rev().find_map(|l| l.strip_prefix(MARKER)) else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("it printed nothing");
        return Err(last.trim().to_owned());
    };
    let v: serde_json::Value = serde_json::from_str(line).map_err(|e| format!("unreadable answer: {e}"))?;
    let text = |key: &str| v.get(key).and_then(serde_json::Value::as_str).map(str::to_owned);
    Ok(SettingsFacts {
        static_url: text("static_url"),
        static_root: text("static_root"),
        storage: text("storage").filter(|s| !s.is_empty()),
        db_engine: text("db_engine"),
        db_name: text("db_name"),
        debug: v.get("debug").and_then(serde_json::Value::as_bool),
        secret_key_insecure: v.get("secret_key_insecure").and_then(serde_json::Value::as_bool).unwrap_or(false),
        secret_key_set: v.get("secret_key_set").and_then(serde_json::Value::as_bool).unwrap_or(true),
        local_module: None,
        allowed_hosts: v
            .get("allowed_hosts")
            .and_then(serde_json::Value::as_array)
            .map(|hosts| hosts.iter().filter_map(serde_json::Value::as_str).map(str::to_owned).collect()),
    })
}

fn wait_with_timeout(mut child: std::process::Child) -> Result<std::process::Output, String> {
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => return child.wait_with_output().map_err(|e| e.to_string()),
            Ok(None) if start.elapsed() > PROBE_TIMEOUT => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("importing the settings took over {}s", PROBE_TIMEOUT.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// The settings module's text and the modules it star-imports (`from .base import *`), read in the order
/// Python runs them; later literal assignments win, as they do in Python.
fn read_text(app_dir: &Path, settings: &str) -> (SettingsFacts, Vec<PathBuf>) {
    let mut files = Vec::new();
    collect_files(app_dir, settings, &mut files, 0);
    // Django's defaults, for what the files do not assign.
    let mut facts = SettingsFacts { allowed_hosts: Some(vec![]), debug: Some(false), ..SettingsFacts::default() };
    for file in &files {
        if let Ok(src) = fs::read_to_string(file) {
            apply(&mut facts, &src);
        }
    }
    (facts, files)
}

fn collect_files(app_dir: &Path, module: &str, files: &mut Vec<PathBuf>, depth: usize) {
    let Some(file) = module_file(app_dir, module) else { return };
    if depth > 4 || files.contains(&file) {
        return;
    }
    let src = fs::read_to_string(&file).unwrap_or_default();
    let package = module_package(&file, module);
    for line in src.lines() {
        // Indented star imports are conditional (`try: from .local import *`): not read, reported.
        let Some(from) = line.strip_prefix("from ").and_then(|l| l.strip_suffix(" import *")) else { continue };
        let target = match from.strip_prefix('.') {
            Some(rest) if !rest.starts_with('.') && !package.is_empty() => format!("{package}.{rest}"),
            Some(_) => continue,
            None => from.to_owned(),
        };
        collect_files(app_dir, target.trim(), files, depth + 1);
    }
    files.push(file);
}

/// The package relative imports in `module` (in `file`) are resolved against.
fn module_package<'a>(file: &Path, module: &'a str) -> &'a str {
    if file.ends_with("__init__.py") { module } else { module.rsplit_once('.').map_or("", |p| p.0) }
}

/// The `local` module a settings file star-imports inside a `try:` (`from .local import *`), if any.
fn local_import(file: &Path, module: &str, src: &str) -> Option<PathBuf> {
    let package = module_package(file, module);
    src.lines().filter(|l| l.starts_with(char::is_whitespace)).find_map(|line| {
        let from = line.trim().strip_prefix("from ")?.strip_suffix(" import *")?;
        let name = from.strip_prefix('.').filter(|n| n.contains("local"))?;
        let module: PathBuf = format!("{package}.{name}").split('.').collect();
        (!package.is_empty()).then(|| module.with_extension("py"))
    })
}

/// The effect of one file's top-level literal assignments on `facts`.
fn apply(facts: &mut SettingsFacts, src: &str) {
    for (name, value) in assignments(src) {
        match name.as_str() {
            "STATIC_URL" => facts.static_url = literal(&value),
            "STATIC_ROOT" => facts.static_root = (value.trim() != "None").then(|| value.trim().to_owned()),
            "DEBUG" => facts.debug = bool_literal(&value),
            "SECRET_KEY" => {
                facts.secret_key_set = true;
                facts.secret_key_insecure = literal(&value).is_some_and(|k| k.starts_with("django-insecure-"));
            }
            "ALLOWED_HOSTS" => facts.allowed_hosts = list_literal(&value),
            "STATICFILES_STORAGE" => facts.storage = literal(&value),
            "STORAGES" => {
                if let Some(backend) = after_key(&value, "staticfiles").and_then(|rest| dict_value(rest, "BACKEND")) {
                    facts.storage = literal(&backend);
                }
            }
            n if n.replace('\'', "\"") == r#"STORAGES["staticfiles"]["BACKEND"]"# => facts.storage = literal(&value),
            "DATABASES" => {
                let default = after_key(&value, "default").unwrap_or(&value);
                facts.db_engine = dict_value(default, "ENGINE").and_then(|e| literal(&e));
                facts.db_name = dict_value(default, "NAME").map(|n| n.trim().to_owned());
            }
            _ => {}
        }
    }
}

/// `NAME = value` at the start of a line, the value running on while brackets are open.
fn assignments(src: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    let mut lines = src.lines();
    while let Some(line) = lines.next() {
        if line.starts_with(|c: char| c.is_whitespace() || c == '#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else { continue };
        let name = name.trim();
        if value.starts_with('=') || name.is_empty() || !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        let mut value = value.to_owned();
        while depth(&value) > 0 {
            let Some(more) = lines.next() else { break };
            value.push('\n');
            value.push_str(more);
        }
        found.push((name.to_owned(), value));
    }
    found
}

/// Open brackets in `text`, quotes and comments aside.
fn depth(text: &str) -> i32 {
    let mut depth = 0;
    let mut quote = None;
    for line in text.lines() {
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (None, '"' | '\'') => quote = Some(c),
                (None, '#') => break,
                (None, '(' | '[' | '{') => depth += 1,
                (None, ')' | ']' | '}') => depth -= 1,
                _ => {}
            }
        }
        quote = None;
    }
    depth
}

/// The string of a value that is one string literal (`'static/'`, `"/static/"`).
fn literal(value: &str) -> Option<String> {
    let value = value.trim();
    let value = value.strip_prefix(['r', 'R']).unwrap_or(value);
    let quote = value.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let inner = &value[1..];
    let end = inner.find(quote)?;
    inner[end + 1..].trim().trim_start_matches(',').trim().is_empty().then(|| inner[..end].to_owned())
}

fn bool_literal(value: &str) -> Option<bool> {
    match value.split('#').next().unwrap_or_default().trim() {
        "True" => Some(true),
        "False" => Some(false),
        _ => None,
    }
}

/// `[]`, `["a", 'b']`: the strings; anything else (a call, a comprehension) is not known from the text.
fn list_literal(value: &str) -> Option<Vec<String>> {
    let inner = value.split('#').next()?.trim().strip_prefix('[')?.strip_suffix(']')?;
    inner.split(',').map(str::trim).filter(|s| !s.is_empty()).map(literal).collect()
}

/// The text after the dict key `key` (`"key":`), quoted either way.
fn after_key<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    [format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .filter_map(|k| text.find(k.as_str()).map(|at| at + k.len()))
        .min()
        .map(|at| text[at..].trim_start().trim_start_matches(':'))
}

/// The value after the first `key:` in `text`, up to the end of its line (without a trailing comma).
fn dict_value(text: &str, key: &str) -> Option<String> {
    let rest = after_key(text, key)?;
    let line = rest.lines().next()?.trim();
    Some(line.strip_suffix(',').unwrap_or(line).trim().to_owned())
}

impl SettingsFacts {
    /// An SQLite database file inside the project, as a path relative to it (`db.sqlite3`), if there is one.
    /// From Django the path is absolute; from the text, `BASE_DIR / "db.sqlite3"` is read as inside.
    pub(crate) fn sqlite_in_project(&self, app_dir: &Path) -> Option<String> {
        if !self.db_engine.as_deref().is_some_and(|e| e.contains("sqlite")) {
            return None;
        }
        let name = self.db_name.as_deref()?;
        let path = Path::new(name);
        if path.is_absolute() {
            let rel = path.strip_prefix(super::resolved(app_dir)).ok()?;
            return Some(rel.to_string_lossy().into_owned());
        }
        // From the text: the expression as written. The project-relative ones name BASE_DIR or are bare names.
        let literal_part = name.rsplit(['"', '\'']).nth(1).filter(|s| !s.is_empty())?;
        (name.contains("BASE_DIR") || literal(name).is_some()).then(|| literal_part.trim_start_matches('/').to_owned())
    }

    /// What will not work, or needs a decision, when this project is deployed as it is.
    pub(crate) fn warnings(&self, app_dir: &Path) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.debug == Some(true) {
            warnings.push(
                "DEBUG is True: Django shows tracebacks (and settings) to visitors and keeps every query in memory; \
                 set DEBUG = False in the settings the plan uses (or choose them with --settings)"
                    .to_owned(),
            );
        }
        if self.secret_key_insecure {
            warnings.push(
                "SECRET_KEY is hard-coded with Django's `django-insecure-` prefix: read it from the environment \
                 (`SECRET_KEY = os.environ[\"SECRET_KEY\"]`) and put it in the plan's env_file"
                    .to_owned(),
            );
        }
        match &self.local_module {
            Some(local) => warnings.push(format!(
                "the settings import {} when it exists (where `wagtail start` expects SECRET_KEY and other \
                 secrets): it is not in git, so keep it in <root>/shared and link it into every release (copy it \
                 there, then `--var shared_paths=\"media/ {}\"`), or set those values from the plan's env_file",
                local.display(),
                local.display()
            )),
            None if !self.secret_key_set => warnings.push(
                "SECRET_KEY is not set in these settings: Django refuses to start without one; read it from the \
                 environment (`SECRET_KEY = os.environ[\"SECRET_KEY\"]`) and put it in the plan's env_file"
                    .to_owned(),
            ),
            None => {}
        }
        if self.allowed_hosts.as_ref().is_some_and(Vec::is_empty) {
            warnings.push(
                "ALLOWED_HOSTS is empty: with DEBUG off Django answers 400 to every request, the health check \
                 included; add the site's names and the plan's `host`"
                    .to_owned(),
            );
        }
        if let Some(db) = self.sqlite_in_project(app_dir) {
            warnings.push(format!(
                "the SQLite database {db} is inside the project: each release would get its own copy (the first an \
                 empty one); keep it in <root>/shared and link it into every release (copy it there, then \
                 `--var shared_paths=\"media/ {db}\"`), or set DATABASES' NAME to a path outside the project"
            ));
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_startproject_settings() {
        let src = "from pathlib import Path\nBASE_DIR = Path(__file__).resolve().parent.parent\n\
                   SECRET_KEY = 'django-insecure-abc'\nDEBUG = True\nALLOWED_HOSTS = []\n\
                   DATABASES = {\n    'default': {\n        'ENGINE': 'django.db.backends.sqlite3',\n        \
                   'NAME': BASE_DIR / 'db.sqlite3',\n    }\n}\nSTATIC_URL = 'static/'\n";
        let mut facts = SettingsFacts::default();
        apply(&mut facts, src);
        assert_eq!(facts.static_url.as_deref(), Some("static/"));
        assert_eq!(facts.static_root, None);
        assert_eq!(facts.db_engine.as_deref(), Some("django.db.backends.sqlite3"));
        assert_eq!(facts.db_name.as_deref(), Some("BASE_DIR / 'db.sqlite3'"));
        assert_eq!(facts.debug, Some(true));
        assert!(facts.secret_key_insecure);
        assert_eq!(facts.allowed_hosts, Some(vec![]));
        assert_eq!(facts.sqlite_in_project(Path::new("/p")).as_deref(), Some("db.sqlite3"));
    }

    #[test]
    fn later_assignments_and_subscripts_win() {
        let mut facts = SettingsFacts::default();
        apply(
            &mut facts,
            "STORAGES = {\n    \"staticfiles\": {\n        \"BACKEND\": \"x.StaticFilesStorage\",\n    },\n}\n\
             DEBUG = True\nALLOWED_HOSTS = [\"*\"]\n",
        );
        apply(&mut facts, "DEBUG = False\nSTORAGES[\"staticfiles\"][\"BACKEND\"] = \"x.Manifest\"\n");
        assert_eq!(facts.storage.as_deref(), Some("x.Manifest"));
        assert_eq!(facts.debug, Some(false));
        assert_eq!(facts.allowed_hosts, Some(vec!["*".to_owned()]));
    }

    #[test]
    fn values_read_from_the_environment_are_not_literals() {
        let mut facts = SettingsFacts::default();
        apply(&mut facts, "SECRET_KEY = os.environ['SECRET_KEY']\nDEBUG = env.bool('DEBUG')\n");
        assert!(!facts.secret_key_insecure);
        assert!(facts.secret_key_set);
        assert_eq!(facts.debug, None);
        assert!(facts.warnings(Path::new("/p")).is_empty());
    }

    #[test]
    fn finds_the_local_import() {
        let src = "from .base import *\n\ntry:\n    from .local import *\nexcept ImportError:\n    pass\n";
        let file = Path::new("/p/./mysite/settings/production.py");
        assert_eq!(
            local_import(file, "mysite.settings.production", src),
            Some(PathBuf::from("mysite/settings/local.py"))
        );
    }
}
