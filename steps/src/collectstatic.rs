//! The `collectstatic` kind: the release's static files collected where nothing live reads them, and what
//! Django says about them (`STATIC_URL`, `STATIC_ROOT`, the storage) recorded in the release for the steps
//! after it (`publish-static` copies from the directory it names, `smoke` looks for assets under its
//! `STATIC_URL`).
//!
//! Django reads `STATIC_ROOT` from the settings module only, and most projects hard-code it there, so zdd asks
//! Django for the effective value instead of passing it in. Where the files go:
//! - the project's `STATIC_ROOT` when it lies inside the release (`BASE_DIR / "staticfiles"`, as the Django docs
//!   write it): that is where the release's own Django reads the manifest of hashed names at run time;
//! - otherwise (outside the release, or not set) `<release>/<into>`, by running collectstatic under
//!   `override_settings(STATIC_ROOT=...)`: a live directory is never written (Django's manifest storage deletes
//!   and re-saves every hashed file it post-processes, so the live pages' stylesheet would 404 for a moment).
//!
//! Skipped by content: the facts carry a fingerprint of the step's inputs — every file in a directory named
//! `static` in the release (the apps' own and, through the venv, the installed packages'), the
//! `STATICFILES_DIRS` files, the storage and finder settings and their modules' source, `INSTALLED_APPS` and the
//! installed distributions with their versions — computed with the settings imported but Django not set up.
//! When it is the live release's, the live release's collected files are hard-linked into this release instead
//! of collected again (nothing writes a collected file in place: Django's storage deletes and re-creates).
//! `force #true` always collects.

use std::path::{Path, PathBuf};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::Diagnostics;
use zdd_engine::host::{Command, Host};
use zdd_engine::kind::{DeployTarget, PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::preflight::{Finding, PreflightCtx};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{path_text, quiet, tail};
use crate::fingerprint::{PRELUDE, mismatch, short};
use crate::manage::{ENV, ENV_FILE, Manage, ManageSettings, PYTHON, ROOT, SETTINGS, release_dir};

pub struct Collectstatic;

/// The file in each release that holds its [`StaticFacts`].
pub const FACTS_FILE: &str = ".zdd-static.json";

const INTO_DEFAULT: &str = "collected-static";

static SPEC: KindSpec = KindSpec {
    name: "collectstatic",
    summary: "Collect the release's static files inside the release and record Django's STATIC_URL, STATIC_ROOT and \
              storage in it.",
    fields: &[
        ROOT,
        PYTHON,
        SETTINGS,
        ENV_FILE,
        ENV,
        FieldSpec::new(
            "into",
            ValueType::Path,
            "Where to collect, relative to the release, when the project's STATIC_ROOT is not inside the release.",
        )
        .default(INTO_DEFAULT),
        FieldSpec::new(
            "force",
            ValueType::Bool,
            "Collect even when the static inputs' fingerprint is the live release's (no hard-linked reuse).",
        )
        .default("false"),
        FieldSpec::new(
            "served-at",
            ValueType::String,
            "The URL prefix the proxy serves the published files at (the proxy-switch's `static-url`): when Django's \
             STATIC_URL is another path, the step fails before anything is live.",
        ),
    ],
    effect: Effect::Reversible,
    undo: "Nothing to do: everything it writes is inside the release, which the release step's undo removes.",
};

/// What Django said about a release's static files, and where they were collected.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticFacts {
    /// The effective `STATIC_URL` (Django adds the script prefix: `static/` reads `/static/`).
    pub static_url: Option<String>,
    /// `STATIC_ROOT` as the settings set it (`None`: not set).
    pub static_root: Option<String>,
    /// Whether that `STATIC_ROOT` lies inside the release.
    pub in_release: bool,
    /// The `staticfiles` storage backend.
    pub storage: String,
    /// Where the files were collected; `None` when `django.contrib.staticfiles` is not installed.
    pub collected_into: Option<String>,
    /// collectstatic's own summary line ("12 static files copied to ...").
    #[serde(default)]
    pub summary: String,
    /// The fingerprint of what was collected from (`None`: not recorded, or an input could not be read).
    #[serde(default)]
    pub fingerprint: Option<String>,
}

