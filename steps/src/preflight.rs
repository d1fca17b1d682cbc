//! Preflight checks several kinds share: a program on the PATH, a file that must exist and be readable, and a
//! Django project's own files (`manage.py`, the settings module, the requirements file) in the release's source.
//! Each returns a [`Finding`] with the evidence and a fix, or nothing.

use std::path::{Path, PathBuf};

use tokio_util::sync::CancellationToken;
use zdd_engine::diag::Code;
use zdd_engine::host::{Command, Host};
use zdd_engine::plan::Plan;
use zdd_engine::preflight::{Finding, PreflightCtx, Provisions};

/// Is `program` there (a path, or a name on the PATH)? A missing one a `packages` step installs passes.
pub async fn program(host: &dyn Host, program: &str, package: &str, provided: &Provisions) -> Option<Finding> {
    if provided.package(package).is_some() {
        return None;
    }
    let cancel = CancellationToken::new();
    let probe = Command::new("sh").args(["-c", "command -v \"$1\"", "sh", program]);
    let found = host.run(&probe, &cancel, None).await.is_ok_and(|o| o.success());
    (!found).then(|| {
        Finding::error(
            Code::PreflightProgram,
            format!("`{program}` is not installed (not found on the PATH)"),
            format!("install it (`apt-get install {package}`), or add a `packages` step that installs `{package}`"),
        )
    })
}

/// Must `path` exist and be readable before the run? A path an earlier step creates passes.
pub async fn readable_file(host: &dyn Host, path: &Path, what: &str, provided: &Provisions) -> Option<Finding> {
    if provided.path(path).is_some() {
        return None;
    }
    match host.read_file(path).await {
        Ok(Some(_)) => None,
        Ok(None) => Some(Finding::error(
            Code::PreflightMissing,
            format!("{what} {} does not exist", path.display()),
            "create it, point the plan at the right file, or have an earlier `exec` step write it and say so \
             with `creates`",
        )),
        Err(e) => Some(
            Finding::error(
                Code::PreflightUnreadable,
                format!("{what} {} cannot be read", path.display()),
                "check its mode and owner: zdd's user must be able to read it",
            )
            .evidence(e.to_string()),
        ),
    }
}

/// The source directory of the plan's `release` step (absolute): what the later steps' files come from. `None`
/// for `zdd rollback`, which re-deploys a release that exists and reads nothing from the source.
pub fn release_source<'p>(plan: &'p Plan, ctx: &PreflightCtx) -> Option<&'p Path> {
    if ctx.preview.target.rollback {
        return None;
    }
    let step = plan.steps.iter().find(|s| s.kind == "release")?;
    step.settings.get::<crate::release::Settings>().map(|s| s.source.as_path())
}

/// Is the source a Django project: a directory with `manage.py`?
pub async fn django_source(host: &dyn Host, source: &Path) -> Option<Finding> {
    match host.stat(source).await {
        Ok(Some(st)) if st.is_dir => {}
        Ok(Some(_)) => {
            return Some(Finding::error(
                Code::PreflightSource,
                format!("the source {} is not a directory", source.display()),
                "set `source` to the Django project's directory (where manage.py is)",
            ));
        }
        _ => {
            return Some(Finding::error(
                Code::PreflightSource,
                format!("the source {} does not exist", source.display()),
                "set `source` to the Django project's directory (where manage.py is), e.g. `--var source=.`",
            ));
        }
    }
    if host.exists(&source.join("manage.py")).await.unwrap_or(false) {
        return None;
    }
    let entries = host.list_dir(source).await.unwrap_or_default();
    Some(
        Finding::error(
            Code::PreflightSource,
            format!("the source {} is not a Django project: it has no manage.py", source.display()),
            "set `source` to the directory that holds manage.py",
        )
        .evidence(format!(
            "it holds: {}",
            if entries.is_empty() {
                "nothing".to_owned()
            } else {
                entries.iter().take(12).cloned().collect::<Vec<_>>().join(" ")
            }
        )),
    )
}

/// Is the settings module (`shop.settings`) a file of the source (`shop/settings.py` or a package)?
pub async fn settings_module(host: &dyn Host, source: &Path, module: &str) -> Option<Finding> {
    let rel: PathBuf = module.split('.').collect();
    let candidates = [
        source.join(&rel).with_extension("py"),
        source.join(&rel).join("__init__.py"),
        source.join("src").join(&rel).with_extension("py"),
        source.join("src").join(&rel).join("__init__.py"),
    ];
    for c in &candidates {
        if host.exists(c).await.unwrap_or(false) {
            return None;
        }
    }
    Some(
        Finding::error(
            Code::PreflightSettings,
            format!("the settings module `{module}` is not in the source {}", source.display()),
            "set the `settings` variable to the module manage.py uses (DJANGO_SETTINGS_MODULE)",
        )
        .evidence(format!("looked for {} and {}", candidates[0].display(), candidates[1].display())),
    )
}

/// What a step that runs the project needs: its env file, and its settings module in the release's source.
pub async fn django_step(env_file: Option<&Path>, settings: Option<&str>, ctx: &PreflightCtx) -> Vec<Finding> {
    let host = ctx.preview.host.as_ref();
    let mut found = Vec::new();
    if let Some(file) = env_file {
        found.extend(readable_file(host, file, "the env file", &ctx.provided).await);
    }
    if let (Some(module), Some(source)) = (settings, release_source(&ctx.preview.plan, ctx))
        && host.exists(&source.join("manage.py")).await.unwrap_or(false)
    {
        found.extend(settings_module(host, source, module).await);
    }
    found
}

/// Can `python` create a venv (`ensurepip`, which Debian ships in `python3-venv`)?
pub async fn python_venv(host: &dyn Host, python: &str, provided: &Provisions) -> Option<Finding> {
    if let Some(f) = program(host, python, "python3", provided).await {
        return Some(f);
    }
    if provided.package("python3-venv").is_some() {
        return None;
    }
    let cancel = CancellationToken::new();
    let out = host.run(&Command::new(python).args(["-c", "import ensurepip, venv"]), &cancel, None).await.ok()?;
    (!out.success()).then(|| {
        Finding::error(
            Code::PreflightProgram,
            format!("`{python}` cannot create a virtualenv: its `ensurepip` module is missing"),
            "install it (`apt-get install python3-venv` on Debian and Ubuntu), or add a `packages` step that \
             installs `python3-venv`",
        )
        .evidence(zdd_engine::kind::tail_lines(&out.stderr_str(), 2))
    })
}
