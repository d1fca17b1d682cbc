//! The `release` kind: `<root>/releases/<release>` filled from a source directory, shared paths linked in from
//! `<root>/shared`, and old releases pruned (never the live one nor the one before it).
//!
//! The source is on zdd's machine. On that machine the files are copied (`cp -a`); to an SSH host they are
//! streamed as a tar archive into `tar -x` there ([`crate::archive`]), never held whole.
//!
//! With `env-file`, the release also gets its own snapshot of the plan's environment file ([`crate::envsnap`]),
//! compared with the live release's first: a key the live release has that the file no longer has is refused
//! (the old code still runs beside the new), unless `allow-removed-keys` names it.
//!
//! Pruning happens at the start of the step, before the copy (it frees space first), and keeps the `keep - 1`
//! newest other releases plus the live release and its predecessor; the rollback does not bring pruned releases back.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::doctor::{Check, disk};
use zdd_engine::host::{Command, Host, LocalHost};
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::types::{TypeError, parse_typed};
use zdd_engine::plan::{Step, Value};
use zdd_engine::preflight::{Finding, PreflightCtx};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::archive;
use crate::common::{from_facts, path_text, to_facts, words};
use crate::envsnap::{self, EnvRecord, KeyDiff};
use crate::manage::{ROOT, release_dir};

pub struct Release;

/// Directories never copied from a source that is not a git checkout.
const SKIPPED: &[&str] = &[".git", "venv", ".venv", "__pycache__", "node_modules", ".tox", ".mypy_cache"];

static SPEC: KindSpec = KindSpec {
    name: "release",
    summary: "Create <root>/releases/<release> from a source directory, link shared paths, prune old releases.",
    fields: &[
        ROOT,
        FieldSpec::new("source", ValueType::Path, "The project to deploy (a git checkout: the files git tracks).")
            .required(),
        FieldSpec::new(
            "copy",
            ValueType::Enum(&["auto", "git", "all"]),
            "`git`: the files git tracks; `all`: everything except .git, venvs, __pycache__, node_modules; `auto`: \
             `git` when the source is in a git work tree that tracks files there, else `all`.",
        )
        .default("auto"),
        FieldSpec::new(
            "shared",
            ValueType::Strings,
            "Paths under `<root>/shared` linked into the release at the same place (`media/` `shop.env`), as \
             arguments or space-separated in one (`shared \"{{shared_paths}}\"`). A trailing `/` marks a directory, \
             created if missing; other paths must exist. Relative, without `..`: nothing outside `<root>/shared` \
             and the release is linked.",
        ),
        FieldSpec::new("keep", ValueType::Int, "How many releases to keep, the new one included (at least 2).")
            .default("5"),
        FieldSpec::new(
            "env-file",
            ValueType::ConfigPath,
            "The plan's KEY=VALUE env file: copied into the release (`.zdd-env`, mode 600), which every step and \
             instance of the release then reads instead; its key names and value hashes recorded, never its values.",
        ),
        FieldSpec::new(
            "allow-removed-keys",
            ValueType::Strings,
            "Keys of the live release's environment that this release's env file may drop (`*`: any); without it \
             a dropped key is refused.",
        ),
    ],
    effect: Effect::Reversible,
    undo: "Removes the new release directory (pruned old releases are not restored).",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    dir: PathBuf,
    /// The snapshot's key names and value hashes (journals from before snapshots have none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    env: Option<EnvRecord>,
}

/// How the release's files are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Files {
    /// The files git tracks.
    Git,
    /// Everything but .git, venvs and caches.
    All,
    /// `Git` when the source is a git work tree that tracks files there, else `All`.
    Auto,
}

/// A release step's settings: paths absolute, the shared paths split and checked.
#[derive(Debug)]
pub struct Settings {
    pub root: PathBuf,
    /// The project to deploy: what the later steps' preflights look for files in.
    pub source: PathBuf,
    pub copy: Files,
    pub shared: Vec<String>,
    pub keep: usize,
    /// The env file each release gets a snapshot of.
    pub env_file: Option<PathBuf>,
    /// Keys the live release's environment has that this one may drop (`*`: any).
    pub allow_removed_keys: BTreeSet<String>,
}

