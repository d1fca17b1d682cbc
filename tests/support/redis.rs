//! A private Redis (Debian's `redis-server`) for the worker scenarios: its own directory and a free port on
//! 127.0.0.1, no persistence. Dropping it stops it.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::env::{TestDir, free_port};

pub(crate) const REDIS_SERVER: &str = "/usr/bin/redis-server";
pub(crate) const REDIS_CLI: &str = "/usr/bin/redis-cli";

pub(crate) struct Redis {
    pub port: u16,
    child: Child,
    pub dir: PathBuf,
}

impl Redis {
    pub(crate) fn start(dir: &TestDir) -> Redis {
        let port = free_port();
        let data = dir.join("redis");
        std::fs::create_dir_all(&data).expect("redis dir");
        let child = Command::new(REDIS_SERVER)
            .args(["--bind", "127.0.0.1", "--port", &port.to_string(), "--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&data)
            .arg("--logfile")
            .arg(data.join("redis.log"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start redis-server");
        let redis = Redis { port, child, dir: data };
        let start = Instant::now();
        while redis.cli(&["PING"]).as_deref() != Some("PONG") {
            assert!(start.elapsed() < Duration::from_secs(20), "redis-server did not answer on port {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        redis
    }

    /// `redis://127.0.0.1:<port>/0`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// A `redis-cli` command's output, trimmed; `None` if it failed.
    pub(crate) fn cli(&self, args: &[&str]) -> Option<String> {
        let out = Command::new(REDIS_CLI).args(["-p", &self.port.to_string()]).args(args).output().ok()?;
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
