//! The `health-gate` kind: poll the new instance until it answers as expected several times in a row, before any
//! traffic reaches it. If the instance dies meanwhile the gate fails at once with its last log lines.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::{Plan, Step};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{Backoff, sleep};
use crate::probe::{self, Answer, ProbeUrl};
use crate::service::config::{Listen, ServiceConfig};
use crate::service::{backend, instance};

pub struct HealthGate;

pub const HOST: FieldSpec =
    FieldSpec::new("host", ValueType::ConfigWord, "Host header to send (must be in Django's ALLOWED_HOSTS).");

static SPEC: KindSpec = KindSpec {
    name: "health-gate",
    summary: "Poll a URL until it answers as expected N times in a row; fail at once if the service dies.",
    fields: &[
        FieldSpec::new(
            "url",
            ValueType::Url,
            "What to poll, e.g. `http+unix://{{root}}/run/{{slot}}.sock:/health/` or `http://127.0.0.1:{{slot}}/health/`.",
        ),
        FieldSpec::new(
            "path",
            ValueType::String,
            "Instead of `url`: a request path on the new instance of `service`, wherever it listens (socket or port).",
        ),
        HOST,
        FieldSpec::new("status", ValueType::Int, "The expected HTTP status.").default("200"),
        FieldSpec::new("contains", ValueType::String, "Text the body must contain."),
        FieldSpec::new("json", ValueType::String, "`field=value` the JSON body must have (dotted field path)."),
        FieldSpec::new("consecutive", ValueType::Int, "How many good answers in a row.").default("3"),
        FieldSpec::new("interval", ValueType::Duration, "First delay between polls; doubles up to `max-interval`.")
            .default("100ms"),
        FieldSpec::new("max-interval", ValueType::Duration, "Longest delay between polls.").default("1s"),
        FieldSpec::new("within", ValueType::Duration, "Give up after this long.").default("60s"),
        FieldSpec::new("request-timeout", ValueType::Duration, "Timeout of each request.").default("2s"),
        FieldSpec::new(
            "service",
            ValueType::StepRef(&["service"]),
            "The service step whose instance (in this deploy's slot, and its `lane`) is watched: if it dies, the gate fails at once.",
        ),
    ],
    effect: Effect::ReadOnly,
    undo: "Nothing: it only reads.",
};

/// The expectation an answer must meet.
#[derive(Debug, Clone)]
pub struct Expect {
    pub status: u16,
    pub contains: Option<String>,
    pub json: Option<(String, String)>,
}

impl Expect {
    pub fn from_fields(ctx: &SettingsCtx<'_>) -> Self {
        Self {
            status: u16::try_from(ctx.int("status").unwrap_or(200)).unwrap_or(200),
            contains: ctx.given("contains").map(str::to_owned),
            json: ctx
                .given("json")
                .and_then(|j| j.split_once('='))
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())),
        }
    }

    /// `None` if the answer is good, else why not.
    pub fn mismatch(&self, a: &Answer) -> Option<String> {
        if a.status != self.status {
            return Some(format!("status {} (expected {})", a.status, self.status));
        }
        if let Some(text) = &self.contains
            && !a.body.contains(text.as_str())
        {
            return Some(format!("body lacks {text:?}"));
        }
        if let Some((field, value)) = &self.json
            && !probe::json_field_is(&a.body, field, value)
        {
            return Some(format!("JSON field {field} is not {value:?}"));
        }
        None
    }

    pub fn describe(&self) -> String {
        let mut s = format!("status {}", self.status);
        if let Some(c) = &self.contains {
            s.push_str(&format!(", body contains {c:?}"));
        }
        if let Some((k, v)) = &self.json {
            s.push_str(&format!(", JSON {k} = {v:?}"));
        }
        s
    }
}

/// A health-gate step's settings.
#[derive(Debug)]
pub struct Settings {
    /// `url` as written, else `path` on the new instance of `service`.
    url: Option<String>,
    path: String,
    /// The service step whose instance is watched (and, with `path`, polled).
    service: Option<String>,
    host: Option<String>,
    expect: Expect,
    consecutive: i64,
    interval: Duration,
    max_interval: Duration,
    within: Duration,
    request_timeout: Duration,
}

/// The URL to poll: `url` as written, or `path` on the new instance of `service` (its socket or its port).
fn target_url(s: &Settings, plan: &Plan, slot: &str) -> Result<String, StepError> {
    if let Some(url) = &s.url {
        return Ok(url.clone());
    }
    let service = s.service.as_deref().ok_or_else(|| StepError::fatal("`path` needs `service`"))?;
    let cfg = ServiceConfig::of_step(plan, service)?;
    Ok(match cfg.listen {
        Listen::Socket => format!("http+unix://{}:{}", cfg.socket(&cfg.instance_slot(slot)).display(), s.path),
        Listen::Port => format!("http://127.0.0.1:{}{}", cfg.port(slot)?, s.path),
    })
}