impl StaticFacts {
    /// The facts recorded in `path` (a release's [`FACTS_FILE`]), or `None` for a release made before zdd
    /// recorded them.
    pub async fn read(host: &dyn Host, path: &Path) -> Result<Option<Self>, String> {
        let Some(bytes) = host.read_file(path).await.map_err(|e| format!("{}: {e}", path.display()))? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| format!("{}: {e}", path.display()))
    }

    fn describe(&self) -> String {
        let root = match (&self.static_root, self.in_release) {
            (None, _) => "not set".to_owned(),
            (Some(r), true) => format!("{r} (in the release)"),
            (Some(r), false) => format!("{r} (outside the release)"),
        };
        format!(
            "Django: STATIC_URL {}, STATIC_ROOT {root}, storage {}",
            self.static_url.as_deref().unwrap_or("not set"),
            if self.storage.is_empty() { "not set" } else { &self.storage }
        )
    }

    /// Why the proxy would not serve the pages' assets: Django's `STATIC_URL` is a path other than `served_at`.
    /// A `STATIC_URL` on another origin (a CDN) is not the proxy's to serve.
    fn served_elsewhere(&self, served_at: &str) -> Option<String> {
        let url = self.static_url.as_deref()?;
        if url.contains("://") || url.starts_with("//") {
            return None;
        }
        let rooted = |u: &str| {
            let u = u.trim().trim_matches('/');
            if u.is_empty() { "/".to_owned() } else { format!("/{u}/") }
        };
        (rooted(url) != rooted(served_at)).then(|| {
            format!(
                "Django's STATIC_URL is {url} but the proxy serves the static files at {}: set the plan variable \
                 static_url to {} (or change STATIC_URL)",
                rooted(served_at),
                rooted(url)
            )
        })
    }

    /// Said when Django will look for the manifest of hashed names somewhere zdd did not collect into.
    fn manifest_warning(&self) -> Option<String> {
        let root = self.static_root.as_deref()?;
        let into = self.collected_into.as_deref()?;
        (!self.in_release && self.storage.contains("Manifest")).then(|| {
            format!(
                "STATIC_ROOT {root} is outside the release, so the files were collected into {into}; at run time \
                 Django reads the hashed names from {root}/staticfiles.json, so {root} must be the directory the \
                 plan publishes to"
            )
        })
    }
}

/// Run after [`crate::fingerprint::PRELUDE`] with the release's Python (`python -c SCRIPT <into> check|collect`),
/// Django's environment set; prints one marked line. `check` reads the settings and the fingerprint without
/// setting Django up; `collect` then sets it up and collects.
const SCRIPT: &str = r#"
import importlib.metadata
from django.conf import settings
release = RELEASE
fallback = os.path.join(release, sys.argv[1])
configured = os.fspath(settings.STATIC_ROOT) if settings.STATIC_ROOT else None
root = os.path.realpath(os.path.join(release, configured)) if configured else None
inside = root is not None and root != release and os.path.commonpath([root, release]) == release
backend = getattr(settings, "STORAGES", {}).get("staticfiles", {}).get("BACKEND") \
    or getattr(settings, "STATICFILES_STORAGE", "") or ""
staticfiles = any(a == "django.contrib.staticfiles" or a.startswith("django.contrib.staticfiles.")
                  for a in settings.INSTALLED_APPS)

