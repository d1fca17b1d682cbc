//! Docker for the container scenarios, offline (no registry here: nothing can be pulled): the base image made
//! from Debian's packages (`mmdebstrap --variant=minbase` with python3 and python3-venv, then `docker import`),
//! cached in the engine as `zdd-test-base:bookworm` until removed; the shop's wheels from the wheel cache, for
//! `docker build --network none` to install with `pip install --no-index`; and the cleanup of a test's containers.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Instant;

use super::env::cache_dir;
use super::proc::run;

/// The offline base image: Debian 12 with Python 3.11 (the wheels in the cache are built for it).
pub(crate) const BASE_IMAGE: &str = "zdd-test-base:bookworm";

/// The wheels the shop needs (examples/shop/requirements.txt and what they depend on), by distribution name.
const SHOP_WHEELS: &[&str] =
    &["django", "gunicorn", "psycopg", "psycopg_binary", "asgiref", "sqlparse", "typing_extensions"];

/// Does the Docker engine answer?
pub(crate) fn engine_answers() -> bool {
    Command::new("docker")
        .args(["version", "--format", "{{.Server.Version}}"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn image_exists(image: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", image])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The base image, made once (under a file lock: test binaries run in parallel) and reused by every run after.
pub(crate) fn base_image() -> &'static str {
    let lock = std::fs::File::create(cache_dir().join("docker-base.lock")).expect("create base image lock");
    lock.lock().expect("lock base image");
    if !image_exists(BASE_IMAGE) {
        let started = Instant::now();
        run(
            "mmdebstrap | docker import",
            Command::new("bash").args([
                "-c",
                "set -o pipefail; mmdebstrap --quiet --variant=minbase \
                 --include=python3,python3-venv,ca-certificates bookworm - | docker import - \"$1\"",
                "bash",
                BASE_IMAGE,
            ]),
        );
        eprintln!("built {BASE_IMAGE} in {:.1} s", started.elapsed().as_secs_f64());
    }
    drop(lock);
    BASE_IMAGE
}

/// A directory holding only the shop's wheels (copied from the wheel cache once), for a build context.
pub(crate) fn shop_wheels() -> PathBuf {
    let dir = cache_dir().join("docker-wheels");
    let marker = dir.join(".zdd-complete");
    if marker.exists() {
        return dir;
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create docker-wheels");
    for entry in std::fs::read_dir(super::venv::wheel_dir()).expect("read the wheel cache").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let distribution = name.split('-').next().unwrap_or_default().to_lowercase();
        let wheel = std::path::Path::new(&name).extension().is_some_and(|e| e.eq_ignore_ascii_case("whl"));
        if wheel && SHOP_WHEELS.contains(&distribution.as_str()) {
            std::fs::copy(entry.path(), dir.join(&name)).expect("copy a wheel");
        }
    }
    std::fs::write(&marker, "").expect("write docker-wheels marker");
    dir
}

/// The ids of the containers labelled `zdd.app=<app>` (`all`: stopped ones too), optionally of one release.
pub(crate) fn containers(app: &str, release: Option<&str>, all: bool) -> Vec<String> {
    let mut cmd = Command::new("docker");
    cmd.args(["ps", "--quiet", "--filter"]).arg(format!("label=zdd.app={app}"));
    if let Some(release) = release {
        cmd.arg("--filter").arg(format!("label=zdd.release={release}"));
    }
    if all {
        cmd.arg("--all");
    }
    let out = cmd.output().expect("docker ps");
    String::from_utf8_lossy(&out.stdout).split_whitespace().map(str::to_string).collect()
}

/// The release label of each running container of `app`.
pub(crate) fn running_releases(app: &str) -> Vec<String> {
    containers(app, None, false)
        .iter()
        .filter_map(|id| {
            let out = Command::new("docker")
                .args(["inspect", "--format", "{{index .Config.Labels \"zdd.release\"}}", id])
                .output()
                .ok()?;
            Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
        })
        .collect()
}

pub(crate) fn image_present(image: &str) -> bool {
    image_exists(image)
}

/// Removes every container of `app` (at the start, for a run killed earlier, and on drop). Images stay: the
/// next run's builds reuse their layers, and the `image` step keeps only the newest few.
pub(crate) struct Containers {
    pub app: String,
}

impl Containers {
    pub(crate) fn new(app: &str) -> Containers {
        let guard = Containers { app: app.to_string() };
        guard.remove_all();
        guard
    }

    fn remove_all(&self) {
        let ids = containers(&self.app, None, true);
        if !ids.is_empty() {
            let _ = Command::new("docker").args(["rm", "--force"]).args(&ids).stdout(Stdio::null()).status();
        }
    }
}

impl Drop for Containers {
    fn drop(&mut self) {
        self.remove_all();
    }
}
