//! Running `manage.py` in a release: the release's own Python, its environment loaded (the release's snapshot of
//! the plan's env file, or that file; values redacted) and
//! `DJANGO_SETTINGS_MODULE` set. Shared by the `django` and `migrate` kinds.

use std::collections::BTreeMap;
use std::path::PathBuf;

use zdd_engine::diag::Diagnostics;
use zdd_engine::host::Command;
use zdd_engine::kind::{DeployTarget, StepCtx, StepError, UndoCtx};
use zdd_engine::schema::{FieldSpec, ValueType};
use zdd_engine::settings::SettingsCtx;

use crate::{envfile, envsnap};

pub const ROOT: FieldSpec =
    FieldSpec::new("root", ValueType::ConfigPath, "The app's root: releases/, shared/, run/ and log/ live under it.")
        .required();
pub const PYTHON: FieldSpec = FieldSpec::new(
    "python",
    ValueType::String,
    "The interpreter that runs manage.py, relative to the release directory (or absolute).",
)
.default("venv/bin/python");
pub const SETTINGS: FieldSpec =
    FieldSpec::new("settings", ValueType::Name, "DJANGO_SETTINGS_MODULE, e.g. `shop.settings`.");
pub const ENV_FILE: FieldSpec = FieldSpec::new(
    "env-file",
    ValueType::ConfigPath,
    "KEY=VALUE file loaded into the command's environment (outside the release: secrets live there). Its values are never printed.",
);

/// The directory of a release under an app root.
pub const ENV: FieldSpec = FieldSpec::new(
    "env",
    ValueType::Strings,
    "An environment variable set after the env file is loaded, overriding it: `env \"STATIC_ROOT\" \"/srv/x\"` (repeatable).",
)
.repeated();

pub fn release_dir(root: &std::path::Path, release: &str) -> PathBuf {
    root.join("releases").join(release)
}

/// How to run `manage.py` for one step. Serialized (the `django` kind's undo facts) without the env file's
/// values: the undo reads the file again, so no secret lands in the journal.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Manage {
    pub release_dir: PathBuf,
    pub python: PathBuf,
    pub settings: Option<String>,
    pub env_file: Option<PathBuf>,
    #[serde(skip)]
    pub env: BTreeMap<String, String>,
    /// The step's own `env` nodes: applied after the env file, so they win.
    pub overrides: BTreeMap<String, String>,
}

/// What the `django`, `collectstatic` and `migrate` steps share: how to run `manage.py`, paths absolute.
#[derive(Debug, Clone)]
pub struct ManageSettings {
    pub root: PathBuf,
    /// The interpreter, relative to the release directory (or absolute).
    pub python: String,
    pub settings: Option<String>,
    pub env_file: Option<PathBuf>,
    /// The step's own `env` nodes.
    pub overrides: BTreeMap<String, String>,
}

impl ManageSettings {
    /// From the step's `root`, `python`, `settings`, `env-file` and `env` fields, at validation.
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Result<Self, Diagnostics> {
        Ok(Self {
            root: ctx.required_path("root")?,
            python: ctx.str("python").unwrap_or("venv/bin/python").to_owned(),
            settings: ctx.given("settings").map(str::to_owned),
            env_file: ctx.path("env-file"),
            overrides: ctx
                .all("env")
                .iter()
                .filter_map(|f| match &f.value {
                    Some(zdd_engine::plan::Value::Strings(kv)) if kv.len() == 2 => Some((kv[0].clone(), kv[1].clone())),
                    _ => None,
                })
                .collect(),
        })
    }
}

impl Manage {
    /// For this deploy's release, without reading the env file (previews).
    pub fn describe(s: &ManageSettings, target: &DeployTarget) -> Self {
        Self::for_release(s, &target.release)
    }

    /// For any release under the root (doctor asks the live one), without reading the env file.
    pub fn for_release(s: &ManageSettings, release: &str) -> Self {
        let release_dir = release_dir(&s.root, release);
        Self {
            python: release_dir.join(&s.python),
            release_dir,
            settings: s.settings.clone(),
            env_file: s.env_file.clone(),
            env: BTreeMap::new(),
            overrides: s.overrides.clone(),
        }
    }

    /// For this deploy's release, with the env file read (its values become secrets of the run).
    pub async fn load(s: &ManageSettings, ctx: &StepCtx) -> Result<Self, StepError> {
        let mut m = Self::describe(s, &ctx.target);
        m.read_env_file(ctx).await?;
        Ok(m)
    }

    /// Read the release's environment (again, for a `Manage` read back from undo facts): its snapshot of the
    /// env file when it has one ([`envsnap`]), else the env file.
    pub async fn read_env_file(&mut self, ctx: &UndoCtx) -> Result<(), StepError> {
        let file = envsnap::for_release(ctx.host.as_ref(), &self.release_dir, self.env_file.as_deref()).await?;
        if let Some(file) = &file {
            self.env = envfile::load(ctx.host.as_ref(), file, Some(&ctx.redactor)).await?;
        }
        Ok(())
    }

    /// The preview's note that the env file is loaded (its values never shown), if there is one.
    pub fn env_file_note(&self) -> Option<zdd_engine::kind::PlannedAction> {
        let file = self.env_file.as_ref()?;
        Some(zdd_engine::kind::PlannedAction::Note { text: format!("load {} (values hidden)", file.display()) })
    }

    /// `python manage.py ARGS` in the release directory.
    pub fn command<S: AsRef<str>>(&self, args: &[S]) -> Command {
        let mut cmd = Command::new(self.python.to_string_lossy())
            .arg("manage.py")
            .args(args.iter().map(|a| a.as_ref().to_owned()))
            .cwd(&self.release_dir);
        self.apply_env(&mut cmd);
        cmd
    }

    /// `python -c SCRIPT` in the release directory, with Django's environment (for the migrate gate's inspection).
    pub fn python_script(&self, script: &str) -> Command {
        let mut cmd = Command::new(self.python.to_string_lossy()).arg("-c").arg(script).cwd(&self.release_dir);
        self.apply_env(&mut cmd);
        cmd
    }

    fn apply_env(&self, cmd: &mut Command) {
        for (k, v) in self.env.iter().chain(&self.overrides) {
            cmd.env.insert(k.clone(), v.clone());
        }
        if let Some(s) = &self.settings {
            cmd.env.insert("DJANGO_SETTINGS_MODULE".to_owned(), s.clone());
        }
        cmd.env.insert("PYTHONUNBUFFERED".to_owned(), "1".to_owned());
    }
}
