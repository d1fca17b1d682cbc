//! A PostgreSQL 15 cluster of one test: its own data directory and a free port on 127.0.0.1, trust auth, run
//! as the `postgres` user (initdb refuses root). `initdb` costs seconds, so one template cluster is made per
//! test run (`target/zdd-test-cache/pg-template`) and copied.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

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
