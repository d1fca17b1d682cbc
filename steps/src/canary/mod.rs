//! The `canary` kind: before the switch, a share of the requests (`weight`) goes to the new instance for a
//! `window` while the live one serves the rest, and the new instance is judged against the live one over that
//! same window ([`analysis`]): its 5xx rate and its p95 latency, from the access log Nginx writes for it. A
//! pass lets the plan go on to the switch, which moves the rest (the promotion); a fail ends the canary and
//! fails the step, so the run rolls back and no more than the canary's share ever saw the new release.
//!
//! The split is part of the site a `proxy-switch` renders in socket mode (the step this one names): flag files
//! turn it on and off ([`split`]), which Nginx tests at each request, so a canary reloads nothing and drops no
//! connection. A live site rendered before canaries existed is rewritten once (tested, reloaded) first.

pub mod analysis;
pub mod split;

use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::Step;
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::common::{from_facts, sleep, to_facts};
use crate::proxy::nginx::Nginx;
use analysis::{Outcome, Thresholds, Window};

pub struct Canary;

/// How long the Nginx workers from before a reload may keep taking new requests.
const RETIRE_WITHIN: Duration = Duration::from_secs(10);

static SPEC: KindSpec = KindSpec {
    name: "canary",
    summary: "Send a share of the requests to the new instance for a window, and judge it against the live one.",
    fields: &[
        FieldSpec::new(
            "proxy-switch",
            ValueType::SettingsRef(&["proxy-switch"]),
            "The proxy-switch step whose site carries the split (socket mode, no lanes); it goes after this step.",
        )
        .required(),
        FieldSpec::new(
            "weight",
            ValueType::String,
            "The share of requests the new instance gets, `1%`-`99%`; `0` (or empty) is no canary.",
        )
        .default("0"),
        FieldSpec::new("window", ValueType::Duration, "How long each window of the analysis lasts.").default("60s"),
        FieldSpec::new(
            "sticky",
            ValueType::Bool,
            "Each client (its address and user agent) stays on one side, so a visitor does not flip between releases.",
        )
        .default("#false"),
        FieldSpec::new(
            "max-error-rate",
            ValueType::String,
            "How far the canary's 5xx rate may exceed the live instance's over the window (e.g. `1%`).",
        )
        .default("1%"),
        FieldSpec::new(
            "max-latency-ratio",
            ValueType::String,
            "How many times the live instance's p95 latency the canary's may be (e.g. `1.5`).",
        )
        .default("1.5"),
        FieldSpec::new("min-requests", ValueType::Int, "The fewest requests each side needs for a verdict.")
            .default("50"),
        FieldSpec::new(
            "inconclusive",
            ValueType::Enum(&["abort", "hold"]),
            "Too few requests in a window: `abort` (roll back), or `hold` the canary for another window.",
        )
        .default("abort"),
        FieldSpec::new("holds", ValueType::Int, "With `inconclusive \"hold\"`: how many windows may be added.")
            .default("3"),
    ],
    effect: Effect::Reversible,
    undo: "Turns the canary off (every request to the live instance), and puts back a site file it rewrote.",
};

/// A canary step's settings.
#[derive(Debug)]
pub struct Settings {
    proxy_switch: String,
    /// Percent, 0 for no canary.
    weight: u8,
    window: Duration,
    sticky: bool,
    thresholds: Thresholds,
    hold: bool,
    holds: u32,
}

#[derive(Debug, Serialize, Deserialize)]
struct Facts {
    /// The site's settings: where the canary's files are, and how to restore the site.
    nginx: Nginx,
    /// The canary may be on: the step has not turned it off itself.
    active: bool,
    /// The live site had no canary split and was rewritten...
    site_rewritten: bool,
    /// ...and what it was (None: there was none).
    site_previous: Option<String>,
}

