//! `zdd init`'s detective work: what an existing Django project looks like (where `manage.py` is, the
//! settings module, the WSGI callable, the requirements file, a health URL), read from its files alone.

use std::fs;
use std::path::{Path, PathBuf};

/// What `zdd init` found in a Django project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DjangoProject {
    /// The directory given to `zdd init`.
    pub root: PathBuf,
    /// Directory of `manage.py`, relative to `root` (`.` when at the top).
    pub app_dir: PathBuf,
    /// `DJANGO_SETTINGS_MODULE`, e.g. `config.settings.production`.
    pub settings: String,
    /// The WSGI callable for gunicorn, e.g. `config.wsgi:application`.
    pub wsgi: String,
    /// The requirements file, relative to `root`.
    pub requirements: Option<PathBuf>,
    /// A health URL path found in a `urls.py`, e.g. `/health/`.
    pub health_path: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(crate) enum DetectError {
    #[error("no manage.py found in {0} or the directories below it (two levels)")]
    ManagePyNotFound(PathBuf),
    #[error("{0} does not set DJANGO_SETTINGS_MODULE")]
    SettingsUnset(PathBuf),
    #[error("no wsgi.py defining `application` found next to {0}")]
    WsgiNotFound(PathBuf),
}

/// Directories never searched: they hold no project code and can be huge.
const SKIP_DIRS: &[&str] =
    &[".git", "node_modules", "venv", ".venv", "env", "__pycache__", "static", "media", "staticfiles"];

/// Look at the project in `root`.
pub(crate) fn detect(root: &Path) -> Result<DjangoProject, DetectError> {
    let manage = find_files(root, "manage.py", 2)
        .into_iter()
        .next()
        .ok_or_else(|| DetectError::ManagePyNotFound(root.to_path_buf()))?;
    let app_dir_abs = manage.parent().unwrap_or(root).to_path_buf();
    let manage_src = fs::read_to_string(&manage).unwrap_or_default();
    let settings = settings_module(&manage_src).ok_or_else(|| DetectError::SettingsUnset(manage.clone()))?;
    let wsgi = find_wsgi(&app_dir_abs, &settings).ok_or_else(|| DetectError::WsgiNotFound(manage.clone()))?;
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
        wsgi,
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
    let valid = !value.is_empty() && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.');
    valid.then_some(value)
}

/// The WSGI callable: prefer the `wsgi.py` in the settings module's top package, else any that defines `application`.
fn find_wsgi(app_dir: &Path, settings: &str) -> Option<String> {
    let package = settings.split('.').next().unwrap_or_default();
    let mut candidates = find_files(app_dir, "wsgi.py", 3);
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
    fn finds_health_routes() {
        assert_eq!(health_route("    path(\"health/\", views.health),").as_deref(), Some("/health/"));
        assert_eq!(health_route("re_path(r'^healthz$', v)").as_deref(), Some("/healthz"));
        assert_eq!(health_route("path('admin/', admin.site.urls)"), None);
    }
}
