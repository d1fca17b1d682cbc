//! The `migrate` kind: apply the new release's migrations, but only those the old release can live with.
//!
//! Before anything changes, the unapplied migrations and their SQL are read from Django ([`inspect`]) and checked by
//! the safety gate ([`gate`]); an unsafe operation stops the deploy (a fatal error naming the migration, the
//! operation and the expand/contract fix) unless the plan allows that migration by name. Then `migrate --noinput`.
//! Schema changes are forward-only: the rollback never reverses them (which is why they must be compatible).
//!
//! What is judged is what can break the release that runs: with nothing live (a first deploy) the gate reports
//! what it would refuse and refuses nothing; with a live release, the migrations it ships byte for byte (a
//! third-party app at the same version) are not new, and only the others are judged.
//!
//! On PostgreSQL, `migrate` runs under the plan's advisory lock, with `lock_timeout` (and `statement_timeout`)
//! set, and a lock timeout is retried a few times ([`locking`]): a migration never freezes a table behind a long
//! transaction, and two deploys never migrate at once.
//!
//! When the migrations' inputs are byte for byte the live release's ([`skip`]) and the database has every
//! migration the live release applied, the step skips all of that after one query (`force #true`: never).
//!
//! With `phase "pre"` the step applies only what the old release can live with and holds the contract
//! migrations ([`phase`]); a second step with `phase "post"`, after `drain-stop`, applies them once no old code
//! runs. That step is the run's commit point (no rollback after it starts), and it records what it applied in
//! the release ([`post_record`]), so that deploying an older release again is refused while it would run on a
//! schema without what they removed.

mod doctor;
pub mod failure;
pub mod gate;
pub mod inspect;
pub mod locking;
pub mod phase;
pub mod post_record;
mod preview;
pub mod rules;
mod schema;
pub mod skip;
pub mod sql;

use async_trait::async_trait;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::host::Output;
use zdd_engine::kind::{DeployTarget, PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::Value;
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{quiet, tail};
use crate::fingerprint::{PRELUDE, read_record};
use crate::manage::{ENV_FILE, Manage, ManageSettings, PYTHON, ROOT, SETTINGS, release_dir};
use failure::PythonError;
use gate::{Dialect, Finding, Gate};
use inspect::Pending;
use locking::{AdvisoryLock, LockSettings};

pub struct Migrate;

static SPEC: KindSpec = KindSpec {
    name: "migrate",
    summary: "Apply migrations after a safety gate refuses those unsafe while the old release runs.",
    fields: &[
        ROOT,
        PYTHON,
        SETTINGS,
        ENV_FILE,
        FieldSpec::new(
            "database",
            ValueType::Enum(&["auto", "postgresql", "sqlite"]),
            "The SQL dialect the gate parses; `auto` asks Django (`connection.vendor`).",
        )
        .default("auto"),
        FieldSpec::new("db-alias", ValueType::String, "The Django database alias to migrate.").default("default"),
        FieldSpec::new(
            "allow",
            ValueType::String,
            "A migration (`app.0004_drop_x`) the gate lets through although it is unsafe, or that a post-deploy \
             phase applied and an older release is deployed over: you checked it. Repeatable, or space-separated.",
        )
        .repeated(),
        FieldSpec::new(
            "phase",
            ValueType::Enum(&["all", "pre", "post"]),
            "`all`: apply every migration, refusing contract ones while a release is live. `pre`: apply what the \
             old release can live with and hold the contract migrations (drop a column or a table, tighten to NOT \
             NULL) for a `post` step after `drain-stop`, which applies them once no old code runs.",
        )
        .default("all"),
        FieldSpec::new(
            "source",
            ValueType::Path,
            "The checkout the release is made from: with a release live, `zdd plan` inspects its migrations with \
             the live release's Python and shows each one's phase and verdict.",
        ),
        FieldSpec::new(
            "force",
            ValueType::Bool,
            "Run the full step even when the migrations' fingerprint is the live release's (no skip).",
        )
        .default("false"),
        FieldSpec::new(
            "lock-timeout",
            ValueType::Duration,
            "PostgreSQL: how long a migration waits for a table's lock before it gives up (`lock_timeout`), so the \
             table's queries never queue behind it for longer.",
        )
        .default("2s"),
        FieldSpec::new(
            "lock-retries",
            ValueType::Int,
            "PostgreSQL: how many times `migrate` runs again after a lock timeout (0 to 20), before the step fails.",
        )
        .default("3"),
        FieldSpec::new(
            "statement-timeout",
            ValueType::Duration,
            "PostgreSQL: the longest any statement of `migrate` may run (`statement_timeout`); `0s`: no limit.",
        )
        .default("0s"),
        FieldSpec::new(
            "advisory-lock-within",
            ValueType::Duration,
            "PostgreSQL: how long to wait for the plan's advisory lock while another deploy holds it.",
        )
        .default("60s"),
    ],
    effect: Effect::ForwardOnly,
    undo: "Nothing: migrations are forward-only (the gate makes sure the old release works with the new schema).",
};

/// A migrate step's settings.
#[derive(Debug)]
pub struct Settings {
    manage: ManageSettings,
    /// `None`: ask Django (`auto`).
    database: Option<Dialect>,
    alias: String,
    /// Migrations let through although unsafe.
    allow: Vec<String>,
    /// Never skip.
    force: bool,
    /// Timeouts, retries and the advisory lock, on PostgreSQL.
    locking: LockSettings,
    phase: StepPhase,
    /// Where `zdd plan` reads the new release's migrations.
    source: Option<std::path::PathBuf>,
}

/// Which migrations the step applies (`phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepPhase {
    /// Everything, contract migrations refused while a release is live.
    All,
    /// What the old release can live with; contract migrations are held.
    Pre,
    /// What is left, after `drain-stop`.
    Post,
}

