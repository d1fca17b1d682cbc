//! Python venvs for the whole test run, built from the local wheel cache and reused across test binaries and
//! runs: the shared one with Django, gunicorn and psycopg (`target/zdd-test-cache/venv-<hash of
//! requirements.txt>`), and others named by what they hold (Wagtail's, to run `wagtail start`).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;

use super::env::cache_dir;
use super::proc::run;

/// Debian's interpreter (the wheels in the cache are built for it), not whatever `python3` is first on PATH.
pub(crate) const PYTHON: &str = "/usr/bin/python3";

/// Where the pre-downloaded wheels are (`ZDD_WHEELS` or `/root/.cache/zdd-wheels`).
pub(crate) fn wheel_dir() -> String {
    std::env::var("ZDD_WHEELS").unwrap_or_else(|_| "/root/.cache/zdd-wheels".to_string())
}

/// The names of Wagtail's wheels in the wheel cache, sorted (empty when `scripts/test-deps.sh` has not fetched them).
pub(crate) fn wagtail_wheels() -> Vec<String> {
    let mut wheels: Vec<String> = std::fs::read_dir(wheel_dir())
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("wagtail-") && Path::new(n).extension().is_some_and(|ext| ext == "whl"))
        .collect();
    wheels.sort();
    wheels
}

/// The shared venv's directory, created on first use.
pub(crate) fn shared() -> PathBuf {
    let requirements_path = super::shop::base_dir().join("requirements.txt");
    let requirements = std::fs::read_to_string(&requirements_path).expect("read requirements.txt");
    cached("venv", &requirements)
}

/// A venv with `requirements` (a requirements file's text) installed from the wheel cache, in
/// `<cache>/<label>-<hash of requirements>`: built once (under a file lock: test binaries run in parallel), then
/// reused until the requirements change.
pub(crate) fn cached(label: &str, requirements: &str) -> PathBuf {
    let mut hasher = DefaultHasher::new();
    requirements.hash(&mut hasher);
    let dir = cache_dir().join(format!("{label}-{:016x}", hasher.finish()));
    let lock = std::fs::File::create(cache_dir().join(format!("{label}.lock"))).expect("create venv lock");
    lock.lock().expect("lock venv");
    let marker = dir.join(".zdd-complete");
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(&dir);
        run("python3 -m venv", Command::new(PYTHON).args(["-m", "venv"]).arg(&dir));
        let requirements_path = dir.join("zdd-requirements.txt");
        std::fs::write(&requirements_path, requirements).expect("write the venv's requirements");
        run(
            "pip install from the wheel cache",
            Command::new(dir.join("bin/pip"))
                .args(["install", "--quiet", "--no-index", "--find-links"])
                .arg(wheel_dir())
                .arg("-r")
                .arg(&requirements_path),
        );
        std::fs::write(&marker, "").expect("write venv marker");
    }
    drop(lock);
    dir
}

/// Astral's uv, installed once from its wheel in the cache into a venv of its own; `None` when the cache has
/// no uv wheel (then the plans' `installer "uv"` falls back to pip, and the preflight says so).
pub(crate) fn uv() -> Option<PathBuf> {
    let has_wheel = std::fs::read_dir(wheel_dir()).into_iter().flatten().flatten().any(|e| {
        let name = e.file_name().to_string_lossy().into_owned();
        name.starts_with("uv-") && Path::new(&name).extension().is_some_and(|ext| ext == "whl")
    });
    has_wheel.then(|| bin(&cached("uv", "uv\n"), "uv"))
}

/// `<venv>/bin/<program>`.
pub(crate) fn bin(venv: &Path, program: &str) -> PathBuf {
    venv.join("bin").join(program)
}
