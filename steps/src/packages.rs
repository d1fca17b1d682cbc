//! The `packages` kind: Debian/Ubuntu packages the app needs (`apt-get install -y` of those `dpkg-query` says are
//! missing). Installed packages are not removed by a rollback: other software may use them by then.

use async_trait::async_trait;
use zdd_engine::host::Command;

use crate::common::{quiet, quiet_ok};
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

pub struct Packages;

static SPEC: KindSpec = KindSpec {
    name: "packages",
    summary: "Install the Debian/Ubuntu packages that are missing (apt-get install -y); needs root.",
    fields: &[FieldSpec::new("install", ValueType::Strings, "Package names: `install \"nginx\" \"python3-venv\"`.")
        .required()],
    effect: Effect::ForwardOnly,
    undo: "Nothing: installed packages stay installed.",
};

fn query(names: &[String]) -> Command {
    Command::new("dpkg-query").args(["-W", "-f", "${Package} ${db:Status-Status}\\n"]).args(names.iter().cloned())
}

/// Packages not reported as `installed` by `dpkg-query` (absent ones are reported on stderr, not stdout).
pub fn missing(names: &[String], dpkg_output: &str) -> Vec<String> {
    names
        .iter()
        .filter(|n| {
            !dpkg_output.lines().any(|l| {
                let mut w = l.split_whitespace();
                let pkg = w.next().unwrap_or_default();
                // `dpkg-query` prints `name:arch` for multi-arch packages.
                (pkg == n.as_str() || pkg.split(':').next() == Some(n.as_str())) && w.next() == Some("installed")
            })
        })
        .cloned()
        .collect()
}

/// A packages step's settings.
#[derive(Debug)]
pub struct Settings {
    install: Vec<String>,
}

#[async_trait]
impl TypedKind for Packages {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings { install: ctx.strings("install") })
    }

    fn provides(&self, s: &Settings, _ctx: &PreviewCtx) -> Vec<zdd_engine::preflight::Provision> {
        s.install.iter().cloned().map(zdd_engine::preflight::Provision::Package).collect()
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let names = &s.install;
        let cancel = tokio_util::sync::CancellationToken::new();
        let out = ctx.host.run(&query(names), &cancel, None).await?;
        let todo = missing(names, &out.stdout_str());
        let actions = if todo.is_empty() {
            vec![PlannedAction::Note { text: format!("already installed: {}", names.join(" ")) }]
        } else {
            vec![PlannedAction::Run { command: install(&todo).display() }]
        };
        Ok(Preview { actions, checks: vec![], undo: vec![] })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let names = &s.install;
        let todo = missing(names, &quiet(ctx, &query(names)).await?.stdout_str());
        if todo.is_empty() {
            ctx.message(format!("already installed: {}", names.join(" ")));
            return Ok(());
        }
        let uid = quiet_ok(ctx, &Command::new("id").arg("-u")).await?.stdout_str();
        if uid.trim() != "0" {
            return Err(StepError::fatal(format!(
                "installing packages needs root: run zdd as root, or install them first: apt-get install {}",
                todo.join(" ")
            )));
        }
        ctx.exec_ok(&install(&todo)).await?;
        Ok(())
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

fn install(names: &[String]) -> Command {
    Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends"])
        .args(names.iter().cloned())
        .env("DEBIAN_FRONTEND", "noninteractive")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_missing_packages() {
        let names: Vec<String> = ["nginx", "wrk", "libc6", "nope"].iter().map(ToString::to_string).collect();
        let out = "nginx installed\nwrk not-installed\nlibc6:amd64 installed\n";
        assert_eq!(missing(&names, out), vec!["wrk".to_string(), "nope".to_string()]);
    }
}
