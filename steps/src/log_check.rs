//! The `log-check` kind: for a window after the switch, watch what the new instance logs (journal or log file) and
//! what Nginx appends to its error log, and fail on a deny pattern (a traceback, a 502). It reads only; its failure
//! makes the rollback switch traffic back.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{quiet_ok, sleep};
use crate::service::config::{Manager, ServiceConfig};

pub struct LogCheck;

/// Patterns that fail the check when the plan names none.
pub const DEFAULT_DENY: &[&str] = &["Traceback", " 502 ", "upstream prematurely closed"];

static SPEC: KindSpec = KindSpec {
    name: "log-check",
    summary: "Watch the new instance's log and Nginx's error log for a window; fail on a deny pattern.",
    fields: &[
        FieldSpec::new(
            "service",
            ValueType::StepRef(&["service"]),
            "The service step whose new instance's log is read.",
        )
        .required(),
        FieldSpec::new("window", ValueType::Duration, "How long to watch.").default("10s"),
        FieldSpec::new(
            "nginx-error-log",
            ValueType::Path,
            "Nginx's error log (only lines appended during the window).",
        ),
        FieldSpec::new(
            "deny",
            ValueType::Strings,
            "Texts that fail the check (default: `Traceback`, ` 502 `, `upstream prematurely closed`).",
        ),
    ],
    effect: Effect::ReadOnly,
    undo: "Nothing: it only reads (its failure rolls the deploy back).",
};

/// A log and where reading it starts.
enum Source {
    File { path: PathBuf, from: usize },
    Journal { unit: String, since: String },
}

impl Source {
    async fn read_new(&self, ctx: &StepCtx, cfg: &ServiceConfig) -> Result<String, StepError> {
        match self {
            Source::File { path, from } => Ok(match ctx.host.read_file(path).await? {
                Some(bytes) => String::from_utf8_lossy(bytes.get(*from..).unwrap_or_default()).into_owned(),
                None => String::new(),
            }),
            Source::Journal { unit, since } => {
                let out =
                    quiet_ok(ctx, &cfg.journalctl(&["-u", unit, "--since", since, "--no-pager", "-o", "cat"])).await?;
                Ok(out.stdout_str())
            }
        }
    }

    fn name(&self) -> String {
        match self {
            Source::File { path, .. } => path.display().to_string(),
            Source::Journal { unit, .. } => format!("journal of {unit}"),
        }
    }
}

async fn file_source(ctx: &StepCtx, path: PathBuf) -> Result<Source, StepError> {
    let from = ctx.host.read_file(&path).await?.map_or(0, |b| b.len());
    Ok(Source::File { path, from })
}

/// Lines of `text` containing a deny pattern.
pub fn denied<'a>(text: &'a str, deny: &[String]) -> Vec<&'a str> {
    text.lines().filter(|l| deny.iter().any(|d| l.contains(d.as_str()))).collect()
}

/// A log-check step's settings: the Nginx error log's path absolute, the deny list with its default.
#[derive(Debug)]
pub struct Settings {
    /// The service step whose new instance's log is read.
    service: String,
    window: Duration,
    nginx_error_log: Option<PathBuf>,
    deny: Vec<String>,
}

#[async_trait]
impl TypedKind for LogCheck {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        let deny = ctx.strings("deny");
        Ok(Settings {
            service: ctx.required("service")?.to_owned(),
            window: ctx.duration("window", Duration::from_secs(10)),
            nginx_error_log: ctx.path("nginx-error-log"),
            deny: if deny.is_empty() { DEFAULT_DENY.iter().map(|s| (*s).to_owned()).collect() } else { deny },
        })
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let cfg = ServiceConfig::of_step(&ctx.plan, &s.service)?;
        let window = s.window;
        let mut logs = vec![match cfg.manager {
            Manager::Systemd => format!("the journal of {}", cfg.unit(&cfg.instance_slot(&ctx.target.slot))),
            Manager::Process | Manager::Docker => {
                cfg.log_file(&cfg.instance_slot(&ctx.target.slot)).display().to_string()
            }
        }];
        if let Some(p) = &s.nginx_error_log {
            logs.push(p.display().to_string());
        }
        Ok(Preview {
            actions: vec![PlannedAction::Note {
                text: format!("watch {} for {}s", logs.join(" and "), window.as_secs()),
            }],
            checks: vec![format!("no line matches {:?}", s.deny)],
            undo: vec![],
        })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let cfg = ServiceConfig::of_step(&ctx.plan, &s.service)?;
        let slot = &cfg.instance_slot(&ctx.target.slot);
        let (deny, window) = (&s.deny, s.window);
        let mut sources = vec![match cfg.manager {
            Manager::Systemd => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
                Source::Journal { unit: cfg.unit(slot), since: format!("@{}", now.as_secs()) }
            }
            // A container's gunicorn logs into the bind-mounted log file, as a process does.
            Manager::Process | Manager::Docker => file_source(ctx, cfg.log_file(slot)).await?,
        }];
        if let Some(p) = &s.nginx_error_log {
            sources.push(file_source(ctx, p.clone()).await?);
        }
        let start = Instant::now();
        loop {
            let remaining = window.saturating_sub(start.elapsed());
            sleep(&ctx.cancel, remaining.min(Duration::from_millis(500))).await?;
            for source in &sources {
                let text = source.read_new(ctx, cfg).await?;
                let bad = denied(&text, deny);
                if !bad.is_empty() {
                    return Err(StepError::failed(format!("{} logged {} denied line(s)", source.name(), bad.len()))
                        .with_detail(
                            ctx.redactor.redact(&bad.iter().take(20).copied().collect::<Vec<_>>().join("\n")),
                        ));
                }
            }
            if remaining.is_zero() {
                ctx.message(format!("{}s without a denied line", window.as_secs()));
                return Ok(());
            }
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
    fn denies_matching_lines_only() {
        let deny: Vec<String> = DEFAULT_DENY.iter().map(ToString::to_string).collect();
        let text = "GET / 200\nTraceback (most recent call last):\n\"GET /x HTTP/1.1\" 502 157\nfine\n";
        assert_eq!(denied(text, &deny).len(), 2);
    }
}