/// The gate's verdict on a set of findings, after the plan's `allow`s.
pub fn refusal(findings: &[Finding], allow: &[String]) -> Option<StepError> {
    let refused: Vec<&Finding> = findings.iter().filter(|f| !allow.contains(&f.migration)).collect();
    if refused.is_empty() {
        return None;
    }
    let mut migrations: Vec<&str> = refused.iter().map(|f| f.migration.as_str()).collect();
    migrations.dedup();
    let detail = refused.iter().map(|f| f.describe()).collect::<Vec<_>>().join("\n\n");
    let allow_hint = migrations.iter().map(|m| format!("allow \"{m}\"")).collect::<Vec<_>>().join(" / ");
    Some(
        StepError::fatal(format!(
            "refused {} unsafe operation(s) in {} (nothing was applied); if you checked them, add `{allow_hint}` to the step",
            refused.len(),
            migrations.join(", ")
        ))
        .with_detail(detail),
    )
}

/// The error of a Django process that failed while `doing` something: the database could not be reached, or
/// the exception its traceback ends with, or its exit status; `applied` says what that left in the database.
/// The detail is the exception in full, or the end of the output (redacted: the env file's values are secrets).
fn failed(ctx: &StepCtx, out: &Output, doing: &str, applied: &str) -> StepError {
    let stderr = out.stderr_str();
    let exit = out.code.map_or_else(|| "was killed by a signal".to_owned(), |c| format!("exited with status {c}"));
    let output = tail(&format!("{}{stderr}", out.stdout_str()), 12);
    let (message, detail) = match PythonError::last_in(&stderr) {
        // The traceback's frames say nothing more than where psycopg gave up: the hint lines do.
        Some(e) if e.is_unreachable_database() => (
            format!("the database could not be reached while {doing} ({applied}): {}", e.headline()),
            format!("{}: {}", e.name, e.message),
        ),
        Some(e) => (format!("Django failed while {doing} ({applied}): {}", e.name_and_headline()), output),
        None => (format!("Django {exit} while {doing} ({applied})"), output),
    };
    StepError::failed(ctx.redactor.redact(&message)).with_detail(ctx.redactor.redact(&detail))
}

/// What the gate judges for this target (the preview's note).
fn judged_note(target: &DeployTarget) -> String {
    match &target.live_release {
        None => "nothing is live (first deploy): report what the gate would refuse, refuse nothing".to_owned(),
        Some(live) => format!(
            "judge the migrations new to the live release {live}; those it ships byte for byte (same app version) are not new"
        ),
    }
}

/// The live release's directory, to compare migration files with (none on a first deploy or a redeploy of it).
fn live_release_dir(s: &Settings, ctx: &StepCtx) -> Option<std::path::PathBuf> {
    let live = ctx.target.live_release.as_deref().filter(|l| *l != ctx.target.release)?;
    Some(release_dir(&s.manage.root, live))
}

