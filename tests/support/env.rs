//! What the machine offers: required components, free ports, test directories, and the CI rule (in CI a
//! missing component fails the test; elsewhere the test is skipped with a message saying why).

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// True when running in CI (`CI=true`): missing components are failures there, never silent skips.
pub(crate) fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// Checks that every listed requirement holds. Returns false (the caller returns early) when one is missing
/// outside CI, after printing why; panics in CI.
pub(crate) fn require(test: &str, requirements: &[Requirement]) -> bool {
    note_start();
    let missing: Vec<String> = requirements.iter().filter_map(|r| r.missing()).collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: missing {}", missing.join("; "));
    assert!(!in_ci(), "{message} (CI=true: run scripts/test-deps.sh)");
    eprintln!("SKIPPED {message} (run scripts/test-deps.sh to install)");
    false
}

/// With `ZDD_TEST_TIMES` set (scripts/test.sh does), appends `<unix ms> <test>` to that file: the scenarios run
/// one at a time, so each test lasts until the next one's line, and the script prints the slowest.
fn note_start() {
    use std::io::Write;
    let Some(path) = std::env::var_os("ZDD_TEST_TIMES") else { return };
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis());
    if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{ms} {name}");
    }
}

/// One thing a test needs from the machine.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Requirement {
    Root,
    Nginx,
    Python,
    Postgres,
    Systemd,
    /// sshd, ssh, ssh-keygen, nc and `ip netns` for the namespace hosts of [`super::hosts`].
    SshHosts,
    /// Wagtail's wheels in the wheel cache (`scripts/test-deps.sh` downloads them).
    WagtailWheels,
    /// The ASGI fixture's wheels (Channels, uvicorn, uvicorn-worker) in the wheel cache (`scripts/test-deps.sh`).
    AsgiWheels,
    /// redis-server and Celery's wheels (the worker scenarios).
    Celery,
    /// A Docker engine that answers, and mmdebstrap to make the offline base image (unless it exists).
    Docker,
    /// What scripts/package.sh builds with: Rust's musl target, musl-gcc, cargo-deb, and dpkg to install.
    Packaging,
    /// openssl, to make a self-signed certificate (the HTTPS scenario).
    Openssl,
    /// Caddy, the second proxy (the Caddy scenario).
    Caddy,
}

