//! `zdd init`'s detective work: what an existing Django project looks like (where `manage.py` is, the
//! settings module, the WSGI callable, the requirements file, a health URL), read from its files alone; and
//! the path from the plan's directory to the project the plan names.
//!
//! What the settings say (static files, database, DEBUG...) is [`facts`]'s.

pub(crate) mod asgi;
pub(crate) mod facts;

use std::fs;
use std::path::{Component, Path, PathBuf};

/// What `zdd init` found in a Django project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DjangoProject {
    /// The directory given to `zdd init`.
    pub root: PathBuf,
    /// Directory of `manage.py`, relative to `root` (`.` when at the top).
    pub app_dir: PathBuf,
    /// `DJANGO_SETTINGS_MODULE` for the plan, e.g. `config.settings.production`.
    pub settings: String,
    /// Why [`Self::settings`] was chosen.
    pub settings_choice: SettingsChoice,
    /// The other modules of the settings package (`mysite.settings.dev`...), for the user to choose from.
    pub settings_alternatives: Vec<String>,
    /// The WSGI callable for gunicorn, e.g. `config.wsgi:application` (an ASGI-only project has none).
    pub wsgi: Option<String>,
    /// The ASGI application to serve instead, when the project is an ASGI one (Channels, or no `wsgi.py`).
    pub asgi: Option<asgi::Asgi>,
    /// The requirements file, relative to `root`.
    pub requirements: Option<PathBuf>,
    /// A health URL path found in a `urls.py`, e.g. `/health/`.
    pub health_path: Option<String>,
}

/// How the settings module was chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SettingsChoice {
    /// `manage.py`'s default.
    ManagePy,
    /// A production module beside `manage.py`'s default (`mysite.settings.dev`), which is for development.
    Production { manage_py_default: String },
    /// `zdd init --settings`.
    Given,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DetectError {
    #[error("no manage.py found in {0} or the directories below it (two levels)")]
    ManagePyNotFound(PathBuf),
    #[error("{0} does not set DJANGO_SETTINGS_MODULE")]
    SettingsUnset(PathBuf),
    #[error("no wsgi.py or asgi.py defining `application` found next to {0}")]
    WsgiNotFound(PathBuf),
    #[error("`{0}` is not a Python module name")]
    BadSettingsName(String),
}

/// Last names of a settings package's production module, by preference.
const PRODUCTION_MODULES: &[&str] = &["production", "prod"];

/// Directories never searched: they hold no project code and can be huge.
const SKIP_DIRS: &[&str] =
    &[".git", "node_modules", "venv", ".venv", "env", "__pycache__", "static", "media", "staticfiles"];

/// Look at the project in `root`; `settings` is the module the user chose (`zdd init --settings`), if any.
pub(crate) fn detect(root: &Path, settings: Option<&str>) -> Result<DjangoProject, DetectError> {
    let manage = find_files(root, "manage.py", 2)
        .into_iter()
        .next()
        .ok_or_else(|| DetectError::ManagePyNotFound(root.to_path_buf()))?;
    let app_dir_abs = manage.parent().unwrap_or(root).to_path_buf();
    let manage_src = fs::read_to_string(&manage).unwrap_or_default();
    let (settings, settings_choice) = match settings {
        Some(given) if valid_module(given) => (given.to_owned(), SettingsChoice::Given),
        Some(given) => return Err(DetectError::BadSettingsName(given.to_owned())),
        None => {
            let default = settings_module(&manage_src).ok_or_else(|| DetectError::SettingsUnset(manage.clone()))?;
            match production_sibling(&app_dir_abs, &default) {
                Some(production) => (production, SettingsChoice::Production { manage_py_default: default }),
                None => (default, SettingsChoice::ManagePy),
            }
        }
    };
    let settings_alternatives =
        sibling_modules(&app_dir_abs, &settings).into_iter().filter(|m| *m != settings).collect();
    let wsgi = find_callable(&app_dir_abs, &settings, "wsgi.py");
    let asgi = asgi::detect(&app_dir_abs, &settings, wsgi.is_some());
    if wsgi.is_none() && asgi.is_none() {
        return Err(DetectError::WsgiNotFound(manage.clone()));
    }
    let requirements =
        ["requirements/production.txt", "requirements/prod.txt", "requirements.txt", "requirements/base.txt"]
            .iter()
            .flat_map(|c| [root.join(c), app_dir_abs.join(c)])
            .find(|p| p.is_file())
            .map(|p| relative(root, &p));
    let health_path = find_files(&app_dir_abs, "urls.py", 4)
        .iter()
        .filter_map(|p| fs::read_to_string(p).ok())
        .find_map(|src| health_route(&src));
    Ok(DjangoProject {
        root: root.to_path_buf(),
        app_dir: relative(root, &app_dir_abs),
        settings,
        settings_choice,
        settings_alternatives,
        wsgi,
        asgi,
        requirements,
        health_path,
    })
}