/// Migrations the live release ships but that were never applied: not judged (its code expects them), but odd.
fn report_known_to_live(ctx: &StepCtx, migrations: &[Pending]) {
    let known: Vec<&Pending> = migrations.iter().filter(|p| p.known_to_live()).collect();
    if known.is_empty() {
        return;
    }
    let mut by_origin: Vec<String> = Vec::new();
    for p in &known {
        let origin = p.package.clone().unwrap_or_else(|| "the project".to_owned());
        if !by_origin.contains(&origin) {
            by_origin.push(origin);
        }
    }
    ctx.message(format!(
        "not judged: {} unapplied migration(s) the live release ships too ({}: {}); the live release has been \
         running without them, and applying them brings the schema to what its code expects",
        known.len(),
        by_origin.join(", "),
        known.iter().map(|p| p.label()).collect::<Vec<_>>().join(", ")
    ));
}

#[async_trait]
impl TypedKind for Migrate {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    /// A post phase drops what the old release uses: once it starts, rolling back would put the old code on a
    /// schema it cannot use, while the new release serves fine.
    fn commits(&self, s: &Settings) -> bool {
        s.phase == StepPhase::Post
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings {
            manage: ManageSettings::from_fields(ctx)?,
            database: match ctx.str("database") {
                Some("postgresql") => Some(Dialect::Postgres),
                Some("sqlite") => Some(Dialect::Sqlite),
                _ => None,
            },
            alias: ctx.str("db-alias").unwrap_or("default").to_owned(),
            allow: allow_settings(ctx)?,
            force: ctx.bool("force", false),
            locking: lock_settings(ctx)?,
            phase: match ctx.str("phase") {
                Some("pre") => StepPhase::Pre,
                Some("post") => StepPhase::Post,
                _ => StepPhase::All,
            },
            source: ctx.path("source"),
        })
    }

    async fn preflight(
        &self,
        s: &Settings,
        ctx: &zdd_engine::preflight::PreflightCtx,
    ) -> Vec<zdd_engine::preflight::Finding> {
        crate::preflight::django_step(s.manage.env_file.as_deref(), s.manage.settings.as_deref(), ctx).await
    }

    async fn doctor(&self, s: &Settings, ctx: &zdd_engine::preflight::PreflightCtx) -> Vec<zdd_engine::doctor::Check> {
        let mut checks = zdd_engine::doctor::from_findings(self.preflight(s, ctx).await);
        checks.push(doctor::database_version(s, ctx).await);
        checks
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let m = Manage::describe(&s.manage, &ctx.target);
        let alias = s.alias.as_str();
        let mut actions = vec![PlannedAction::Note {
            text: "list unapplied migrations (migrate --plan) and their SQL (sqlmigrate); refuse unsafe operations"
                .into(),
        }];
        actions.push(PlannedAction::Note { text: judged_note(&ctx.target) });
        actions.insert(0, PlannedAction::Note { text: skip_note(s, ctx).await });
        actions.push(PlannedAction::Note { text: phase_note(s.phase).into() });
        match (&s.source, s.phase) {
            (_, StepPhase::Post) => {}
            (Some(source), _) => actions.extend(preview::phases(s, source, ctx).await),
            (None, _) => actions.push(PlannedAction::Note {
                text: "each migration's phase: shown by the run (set `source` for the preview to show it)".into(),
            }),
        }
        if !s.allow.is_empty() {
            actions.push(PlannedAction::Note { text: format!("allowed although unsafe: {}", s.allow.join(", ")) });
        }
        if s.database != Some(Dialect::Sqlite) {
            actions.push(PlannedAction::Note { text: s.locking.describe() });
        }
        actions
            .push(PlannedAction::Run { command: m.command(&["migrate", "--noinput", "--database", alias]).display() });
        Ok(Preview {
            actions,
            checks: vec![
                "no unsafe migration (drop/rename, type change, NOT NULL, unique, blocking index, irreversible)".into(),
            ],
            undo: vec![],
        })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let m = Manage::load(&s.manage, ctx).await?;
        let (records, unwritten) =
            post_record::carry_forward(ctx.host.as_ref(), &s.manage.root, &s.alias, &ctx.target.release).await;
        if let Some(why) = unwritten {
            ctx.message(format!(
                "could not copy the post-deploy migrations' records into this release ({why}): a rollback past \
                 them is refused only while the release that applied them is kept"
            ));
        }
        // A post phase runs whatever the pre phase held, which no fingerprint records: never skipped.
        if s.phase != StepPhase::Post && try_skip(s, ctx, &m).await {
            return Ok(());
        }
        run_full(s, ctx, &m, &records).await?;
        record(s, ctx, &m).await;
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

/// The `allow` fields: migration names (`app.0004_name`), space-separated in one value too, so that one plan
/// variable can carry several, or none.
fn allow_settings(ctx: &SettingsCtx<'_>) -> Result<Vec<String>, Diagnostics> {
    let mut names = Vec::new();
    let mut diags = Diagnostics::new();
    for field in ctx.all("allow") {
        let Some(text) = field.value.as_ref().and_then(Value::as_str) else { continue };
        for name in text.split_whitespace() {
            if is_migration_name(name) {
                names.push(name.to_owned());
            } else {
                diags.push(
                    Diagnostic::error(Code::BadName, format!("`allow` takes migration names, not `{name}`"))
                        .at(field.span, "not `app_label.migration_name`")
                        .help("name each migration as `app.0004_name` (letters, digits and `_`), space-separated"),
                );
            }
        }
    }
    if diags.is_empty() { Ok(names) } else { Err(diags) }
}

fn is_migration_name(name: &str) -> bool {
    let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    name.split_once('.').is_some_and(|(app, migration)| word(app) && word(migration))
}

/// The `lock-*`, `statement-timeout` and `advisory-lock-within` fields.
fn lock_settings(ctx: &SettingsCtx<'_>) -> Result<LockSettings, Diagnostics> {
    let defaults = LockSettings::default();
    let mut diags = Diagnostics::new();
    let lock_retries = match ctx.int("lock-retries").map(u32::try_from) {
        None => defaults.lock_retries,
        Some(Ok(n @ 0..=20)) => n,
        Some(_) => {
            diags.push(
                Diagnostic::error(Code::BadInt, "`lock-retries` must be from 0 to 20")
                    .at(ctx.span("lock-retries"), "out of range")
                    .help("each retry waits `lock-timeout` again; 0 means one attempt, no retry"),
            );
            defaults.lock_retries
        }
    };
    let lock_timeout = ctx.duration("lock-timeout", defaults.lock_timeout);
    if lock_timeout.is_zero() {
        diags.push(
            Diagnostic::error(Code::BadDuration, "`lock-timeout` must be more than 0s")
                .at(ctx.span("lock-timeout"), "0s would be PostgreSQL's \"no lock timeout\"")
                .help("a migration that waits for a lock without a limit freezes the table behind it; give it seconds"),
        );
    }
    if !diags.is_empty() {
        return Err(diags);
    }
    Ok(LockSettings {
        lock_timeout,
        lock_retries,
        statement_timeout: ctx.duration("statement-timeout", defaults.statement_timeout),
        advisory_within: ctx.duration("advisory-lock-within", defaults.advisory_within),
    })
}

/// What the step's `phase` applies (the preview's note).
fn phase_note(phase: StepPhase) -> &'static str {
    match phase {
        StepPhase::All => {
            "phase all: every migration; a release older than post-deploy migrations the database has is refused"
        }
        StepPhase::Pre => {
            "phase pre: apply what the old release can live with; hold contract migrations (drop column or table, \
             NOT NULL) for the post phase; refuse a pre-deploy migration that depends on a held one, and a release \
             older than post-deploy migrations the database has"
        }
        StepPhase::Post => {
            "phase post (no old code runs): apply the held contract migrations, refused if this release's models \
             still use what they remove; the commit point: from here a failure leaves this release live, no \
             rollback; never skipped by fingerprint"
        }
    }
}