/// `10%` or `10` as a percent in `0..=max`; a fraction is allowed (`0.5%`) when `fraction`.
fn percent(text: &str, fraction: bool) -> Option<f64> {
    let number = text.trim().strip_suffix('%').unwrap_or(text.trim());
    let value: f64 = number.trim().parse().ok()?;
    (value.is_finite() && (0.0..=100.0).contains(&value) && (fraction || value.fract() == 0.0)).then_some(value)
}

/// The weight as a whole percent, 0 for none (an empty value from a plan variable left empty).
fn weight(text: &str) -> Option<u8> {
    if text.trim().is_empty() {
        return Some(0);
    }
    let value = percent(text, false)?;
    // A whole number in 0..=100 (checked above); 100% would be the switch itself.
    (value < 100.0).then(|| format!("{value:.0}").parse().ok()).flatten()
}

fn latency_ratio(text: &str) -> Option<f64> {
    text.trim().parse::<f64>().ok().filter(|r| r.is_finite() && *r >= 1.0)
}

/// Why this run has no canary, if it has none.
fn no_canary(s: &Settings, target: &zdd_engine::kind::DeployTarget) -> Option<&'static str> {
    if s.weight == 0 {
        Some("no canary (weight 0)")
    } else if target.rollback {
        Some("no canary on a rollback: the release it returns to served before")
    } else if target.live_release.is_none() {
        Some("no canary on a first deploy: there is no live instance to compare with")
    } else {
        None
    }
}

/// The site with the split, refused when a template of the plan's own has none: the flag files would change
/// nothing, and every window would find no request.
async fn split_site(ngx: &Nginx, host: &dyn zdd_engine::host::Host, slot: &str) -> Result<String, StepError> {
    let content = ngx.render_site(host, slot).await?;
    if Nginx::site_takes_canaries(&content) {
        return Ok(content);
    }
    Err(StepError::fatal(
        "the site template has no canary split: copy the `{{#if canary}}` blocks of the built-in template \
         (templates/nginx-site.conf.hbs) into yours",
    ))
}

/// The switch's site can carry a canary: socket mode, one upstream link.
fn splittable(ngx: &Nginx, switch: &str) -> Result<(), StepError> {
    if ngx.takes_canaries() {
        return Ok(());
    }
    Err(StepError::fatal(format!(
        "a canary splits the requests between the live socket and the new one: `{switch}` must use `mode \"socket\"` \
         without lanes"
    )))
}

/// How many windows the analysis may take: one, and with `hold` up to `holds` more.
fn windows(hold: bool, holds: u32) -> u32 {
    if hold { holds.saturating_add(1) } else { 1 }
}

impl Settings {
    /// The longest the analysis may take: every window it may hold for.
    fn longest(&self) -> Duration {
        self.window.saturating_mul(windows(self.hold, self.holds))
    }
}

/// Waits out the windows and judges them: `Ok` with the last verdict's text on a pass, the failure otherwise.
/// The log was emptied as the canary started and is written only while it runs: all of it is the window's (read
/// whole, not from a time: the Nginx host's clock need not agree with zdd's).
async fn analyse(s: &Settings, ctx: &StepCtx, log: &std::path::Path) -> Result<String, StepError> {
    let mut windows = 0;
    loop {
        sleep(&ctx.cancel, s.window).await?;
        windows += 1;
        let text = ctx.host.read_file(log).await?.map(|b| String::from_utf8_lossy(&b).into_owned());
        let window = Window::from_log(text.as_deref().unwrap_or_default(), 0);
        if window.canary.requests + window.baseline.requests == 0 {
            // Nothing logged at all: no traffic, or Nginx does not write the log.
            ctx.message(format!(
                "Nginx logged no request to {}: is there traffic? An `access_log off` at the http level of \
                 nginx.conf turns the site's canary log off too (keep an access log there, as Debian's does)",
                log.display()
            ));
        }
        let verdict = window.judge(&s.thresholds);
        let after = humantime::format_duration(s.window * windows);
        ctx.verdict(format!("verdict after {after}: {verdict}"));
        match &verdict.outcome {
            Outcome::Pass => return Ok(verdict.to_string()),
            Outcome::Inconclusive(_) if s.hold && windows <= s.holds => {
                ctx.message(format!("holding the canary for another {}", humantime::format_duration(s.window)));
            }
            Outcome::Fail(why) | Outcome::Inconclusive(why) => {
                return Err(
                    StepError::fatal(format!("the canary failed its analysis: {why}")).with_detail(verdict.to_string())
                );
            }
        }
    }
}