def build():
    fp = Fingerprint()
    fp.value("into", sys.argv[1])
    for name in ("INSTALLED_APPS", "STATICFILES_DIRS", "STATICFILES_FINDERS", "STATIC_URL", "STATIC_ROOT",
                 "STATICFILES_STORAGE", "FORCE_SCRIPT_NAME"):
        fp.value(name, getattr(settings, name, None))
    fp.value("staticfiles storage", getattr(settings, "STORAGES", {}).get("staticfiles"))
    fp.value("packages", sorted("%s==%s" % (d.metadata["Name"], d.version)
                                for d in importlib.metadata.distributions()))
    finders = getattr(settings, "STATICFILES_FINDERS", None) or []
    for dotted in [backend] + list(finders):
        if dotted:
            fp.module(dotted)
    collected = [p for p in (root, fallback) if p]
    fp.tree("static", release, marker="static", exclude=collected)
    for i, entry in enumerate(getattr(settings, "STATICFILES_DIRS", None) or []):
        path = entry[1] if isinstance(entry, (list, tuple)) else entry
        fp.tree("STATICFILES_DIRS %d" % i, os.path.join(release, os.fspath(path)), exclude=collected)
    return fp.hexdigest()

facts = {"static_url": None, "static_root": configured, "in_release": inside, "storage": backend,
         "collected_into": (root if inside else fallback) if staticfiles else None, "summary": "",
         "fingerprint": fingerprint_or_none(build)}
if sys.argv[2] == "check":
    print("ZDD-STATIC " + json.dumps(facts))
    sys.exit(0)
import django
django.setup()
from django.apps import apps
facts["static_url"] = settings.STATIC_URL
facts["collected_into"] = None
if apps.is_installed("django.contrib.staticfiles"):
    import io
    from django.core.management import call_command
    from django.test.utils import override_settings
    into = root if inside else fallback
    out = io.StringIO()
    with override_settings(STATIC_ROOT=into):
        call_command("collectstatic", interactive=False, verbosity=1, stdout=out)
    facts["collected_into"] = into
    facts["summary"] = " ".join(out.getvalue().split())
print("ZDD-STATIC " + json.dumps(facts))
"#;

const MARKER: &str = "ZDD-STATIC ";

/// A collectstatic step's settings.
#[derive(Debug)]
pub struct Settings {
    manage: ManageSettings,
    /// Relative to the release (not the plan).
    into: PathBuf,
    served_at: Option<String>,
    /// Never reuse the live release's files.
    force: bool,
}

fn script(s: &Settings, m: &Manage, mode: &str) -> Command {
    m.python_script(&format!("{PRELUDE}\n{SCRIPT}")).arg(s.into.to_string_lossy()).arg(mode)
}

/// The live release's directory and its recorded facts, when this deploy replaces one.
async fn live_facts(s: &Settings, target: &DeployTarget, host: &dyn Host) -> Option<(PathBuf, Option<StaticFacts>)> {
    let live = target.live_release.as_deref().filter(|l| *l != target.release)?;
    let dir = release_dir(&s.manage.root, live);
    let facts = StaticFacts::read(host, &dir.join(FACTS_FILE)).await.ok().flatten();
    Some((dir, facts))
}

/// The preview's verdict: whether this deploy may reuse the live release's files, and on what condition.
async fn skip_note(s: &Settings, ctx: &PreviewCtx) -> String {
    let Some((dir, facts)) = live_facts(s, &ctx.target, ctx.host.as_ref()).await else {
        return "collect in full (nothing live to compare with); records the static inputs' fingerprint".into();
    };
    if s.force {
        return "collect in full: `force #true` (no reuse by fingerprint)".into();
    }
    match facts.and_then(|f| f.fingerprint) {
        Some(fp) => format!(
            "if the static sources, storage settings and installed packages hash to the live release's fingerprint \
             {} (read with the settings, no Django start): hard-link {}'s collected files; otherwise:",
            short(&fp),
            dir.display()
        ),
        None => format!(
            "collect in full: the live release {} recorded no static fingerprint ({})",
            ctx.target.live_release.as_deref().unwrap_or_default(),
            dir.join(FACTS_FILE).display()
        ),
    }
}

