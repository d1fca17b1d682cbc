//! The `deploy-check` kind: before any traffic reaches the new release, `manage.py check --deploy` in it and
//! zdd's own verdicts on the effective production settings (`DEBUG`, `ALLOWED_HOSTS` against the server name,
//! and behind an https origin `SECURE_PROXY_SSL_HEADER` and `CSRF_TRUSTED_ORIGINS`), both with the plan's env
//! file and settings module, as every `manage.py` step runs. Any warning or error the plan does not `allow`
//! fails the step, listed with Django's message. It changes nothing, so there is nothing to undo.
//!
//! - `issues`: reading `check --deploy`'s output and which issues fail the step.
//! - `verdicts`: the settings read from Django itself and the refusals with their fixes.

pub mod issues;
pub mod verdicts;

use async_trait::async_trait;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::Value;
use zdd_engine::preflight::{Finding, PreflightCtx};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{quiet, tail};
use crate::manage::{ENV, ENV_FILE, Manage, ManageSettings, PYTHON, ROOT, SETTINGS};

pub struct DeployCheck;

static SPEC: KindSpec = KindSpec {
    name: "deploy-check",
    summary: "Refuse production settings before traffic: manage.py check --deploy and Django's effective DEBUG, \
              ALLOWED_HOSTS, SECURE_PROXY_SSL_HEADER and CSRF_TRUSTED_ORIGINS.",
    fields: &[
        ROOT,
        PYTHON,
        SETTINGS,
        ENV_FILE,
        ENV,
        FieldSpec::new(
            "allow",
            ValueType::Strings,
            "Check ids let through: Django's (`security.W008`) or zdd's verdict codes \
             (`zdd::deploy-check-csrf-origin`), as arguments or space-separated in one (repeatable).",
        )
        .repeated(),
        FieldSpec::new(
            "server-name",
            ValueType::Strings,
            "The names the site answers to (Nginx's server_name, the Host header), each of which ALLOWED_HOSTS must \
             allow; space-separated in one argument too. `_`, wildcard and regex names are not checked.",
        ),
        FieldSpec::new(
            "origin",
            ValueType::String,
            "The site's public origin (`https://shop.example.com`): when https, TLS ends at the proxy, and \
             SECURE_PROXY_SSL_HEADER and CSRF_TRUSTED_ORIGINS are checked. Empty: not checked.",
        ),
    ],
    effect: Effect::ReadOnly,
    undo: "Nothing to undo: it only reads the release's settings.",
};

/// A deploy-check step's settings.
#[derive(Debug)]
pub struct Settings {
    manage: ManageSettings,
    /// Django check ids and zdd verdict codes let through.
    allow: Vec<String>,
    /// The literal names `ALLOWED_HOSTS` must allow.
    server_names: Vec<String>,
    /// Names given that cannot be tested as one host (`_`, `*.example.com`, `~regex`).
    unchecked_names: Vec<String>,
    /// `scheme://host[:port]`, no trailing slash.
    origin: Option<String>,
}

/// The words of every occurrence of a strings field, split at whitespace, each with its field's span.
fn word_settings(ctx: &SettingsCtx<'_>, name: &str) -> Vec<(String, zdd_engine::source::Span)> {
    let mut out = Vec::new();
    for field in ctx.all(name) {
        let values = match &field.value {
            Some(Value::Strings(v)) => v.clone(),
            Some(other) => other.as_str().map(|s| vec![s.to_owned()]).unwrap_or_default(),
            None => Vec::new(),
        };
        out.extend(values.iter().flat_map(|v| v.split_whitespace()).map(|w| (w.to_owned(), field.span)));
    }
    out
}

fn allow_settings(ctx: &SettingsCtx<'_>, diags: &mut Diagnostics) -> Vec<String> {
    let allowed = word_settings(ctx, "allow");
    for (id, span) in &allowed {
        let verdict = verdicts::CODES.iter().any(|c| id == c.as_str() || id == c.name());
        if !verdict && !issues::is_check_id(id) {
            diags.push(
                Diagnostic::error(Code::DeployCheckAllow, format!("`{id}` is not a system check id"))
                    .at(*span, "not a check id")
                    .help(format!(
                        "name a check as Django prints it (`security.W008`: app label, dot, level letter C/E/W/I/D and \
                         digits) or one of zdd's verdicts ({})",
                        verdicts::CODES.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ")
                    )),
            );
        }
    }
    allowed.into_iter().map(|(id, _)| id).collect()
}

/// `scheme://host[:port]` of an http or https origin, or why it is not one.
fn origin_of(text: &str) -> Result<String, &'static str> {
    let text = text.trim().trim_end_matches('/');
    let rest = text.strip_prefix("https://").or_else(|| text.strip_prefix("http://")).ok_or("not http(s)")?;
    if rest.is_empty() || rest.contains(['/', '?', '#', '@']) || rest.contains(char::is_whitespace) {
        return Err("not scheme://host[:port]");
    }
    Ok(text.to_owned())
}