/// What a release's venv takes beside its files, for `zdd doctor`'s disk check: Django, gunicorn, a database
/// driver and pip's cache come to 100-200 MiB; twice that leaves room for the project's own packages.
const VENV_ALLOWANCE: u64 = 400 * 1024 * 1024;

/// The new release's directory under the settings' root.
fn release_of(s: &Settings, release: &str) -> PathBuf {
    release_dir(&s.root, release)
}

/// The shared paths of the field's arguments, each argument split at spaces: a plan variable holds a list as
/// one space-separated string (`shared_paths`, as `smoke_paths`), and no shared path has a space.
fn shared_paths(args: &[String]) -> Vec<String> {
    args.iter().flat_map(|a| a.split(' ')).filter(|p| !p.is_empty()).map(str::to_owned).collect()
}

/// A shared path is joined to both `<root>/shared` and the release directory: it must be a relative path
/// that stays inside them (not empty, not absolute, no `..`, `.` or empty component), as [`ValueType::SubPath`],
/// in the portable file name characters: a list split at spaces must not hide a newline or a `;` in a path.
fn shared_path(path: &str) -> Result<(), TypeError> {
    parse_typed(ValueType::SubPath, path)?;
    match path.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+' | '@' | '/'))) {
        Some(c) => Err(TypeError {
            code: Code::BadSubPath,
            message: format!("`{}` has {:?}", path.escape_debug(), c),
            help: "a shared path uses letters, digits, `.`, `_`, `-`, `+`, `@` and `/`; separate paths with spaces"
                .to_owned(),
        }),
        None => Ok(()),
    }
}

/// Which releases pruning removes: all but the new, the live, the one before the live, and the newest others.
fn prunable(existing: &[String], new: &str, live: Option<&str>, keep: usize) -> Vec<String> {
    let mut protected: BTreeSet<&str> = BTreeSet::from([new]);
    if let Some(live) = live {
        protected.insert(live);
        // Release ids sort by time: the predecessor of the live release is the newest one older than it.
        if let Some(prev) = existing.iter().filter(|r| r.as_str() < live).max() {
            protected.insert(prev);
        }
    }
    let mut others: Vec<&String> = existing.iter().filter(|r| !protected.contains(r.as_str())).collect();
    others.sort();
    let room = keep.saturating_sub(protected.len());
    let cut = others.len().saturating_sub(room);
    others[..cut].iter().map(|s| (*s).clone()).collect()
}

/// A key of the live release's environment the env file dropped without the plan's leave. A file that cannot be
/// read is the env-file preflight's to report, not this one's.
async fn removed_keys_finding(s: &Settings, ctx: &PreflightCtx) -> Option<Finding> {
    let file = s.env_file.as_ref()?;
    let live = ctx.preview.target.live_release.as_deref()?;
    let change = EnvChange::read(s, file, ctx.preview.host.as_ref(), Some(live), None).await.ok()?;
    let (keys, live) = change.refused(s)?;
    let (message, help) = envsnap::refusal(&keys, live);
    Some(Finding::error(Code::EnvKeyRemoved, message, help).evidence(format!(
        "recorded in {}, not in {}",
        release_of(s, live).join(envsnap::RECORD).display(),
        file.display()
    )))
}

/// The command that lists the files to copy (NUL-separated, relative to the source), run where the source is.
async fn list_command(s: &Settings, here: &dyn Host, ctx: &StepCtx) -> Result<Command, StepError> {
    let git = Command::new("git").arg("-C").arg(path_text(&s.source)).args(["ls-files", "-z", "--cached"]);
    let use_git = match s.copy {
        Files::Git => true,
        Files::All => false,
        Files::Auto => {
            let out = here.run(&git, &ctx.cancel, None).await?;
            out.success() && !out.stdout.is_empty()
        }
    };
    if use_git {
        return Ok(git);
    }
    let mut find = Command::new("find").arg(".").arg("(");
    for (i, name) in SKIPPED.iter().enumerate() {
        if i > 0 {
            find = find.arg("-o");
        }
        find = find.args(["-name", name]);
    }
    Ok(find.args([")", "-prune", "-o", "(", "-type", "f", "-o", "-type", "l", ")", "-print0"]).cwd(&s.source))
}