/// The facts of a release whose static inputs are the live release's, its collected files hard links to the
/// live ones; `None` (said why) when the step must collect.
async fn reuse(s: &Settings, ctx: &StepCtx, m: &Manage) -> Result<Option<StaticFacts>, StepError> {
    let Some((_, live)) = live_facts(s, &ctx.target, ctx.host.as_ref()).await else {
        return Ok(None);
    };
    if s.force {
        ctx.message("force #true: collecting in full, whatever the fingerprint");
        return Ok(None);
    }
    let Some(live) = live.filter(|f| f.fingerprint.is_some()) else {
        ctx.message("not reused: the live release recorded no static fingerprint");
        return Ok(None);
    };
    let out = quiet(ctx, &script(s, m, "check")).await?;
    let Some(Ok(now)) = out.success().then(|| parse(&out.stdout_str())) else {
        ctx.message(format!("not reused: the fingerprint check failed ({})", tail(&out.stderr_str(), 1)));
        return Ok(None);
    };
    if let Some(why) = mismatch(live.fingerprint.as_deref(), now.fingerprint.as_deref()) {
        ctx.message(format!("not reused: {why}"));
        return Ok(None);
    }
    let from = live.collected_into.as_deref().map(PathBuf::from);
    let into = now.collected_into.as_deref().map(PathBuf::from);
    let (Some(from), Some(into)) = (from, into) else {
        // Both without staticfiles (the fingerprint holds INSTALLED_APPS): nothing to collect, as before.
        ctx.message("static inputs unchanged and django.contrib.staticfiles is not installed: nothing to collect");
        return Ok(Some(StaticFacts { static_url: live.static_url, ..now }));
    };
    if !ctx.host.exists(&from).await? {
        ctx.message(format!("not reused: {} is gone", from.display()));
        return Ok(None);
    }
    ctx.host.remove_all(&into).await?;
    if let Some(parent) = into.parent() {
        ctx.host.create_dir_all(parent).await?;
    }
    let linked = quiet(ctx, &Command::new("cp").arg("-al").arg(path_text(&from)).arg(path_text(&into))).await?;
    if !linked.success() {
        ctx.host.remove_all(&into).await?;
        ctx.exec_ok(&Command::new("cp").arg("-a").arg(path_text(&from)).arg(path_text(&into))).await?;
    }
    let fingerprint = short(now.fingerprint.as_deref().unwrap_or_default()).to_owned();
    let summary = format!("hard links to the files collected for the live release, in {}", from.display());
    ctx.message(format!(
        "skipped collectstatic: the static sources, storage settings and installed packages are the live \
         release's (fingerprint {fingerprint}); {summary}"
    ));
    // The URL Django computes at set-up (with FORCE_SCRIPT_NAME, in the fingerprint) is the live release's.
    Ok(Some(StaticFacts { static_url: live.static_url, summary, ..now }))
}

fn parse(stdout: &str) -> Result<StaticFacts, StepError> {
    let line = stdout
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix(MARKER))
        .ok_or_else(|| StepError::failed("collectstatic printed no result").with_detail(stdout.to_owned()))?;
    serde_json::from_str(line).map_err(|e| StepError::failed(format!("collectstatic's result: {e}")))
}

