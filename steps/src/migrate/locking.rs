//! PostgreSQL lock safety for `manage.py migrate`: a migration never queues behind a long transaction for long,
//! and two deploys of one plan (or two hosts of a fleet) never migrate at once.
//!
//! - **Timeouts.** `migrate` runs with `lock_timeout` (and `statement_timeout`, if the plan sets one) passed
//!   through libpq's `PGOPTIONS`, so an `ALTER TABLE` that waits for a lock gives up after the lock timeout
//!   instead of holding its own queued lock — which every later query on that table would wait behind — for as
//!   long as the other transaction lasts. A lock timeout (SQLSTATE 55P03) is retried `lock-retries` times with a
//!   short backoff, each attempt a message; then the step fails with `zdd::migrate-lock-retries`. Django applies
//!   each migration in its own transaction on PostgreSQL, so the one that timed out left nothing behind.
//! - **Advisory lock.** Before `migrate`, a helper process (the release's Python, Django's connection) takes a
//!   session-level advisory lock on a key derived from the plan's name, polling `pg_try_advisory_lock` for at
//!   most `advisory-lock-within`, and holds it in its session until the step cancels it (its process group is
//!   signalled and reaped, so the session ends and the lock with it; the helper also exits when its parent
//!   does). A lock held by another session past that wait fails with `zdd::migrate-advisory-lock`, naming
//!   the holder's pid and `application_name`.

use std::sync::Arc;
use std::time::Duration;

use sqlparser::ast::{AlterTableOperation, ColumnDef, ColumnOption, ObjectName, Statement, TableConstraint};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::host::{Command, HostError, LineSink, Output};
use zdd_engine::kind::{StepCtx, StepError};

use super::failure::PythonError;
use super::inspect::Pending;
use super::schema::name;
use crate::manage::Manage;

/// The `migrate` step's lock settings (used on PostgreSQL only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockSettings {
    /// `lock_timeout` of the migrate session.
    pub lock_timeout: Duration,
    /// Attempts after the first when a migration times out waiting for a lock.
    pub lock_retries: u32,
    /// `statement_timeout` of the migrate session; zero: none.
    pub statement_timeout: Duration,
    /// How long to wait for the advisory lock that another deploy holds.
    pub advisory_within: Duration,
}

impl Default for LockSettings {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(2),
            lock_retries: 3,
            statement_timeout: Duration::ZERO,
            advisory_within: Duration::from_mins(1),
        }
    }
}

impl LockSettings {
    /// The `PGOPTIONS` for the migrate session: the environment's own options first (the env file may set
    /// some), then the step's timeouts, which win (libpq applies `-c` settings in order).
    pub fn pg_options(&self, existing: Option<&str>) -> String {
        let mut options: Vec<String> =
            existing.map(str::trim).filter(|e| !e.is_empty()).map(str::to_owned).into_iter().collect();
        options.push(format!("-c lock_timeout={}", millis(self.lock_timeout)));
        if !self.statement_timeout.is_zero() {
            options.push(format!("-c statement_timeout={}", millis(self.statement_timeout)));
        }
        options.join(" ")
    }

    /// The preview's words for what the step does on PostgreSQL.
    pub fn describe(&self) -> String {
        let statement = if self.statement_timeout.is_zero() {
            "no statement_timeout".to_owned()
        } else {
            format!("statement_timeout {}", humantime::format_duration(self.statement_timeout))
        };
        format!(
            "on PostgreSQL: hold the plan's advisory lock (wait at most {}), migrate with lock_timeout {} and {statement} \
             (PGOPTIONS), retry a lock timeout {} time(s)",
            humantime::format_duration(self.advisory_within),
            humantime::format_duration(self.lock_timeout),
            self.lock_retries,
        )
    }
}

fn millis(d: Duration) -> u128 {
    d.as_millis().max(1)
}

/// A migration that gave up waiting for a lock (SQLSTATE 55P03), and the relation it names, if it names one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockTimeout {
    /// The migration `migrate` was applying (`catalog.0002_add_colour`), from its `Applying ...` line.
    pub migration: Option<String>,
    /// The exception's first line (`django.db.utils.OperationalError: canceling statement due to lock timeout`).
    pub headline: String,
    /// `catalog_product`, from `... in relation "catalog_product"` or `lock on relation "catalog_product"`.
    pub relation: Option<String>,
}