#[async_trait]
impl TypedKind for HealthGate {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        // `check` made sure there is exactly one of `url` and `path`, and a `service` for `path`.
        let path = ctx.given("path").unwrap_or("/");
        Ok(Settings {
            url: ctx.given("url").map(str::to_owned),
            path: if path.starts_with('/') { path.to_owned() } else { format!("/{path}") },
            service: ctx.given("service").map(str::to_owned),
            host: ctx.given("host").map(str::to_owned),
            expect: Expect::from_fields(ctx),
            consecutive: ctx.int("consecutive").unwrap_or(3),
            interval: ctx.duration("interval", Duration::from_millis(100)),
            max_interval: ctx.duration("max-interval", Duration::from_secs(1)),
            within: ctx.duration("within", Duration::from_mins(1)),
            request_timeout: ctx.duration("request-timeout", Duration::from_secs(2)),
        })
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        let has = |name: &str| !step.fields.all(name).is_empty();
        if has("url") == has("path") {
            diags.push(
                Diagnostic::error(Code::HealthTarget, "a health-gate needs exactly one of `url` and `path`")
                    .at(step.span, "what should it poll?")
                    .help("write `path \"/health/\"` with `service \"web\"`, or a full `url`"),
            );
        } else if has("path") && !has("service") {
            diags.push(
                Diagnostic::error(Code::HealthTarget, "`path` needs `service`: the instance it polls")
                    .at(step.fields.all("path")[0].span, "polled on which instance?")
                    .help("name the service step: `service \"web\"`"),
            );
        }
        if let (Some(field), Some(j)) = (step.fields.all("json").first(), step.fields.str("json"))
            && !j.contains('=')
        {
            diags.push(
                Diagnostic::error(Code::HealthJson, format!("`json \"{j}\"` has no `=`"))
                    .at(field.span, "expected field=value")
                    .help("write the field and its expected value: `json \"status=ok\"`"),
            );
        }
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let url = target_url(s, &ctx.plan, &ctx.target.slot)?;
        Ok(Preview {
            actions: vec![PlannedAction::Http {
                description: format!(
                    "GET {url} until {} ({} in a row, within {}s)",
                    s.expect.describe(),
                    s.consecutive,
                    s.within.as_secs()
                ),
            }],
            checks: s.service.iter().map(|name| format!("the instance of `{name}` stays up")).collect(),
            undo: vec![],
        })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let text = target_url(s, &ctx.plan, &ctx.target.slot)?;
        let url = ProbeUrl::parse(&text).map_err(StepError::fatal)?;
        let (host, expect, within) = (s.host.as_deref(), &s.expect, s.within);
        let needed = u32::try_from(s.consecutive.max(1)).unwrap_or(3);
        let client = probe::client(ctx.host.as_ref(), &url, s.request_timeout).await?;
        let service = match &s.service {
            Some(name) => Some(ServiceConfig::of_step(&ctx.plan, name)?),
            None => None,
        };
        let mut backoff = Backoff::new(s.interval, s.max_interval);
        let start = Instant::now();
        let (mut good, mut polls) = (0u32, 0u32);
        let mut last = String::from("no answer yet");
        loop {
            if let Some(cfg) = service
                && !instance::running(ctx, cfg, &cfg.instance_slot(&ctx.target.slot)).await?
            {
                let slot = cfg.instance_slot(&ctx.target.slot);
                let lines = backend::last_lines(ctx, cfg, &slot, 30).await;
                return Err(StepError::fatal(format!(
                    "the instance of `{}` in slot {slot} is not running (last answer: {last})",
                    cfg.step
                ))
                .with_detail(ctx.redactor.redact(&lines)));
            }
            polls += 1;
            match probe::get(&client, &url, host).await {
                Ok(answer) => match expect.mismatch(&answer) {
                    None => {
                        good += 1;
                        last = format!("status {}", answer.status);
                        if good >= needed {
                            // Where the new instance answers on its own: a staged release is checked there
                            // by hand (`curl --unix-socket <socket> http://localhost/<path>` for a socket).
                            ctx.message(format!(
                                "healthy at {text}: {good} good answers in a row after {polls} polls, {} ms",
                                start.elapsed().as_millis()
                            ));
                            return Ok(());
                        }
                        // Good answers follow each other quickly: the gate is about consistency, not patience.
                        sleep(&ctx.cancel, Duration::from_millis(50)).await?;
                        continue;
                    }
                    Some(why) => {
                        good = 0;
                        last = format!("{why}; body: {}", answer.body.chars().take(200).collect::<String>());
                    }
                },
                Err(e) => {
                    good = 0;
                    last = e;
                }
            }
            if start.elapsed() >= within {
                return Err(StepError::failed(format!(
                    "{} did not answer {} within {}s ({polls} polls)",
                    url.url,
                    expect.describe(),
                    within.as_secs()
                ))
                .with_detail(ctx.redactor.redact(&last)));
            }
            sleep(&ctx.cancel, backoff.next_delay()).await?;
        }
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}