/// The value of `os.environ.setdefault("DJANGO_SETTINGS_MODULE", "...")` in `manage.py`.
fn settings_module(manage_src: &str) -> Option<String> {
    let at = manage_src.find("DJANGO_SETTINGS_MODULE")?;
    let rest = &manage_src[at + "DJANGO_SETTINGS_MODULE".len()..];
    let rest = rest.trim_start_matches(['"', '\'']).trim_start();
    let rest = rest.strip_prefix(',')?.trim_start();
    let quote = rest.chars().next().filter(|c| *c == '"' || *c == '\'')?;
    let value: String = rest[1..].chars().take_while(|c| *c != quote).collect();
    valid_module(&value).then_some(value)
}

fn valid_module(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|part| {
            !part.is_empty()
                && !part.starts_with(|c: char| c.is_ascii_digit())
                && part.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        })
}

/// The file of a dotted module below `app_dir` (`a/b.py` or `a/b/__init__.py`).
pub(crate) fn module_file(app_dir: &Path, module: &str) -> Option<PathBuf> {
    let path: PathBuf = module.split('.').collect();
    let candidates = [app_dir.join(&path).with_extension("py"), app_dir.join(&path).join("__init__.py")];
    candidates.into_iter().find(|p| p.is_file())
}

/// The modules of the package `module` is in (`mysite.settings.dev` -> `mysite.settings.{base,dev,production}`),
/// sorted; empty when `module` is not inside a package with several modules.
fn sibling_modules(app_dir: &Path, module: &str) -> Vec<String> {
    let Some((package, _)) = module.rsplit_once('.') else { return vec![] };
    // A flat `mysite/settings.py` has `urls`, `wsgi`... beside it: only a settings package holds settings.
    if !package.rsplit('.').next().is_some_and(|last| last.starts_with("settings")) {
        return vec![];
    }
    let dir: PathBuf = app_dir.join(package.split('.').collect::<PathBuf>());
    if !dir.join("__init__.py").is_file() {
        return vec![];
    }
    let Ok(entries) = fs::read_dir(&dir) else { return vec![] };
    let mut modules: Vec<String> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".py")?;
            (stem != "__init__" && valid_module(stem) && e.path().is_file()).then(|| format!("{package}.{stem}"))
        })
        .collect();
    modules.sort();
    modules
}

/// With a settings package split by environment (`settings/{base,dev,production}.py`, as `wagtail start` and
/// cookiecutter-django write it), `manage.py` and `wsgi.py` default to the development module: a production
/// plan wants the production one beside it.
fn production_sibling(app_dir: &Path, default: &str) -> Option<String> {
    let last = default.rsplit('.').next().unwrap_or_default();
    if PRODUCTION_MODULES.contains(&last) {
        return None;
    }
    let siblings = sibling_modules(app_dir, default);
    PRODUCTION_MODULES.iter().find_map(|name| siblings.iter().find(|m| m.ends_with(&format!(".{name}"))).cloned())
}

/// The WSGI (`wsgi.py`) or ASGI (`asgi.py`) callable: prefer the file in the settings module's top package, else
/// any that defines `application`.
fn find_callable(app_dir: &Path, settings: &str, file_name: &str) -> Option<String> {
    let package = settings.split('.').next().unwrap_or_default();
    let mut candidates = find_files(app_dir, file_name, 3);
    candidates.sort_by_key(|p| !relative(app_dir, p).starts_with(package));
    candidates.into_iter().find_map(|p| {
        let src = fs::read_to_string(&p).ok()?;
        if !src.contains("application") {
            return None;
        }
        let rel = relative(app_dir, &p.with_extension(""));
        let module: Vec<String> = rel.components().map(|c| c.as_os_str().to_string_lossy().into_owned()).collect();
        Some(format!("{}:application", module.join(".")))
    })
}

/// Whether the requirements file (and the files it includes with `-r`) names gunicorn, which every plan's
/// `service` step runs from the release's venv; `None` when the file cannot be read.
pub(crate) fn requirements_name_gunicorn(file: &Path) -> Option<bool> {
    requirements_name(file, "gunicorn")
}

/// Whether the requirements file (and the files it includes with `-r`) names `package`; `None` when the file
/// cannot be read.
pub(crate) fn requirements_name(file: &Path, package: &str) -> Option<bool> {
    fn names(file: &Path, package: &str, depth: usize) -> Option<bool> {
        let (named, includes) = zdd_steps::requirements::scan(&fs::read_to_string(file).ok()?, package);
        let dir = file.parent().unwrap_or(Path::new("."));
        Some(named || (depth > 0 && includes.iter().any(|inc| names(&dir.join(inc), package, depth - 1) == Some(true))))
    }
    names(file, package, zdd_steps::requirements::MAX_INCLUDE_DEPTH)
}

/// A route whose path contains `health`, from `path("health/", ...)` or `re_path(r"^healthz$", ...)`.
fn health_route(urls_src: &str) -> Option<String> {
    for line in urls_src.lines() {
        let line = line.trim();
        let Some(open) = line.find("path(") else { continue };
        let after = line[open + 5..].trim_start_matches(['r', 'R']);
        let Some(quote) = after.chars().next().filter(|c| *c == '"' || *c == '\'') else { continue };
        let route: String = after[1..].chars().take_while(|c| *c != quote).collect();
        if route.contains("health") {
            let route = route.trim_start_matches('^').trim_end_matches('$').trim_start_matches('/');
            return Some(format!("/{route}"));
        }
    }
    None
}

