//! A shop release prepared and served by hand (materialise, migrate, collectstatic, gunicorn): for the harness
//! self-tests and the benchmark's baselines, where zdd is not the one deploying.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use super::proc::{Guarded, http_get_status, http_get_status_unix, run, wait_until};
use super::venv;

/// The environment every release of the shop runs with.
pub(crate) fn app_env(sqlite_path: &Path, database_url: Option<&str>) -> Vec<(String, String)> {
    let mut env = vec![
        ("SECRET_KEY".to_string(), "zdd-test-secret-key-not-for-production".to_string()),
        ("ALLOWED_HOSTS".to_string(), "127.0.0.1,localhost".to_string()),
        ("SQLITE_PATH".to_string(), sqlite_path.display().to_string()),
    ];
    if let Some(url) = database_url {
        env.push(("DATABASE_URL".to_string(), url.to_string()));
    }
    env
}

/// A release directory with its migrations applied and static files collected.
pub(crate) fn prepare_release(version: &str, dir: &Path, env: &[(String, String)]) -> PathBuf {
    let venv = venv::shared();
    super::shop::materialise(version, dir).expect("materialise release");
    for args in [&["migrate", "--noinput"][..], &["collectstatic", "--noinput"][..]] {
        run(
            &format!("manage.py {}", args[0]),
            Command::new(venv::bin(&venv, "python"))
                .arg("manage.py")
                .args(args)
                .current_dir(dir)
                .envs(env.iter().map(|(k, v)| (k, v))),
        );
    }
    dir.to_path_buf()
}

/// Where a gunicorn listens.
#[derive(Debug, Clone)]
pub(crate) enum Bind {
    Port(u16),
    Unix(PathBuf),
}

impl Bind {
    fn arg(&self) -> String {
        match self {
            Bind::Port(port) => format!("127.0.0.1:{port}"),
            Bind::Unix(path) => format!("unix:{}", path.display()),
        }
    }

    /// The status of `GET /health/` on this bind, or None.
    pub(crate) fn health(&self) -> Option<u16> {
        match self {
            Bind::Port(port) => http_get_status(*port, "/health/"),
            Bind::Unix(path) => http_get_status_unix(path, "/health/"),
        }
    }
}

/// A gunicorn master serving one release.
pub(crate) struct Gunicorn {
    pub bind: Bind,
    pub process: Guarded,
}

impl Gunicorn {
    /// Starts gunicorn in `release` and waits for a healthy answer.
    pub(crate) fn start(release: &Path, bind: Bind, env: &[(String, String)]) -> Gunicorn {
        let venv = venv::shared();
        let log = std::fs::File::create(release.join("gunicorn.log")).expect("gunicorn log");
        let process = Guarded::spawn(
            "gunicorn",
            Command::new(venv::bin(&venv, "gunicorn"))
                .args(["shop.wsgi:application", "--workers", "3", "--graceful-timeout", "30"])
                .args(["--no-control-socket", "--bind"])
                .arg(bind.arg())
                .current_dir(release)
                .envs(env.iter().map(|(k, v)| (k, v)))
                .stdout(log.try_clone().expect("dup log"))
                .stderr(log),
        );
        let healthy = wait_until(Duration::from_secs(20), || bind.health() == Some(200));
        assert!(
            healthy,
            "gunicorn did not become healthy:\n{}",
            std::fs::read_to_string(release.join("gunicorn.log")).unwrap_or_default()
        );
        Gunicorn { bind, process }
    }
}