fn origin_settings(ctx: &SettingsCtx<'_>, diags: &mut Diagnostics) -> Option<String> {
    let given = ctx.given("origin")?;
    match origin_of(given) {
        Ok(origin) => Some(origin),
        Err(what) => {
            diags.push(
                Diagnostic::error(Code::DeployCheckOrigin, format!("`{given}` is not an origin"))
                    .at(ctx.span("origin"), what)
                    .help("write the scheme and host the visitors use, without a path: `origin \"https://shop.example.com\"`"),
            );
            None
        }
    }
}

impl Settings {
    /// What the preview and the run say will be checked.
    fn checks(&self) -> Vec<String> {
        let mut checks = vec!["DEBUG is False".to_owned()];
        if !self.server_names.is_empty() {
            checks.push(format!("ALLOWED_HOSTS allows {}", self.server_names.join(", ")));
        }
        if !self.unchecked_names.is_empty() {
            checks.push(format!("not checked against ALLOWED_HOSTS: {}", self.unchecked_names.join(", ")));
        }
        if let Some(origin) = self.origin.as_deref().filter(|o| o.starts_with("https://")) {
            checks.push(format!("behind {origin}: SECURE_PROXY_SSL_HEADER is set and CSRF_TRUSTED_ORIGINS trusts it"));
        }
        checks.push(if self.allow.is_empty() {
            "manage.py check --deploy reports no warning or error".to_owned()
        } else {
            format!("manage.py check --deploy reports no warning or error but {}", self.allow.join(", "))
        });
        checks
    }
}

/// Each refused issue or setting as one line, with its code or check id.
fn failure(refused_issues: &[&issues::Issue], refusals: &[verdicts::Refusal]) -> StepError {
    let mut lines: Vec<String> = refusals.iter().map(|r| format!("{} [{}]", r.message, r.code)).collect();
    lines.extend(refused_issues.iter().map(|i| format!("{i} [{}]", Code::DeployCheckIssues)));
    let mut help: Vec<String> = refusals.iter().map(|r| format!("{}: {}", r.code, r.help)).collect();
    if !refused_issues.is_empty() {
        help.push(format!(
            "{}: fix the settings Django names, or let a warning you accept through with `allow \"<id>\"`",
            Code::DeployCheckIssues
        ));
    }
    StepError::fatal(format!(
        "{} production setting(s) refused before any traffic reached the release:\n- {}",
        lines.len(),
        lines.join("\n- ")
    ))
    .with_detail(format!("help: {}", help.join("\nhelp: ")))
}

