//! Caddy (the Debian package's binary) as the test's own instance: started on a config that holds only its
//! admin endpoint (a free loopback port), its data and config directories in the test's directory, so it never
//! touches /etc, the machine's :80 or root's home. zdd loads the site's configuration through that endpoint.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::{Guarded, wait_until};

pub(crate) const CADDY: &str = "/usr/bin/caddy";

pub(crate) struct Caddy {
    pub dir: PathBuf,
    /// `127.0.0.1:<port>`: the admin API.
    pub admin: String,
    /// Where zdd writes the configuration it loads (the plan's `site_conf`).
    pub config: PathBuf,
    /// The log the loaded configuration sends Caddy's log to (the plan's `nginx_error_log`).
    pub log: PathBuf,
    process: Guarded,
}

impl Caddy {
    /// Starts Caddy under `<dir>/caddy` with no site, and waits until its admin API answers.
    pub(crate) fn start(dir: &Path) -> Caddy {
        let dir = dir.join("caddy");
        std::fs::create_dir_all(&dir).expect("caddy dir");
        let admin = format!("127.0.0.1:{}", super::env::free_port());
        let initial = dir.join("initial.json");
        std::fs::write(&initial, format!("{{\"admin\": {{\"listen\": \"{admin}\"}}}}\n")).expect("caddy config");
        let out = std::fs::File::create(dir.join("caddy.out")).expect("caddy out");
        let err = out.try_clone().expect("caddy out");
        let process = Guarded::spawn(
            "caddy",
            Command::new(CADDY)
                .args(["run", "--config"])
                .arg(&initial)
                .env("HOME", &dir)
                .env("XDG_DATA_HOME", dir.join("data"))
                .env("XDG_CONFIG_HOME", dir.join("config"))
                .stdout(Stdio::from(out))
                .stderr(Stdio::from(err)),
        );
        let caddy = Caddy { config: dir.join("zdd-shop.json"), log: dir.join("caddy.log"), dir, admin, process };
        let up = wait_until(Duration::from_secs(10), || std::net::TcpStream::connect(&caddy.admin).is_ok());
        assert!(up, "caddy's admin API did not come up:\n{}", caddy.output());
        caddy
    }

    /// The plan variables that put this Caddy in front (after the stack's own: they win).
    pub(crate) fn vars(&self) -> Vec<(String, String)> {
        [
            ("proxy", "caddy".to_owned()),
            ("caddy", CADDY.to_owned()),
            ("caddy_admin", self.admin.clone()),
            ("site_conf", self.config.display().to_string()),
            ("nginx_error_log", self.log.display().to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// `GET <path>` on the admin API: the body (e.g. `/config/` for the running configuration).
    pub(crate) fn admin_get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let Ok(mut stream) = std::net::TcpStream::connect(&self.admin) else {
            return "admin API unreachable".to_owned();
        };
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let request = format!("GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n", self.admin);
        let _ = stream.write_all(request.as_bytes());
        let mut buf = Vec::new();
        let _ = stream.read_to_end(&mut buf);
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.split_once("\r\n\r\n").map_or(text.clone(), |(_, body)| body.to_owned())
    }

    /// Caddy's own output and its log so far (for failure messages).
    pub(crate) fn output(&self) -> String {
        let read = |p: PathBuf| std::fs::read_to_string(p).unwrap_or_default();
        format!("caddy output:\n{}\ncaddy log:\n{}", read(self.dir.join("caddy.out")), read(self.log.clone()))
    }
}

impl Drop for Caddy {
    fn drop(&mut self) {
        self.process.signal(nix::sys::signal::Signal::SIGKILL);
    }
}