/// The files to copy (NUL-separated), listed on `here`.
async fn list_files(s: &Settings, here: &dyn Host, ctx: &StepCtx) -> Result<Vec<u8>, StepError> {
    let cmd = list_command(s, here, ctx).await?;
    let out = here.run(&cmd, &ctx.cancel, None).await?;
    if out.success() {
        return Ok(out.stdout);
    }
    let exit = out.code.map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
    Err(StepError::failed(format!("`{}` exited with {exit}", ctx.redactor.redact(&cmd.display())))
        .with_detail(ctx.redactor.redact(&zdd_engine::kind::tail_lines(&out.stderr_str(), 20))))
}

/// Where the source is: the step's host if that is this machine, else this machine.
fn source_host<'a>(host: &'a dyn Host, fallback: &'a LocalHost) -> &'a dyn Host {
    match host.local() {
        Some(local) => local,
        None => fallback,
    }
}

/// Stream the listed files of the source (on this machine) into `dir` on the step's (remote) host.
async fn stream_to_host(s: &Settings, ctx: &StepCtx, dir: &Path, list: &[u8]) -> Result<(), StepError> {
    let archive = archive::stream(s.source.clone(), archive::paths(list));
    // Modes as archived (`-p`, whatever the umask); owned by the user zdd logs in as, not by uids of this machine.
    let untar = Command::new("tar").args(["-x", "-p", "--no-same-owner", "-f", "-", "-C"]).arg(path_text(dir));
    let out = ctx.host.run_streaming(&untar, archive.stream, &ctx.cancel, None).await?;
    let written = archive.written.await.map_err(|e| StepError::failed(format!("archiving the source: {e}")))?;
    let detail = ctx.redactor.redact(&zdd_engine::kind::tail_lines(&out.stderr_str(), 20));
    match written {
        // tar stopped reading: its own failure says why.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe && !out.success() => {}
        Err(e) => {
            return Err(StepError::failed(format!("archiving {}: {e}", s.source.display())).with_detail(detail));
        }
        Ok(_) => {}
    }
    if out.success() {
        return Ok(());
    }
    let exit = out.code.map_or_else(|| "a signal".to_owned(), |c| format!("status {c}"));
    Err(StepError::failed(format!(
        "unpacking the release on {} failed (`{}` exited with {exit})",
        ctx.host.name(),
        untar.display()
    ))
    .with_detail(detail))
}

/// The new environment against the live release's: the new record, and (when the live release recorded one)
/// the live release's id and the keys' difference.
struct EnvChange {
    record: EnvRecord,
    bytes: Vec<u8>,
    against: Option<(String, KeyDiff)>,
}

impl EnvChange {
    /// Read the env file (its values become secrets of the run, when there is a redactor) and the live release's
    /// record, on the host.
    async fn read(
        s: &Settings,
        file: &Path,
        host: &dyn Host,
        live: Option<&str>,
        redactor: Option<&zdd_engine::redact::Redactor>,
    ) -> Result<Self, StepError> {
        let (bytes, vars) = crate::envfile::read(host, file, redactor).await?;
        let record = EnvRecord::of(file, &vars);
        let against = match live {
            Some(live) => envsnap::read_record(host, &release_of(s, live))
                .await?
                .map(|old| (live.to_owned(), envsnap::diff(&old.keys, &record.keys))),
            None => None,
        };
        Ok(Self { record, bytes, against })
    }

    /// The live release's keys this release drops without the plan's leave, and the live release's id.
    fn refused(&self, s: &Settings) -> Option<(Vec<String>, &str)> {
        let (live, diff) = self.against.as_ref()?;
        let keys = diff.refused(&s.allow_removed_keys);
        (!keys.is_empty()).then_some((keys, live.as_str()))
    }

    /// What changed, for the preview and the run's message.
    fn describe(&self, live: Option<&str>) -> String {
        match (&self.against, live) {
            (Some((live, diff)), _) => format!("against the live release {live}: {}", diff.describe()),
            (None, Some(live)) => format!("the live release {live} recorded no environment: nothing to compare"),
            (None, None) => format!("{} keys, the first recorded environment (values hidden)", self.record.keys.len()),
        }
    }
}