#[async_trait]
impl TypedKind for DeployCheck {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        let mut diags = Diagnostics::new();
        let allow = allow_settings(ctx, &mut diags);
        let origin = origin_settings(ctx, &mut diags);
        let manage = ManageSettings::from_fields(ctx)?;
        if !diags.is_empty() {
            return Err(diags);
        }
        let (server_names, unchecked_names): (Vec<String>, Vec<String>) = word_settings(ctx, "server-name")
            .into_iter()
            .map(|(name, _)| name)
            .partition(|n| n != "_" && !n.starts_with(['~', '.']) && !n.contains('*'));
        Ok(Settings { manage, allow, server_names, unchecked_names, origin })
    }

    async fn preflight(&self, s: &Settings, ctx: &PreflightCtx) -> Vec<Finding> {
        crate::preflight::django_step(s.manage.env_file.as_deref(), s.manage.settings.as_deref(), ctx).await
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let m = Manage::describe(&s.manage, &ctx.target);
        let mut preview = Preview::default();
        preview.actions.extend(m.env_file_note());
        preview.actions.push(PlannedAction::Note {
            text: "ask Django (after django.setup()) for its effective DEBUG, ALLOWED_HOSTS, SECURE_PROXY_SSL_HEADER \
                   and CSRF_TRUSTED_ORIGINS (verdicts only; no value printed)"
                .to_owned(),
        });
        preview.actions.push(PlannedAction::Run { command: m.command(&check_args()).display() });
        preview.checks = s.checks();
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let m = Manage::load(&s.manage, ctx).await?;
        let found = read_settings(s, ctx, &m).await?;
        let expect = verdicts::Expect {
            settings: s.manage.settings.as_deref().unwrap_or("the settings"),
            server_names: &s.server_names,
            origin: s.origin.as_deref(),
        };
        let refusals = verdicts::refusals(&found, &expect, &s.allow);
        ctx.message(format!("Django {}; checks: {}", found.django, s.checks().join("; ")));

        let out = quiet(ctx, &m.command(&check_args())).await?;
        let text = format!("{}\n{}", out.stdout_str(), out.stderr_str());
        let reported = issues::parse(&text);
        if !out.success() && reported.is_empty() {
            return Err(StepError::failed("manage.py check --deploy failed without reporting an issue")
                .with_detail(ctx.redactor.redact(&tail(&out.stderr_str(), 20))));
        }
        let refused = issues::refused(&reported, &s.allow);
        for issue in reported.iter().filter(|i| !refused.contains(i)) {
            let why = if issue.level.fails() { "allowed" } else { "noted" };
            ctx.message(format!("{why}: {issue}"));
        }
        if refused.is_empty() && refusals.is_empty() {
            ctx.message(format!("check --deploy: {} issue(s), none refused", reported.len()));
            return Ok(());
        }
        let err = failure(&refused, &refusals);
        Err(match err {
            StepError::Fatal { message, detail } => StepError::Fatal {
                message: ctx.redactor.redact(&message),
                detail: detail.map(|d| ctx.redactor.redact(&d)),
            },
            other => other,
        })
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

fn check_args() -> [&'static str; 3] {
    ["check", "--deploy", "--no-color"]
}

/// The settings verdicts' inputs, from the release's Django.
async fn read_settings(s: &Settings, ctx: &StepCtx, m: &Manage) -> Result<verdicts::Found, StepError> {
    let cmd = m
        .python_script(verdicts::SCRIPT)
        .arg(s.origin.clone().unwrap_or_default())
        .args(s.server_names.iter().cloned());
    let out = quiet(ctx, &cmd).await?;
    match verdicts::parse(&out.stdout_str()) {
        Some(Ok(found)) if out.success() => Ok(found),
        Some(Err(e)) => Err(StepError::failed(format!("the settings check's result: {e}"))),
        _ => Err(StepError::failed("Django's settings could not be read (django.setup() failed)")
            .with_detail(ctx.redactor.redact(&tail(&out.stderr_str(), 20)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_is_a_scheme_and_a_host() {
        assert_eq!(origin_of("https://shop.example.com/"), Ok("https://shop.example.com".to_owned()));
        assert_eq!(origin_of("http://127.0.0.1:8080"), Ok("http://127.0.0.1:8080".to_owned()));
        assert!(origin_of("shop.example.com").is_err());
        assert!(origin_of("https://shop.example.com/shop").is_err());
        assert!(origin_of("https://").is_err());
    }

    #[test]
    fn the_preview_says_what_it_will_refuse() {
        let s = Settings {
            manage: ManageSettings {
                root: "/srv/shop".into(),
                python: "venv/bin/python".into(),
                settings: Some("shop.settings".into()),
                env_file: None,
                overrides: std::collections::BTreeMap::new(),
            },
            allow: vec!["security.W004".into()],
            server_names: vec!["shop.example.com".into()],
            unchecked_names: vec!["_".into()],
            origin: Some("https://shop.example.com".into()),
        };
        assert_eq!(
            s.checks(),
            [
                "DEBUG is False",
                "ALLOWED_HOSTS allows shop.example.com",
                "not checked against ALLOWED_HOSTS: _",
                "behind https://shop.example.com: SECURE_PROXY_SSL_HEADER is set and CSRF_TRUSTED_ORIGINS trusts it",
                "manage.py check --deploy reports no warning or error but security.W004",
            ]
        );
        let plain = Settings { origin: Some("http://shop.example.com".into()), allow: vec![], ..s };
        assert!(!plain.checks().iter().any(|c| c.contains("SECURE_PROXY_SSL_HEADER")));
        assert_eq!(plain.checks().last().unwrap(), "manage.py check --deploy reports no warning or error");
    }

    #[test]
    fn the_failure_lists_each_id_with_djangos_message_and_each_fix() {
        let reported =
            issues::parse("WARNINGS:\n?: (security.W018) You should not have DEBUG set to True in deployment.\n");
        let refused: Vec<_> = reported.iter().collect();
        let refusal = verdicts::Refusal {
            code: Code::DeployCheckDebug,
            message: "DEBUG is True in shop.settings".into(),
            help: "set DEBUG = False".into(),
        };
        let StepError::Fatal { message, detail } = failure(&refused, &[refusal]) else { panic!("not fatal") };
        assert!(message.contains("- DEBUG is True in shop.settings [zdd::deploy-check-debug]"), "{message}");
        assert!(message.contains("- security.W018 (warning): You should not have DEBUG set to True"), "{message}");
        let detail = detail.unwrap();
        assert!(detail.contains("help: zdd::deploy-check-debug: set DEBUG = False"), "{detail}");
        assert!(detail.contains("allow \"<id>\""), "{detail}");
    }
}