#[async_trait]
impl TypedKind for Collectstatic {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings {
            manage: ManageSettings::from_fields(ctx)?,
            into: ctx.relative_path("into").unwrap_or_else(|| PathBuf::from(INTO_DEFAULT)),
            served_at: ctx.given("served-at").map(|s| s.trim().to_owned()),
            force: ctx.bool("force", false),
        })
    }

    /// What any `manage.py` step needs before it starts: the env file it loads.
    async fn preflight(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Finding> {
        crate::preflight::django_step(s.manage.env_file.as_deref(), s.manage.settings.as_deref(), ctx).await
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let m = Manage::describe(&s.manage, &ctx.target);
        let mut preview = Preview::default();
        preview.actions.extend(m.env_file_note());
        preview.actions.push(PlannedAction::Note { text: skip_note(s, ctx).await });
        preview.actions.push(PlannedAction::Note {
            text: format!(
                "ask Django for STATIC_URL, STATIC_ROOT and the storage; collectstatic --noinput into STATIC_ROOT if \
                 it is inside the release, else into {}",
                m.release_dir.join(&s.into).display()
            ),
        });
        preview
            .actions
            .push(PlannedAction::Note { text: format!("record them in {}", m.release_dir.join(FACTS_FILE).display()) });
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let m = Manage::load(&s.manage, ctx).await?;
        let facts = if let Some(facts) = reuse(s, ctx, &m).await? {
            facts
        } else {
            let out = ctx.exec_ok(&script(s, &m, "collect")).await?;
            let facts = parse(&out.stdout_str())?;
            ctx.message(facts.describe());
            match &facts.collected_into {
                Some(dir) => ctx.message(format!("collected into {dir}: {}", facts.summary)),
                None => ctx.message("django.contrib.staticfiles is not installed: nothing to collect"),
            }
            facts
        };
        if let Some(warning) = facts.manifest_warning() {
            ctx.message(warning);
        }
        let json = serde_json::to_vec_pretty(&facts).map_err(|e| StepError::fatal(e.to_string()))?;
        ctx.host.write_file(&m.release_dir.join(FACTS_FILE), &json, 0o644).await?;
        match s.served_at.as_deref().and_then(|served_at| facts.served_elsewhere(served_at)) {
            Some(why) => Err(StepError::fatal(why)),
            None => Ok(()),
        }
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_scripts_line() {
        let out = "120 static files copied\nZDD-STATIC {\"static_url\": \"/static/\", \"static_root\": \"/r/staticfiles\", \
                   \"in_release\": true, \"storage\": \"django.contrib.staticfiles.storage.ManifestStaticFilesStorage\", \
                   \"collected_into\": \"/r/staticfiles\", \"summary\": \"1 file\"}\n";
        let facts = parse(out).unwrap();
        assert_eq!(facts.static_url.as_deref(), Some("/static/"));
        assert_eq!(facts.collected_into.as_deref(), Some("/r/staticfiles"));
        assert_eq!(facts.manifest_warning(), None);
        assert!(parse("Traceback...").is_err());
    }

    fn with_url(url: &str) -> StaticFacts {
        StaticFacts {
            static_url: Some(url.into()),
            static_root: None,
            in_release: false,
            storage: String::new(),
            collected_into: None,
            summary: String::new(),
            fingerprint: None,
        }
    }

    #[test]
    fn the_proxy_must_serve_djangos_static_url() {
        assert_eq!(with_url("/static/").served_elsewhere("/static/"), None);
        assert_eq!(with_url("/static/").served_elsewhere("/static"), None);
        let why = with_url("/assets/").served_elsewhere("/static/").unwrap();
        assert!(why.contains("static_url to /assets/"), "{why}");
        // A CDN serves its own files.
        assert_eq!(with_url("https://cdn.example.net/s/").served_elsewhere("/static/"), None);
        assert_eq!(with_url("//cdn.example.net/s/").served_elsewhere("/static/"), None);
    }

    #[test]
    fn warns_when_the_manifest_is_read_from_elsewhere() {
        let facts = StaticFacts {
            static_url: Some("/static/".into()),
            static_root: Some("/var/www/static".into()),
            in_release: false,
            storage: "django.contrib.staticfiles.storage.ManifestStaticFilesStorage".into(),
            collected_into: Some("/r/collected-static".into()),
            summary: String::new(),
            fingerprint: None,
        };
        assert!(facts.manifest_warning().is_some_and(|w| w.contains("/var/www/static/staticfiles.json")));
    }
}
