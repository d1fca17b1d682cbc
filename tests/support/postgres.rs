//! A PostgreSQL 15 cluster of one test: its own data directory and a free port on 127.0.0.1, trust auth, run
//! as the `postgres` user (initdb refuses root). `initdb` costs seconds, so one template cluster is made per
//! test run (`target/zdd-test-cache/pg-template`) and copied.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};

use super::env::{cache_dir, free_port};
use super::proc::run;

pub(crate) const BIN_DIR: &str = "/usr/lib/postgresql/15/bin";

pub(crate) struct Postgres {
    pub dir: PathBuf,
    pub port: u16,
    /// The database created for the shop.
    pub database: String,
}

impl Postgres {
    /// Starts a cluster in `<dir>/postgres` with an empty database `shop`.
    pub(crate) fn start(dir: &Path) -> Postgres {
        let root = dir.join("postgres");
        let data = root.join("data");
        std::fs::create_dir_all(&root).expect("postgres dir");
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).expect("chmod postgres dir");
        run("copy the template cluster", Command::new("cp").arg("-a").arg(template()).arg(&data));
        // Recursive: the template may have been copied by root (a target dir copied without ownership).
        run("chown postgres dir", Command::new("chown").args(["-R", "postgres:postgres"]).arg(&root));
        let port = free_port();
        run(
            "pg_ctl start",
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN_DIR}/pg_ctl"))
                .arg("-D")
                .arg(&data)
                .arg("-o")
                .arg(format!("-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off", root.display()))
                .arg("-l")
                .arg(root.join("log"))
                .args(["-w", "start"]),
        );
        let pg = Postgres { dir: root, port, database: "shop".to_string() };
        pg.psql("postgres", "CREATE DATABASE shop");
        pg
    }

    /// `DATABASE_URL` for the shop's settings.
    pub(crate) fn database_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{}", self.port, self.database)
    }

    /// Runs one SQL statement and returns psql's unaligned, tuples-only output.
    pub(crate) fn psql(&self, database: &str, sql: &str) -> String {
        run(
            "psql",
            Command::new(format!("{BIN_DIR}/psql"))
                .args(["-X", "-q", "-A", "-t", "-h", "127.0.0.1", "-U", "postgres", "-p"])
                .arg(self.port.to_string())
                .args(["-d", database, "-c", sql]),
        )
    }

    /// A `psql` session named `application_name` that runs `sql` and stays open (a transaction it began stays
    /// open, its locks held) until the returned [`Session`] is dropped. Returns once `sql` has run; the
    /// session's backend pid is in [`Session::pid`].
    pub(crate) fn session(&self, database: &str, application_name: &str, sql: &str) -> Session {
        let mut child = Command::new(format!("{BIN_DIR}/psql"))
            .args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-U", "postgres", "-p"])
            .arg(self.port.to_string())
            .args(["-d", database])
            .env("PGAPPNAME", application_name)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn psql");
        let mut stdin = child.stdin.take().expect("psql stdin");
        writeln!(stdin, "{sql}\nSELECT 'zdd-session-ready ' || pg_backend_pid();").expect("write to psql");
        stdin.flush().expect("flush psql");
        let stdout = BufReader::new(child.stdout.take().expect("psql stdout"));
        let mut pid = None;
        for line in stdout.lines() {
            let line = line.expect("read psql");
            if let Some(p) = line.strip_prefix("zdd-session-ready ") {
                pid = Some(p.trim().parse().expect("backend pid"));
                break;
            }
        }
        let Some(pid) = pid else {
            let status = child.wait();
            panic!("psql ended before running {sql:?}: {status:?}");
        };
        Session { child, stdin: Some(stdin), pid }
    }

    /// The columns of a table of the shop's database.
    pub(crate) fn columns(&self, table: &str) -> Vec<String> {
        self.psql(
            &self.database,
            &format!("SELECT column_name FROM information_schema.columns WHERE table_name = '{table}' ORDER BY 1"),
        )
        .lines()
        .map(str::to_string)
        .collect()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(format!("{BIN_DIR}/pg_ctl"))
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .output();
    }
}

/// An open `psql` session (see [`Postgres::session`]); dropping it closes psql's input and reaps it, which ends
/// the session and whatever it held.
pub(crate) struct Session {
    child: Child,
    stdin: Option<ChildStdin>,
    pub pid: u32,
}

impl Drop for Session {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// The initdb'ed template cluster, made once per cache (under a lock).
fn template() -> PathBuf {
    let template = cache_dir().join("pg-template");
    let lock = std::fs::File::create(cache_dir().join("pg-template.lock")).expect("create pg lock");
    lock.lock().expect("lock pg template");
    if !template.join("PG_VERSION").exists() {
        let scratch = tempfile::Builder::new().prefix("zdd-initdb-").tempdir_in("/tmp").expect("initdb dir");
        std::fs::set_permissions(scratch.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let data = scratch.path().join("data");
        std::fs::create_dir(&data).expect("initdb data dir");
        run("chown initdb dir", Command::new("chown").arg("postgres:postgres").arg(&data));
        run(
            "initdb",
            Command::new("runuser")
                .args(["-u", "postgres", "--"])
                .arg(format!("{BIN_DIR}/initdb"))
                .args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"])
                .arg(&data),
        );
        let _ = std::fs::remove_dir_all(&template);
        run("save template cluster", Command::new("cp").arg("-a").arg(&data).arg(&template));
    }
    template
}