fn copy_command(s: &Settings, dir: &Path, list: Vec<u8>) -> Command {
    let mut cp =
        Command::new("xargs").args(["-0", "-r", "cp", "-a", "--parents", "-t"]).arg(path_text(dir)).cwd(&s.source);
    cp.stdin = Some(list);
    cp
}

/// The release's snapshot and its record, both mode 600: the snapshot holds the secrets, and a hash of a
/// low-entropy value can be guessed.
async fn write_snapshot(ctx: &StepCtx, dir: &Path, env: &EnvChange) -> Result<(), StepError> {
    let record = serde_json::to_vec_pretty(&env.record).map_err(|e| StepError::fatal(e.to_string()))?;
    ctx.host.write_file(&dir.join(envsnap::SNAPSHOT), &env.bytes, 0o600).await?;
    ctx.host.write_file(&dir.join(envsnap::RECORD), &record, 0o600).await?;
    Ok(())
}

#[async_trait]
impl TypedKind for Release {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        // `check` refused bad shared paths and a `keep` below 2 already.
        Ok(Settings {
            root: ctx.required_path("root")?,
            source: ctx.required_path("source")?,
            copy: match ctx.str("copy") {
                Some("git") => Files::Git,
                Some("all") => Files::All,
                _ => Files::Auto,
            },
            shared: shared_paths(&ctx.strings("shared")),
            keep: usize::try_from(ctx.int("keep").unwrap_or(5).max(2)).unwrap_or(5),
            env_file: ctx.path("env-file"),
            allow_removed_keys: ctx.strings("allow-removed-keys").iter().flat_map(|a| words(a)).collect(),
        })
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        for field in step.fields.all("shared") {
            let paths = match &field.value {
                Some(Value::Strings(paths)) => paths.as_slice(),
                _ => &[],
            };
            for path in shared_paths(paths) {
                if let Err(e) = shared_path(&path) {
                    diags.push(
                        Diagnostic::error(e.code, format!("shared path: {}", e.message))
                            .at(field.span, "a shared path must stay inside <root>/shared and the release")
                            .help(
                                "write a path relative to <root>/shared, without `..`; it is linked at the same \
                                 place in the release (`media/` for a directory, `shop.env` for a file)",
                            ),
                    );
                }
            }
        }
        if let Some(keep) = step.fields.all("keep").first()
            && step.fields.int("keep").is_some_and(|k| k < 2)
        {
            diags.push(
                Diagnostic::error(Code::ReleaseKeep, "`keep` must be at least 2")
                    .at(keep.span, "too few to roll back")
                    .help("keep the live release and the one before it: `keep 5`"),
            );
        }
    }

    async fn preflight(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Finding> {
        // `zdd rollback` re-deploys a release that exists: the source may be gone, and is not read.
        if ctx.preview.target.rollback {
            return vec![];
        }
        let fallback = LocalHost::new();
        let here = source_host(ctx.preview.host.as_ref(), &fallback);
        let mut found: Vec<Finding> = crate::preflight::django_source(here, &s.source).await.into_iter().collect();
        found.extend(removed_keys_finding(s, ctx).await);
        found
    }

    /// The preflight, and room under `<root>/releases` for the source's files and a venv.
    async fn doctor(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Check> {
        let mut checks = zdd_engine::doctor::from_findings(self.preflight(s, ctx).await);
        if !ctx.preview.target.rollback {
            let need = crate::doctor::tree_size(&s.source).saturating_add(VENV_ALLOWANCE);
            checks.push(disk::free_space(ctx.preview.host.as_ref(), &s.root.join("releases"), need).await);
        }
        checks
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let dir = release_of(s, &ctx.target.release);
        let mut actions = Vec::new();
        let existing = ctx.host.list_dir(&s.root.join("releases")).await?;
        for old in prunable(&existing, &ctx.target.release, ctx.target.live_release.as_deref(), s.keep) {
            actions.push(PlannedAction::Remove { path: s.root.join("releases").join(old) });
        }
        if ctx.target.rollback && ctx.host.exists(&dir).await? {
            actions.push(PlannedAction::Note {
                text: format!("keep {} (rollback to an existing release)", dir.display()),
            });
            return Ok(Preview { actions, checks: vec![], undo: vec![] });
        }
        actions.push(PlannedAction::Note {
            text: format!(
                "copy {} into {} ({})",
                s.source.display(),
                dir.display(),
                match s.copy {
                    Files::Git => "the files git tracks",
                    Files::All => "all but .git, venvs and caches",
                    Files::Auto => "the files git tracks, or all but .git, venvs and caches outside git",
                }
            ),
        });
        for shared in &s.shared {
            let rel = shared.trim_end_matches('/');
            actions.push(PlannedAction::Link { link: dir.join(rel), target: s.root.join("shared").join(rel) });
        }
        if let Some(file) = &s.env_file {
            let live = ctx.target.live_release.as_deref();
            let compared = match EnvChange::read(s, file, ctx.host.as_ref(), live, None).await {
                Ok(change) => change.describe(live),
                Err(e) => format!("not compared: {e}"),
            };
            actions.push(PlannedAction::Note {
                text: format!(
                    "snapshot {} into {} (mode 600) and its keys with value hashes into {}; {compared}",
                    file.display(),
                    dir.join(envsnap::SNAPSHOT).display(),
                    dir.join(envsnap::RECORD).display(),
                ),
            });
        }
        Ok(Preview { actions, checks: vec![], undo: vec![PlannedAction::Remove { path: dir }] })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let dir = &release_of(s, &ctx.target.release);
        if ctx.target.live_release.as_deref() == Some(ctx.target.release.as_str()) && !ctx.target.rollback {
            return Err(StepError::fatal(format!("release {} is the live release", ctx.target.release)));
        }
        let releases = s.root.join("releases");
        let existing = ctx.host.list_dir(&releases).await?;
        for old in prunable(&existing, &ctx.target.release, ctx.target.live_release.as_deref(), s.keep) {
            ctx.message(format!("pruning release {old}"));
            ctx.host.remove_all(&releases.join(old)).await?;
        }
        if ctx.target.rollback {
            if ctx.host.exists(dir).await? {
                ctx.message(format!("{} exists: rolling back to it as it is", dir.display()));
                if s.env_file.is_some() {
                    ctx.message(match envsnap::read_record(ctx.host.as_ref(), dir).await? {
                        Some(r) => {
                            format!("with its own environment, {} keys from {}", r.keys.len(), r.source.display())
                        }
                        None => "it has no environment snapshot: it reads the env file as it is now".to_owned(),
                    });
                }
                return Ok(());
            }
            // Copying the source now would deploy today's code under the old release's name.
            return Err(StepError::fatal(format!(
                "cannot roll back to release {}: {} no longer exists",
                ctx.target.release,
                dir.display()
            )));
        }
        let fallback = LocalHost::new();
        let here = source_host(ctx.host.as_ref(), &fallback);
        if !here.exists(&s.source).await? {
            return Err(StepError::fatal(format!("source {} does not exist", s.source.display())));
        }
        let live = ctx.target.live_release.as_deref();
        let env = match &s.env_file {
            Some(file) => Some(EnvChange::read(s, file, ctx.host.as_ref(), live, Some(&ctx.redactor)).await?),
            None => None,
        };
        if let Some((keys, live)) = env.as_ref().and_then(|e| e.refused(s)) {
            let (message, help) = envsnap::refusal(&keys, live);
            return Err(StepError::fatal(format!("{message}: {help}")));
        }
        ctx.record_undo(to_facts(&Facts { dir: dir.clone(), env: env.as_ref().map(|e| e.record.clone()) })).await?;
        // A directory of this id can only be a previous attempt of this same run: start clean.
        ctx.host.remove_all(dir).await?;
        ctx.host.create_dir_all(dir).await?;
        let list = list_files(s, here, ctx).await?;
        let count = list.split(|b| *b == 0).filter(|f| !f.is_empty()).count();
        if ctx.host.local().is_some() {
            ctx.exec_ok(&copy_command(s, dir, list)).await?;
            ctx.message(format!("copied {count} files into {}", dir.display()));
        } else {
            stream_to_host(s, ctx, dir, &list).await?;
            ctx.message(format!("streamed {count} files into {} on {}", dir.display(), ctx.host.name()));
        }
        for shared in &s.shared {
            let rel = shared.trim_end_matches('/');
            let target = s.root.join("shared").join(rel);
            if !ctx.host.exists(&target).await? {
                if shared.ends_with('/') {
                    ctx.host.create_dir_all(&target).await?;
                } else {
                    return Err(StepError::fatal(format!(
                        "shared path {} does not exist (create it, or write `{rel}/` for a directory)",
                        target.display()
                    )));
                }
            }
            // A folder on the way that is a symlink (copied from the checkout as it is) would make the
            // removal and the new link below land outside the release: refuse rather than follow it.
            let mut on_the_way = dir.clone();
            for component in Path::new(rel).parent().into_iter().flat_map(Path::components) {
                on_the_way.push(component);
                if let Some(points_to) = ctx.host.read_link(&on_the_way).await? {
                    return Err(StepError::fatal(format!(
                        "shared path `{rel}` goes through {}, a symlink to {} in the release (from the source): \
                         zdd links shared paths only through real folders",
                        on_the_way.display(),
                        points_to.display()
                    )));
                }
            }
            let link = dir.join(rel);
            if let Some(parent) = link.parent() {
                ctx.host.create_dir_all(parent).await?;
            }
            ctx.host.remove_all(&link).await?;
            ctx.host.swap_symlink(&link, &target).await?;
        }
        if let Some(env) = env {
            write_snapshot(ctx, dir, &env).await?;
            ctx.message(format!(
                "environment snapshot in {}: {}",
                dir.join(envsnap::SNAPSHOT).display(),
                env.describe(live)
            ));
        }
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("release", facts)?;
        ctx.host.remove_all(&facts.dir).await?;
        Ok(())
    }

    fn releases_kept(&self, s: &Settings) -> Option<usize> {
        Some(s.keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn prune_keeps_new_live_and_previous() {
        let existing = ids(&["r1", "r2", "r3", "r4", "r5", "r6"]);
        // Live is r3 (after a rollback): r2 is its predecessor and stays, as do the newest others.
        assert_eq!(prunable(&existing, "r7", Some("r3"), 5), ids(&["r1", "r4"]));
        assert_eq!(prunable(&existing, "r7", Some("r6"), 3), ids(&["r1", "r2", "r3", "r4"]));
        assert_eq!(prunable(&existing, "r7", None, 2), ids(&["r1", "r2", "r3", "r4", "r5"]));
    }

    #[test]
    fn shared_paths_stay_inside_the_shared_dir_and_the_release() {
        for good in ["media/", "shop.env", "var/uploads/", ".env"] {
            assert!(shared_path(good).is_ok(), "{good}");
        }
        for (bad, code) in [
            ("", Code::BadPath),
            ("/etc/", Code::BadSubPath),
            ("/etc/shadow", Code::BadSubPath),
            ("..", Code::BadSubPath),
            ("../other-app/media/", Code::BadSubPath),
            ("media/../../x", Code::BadSubPath),
            ("./media", Code::BadSubPath),
            ("media//x", Code::BadSubPath),
            ("x\ny", Code::BadPath),
            ("x;touch", Code::BadSubPath),
            ("$(x)", Code::BadSubPath),
        ] {
            assert_eq!(shared_path(bad).map_err(|e| e.code), Err(code), "{bad:?}");
        }
    }

    #[test]
    fn one_argument_may_hold_several_space_separated_paths() {
        assert_eq!(
            shared_paths(&ids(&["media/ settings/local.py  db.sqlite3", "shop.env"])),
            ids(&["media/", "settings/local.py", "db.sqlite3", "shop.env"])
        );
        assert_eq!(shared_paths(&ids(&[""])), Vec::<String>::new());
    }

    #[test]
    fn prune_never_removes_protected_even_when_keep_is_small() {
        let existing = ids(&["r1", "r2", "r3"]);
        assert_eq!(prunable(&existing, "r4", Some("r3"), 2), ids(&["r1"]));
    }
}