#[async_trait]
impl TypedKind for Canary {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        let hold = ctx.str("inconclusive") == Some("hold");
        Ok(Settings {
            proxy_switch: ctx.required("proxy-switch")?.to_owned(),
            weight: weight(ctx.str("weight").unwrap_or("0")).unwrap_or(0),
            window: ctx.duration("window", Duration::from_mins(1)),
            sticky: ctx.bool("sticky", false),
            thresholds: Thresholds {
                max_error_rate: percent(ctx.str("max-error-rate").unwrap_or("1%"), true).unwrap_or(1.0) / 100.0,
                max_latency_ratio: latency_ratio(ctx.str("max-latency-ratio").unwrap_or("1.5")).unwrap_or(1.5),
                min_requests: ctx.int("min-requests").and_then(|n| u64::try_from(n).ok()).unwrap_or(50),
            },
            hold,
            holds: ctx.int("holds").and_then(|n| u32::try_from(n).ok()).unwrap_or(3),
        })
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        let mut bad = |name: &str, ok: bool, message: &str, help: &str| {
            if let (false, Some(field)) = (ok, step.fields.all(name).first()) {
                let shown = match step.fields.str(name) {
                    Some(value) => format!("`{name} \"{value}\"`"),
                    None => format!("`{name}`"),
                };
                diags.push(
                    Diagnostic::error(Code::CanarySetting, format!("{shown}: {message}"))
                        .at(field.span, "here")
                        .help(help),
                );
            }
        };
        let field = |name: &str| step.fields.str(name).unwrap_or_default();
        bad(
            "weight",
            weight(field("weight")).is_some(),
            "not a whole percent under 100",
            "write `weight \"10%\"` (0 turns the canary off)",
        );
        bad(
            "max-error-rate",
            percent(field("max-error-rate"), true).is_some(),
            "not a percent",
            "write `max-error-rate \"1%\"`: how far the canary's 5xx rate may exceed the live instance's",
        );
        bad(
            "max-latency-ratio",
            latency_ratio(field("max-latency-ratio")).is_some(),
            "not a ratio of at least 1",
            "write `max-latency-ratio \"1.5\"`: the canary's p95 may be 1.5 times the live instance's",
        );
        for name in ["min-requests", "holds"] {
            let positive = step.fields.all(name).is_empty() || step.fields.int(name).is_some_and(|n| n >= 1);
            bad(name, positive, "must be at least 1", "write a whole number, e.g. `min-requests 50`");
        }
        let window = step.fields.duration("window").unwrap_or(Duration::from_mins(1));
        let holds = u32::try_from(step.fields.int("holds").unwrap_or(3)).unwrap_or(0);
        let longest = window.saturating_mul(windows(step.fields.str("inconclusive") == Some("hold"), holds));
        let weighted = weight(field("weight")).is_some_and(|w| w > 0);
        if weighted && longest >= step.policy.timeout {
            // At the `window` field, or the step when the window is the default.
            let span = step.fields.all("window").first().map_or(step.span, |f| f.span);
            diags.push(
                Diagnostic::error(
                    Code::CanarySetting,
                    format!(
                        "the canary's windows may take {}, the step's timeout is {}",
                        humantime::format_duration(longest),
                        humantime::format_duration(step.policy.timeout)
                    ),
                )
                .at(span, "the windows")
                .help(
                    "give the step a `timeout` longer than its windows (with `hold`, one window more than `holds`); \
                     the shipped plans take it from `canary_timeout`",
                ),
            );
        }
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let mut preview = Preview::default();
        if let Some(why) = no_canary(s, &ctx.target) {
            preview.actions.push(PlannedAction::Note { text: why.to_owned() });
            return Ok(preview);
        }
        let ngx = crate::proxy::nginx_switch(&ctx.plan, &s.proxy_switch)?;
        splittable(ngx, &s.proxy_switch)?;
        let current = ctx.host.read_file(&ngx.site_conf).await?.map(|b| String::from_utf8_lossy(&b).into_owned());
        if !current.as_deref().is_some_and(Nginx::site_takes_canaries) {
            let content = split_site(ngx, ctx.host.as_ref(), &ctx.target.slot).await?;
            preview.actions.push(PlannedAction::Write { path: ngx.site_conf.clone(), content, mode: 0o644 });
            preview.actions.push(PlannedAction::Run { command: ngx.test_command().display() });
            preview.actions.push(PlannedAction::Run { command: ngx.reload_command().display() });
            preview.undo.push(match &current {
                Some(old) => PlannedAction::Write { path: ngx.site_conf.clone(), content: old.clone(), mode: 0o644 },
                None => PlannedAction::Remove { path: ngx.site_conf.clone() },
            });
        }
        let dir = ngx.canary_dir();
        preview
            .actions
            .push(PlannedAction::Link { link: ngx.canary_link(), target: ngx.slot_socket(&ctx.target.slot) });
        preview.actions.push(PlannedAction::Note {
            text: format!(
                "{}% of requests{} go to the new instance for {} (at most {}): {} buckets in {}, no reload",
                s.weight,
                if s.sticky { ", by client (address and user agent)," } else { "" },
                humantime::format_duration(s.window),
                humantime::format_duration(s.longest()),
                s.weight,
                dir.join("split").display()
            ),
        });
        for flag in ["split", "on", "sticky"] {
            preview.actions.push(PlannedAction::Remove { path: dir.join(flag) });
        }
        let t = &s.thresholds;
        preview.checks.push(format!(
            "the canary's 5xx rate is at most {:.1} points over the live instance's and its p95 latency at most {} \
             times, with at least {} requests on each side ({} when there are fewer)",
            t.max_error_rate * 100.0,
            t.max_latency_ratio,
            t.min_requests,
            if s.hold { "hold for another window" } else { "abort" }
        ));
        preview.undo.insert(0, PlannedAction::Remove { path: dir.join("split") });
        Ok(preview)
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        if let Some(why) = no_canary(s, &ctx.target) {
            ctx.message(why);
            return Ok(());
        }
        let ngx = crate::proxy::nginx_switch(&ctx.plan, &s.proxy_switch)?;
        splittable(ngx, &s.proxy_switch)?;
        let socket = ngx.slot_socket(&ctx.target.slot);
        if !ctx.host.exists(&socket).await? {
            return Err(StepError::failed(format!("{} does not exist: is the new instance up?", socket.display())));
        }
        // Checked before real visitors are sent there, as the switch checks before its swap.
        crate::proxy::refuse_unreachable(ngx, ctx.host.as_ref(), &socket, false).await?;
        let previous = ctx.host.read_file(&ngx.site_conf).await?.map(|b| String::from_utf8_lossy(&b).into_owned());
        // A site from before canaries: the switch would write this same file; written now, once.
        let rewrite = !previous.as_deref().is_some_and(Nginx::site_takes_canaries);
        let mut facts = Facts {
            nginx: ngx.clone(),
            active: true,
            site_rewritten: rewrite,
            site_previous: if rewrite { previous.clone() } else { None },
        };
        ctx.record_undo(to_facts(&facts)).await?;
        if rewrite {
            let content = split_site(ngx, ctx.host.as_ref(), &ctx.target.slot).await?;
            ngx.install_site(ctx, &content, previous.as_deref()).await?;
            ctx.message(format!("{} rewritten with the canary's split, Nginx reloaded", ngx.site_conf.display()));
            if !ngx.wait_old_workers_retired(ctx, RETIRE_WITHIN).await? {
                ctx.message(format!(
                    "Nginx workers from before the reload still take requests after {}: theirs are not split",
                    humantime::format_duration(RETIRE_WITHIN)
                ));
            }
        }
        split::start(ctx, ngx, &socket, s.weight, s.sticky, &ctx.target.release).await?;
        ctx.message(format!(
            "{}% of requests{} go to slot {} for {}",
            s.weight,
            if s.sticky { " (sticky by client)" } else { "" },
            ctx.target.slot,
            humantime::format_duration(s.window)
        ));
        let verdict = analyse(s, ctx, &ngx.canary_log()).await;
        // Pass or fail, every request goes to the live instance again: on a pass the switch moves the rest, on
        // a fail the run rolls back. A failed verdict outranks an error turning the split off (which the undo
        // then does: `active` stays recorded), so a retry never judges a release that failed already.
        let stopped = split::stop(ctx, ngx).await;
        let passed = verdict?;
        stopped?;
        facts.active = false;
        ctx.record_undo(to_facts(&facts)).await?;
        ctx.message(format!("promoted: {passed}"));
        Ok(())
    }

    async fn undo(&self, facts: &UndoFacts, ctx: &UndoCtx) -> Result<(), StepError> {
        let facts: Facts = from_facts("canary", facts)?;
        if facts.active {
            split::stop(ctx, &facts.nginx).await?;
        }
        if facts.site_rewritten {
            facts.nginx.restore_site(ctx, facts.site_previous.as_deref()).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(window_ms: u64, hold: bool) -> Settings {
        Settings {
            proxy_switch: "switch".into(),
            weight: 20,
            window: Duration::from_millis(window_ms),
            sticky: false,
            thresholds: Thresholds { max_error_rate: 0.01, max_latency_ratio: 1.5, min_requests: 2 },
            hold,
            holds: 2,
        }
    }

    /// An inconclusive window aborts, or with `hold` is held for at most `holds` more windows; requests that come
    /// meanwhile make a verdict.
    #[tokio::test]
    async fn inconclusive_windows_abort_or_hold() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("canary.log");
        let ctx = crate::testing::ctx("canary", dir.path(), std::sync::Arc::default());
        let err = analyse(&settings(10, false), &ctx, &log).await.unwrap_err();
        assert!(err.to_string().contains("too few requests"), "{err}");
        let started = std::time::Instant::now();
        let err = analyse(&settings(30, true), &ctx, &log).await.unwrap_err();
        assert!(started.elapsed() >= Duration::from_millis(90), "three windows: the first and two holds");
        assert!(err.to_string().contains("too few requests"), "{err}");
        let lines = "1.000 canary 200 0.010\n1.001 canary 200 0.010\n1.002 stable 200 0.010\n1.003 stable 200 0.010\n";
        std::fs::write(&log, lines).unwrap();
        let passed = analyse(&settings(10, true), &ctx, &log).await.unwrap();
        assert!(passed.starts_with("pass; canary 2 requests"), "{passed}");
    }

    #[test]
    fn weights_are_whole_percents_under_100() {
        assert_eq!(weight("10%"), Some(10));
        assert_eq!(weight("25"), Some(25));
        assert_eq!(weight(""), Some(0));
        assert_eq!(weight("0"), Some(0));
        assert_eq!(weight("100%"), None, "all of it is the switch");
        assert_eq!(weight("2.5%"), None);
        assert_eq!(weight("ten"), None);
        assert_eq!(percent("0.5%", true), Some(0.5));
        assert_eq!(latency_ratio("0.9"), None);
        assert_eq!(latency_ratio("2"), Some(2.0));
    }
}
