//! The `release` kind: `<root>/releases/<release>` filled from a source directory, shared paths linked in from
//! `<root>/shared`, and old releases pruned (never the live one nor the one before it).
//!
//! The source is on zdd's machine. On that machine the files are copied (`cp -a`); to an SSH host they are
//! streamed as a tar archive into `tar -x` there ([`crate::archive`]), never held whole.
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
use crate::common::{from_facts, path_text, to_facts};
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
    ],
    effect: Effect::Reversible,
    undo: "Removes the new release directory (pruned old releases are not restored).",
};

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    dir: PathBuf,
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

fn copy_command(s: &Settings, dir: &Path, list: Vec<u8>) -> Command {
    let mut cp =
        Command::new("xargs").args(["-0", "-r", "cp", "-a", "--parents", "-t"]).arg(path_text(dir)).cwd(&s.source);
    cp.stdin = Some(list);
    cp
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
        crate::preflight::django_source(here, &s.source).await.into_iter().collect()
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
        ctx.record_undo(to_facts(&Facts { dir: dir.clone() })).await?;
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