/// Files named `name` below `dir`, at most `depth` directories down, shallowest first, sorted by path.
fn find_files(dir: &Path, name: &str, depth: usize) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut level = vec![dir.to_path_buf()];
    for _ in 0..=depth {
        let mut next = Vec::new();
        let mut here = Vec::new();
        for d in &level {
            let Ok(entries) = fs::read_dir(d) else { continue };
            for entry in entries.flatten() {
                let path = entry.path();
                let file_name = entry.file_name().to_string_lossy().into_owned();
                match entry.file_type() {
                    Ok(t) if t.is_dir() && !SKIP_DIRS.contains(&file_name.as_str()) && !file_name.starts_with('.') => {
                        next.push(path);
                    }
                    Ok(t) if t.is_file() && file_name == name => here.push(path),
                    _ => {}
                }
            }
        }
        here.sort();
        found.extend(here);
        next.sort();
        level = next;
    }
    found
}

/// `path` as an absolute path with every existing part's symlinks resolved and `.`/`..` removed, whether or
/// not it exists yet (the plan's directory does not, when `zdd init` renders the plan).
pub(crate) fn resolved(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => {
                out.push(other);
                if let Ok(real) = fs::canonicalize(&out) {
                    out = real;
                }
            }
        }
    }
    out
}

/// How to write `to` in a file in the directory `from`: a relative path (`..`, `../site`), `.` for the same
/// directory. Both are [`resolved`] first, so neither needs to exist.
pub(crate) fn path_from(from: &Path, to: &Path) -> String {
    let (from, to) = (resolved(from), resolved(to));
    let common = from.components().zip(to.components()).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = std::iter::repeat_n("..".to_owned(), from.components().count() - common).collect();
    parts.extend(to.components().skip(common).map(|c| c.as_os_str().to_string_lossy().into_owned()));
    if parts.is_empty() { ".".to_owned() } else { parts.join("/") }
}

fn relative(base: &Path, path: &Path) -> PathBuf {
    match path.strip_prefix(base) {
        Ok(p) if p.as_os_str().is_empty() => PathBuf::from("."),
        Ok(p) => p.to_path_buf(),
        Err(_) => path.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_settings_module_from_manage_py() {
        let src = "import os\nos.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings.production')\n";
        assert_eq!(settings_module(src).as_deref(), Some("config.settings.production"));
        let src = "os.environ.setdefault(\"DJANGO_SETTINGS_MODULE\", \"mysite.settings\")";
        assert_eq!(settings_module(src).as_deref(), Some("mysite.settings"));
        assert_eq!(settings_module("print('hi')"), None);
    }

    #[test]
    fn paths_from_a_directory_that_does_not_exist_yet() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir_all(base.join("site/app")).unwrap();
        assert_eq!(path_from(&base.join("site/deploy"), &base.join("site/app")), "../app");
        assert_eq!(path_from(&base.join("ops/deploy/x"), &base.join("site")), "../../../site");
        assert_eq!(path_from(&base.join("site"), &base.join("site")), ".");
        assert_eq!(path_from(&base.join("site/./deploy/../deploy"), &base.join("site/app/")), "../app");
    }

    #[test]
    fn module_names() {
        assert!(valid_module("mysite.settings.production"));
        assert!(!valid_module("mysite..settings"));
        assert!(!valid_module("1site.settings"));
        assert!(!valid_module("my-site.settings"));
    }

    #[test]
    fn sees_gunicorn_in_requirements_and_their_includes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| fs::write(dir.path().join(name), text).expect("write");
        write("plain.txt", "Django>=5.2,<6\nwagtail>=8.0,<8.1\n");
        write("frozen.txt", "Django==5.2.19\ngunicorn==27.0.1\n");
        write("prod.txt", "-r frozen.txt\n");
        write("lookalike.txt", "gunicorn-extras==1\n# gunicorn\n");
        assert_eq!(requirements_name_gunicorn(&dir.path().join("plain.txt")), Some(false));
        assert_eq!(requirements_name_gunicorn(&dir.path().join("frozen.txt")), Some(true));
        assert_eq!(requirements_name_gunicorn(&dir.path().join("prod.txt")), Some(true));
        assert_eq!(requirements_name_gunicorn(&dir.path().join("lookalike.txt")), Some(false));
        assert_eq!(requirements_name_gunicorn(&dir.path().join("missing.txt")), None);
    }

    #[test]
    fn finds_health_routes() {
        assert_eq!(health_route("    path(\"health/\", views.health),").as_deref(), Some("/health/"));
        assert_eq!(health_route("re_path(r'^healthz$', v)").as_deref(), Some("/healthz"));
        assert_eq!(health_route("path('admin/', admin.site.urls)"), None);
    }
}