impl LockTimeout {
    /// The lock timeout of a failed `migrate`, if that is why it failed.
    pub fn in_output(out: &Output) -> Option<Self> {
        let mut timeout = Self::in_stderr(&out.stderr_str())?;
        timeout.migration = applying(&out.stdout_str());
        Some(timeout)
    }

    /// The lock timeout that `stderr`'s last exception reports, if that is what it reports.
    pub fn in_stderr(stderr: &str) -> Option<Self> {
        let error = PythonError::last_in(stderr)?;
        let message = error.message.to_lowercase();
        // psycopg's `LockNotAvailable` comes wrapped in Django's `OperationalError`: the message tells.
        if !(message.contains("due to lock timeout") || message.contains("could not obtain lock on")) {
            return None;
        }
        Some(Self { migration: None, headline: error.name_and_headline(), relation: relation_in(&error.message) })
    }

    /// For messages: the migration that waited (or "a migration"), and the relation it waited on as a phrase
    /// to append (empty when PostgreSQL did not name one).
    fn what(&self) -> (String, String) {
        let migration = self.migration.clone().unwrap_or_else(|| "a migration".to_owned());
        (migration, self.relation.as_deref().map(|r| format!(" on `{r}`")).unwrap_or_default())
    }
}

/// The migration of `migrate`'s last `  Applying app.0002_name...` line.
fn applying(stdout: &str) -> Option<String> {
    let line = stdout.lines().rev().find_map(|l| l.trim_start().strip_prefix("Applying "))?;
    let name = line.split("...").next()?.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

/// The tables whose locks a migration's SQL waits for: those it alters or indexes, and those a foreign key it
/// adds references.
pub fn locked_tables(sql: &str) -> Vec<String> {
    let mut tables: Vec<String> = Vec::new();
    let mut add = |table: &ObjectName| {
        let table = name(table);
        if !tables.contains(&table) {
            tables.push(table);
        }
    };
    let references = |column: &ColumnDef| -> Vec<ObjectName> {
        column
            .options
            .iter()
            .filter_map(|o| match &o.option {
                ColumnOption::ForeignKey(fk) => Some(fk.foreign_table.clone()),
                _ => None,
            })
            .collect()
    };
    for (_, statement) in super::sql::split_operations(sql) {
        // Django's PostgreSQL SQL; what sqlparser cannot read names no table here (this is a help line only).
        let Ok(parsed) = Parser::parse_sql(&PostgreSqlDialect {}, &statement) else { continue };
        for parsed in parsed {
            match parsed {
                Statement::AlterTable(at) => {
                    add(&at.name);
                    for operation in &at.operations {
                        match operation {
                            AlterTableOperation::AddConstraint {
                                constraint: TableConstraint::ForeignKey(fk), ..
                            } => {
                                add(&fk.foreign_table);
                            }
                            AlterTableOperation::AddColumn { column_def, .. } => {
                                references(column_def).iter().for_each(&mut add);
                            }
                            _ => {}
                        }
                    }
                }
                Statement::CreateIndex(ci) => add(&ci.table_name),
                // A new table locks only the tables its foreign keys reference.
                Statement::CreateTable(ct) => {
                    ct.columns.iter().flat_map(references).for_each(|t| add(&t));
                    for constraint in &ct.constraints {
                        if let TableConstraint::ForeignKey(fk) = constraint {
                            add(&fk.foreign_table);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    tables
}

/// The first `relation "NAME"` a PostgreSQL message names.
fn relation_in(message: &str) -> Option<String> {
    let (_, rest) = message.split_once("relation \"")?;
    let (name, _) = rest.split_once('"')?;
    (!name.is_empty()).then(|| name.to_owned())
}

/// The advisory lock key of a plan: FNV-1a of `zdd migrate <plan>`, as PostgreSQL's `bigint`. Stable across zdd
/// versions and hosts, so every deploy of the plan, from any fleet host, contends for the same lock.
pub fn advisory_key(plan: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in format!("zdd migrate {plan}").bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    i64::from_ne_bytes(hash.to_ne_bytes())
}

/// The delay before retry `n` (1-based): 0.5 s, 1 s, 2 s, then 4 s at most; short, as the lock timeout already
/// waited.
pub fn backoff(retry: u32) -> Duration {
    Duration::from_millis(500u64 << retry.saturating_sub(1).min(3))
}

const LOCKED: &str = "ZDD-ADVISORY-LOCKED";
const BUSY: &str = "ZDD-ADVISORY-BUSY ";

/// The helper that takes and holds the advisory lock: `python -c HOLDER alias key within-seconds name`.
const HOLDER: &str = r#"
import json, os, sys, time
import django
django.setup()
from django.db import connections
alias, key, within, name = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
parent = os.getppid()
connection = connections[alias]
with connection.cursor() as cursor:
    cursor.execute("SELECT set_config('application_name', %s, false)", [name])
    deadline = time.monotonic() + within
    while True:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        if cursor.fetchone()[0]:
            break
        if time.monotonic() >= deadline:
            unsigned = key & 0xFFFFFFFFFFFFFFFF
            cursor.execute(
                "SELECT a.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), 'local'), "
                "coalesce(a.state, ''), coalesce(to_char(a.backend_start, 'YYYY-MM-DD HH24:MI:SS TZ'), '') "
                "FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.database = "
                "(SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND l.classid = %s::bigint::oid AND l.objid = %s::bigint::oid AND l.objsubid = 1",
                [unsigned >> 32, unsigned & 0xFFFFFFFF])
            holders = [dict(zip(["pid", "application_name", "client", "state", "since"], row)) for row in cursor.fetchall()]
            print("ZDD-ADVISORY-BUSY " + json.dumps(holders), flush=True)
            sys.exit(3)
        time.sleep(min(0.25, max(within, 0.01)))
    print("ZDD-ADVISORY-LOCKED", flush=True)
    # Held until the step signals this process; a parent that died (zdd killed) ends it too.
    while os.getppid() == parent:
        time.sleep(0.5)
"#;

/// Another session holding the plan's advisory lock, as `pg_stat_activity` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Holder {
    pub pid: i64,
    pub application_name: String,
    pub client: String,
    pub state: String,
    pub since: String,
}

impl Holder {
    fn describe(&self) -> String {
        let name = if self.application_name.is_empty() { "no application_name" } else { &self.application_name };
        format!("pid {} ({name}, from {}, {}, connected {})", self.pid, self.client, self.state, self.since)
    }
}

/// The plan's advisory lock, held by a helper process until [`AdvisoryLock::release`] (or until dropped: the
/// helper's task then signals and reaps it on its own).
pub struct AdvisoryLock {
    cancel: CancellationToken,
    helper: Option<tokio::task::JoinHandle<Result<Output, HostError>>>,
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl AdvisoryLock {
    /// Take the lock for `plan` on the database `alias`, waiting at most `within` for another holder.
    pub async fn acquire(ctx: &StepCtx, m: &Manage, alias: &str, within: Duration) -> Result<Self, StepError> {
        let plan = ctx.plan.name.clone();
        let key = advisory_key(&plan);
        let application_name = format!("zdd migrate {plan}");
        let cmd = m
            .python_script(HOLDER)
            .arg(alias.to_owned())
            .arg(key.to_string())
            .arg(format!("{:.3}", within.as_secs_f64()))
            .arg(application_name);
        ctx.message(format!(
            "taking the advisory lock of plan `{plan}` (key {key}; waiting at most {})",
            humantime::format_duration(within)
        ));
        let cancel = ctx.cancel.child_token();
        let (locked_tx, mut locked_rx) = mpsc::unbounded_channel::<()>();
        let sink: LineSink = Box::new(move |line: &str| {
            if line.trim_end() == LOCKED {
                let _ = locked_tx.send(());
            }
        });
        let host = Arc::clone(&ctx.host);
        let token = cancel.clone();
        let mut helper = tokio::spawn(async move { host.run(&cmd, &token, Some(&sink)).await });
        tokio::select! {
            Some(()) = locked_rx.recv() => {
                ctx.message(format!("advisory lock taken: no other deploy of `{plan}` migrates until this one is done"));
                Ok(Self { cancel, helper: Some(helper) })
            }
            ended = &mut helper => Err(not_locked(ctx, &plan, within, ended)),
        }
    }

    /// Let the lock go: signal the helper's process group and reap it (its session ends, the lock with it).
    pub async fn release(mut self, ctx: &StepCtx) {
        self.cancel.cancel();
        let Some(helper) = self.helper.take() else { return };
        match helper.await {
            Ok(Err(HostError::Cancelled { .. })) => ctx.message("advisory lock released"),
            Ok(Ok(out)) => ctx.message(format!(
                "the advisory lock's helper had already exited ({}): the lock went with its session",
                out.code.map_or_else(|| "signal".to_owned(), |c| format!("status {c}"))
            )),
            Ok(Err(e)) => ctx.message(format!("the advisory lock's helper ended with an error ({e})")),
            Err(e) => ctx.message(format!("the advisory lock's helper task failed ({e})")),
        }
    }
}

/// Why the helper ended without the lock: another session held it too long, or the helper itself failed.
fn not_locked(
    ctx: &StepCtx,
    plan: &str,
    within: Duration,
    ended: Result<Result<Output, HostError>, tokio::task::JoinError>,
) -> StepError {
    let out = match ended {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => return e.into(),
        Err(e) => return StepError::failed(format!("the advisory lock's helper task failed: {e}")),
    };
    let stdout = out.stdout_str();
    let Some(json) = stdout.lines().find_map(|l| l.strip_prefix(BUSY)) else {
        let stderr = out.stderr_str();
        let why = PythonError::last_in(&stderr)
            .map_or_else(|| crate::common::tail(&format!("{stdout}{stderr}"), 1), |e| e.name_and_headline());
        return StepError::failed(ctx.redactor.redact(&format!("could not take the advisory lock of `{plan}`: {why}")))
            .with_detail(ctx.redactor.redact(&crate::common::tail(&stderr, 12)));
    };
    let holders: Vec<Holder> = serde_json::from_str(json).unwrap_or_default();
    busy_error(plan, within, &holders)
}

/// `zdd::migrate-advisory-lock`: the lock is someone else's.
pub fn busy_error(plan: &str, within: Duration, holders: &[Holder]) -> StepError {
    let held_by = match holders {
        [] => "a session that ended as zdd looked".to_owned(),
        _ => holders.iter().map(Holder::describe).collect::<Vec<_>>().join("; "),
    };
    StepError::fatal(format!(
        "another session held the advisory lock of plan `{plan}` for more than {}: {held_by}; nothing was migrated \
         [{}]",
        humantime::format_duration(within),
        Code::MigrateAdvisoryLock
    ))
    .with_detail(
        "help: another deploy of this plan is migrating the same database; wait for it, or if that session is \
         stuck, end it with `SELECT pg_terminate_backend(<pid>)`. `advisory-lock-within` sets how long to wait",
    )
}

/// Run `migrate` with the session's timeouts; on a lock timeout, again after a backoff, `lock-retries` times.
/// Returns the last output (a failure other than a lock timeout is the caller's to describe). `pending` are the
/// migrations it applies, whose SQL says which tables one that waited locks.
pub async fn migrate(
    ctx: &StepCtx,
    settings: &LockSettings,
    mut cmd: Command,
    pending: &[Pending],
) -> Result<Output, StepError> {
    let options = settings.pg_options(cmd.env.get("PGOPTIONS").map(String::as_str));
    cmd.env.insert("PGOPTIONS".to_owned(), options);
    let attempts = settings.lock_retries.saturating_add(1);
    let mut last = None;
    for attempt in 1..=attempts {
        let out = ctx.exec(&cmd).await?;
        if out.success() {
            return Ok(out);
        }
        let Some(timeout) = LockTimeout::in_output(&out) else {
            return Ok(out);
        };
        let (migration, on) = timeout.what();
        if attempt == attempts {
            last = Some(timeout);
            break;
        }
        let delay = backoff(attempt);
        ctx.message(format!(
            "attempt {attempt} of {attempts}: {migration} waited {} for a lock{on} and gave up ({}): another \
             transaction holds it, and the table's queries waited at most that long behind the migration; \
             retrying in {}",
            humantime::format_duration(settings.lock_timeout),
            timeout.headline,
            humantime::format_duration(delay)
        ));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        }
    }
    let tables = last
        .as_ref()
        .and_then(|t| t.migration.as_deref())
        .and_then(|m| pending.iter().find(|p| p.label() == m))
        .map(|p| locked_tables(&p.sql))
        .unwrap_or_default();
    Err(retries_error(settings, attempts, last.as_ref(), &tables))
}

/// `zdd::migrate-lock-retries`: every attempt timed out waiting for a lock; `tables` are those the migration
/// that waited alters or indexes (from its SQL), for when PostgreSQL's error names none.
pub fn retries_error(
    settings: &LockSettings,
    attempts: u32,
    last: Option<&LockTimeout>,
    tables: &[String],
) -> StepError {
    let (migration, on) = last.map_or_else(|| ("a migration".to_owned(), String::new()), LockTimeout::what);
    let contended = match last.and_then(|t| t.relation.as_deref()) {
        Some(r) => format!("the contended lock is on `{r}`"),
        None if tables.is_empty() => "PostgreSQL did not say which table".to_owned(),
        None => format!(
            "PostgreSQL did not say which table; the migration that waited locks {}",
            tables.iter().map(|t| format!("`{t}`")).collect::<Vec<_>>().join(", ")
        ),
    };
    StepError::fatal(format!(
        "{migration} waited for a lock{on} {attempts} time(s), {} each, and gave up every time; it was rolled back, \
         the migrations before it stay applied [{}]",
        humantime::format_duration(settings.lock_timeout),
        Code::MigrateLockRetries
    ))
    .with_detail(format!(
        "help: {contended}; a long transaction holds a lock there (`SELECT l.relation::regclass, l.mode, a.pid, \
         a.application_name, a.xact_start FROM pg_locks l JOIN pg_stat_activity a USING (pid) WHERE l.granted AND \
         l.relation IS NOT NULL ORDER BY a.xact_start` lists them). Deploy when it has ended, or raise `lock-timeout` / \
         `lock-retries` if queueing the table's queries behind the migration for that long is acceptable{}",
        last.map(|t| format!("\nlast error: {}", t.headline)).unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_options_carry_the_timeouts_in_milliseconds_after_the_environments_own() {
        let s = LockSettings::default();
        assert_eq!(s.pg_options(None), "-c lock_timeout=2000");
        let s =
            LockSettings { statement_timeout: Duration::from_secs(30), lock_timeout: Duration::from_millis(1500), ..s };
        assert_eq!(s.pg_options(Some(" ")), "-c lock_timeout=1500 -c statement_timeout=30000");
        assert_eq!(
            s.pg_options(Some("-c search_path=shop")),
            "-c search_path=shop -c lock_timeout=1500 -c statement_timeout=30000"
        );
        let s = LockSettings { lock_timeout: Duration::from_micros(300), ..s };
        assert_eq!(s.pg_options(None), "-c lock_timeout=1 -c statement_timeout=30000", "0 would mean no timeout");
    }

    const LOCK_TIMEOUT: &str = "Traceback (most recent call last):\n  File \"/srv/venv/lib/python3.11/site-packages/django/db/backends/utils.py\", line 87, in _execute\n    return self.cursor.execute(sql)\npsycopg.errors.LockNotAvailable: canceling statement due to lock timeout\n\nThe above exception was the direct cause of the following exception:\n\nTraceback (most recent call last):\n  File \"manage.py\", line 8, in <module>\ndjango.db.utils.OperationalError: canceling statement due to lock timeout\n";

    #[test]
    fn a_lock_timeout_is_recognised_and_names_its_relation_when_postgres_does() {
        let t = LockTimeout::in_stderr(LOCK_TIMEOUT).unwrap();
        assert_eq!(t.headline, "django.db.utils.OperationalError: canceling statement due to lock timeout");
        assert_eq!(t.relation, None);
        let tuple = "django.db.utils.OperationalError: canceling statement due to lock timeout\nCONTEXT:  while locking tuple (0,1) in relation \"catalog_product\"\n";
        assert_eq!(LockTimeout::in_stderr(tuple).unwrap().relation.as_deref(), Some("catalog_product"));
        let nowait = "django.db.utils.OperationalError: could not obtain lock on relation \"catalog_product\"\n";
        assert_eq!(LockTimeout::in_stderr(nowait).unwrap().relation.as_deref(), Some("catalog_product"));
    }

    #[test]
    fn the_migration_that_waited_is_the_last_one_applying() {
        let stdout = "Operations to perform:\n  Apply all migrations: catalog\nRunning migrations:\n  Applying catalog.0002_a... OK\n  Applying catalog.0003_b...";
        assert_eq!(applying(stdout).as_deref(), Some("catalog.0003_b"));
        assert_eq!(applying("Running migrations:\n"), None);
    }

    #[test]
    fn the_tables_a_migration_locks_are_those_it_alters_or_indexes() {
        let sql = "BEGIN;\n--\n-- Add field colour to product\n--\nALTER TABLE \"catalog_product\" ADD COLUMN \"colour\" varchar(20) NULL;\n--\n-- Create model Review\n--\nCREATE TABLE \"catalog_review\" (\"id\" bigint NOT NULL PRIMARY KEY, \"shop_id\" bigint REFERENCES \"shop_shop\"(\"id\"));\nALTER TABLE ONLY \"catalog_review\" ADD CONSTRAINT x FOREIGN KEY (\"product_id\") REFERENCES \"catalog_product\" (\"id\");\nCREATE INDEX \"catalog_review_product_id\" ON \"catalog_review\" (\"product_id\");\nALTER TABLE IF EXISTS \"catalog_product\" DROP COLUMN \"x\";\nCOMMIT;\n";
        assert_eq!(locked_tables(sql), ["catalog_product", "shop_shop", "catalog_review"]);
        assert!(locked_tables("").is_empty());
    }

    #[test]
    fn other_failures_are_not_lock_timeouts() {
        for stderr in [
            "django.db.utils.OperationalError: canceling statement due to statement timeout\n",
            "django.db.utils.ProgrammingError: relation \"catalog_product\" does not exist\n",
            "django.db.utils.OperationalError: database is locked\n",
            "canceling statement due to lock timeout, said a log line, not an exception\n",
            "",
        ] {
            assert_eq!(LockTimeout::in_stderr(stderr), None, "{stderr}");
        }
    }

    #[test]
    fn the_advisory_key_is_stable_and_differs_by_plan() {
        assert_eq!(advisory_key("shop"), advisory_key("shop"));
        assert_ne!(advisory_key("shop"), advisory_key("blog"));
        insta::assert_snapshot!(advisory_key("shop"), @"7897892862261476304");
    }

    #[test]
    fn backoff_is_short_and_capped() {
        let delays: Vec<u128> = (1..=6).map(|n| backoff(n).as_millis()).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 4000, 4000]);
    }

    #[test]
    fn the_errors_carry_their_codes_and_name_the_holder_or_the_table() {
        let holder = Holder {
            pid: 4242,
            application_name: "zdd migrate shop".into(),
            client: "10.0.0.2".into(),
            state: "idle".into(),
            since: "2026-12-02 14:00:00 UTC".into(),
        };
        let e = busy_error("shop", Duration::from_mins(1), &[holder]);
        let StepError::Fatal { message, detail } = e else { panic!("{e:?}") };
        assert!(message.contains("pid 4242 (zdd migrate shop, from 10.0.0.2, idle"), "{message}");
        assert!(message.ends_with("[zdd::migrate-advisory-lock]"), "{message}");
        assert!(detail.unwrap().starts_with("help: "));
        let last = LockTimeout {
            migration: Some("catalog.0002_add_colour".into()),
            headline: "x".into(),
            relation: Some("catalog_product".into()),
        };
        let e = retries_error(&LockSettings::default(), 4, Some(&last), &[]);
        let StepError::Fatal { message, detail } = e else { panic!("{e:?}") };
        assert!(
            message.starts_with("catalog.0002_add_colour waited for a lock on `catalog_product` 4 time(s), 2s each"),
            "{message}"
        );
        assert!(message.ends_with("[zdd::migrate-lock-retries]"), "{message}");
        assert!(detail.unwrap().contains("the contended lock is on `catalog_product`"));
        let last = LockTimeout { relation: None, ..last };
        let e = retries_error(&LockSettings::default(), 4, Some(&last), &["catalog_product".to_owned()]);
        let detail = format!("{e:?}");
        assert!(detail.contains("the migration that waited locks `catalog_product`"), "{detail}");
    }
}