impl Requirement {
    fn missing(self) -> Option<String> {
        let exists = |p: &str| Path::new(p).exists();
        match self {
            Requirement::Root => (!nix::unistd::geteuid().is_root()).then(|| "root privileges".into()),
            Requirement::Nginx => {
                (!exists(crate::support::nginx::NGINX)).then(|| "nginx (apt-get install nginx)".into())
            }
            Requirement::Python => (!exists(crate::support::venv::PYTHON)
                || !exists(&crate::support::venv::wheel_dir()))
            .then(|| {
                format!("python3-venv and the wheel cache {} (scripts/test-deps.sh)", crate::support::venv::wheel_dir())
            }),
            Requirement::Caddy => {
                (!exists(crate::support::caddy::CADDY)).then(|| "caddy (apt-get install caddy)".into())
            }
            Requirement::Openssl => {
                (!exists(crate::support::tls::OPENSSL)).then(|| "openssl (apt-get install openssl)".into())
            }
            Requirement::Postgres => (!exists(crate::support::postgres::BIN_DIR))
                .then(|| "PostgreSQL 15 (apt-get install postgresql-15)".into()),
            Requirement::Systemd => (!exists(crate::support::systemd::SYSTEMD)
                || !exists("/usr/bin/unshare")
                || !exists("/usr/bin/nsenter"))
            .then(|| "systemd, unshare and nsenter (apt-get install systemd util-linux)".into()),
            Requirement::SshHosts => {
                let tools =
                    ["/usr/sbin/sshd", "/usr/bin/ssh", "/usr/bin/ssh-keygen", "/usr/bin/nc", "/usr/bin/unshare"];
                let missing: Vec<&str> = tools.into_iter().filter(|t| !exists(t)).collect();
                let ip =
                    std::process::Command::new("ip").args(["netns", "list"]).output().is_ok_and(|o| o.status.success());
                (!missing.is_empty() || !ip).then(|| {
                    format!(
                        "{}{} (apt-get install openssh-server openssh-client netcat-openbsd iproute2 util-linux)",
                        missing.join(", "),
                        if ip { "" } else { " ip netns" }
                    )
                })
            }
            Requirement::Docker => {
                let engine = crate::support::docker::engine_answers();
                let base = engine
                    && (exists("/usr/bin/mmdebstrap")
                        || crate::support::docker::image_present(crate::support::docker::BASE_IMAGE));
                (!engine || !base).then(|| {
                    if engine {
                        "mmdebstrap (apt-get install mmdebstrap)"
                    } else {
                        "a Docker engine that answers `docker version`"
                    }
                    .to_string()
                })
            }
            Requirement::WagtailWheels => crate::support::venv::wagtail_wheels()
                .is_empty()
                .then(|| format!("Wagtail's wheels in {} (scripts/test-deps.sh)", crate::support::venv::wheel_dir())),
            Requirement::AsgiWheels => {
                let wheels = std::fs::read_dir(crate::support::venv::wheel_dir())
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect::<Vec<_>>();
                let has = |prefix: &str| wheels.iter().any(|w| w.starts_with(prefix));
                (!(has("channels-") && has("uvicorn-") && has("uvicorn_worker-") && has("websockets-"))).then(|| {
                    format!("the ASGI fixture's wheels in {} (scripts/test-deps.sh)", crate::support::venv::wheel_dir())
                })
            }
            Requirement::Packaging => {
                let sysroot = std::process::Command::new("rustc").args(["--print", "sysroot"]).output().ok();
                let musl_target = sysroot.is_some_and(|o| {
                    let root = String::from_utf8_lossy(&o.stdout).trim().to_owned();
                    Path::new(&root).join("lib/rustlib/x86_64-unknown-linux-musl").exists()
                });
                let cargo_deb = std::process::Command::new("cargo")
                    .args(["deb", "--version"])
                    .output()
                    .is_ok_and(|o| o.status.success());
                let missing: Vec<&str> = [
                    (!musl_target).then_some("Rust's x86_64-unknown-linux-musl target"),
                    (!exists("/usr/bin/musl-gcc")).then_some("musl-tools"),
                    (!cargo_deb).then_some("cargo-deb"),
                    (!exists("/usr/bin/dpkg")).then_some("dpkg"),
                ]
                .into_iter()
                .flatten()
                .collect();
                (!missing.is_empty()).then(|| format!("{} (scripts/test-deps.sh)", missing.join(", ")))
            }
            Requirement::Celery => {
                let wheels = std::fs::read_dir(crate::support::venv::wheel_dir()).into_iter().flatten().flatten();
                let celery = wheels.into_iter().any(|e| e.file_name().to_string_lossy().starts_with("celery-"));
                (!exists(crate::support::redis::REDIS_SERVER) || !celery)
                    .then(|| "redis-server and Celery's wheels (scripts/test-deps.sh)".into())
            }
        }
    }
}

/// A free TCP port on 127.0.0.1 (bound then released; good enough for tests that start at once).
pub(crate) fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    listener.local_addr().expect("local addr").port()
}

/// A directory of one test under /tmp, readable by other users (PostgreSQL runs as `postgres`, Nginx workers
/// need the sockets). Removed on drop unless `ZDD_KEEP_TEST_DIRS` is set.
pub(crate) struct TestDir {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl TestDir {
    pub(crate) fn new(name: &str) -> TestDir {
        let dir = tempfile::Builder::new().prefix(&format!("zdd-{name}-")).tempdir_in("/tmp").expect("create test dir");
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod test dir");
        let path = dir.path().to_path_buf();
        TestDir { dir: Some(dir), path }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn join(&self, rel: &str) -> PathBuf {
        self.path.join(rel)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        if std::env::var_os("ZDD_KEEP_TEST_DIRS").is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!("kept test dir {}", dir.keep().display());
        }
    }
}

/// The shared cache of the test run (the venv, PostgreSQL's template cluster): `target/zdd-test-cache`.
pub(crate) fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let dir = target.join("zdd-test-cache");
    std::fs::create_dir_all(&dir).expect("create target/zdd-test-cache");
    dir
}