/// The preview's verdict: whether this deploy may skip, and on what condition.
async fn skip_note(s: &Settings, ctx: &PreviewCtx) -> String {
    let live = ctx.target.live_release.as_deref().filter(|l| *l != ctx.target.release);
    let Some(live) = live else {
        return "full step (nothing live to compare with); records the migrations' fingerprint in the release".into();
    };
    if s.force {
        return "full step: `force #true` (no skip by fingerprint)".into();
    }
    let file = skip::record_file(&release_dir(&s.manage.root, live), &s.alias);
    match read_record::<skip::Record>(ctx.host.as_ref(), &file).await {
        Some(rec) if rec.fingerprint.is_some() => format!(
            "skip if the migration files, INSTALLED_APPS, MIGRATION_MODULES and database `{}` hash to the live \
             release {live}'s fingerprint {} and django_migrations still has its {} migrations (one query, no \
             Django start); otherwise the full step:",
            s.alias,
            crate::fingerprint::short(rec.fingerprint.as_deref().unwrap_or_default()),
            rec.applied.len()
        ),
        _ => format!("full step: the live release {live} recorded no migrations fingerprint ({})", file.display()),
    }
}

/// Skip when the live release's fingerprint is this release's and nothing it applied is missing; says either way.
async fn try_skip(s: &Settings, ctx: &StepCtx, m: &Manage) -> bool {
    let Some(live_dir) = live_release_dir(s, ctx) else {
        return false;
    };
    if s.force {
        ctx.message("force #true: the full step, whatever the fingerprint");
        return false;
    }
    let Some(live) = read_record::<skip::Record>(ctx.host.as_ref(), &skip::record_file(&live_dir, &s.alias)).await
    else {
        ctx.message("not skipped: the live release recorded no migrations fingerprint");
        return false;
    };
    let now = match fingerprint_now(s, ctx, m).await {
        Ok(now) => now,
        Err(why) => {
            ctx.message(format!("not skipped: the fingerprint check failed ({why})"));
            return false;
        }
    };
    match skip::verdict(&live, &now) {
        skip::Verdict::Skip { fingerprint, applied } => {
            ctx.message(format!(
                "skipped: the migration files, INSTALLED_APPS, MIGRATION_MODULES and database `{}` are the live \
                 release's (fingerprint {fingerprint}), and django_migrations has all {applied} migrations it \
                 applied: nothing can be unapplied",
                s.alias
            ));
            write_record(ctx, m, &s.alias, &now).await;
            true
        }
        skip::Verdict::Run(why) => {
            ctx.message(format!("not skipped: {why}"));
            false
        }
    }
}

/// The fingerprint and the applied migrations, read now (settings imported, Django not set up).
async fn fingerprint_now(s: &Settings, ctx: &StepCtx, m: &Manage) -> Result<skip::Record, String> {
    let script = format!("{PRELUDE}\n{}", skip::SCRIPT);
    let out = quiet(ctx, &m.python_script(&script).arg(s.alias.clone())).await.map_err(|e| e.to_string())?;
    if !out.success() {
        let last = PythonError::last_in(&out.stderr_str()).map(|e| e.name_and_headline());
        return Err(ctx.redactor.redact(&last.unwrap_or_else(|| tail(&out.stderr_str(), 1))));
    }
    skip::parse(&out.stdout_str())
}

/// Record this release's fingerprint after a full run; a failure only means the next deploy runs in full.
async fn record(s: &Settings, ctx: &StepCtx, m: &Manage) {
    match fingerprint_now(s, ctx, m).await {
        Ok(now) => write_record(ctx, m, &s.alias, &now).await,
        Err(why) => ctx.message(format!("no fingerprint recorded ({why}): the next deploy runs this step in full")),
    }
}

async fn write_record(ctx: &StepCtx, m: &Manage, alias: &str, record: &skip::Record) {
    let file = skip::record_file(&m.release_dir, alias);
    let written = match serde_json::to_vec_pretty(record) {
        Ok(json) => ctx.host.write_file(&file, &json, 0o644).await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = written {
        ctx.message(format!(
            "no fingerprint recorded ({}: {e}): the next deploy runs this step in full",
            file.display()
        ));
    }
}

/// Inspect, gate and apply: the step without a skip. `records` are the post phases' (this release's first).
async fn run_full(
    s: &Settings,
    ctx: &StepCtx,
    m: &Manage,
    records: &[(String, post_record::Record)],
) -> Result<(), StepError> {
    let found = inspect_now(s, ctx, m).await?;
    if s.phase != StepPhase::Post {
        refuse_older_than_post(s, ctx, &found, records)?;
    }
    if found.migrations.is_empty() {
        ctx.message("no unapplied migrations");
        return Ok(());
    }
    let dialect = match s.database {
        Some(dialect) => dialect,
        None => Dialect::from_vendor(&found.vendor).ok_or_else(|| {
            StepError::fatal(format!(
                "the migration gate knows PostgreSQL and SQLite, not `{}`: set `database` to the closest dialect",
                found.vendor
            ))
        })?,
    };
    let mut gate = Gate::new(dialect, &found.schema).existing_tables(found.tables.as_deref());
    for pending in &found.migrations {
        gate.migration(pending);
    }
    let findings = gate.findings();
    report_known_to_live(ctx, &found.migrations);
    let opaque: Vec<String> =
        found.migrations.iter().filter(|p| !p.known_to_live() && p.runs_python()).map(Pending::label).collect();
    // On a first deploy nothing can break, so a list of the data migrations would only be noise.
    if !opaque.is_empty() && ctx.target.live_release.is_some() {
        ctx.message(format!("runs Python the gate cannot read (RunPython): {}", opaque.join(", ")));
    }
    let verdict = if ctx.target.live_release.is_none() {
        report_first_deploy(ctx, &findings);
        Verdict::default()
    } else {
        judge(s, ctx, &found.migrations, &findings)?
    };
    apply(s, ctx, m, dialect, &found.migrations, &verdict).await
}

/// Run the inspection script: the unapplied migrations, their SQL, and what the database has.
async fn inspect_now(s: &Settings, ctx: &StepCtx, m: &Manage) -> Result<inspect::Inspection, StepError> {
    let live_dir = live_release_dir(s, ctx).map(|d| d.to_string_lossy().into_owned()).unwrap_or_default();
    let out = quiet(ctx, &m.python_script(inspect::SCRIPT).arg(s.alias.clone()).arg(live_dir)).await?;
    if !out.success() {
        return Err(failed(ctx, &out, "listing the unapplied migrations", "nothing was applied"));
    }
    inspect::parse(&out.stdout_str()).map_err(|e| StepError::failed(e).with_detail(out.stderr_str()))
}

/// Nothing is live: report what the gate would refuse, refuse nothing.
fn report_first_deploy(ctx: &StepCtx, findings: &[Finding]) {
    for f in findings {
        ctx.message(format!(
            "would refuse if a release were live: {}: {} [{}]",
            f.migration,
            f.operation,
            f.rule.code()
        ));
    }
    ctx.message(format!(
        "nothing is live (first deploy): no old release can break, so the gate refuses nothing{}",
        if findings.is_empty() { String::new() } else { format!(" ({} finding(s) above)", findings.len()) }
    ));
}

/// What the gate lets the step apply.
#[derive(Debug, Default)]
struct Verdict {
    /// `manage.py migrate <app> <name>` targets when the pre phase holds migrations; `None`: apply everything.
    targets: Option<Vec<(String, String)>>,
    /// The migrations held for the post phase.
    held: Vec<String>,
}

/// The gate's verdict with a release live, by phase.
fn judge(s: &Settings, ctx: &StepCtx, migrations: &[Pending], findings: &[Finding]) -> Result<Verdict, StepError> {
    let phases = phase::classify(migrations, findings);
    let refused: Vec<Finding> = match s.phase {
        StepPhase::All => findings.to_vec(),
        StepPhase::Pre => {
            ctx.message(format!("phases: {}", phases.lines().join("; ")));
            refuse_out_of_order(&phases)?;
            refuse_tight_drops(migrations, &phases, &s.allow)?;
            // What the post step would refuse is refused now, before anything changes: there it would come
            // after the commit point.
            let held: Vec<Pending> =
                migrations.iter().filter(|m| phases.of(&m.label()) == Some(phase::Phase::Post)).cloned().collect();
            refuse_still_used(&held, &s.allow)?;
            findings
                .iter()
                .filter(|f| phases.of(&f.migration) != Some(phase::Phase::Post) || !phase::is_contract(f.rule))
                .cloned()
                .collect()
        }
        StepPhase::Post => {
            refuse_still_used(migrations, &s.allow)?;
            findings.iter().filter(|f| !phase::is_contract(f.rule)).cloned().collect()
        }
    };
    if let Some(refused) = refusal(&refused, &s.allow) {
        return Err(with_phase_hint(refused, s.phase, &phases));
    }
    for f in refused.iter().filter(|f| s.allow.contains(&f.migration)) {
        ctx.message(format!("allowed by the plan: {} ({})", f.migration, f.rule.code()));
    }
    if s.phase == StepPhase::Post {
        for f in findings.iter().filter(|f| phase::is_contract(f.rule)) {
            ctx.message(format!("post-deploy, no old code runs: {}: {} [{}]", f.migration, f.operation, f.rule.code()));
        }
    }
    if s.phase != StepPhase::Pre {
        return Ok(Verdict::default());
    }
    let held: Vec<String> = phases.post().iter().map(|p| p.migration.clone()).collect();
    if !held.is_empty() {
        ctx.message(format!("held for the post-deploy phase: {}", held.join(", ")));
        ctx.verdict(format!("held {} post-deploy migration(s): {}", held.len(), held.join(", ")));
    }
    Ok(Verdict { targets: phase::pre_targets(migrations, &phases), held })
}

/// With `phase "all"`, a refusal of contract-only migrations says they could run after the switch instead.
fn with_phase_hint(refused: StepError, step_phase: StepPhase, phases: &phase::Phases) -> StepError {
    let post: Vec<&str> = phases.post().iter().map(|p| p.migration.as_str()).collect();
    match refused {
        StepError::Fatal { message, detail } if step_phase == StepPhase::All && !post.is_empty() => {
            StepError::fatal(message).with_detail(format!(
                "{}\n\n{} only contract operations: split the step into `phase \"pre\"` and a `phase \"post\"` \
                 step after drain-stop, which applies them once no old code runs (the book's \"Migrations in two \
                 phases\")",
                detail.unwrap_or_default(),
                if post.len() == 1 { format!("{} has", post[0]) } else { format!("{} have", post.join(", ")) }
            ))
        }
        other => other,
    }
}

/// Not `allow`able: `migrate <app> <name>` applies every unapplied ancestor, so letting the pre-deploy one
/// through would apply the held one before the switch.
fn refuse_out_of_order(phases: &phase::Phases) -> Result<(), StepError> {
    let bad: Vec<&phase::OutOfOrder> = phases.out_of_order.iter().collect();
    if bad.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = bad
        .iter()
        .map(|o| format!("{} (pre-deploy) depends on {} (post-deploy, held until no old code runs)", o.pre, o.post))
        .collect();
    Err(StepError::fatal(format!(
        "refused: {} pre-deploy migration(s) depend on a post-deploy one, so the pre phase cannot apply them \
         without breaking the old release (nothing was applied)",
        bad.len()
    ))
    .with_detail(format!(
        "{}\nfix: move the pre-deploy migration to the next release, or make it depend on the migration before \
         the post-deploy one",
        lines.join("\n")
    )))
}

fn refuse_tight_drops(migrations: &[Pending], phases: &phase::Phases, allow: &[String]) -> Result<(), StepError> {
    let tight: Vec<_> =
        phase::tight_while_held(migrations, phases).into_iter().filter(|(m, _)| !allow.contains(&m.label())).collect();
    if tight.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = tight
        .iter()
        .map(|(m, r)| format!("{} removes {}: NOT NULL without a database default", m.label(), r.name()))
        .collect();
    Err(StepError::fatal(format!(
        "refused: the new release would insert rows without {} until the post-deploy phase drops it, and those \
         inserts fail (nothing was applied)",
        tight.iter().map(|(_, r)| r.name()).collect::<Vec<_>>().join(", ")
    ))
    .with_detail(format!(
        "{}\nfix: release first a migration that makes the field nullable (`null=True`) or gives it `db_default=`, \
         keeping it in the model; remove it in the release after (add `allow \"app.name\"` if nothing inserts there)",
        lines.join("\n")
    )))
}

fn refuse_still_used(migrations: &[Pending], allow: &[String]) -> Result<(), StepError> {
    let used: Vec<_> = phase::still_used(migrations).into_iter().filter(|(m, _)| !allow.contains(&m.label())).collect();
    if used.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = used
        .iter()
        .map(|(m, r)| format!("{} removes {}, which a model of this release maps", m.label(), r.name()))
        .collect();
    Err(StepError::fatal(format!(
        "refused: the new release itself still uses what {} post-deploy migration(s) remove (nothing was applied)",
        used.len()
    ))
    .with_detail(format!("{}\nfix: remove the field or model from the code first", lines.join("\n"))))
}

/// A deploy of a release older than post-deploy migrations the database has: its code may need what they
/// removed. Refused unless `allow` names each.
/// This release's own record counts too: it may hold what it carried forward from a release since pruned.
fn refuse_older_than_post(
    s: &Settings,
    ctx: &StepCtx,
    found: &inspect::Inspection,
    records: &[(String, post_record::Record)],
) -> Result<(), StepError> {
    if found.applied_not_on_disk.is_empty() {
        return Ok(());
    }
    let missing = post_record::missing(records, &found.applied_not_on_disk, &s.allow);
    let others = found.applied_not_on_disk.len() - missing.len();
    if others > 0 {
        ctx.message(format!(
            "the database has {others} migration(s) this release does not ship (a newer release applied them \
             before its switch: compatible with older code)"
        ));
    }
    if missing.is_empty() {
        return Ok(());
    }
    let lines: Vec<String> = missing
        .iter()
        .map(|m| {
            format!(
                "{}: applied by release {} after its old code had stopped; its post-deploy migrations removed {}",
                m.migration,
                m.applied_by,
                if m.removes.is_empty() { "what they dropped".to_owned() } else { m.removes.join(", ") }
            )
        })
        .collect();
    Err(StepError::fatal(format!(
        "refused: release {} is older than {} post-deploy migration(s) the database has, and its code may use \
         what they removed (nothing was applied)",
        ctx.target.release,
        missing.len()
    ))
    .with_detail(format!(
        "{}\nfix: deploy a release that has them; if {} does not use what they removed, add `allow \"{}\"` to the \
         migrate step",
        lines.join("\n"),
        ctx.target.release,
        missing.iter().map(|m| m.migration.as_str()).collect::<Vec<_>>().join("\" / allow \"")
    )))
}

/// Apply: everything (`targets` `None`), or up to each target (`manage.py migrate <app> <name>`); a post phase
/// first records what it applies.
async fn apply(
    s: &Settings,
    ctx: &StepCtx,
    m: &Manage,
    dialect: Dialect,
    migrations: &[Pending],
    verdict: &Verdict,
) -> Result<(), StepError> {
    let alias = s.alias.as_str();
    let commands: Vec<zdd_engine::host::Command> = match &verdict.targets {
        None => vec![m.command(&["migrate", "--noinput", "--database", alias])],
        Some(targets) => targets
            .iter()
            .map(|(app, name)| m.command(&["migrate", "--noinput", "--database", alias, app, name]))
            .collect(),
    };
    if commands.is_empty() {
        ctx.message("no pre-deploy migration to apply");
        return Ok(());
    }
    let applying: Vec<String> =
        migrations.iter().map(Pending::label).filter(|label| !verdict.held.contains(label)).collect();
    ctx.message(format!("gate passed: applying {}", applying.join(", ")));
    if s.phase == StepPhase::Post && ctx.target.live_release.is_some() {
        write_post_record(ctx, m, alias, migrations).await?;
    }
    let lock = match dialect {
        Dialect::Postgres => Some(AdvisoryLock::acquire(ctx, m, alias, s.locking.advisory_within).await?),
        Dialect::Sqlite => None,
    };
    let mut result = Ok(());
    for command in commands {
        let out = match &lock {
            Some(_) => locking::migrate(ctx, &s.locking, command, migrations).await,
            None => ctx.exec(&command).await,
        };
        result = match out {
            Ok(out) if out.success() => Ok(()),
            Ok(out) => Err(failed(
                ctx,
                &out,
                "`manage.py migrate`",
                "migrations it finished before failing stay applied; the others were not",
            )),
            Err(e) => Err(e),
        };
        if result.is_err() {
            break;
        }
    }
    if let Some(lock) = lock {
        lock.release(ctx).await;
    }
    result
}

/// Record, before applying anything, what a post phase applies and what that removes.
async fn write_post_record(ctx: &StepCtx, m: &Manage, alias: &str, migrations: &[Pending]) -> Result<(), StepError> {
    let applying = post_record::Record {
        applied: migrations.iter().map(Pending::label).collect(),
        removes: migrations.iter().flat_map(|p| p.removes.iter().map(inspect::Removal::name)).collect(),
    };
    let file = post_record::file(&m.release_dir, alias);
    let carried: post_record::Record = read_record(ctx.host.as_ref(), &file).await.unwrap_or_default();
    let record = post_record::merge(&carried, std::iter::once(&applying));
    let json = serde_json::to_vec_pretty(&record).map_err(|e| StepError::failed(e.to_string()))?;
    ctx.host.write_file(&file, &json, 0o644).await.map_err(|e| {
        StepError::failed(format!(
            "could not record the post-deploy migrations in {} ({e}): nothing was applied, so that a later \
             rollback cannot miss them",
            file.display()
        ))
    })
}
