//! The `smoke` kind: HTTP checks through the proxy after the switch: pages answer with the right status, text
//! and headers, and a static asset a page references actually loads. With `proxy-switch` naming a port-mode
//! switch, only the new instance's answers count (see [`crate::origin`]). A failure shows what Nginx's error
//! log (`error-log`) got meanwhile.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use zdd_engine::diag::Diagnostics;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts};
use zdd_engine::plan::{FieldValue, Plan, Value};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, PropSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::collectstatic::StaticFacts;
use crate::health_gate::HOST;
use crate::origin::{OriginFilter, ThroughProxy};
use crate::probe::{self, Answer, ProbeUrl};
use crate::static_assets::{Asset, first_asset};

pub struct Smoke;

static GET_PROPS: &[PropSpec] = &[
    PropSpec { name: "status", ty: ValueType::Int, required: false, default: Some("200"), doc: "Expected status." },
    PropSpec {
        name: "contains",
        ty: ValueType::String,
        required: false,
        default: None,
        doc: "Text the body must contain.",
    },
    PropSpec {
        name: "header",
        ty: ValueType::String,
        required: false,
        default: None,
        doc: "`Name: value` the answer must carry (value compared exactly, name case-insensitively).",
    },
];

static SPEC: KindSpec = KindSpec {
    name: "smoke",
    summary: "HTTP checks through the proxy: status, body text, headers, and a static asset referenced by a page.",
    fields: &[
        FieldSpec::new("base", ValueType::Url, "The proxy's base URL, e.g. `http://127.0.0.1:8080`.").required(),
        HOST,
        FieldSpec::new(
            "get",
            ValueType::String,
            "A path to GET; repeatable: `get \"/\" status=200 contains=\"Shop\"`.",
        )
        .repeated()
        .props(GET_PROPS),
        FieldSpec::new(
            "paths",
            ValueType::String,
            "Space-separated paths that must answer 200 (handy when a plan variable holds the list).",
        ),
        FieldSpec::new(
            "static-from",
            ValueType::String,
            "A page whose first reference (href or src) under STATIC_URL must load with status 200; `auto`: `/`, \
             skipping the check (and saying so) when it references none.",
        ),
        FieldSpec::new(
            "static-facts",
            ValueType::Path,
            "The file the collectstatic step recorded in the release (`<release>/.zdd-static.json`): assets are \
             looked for under its STATIC_URL (without it: `/static/`).",
        ),
        FieldSpec::new("request-timeout", ValueType::Duration, "Timeout of each request.").default("5s"),
        FieldSpec::new(
            "proxy-switch",
            ValueType::StepRef(&["proxy-switch"]),
            "The proxy-switch step that moved traffic to the new instance: in port mode only answers that name \
             that instance count (Nginx workers from before the reload still answer from the old one); with its \
             `tls-cert`, the checks trust the certificate it serves.",
        ),
        FieldSpec::new(
            "origin-within",
            ValueType::Duration,
            "How long the checks ask again while the old instance answers instead of the new one (port mode).",
        )
        .default("10s"),
        FieldSpec::new(
            "error-log",
            ValueType::Path,
            "Nginx's error log: a failed check shows the lines Nginx wrote during the checks.",
        ),
        FieldSpec::new(
            "tls-trust",
            ValueType::Path,
            "HTTPS: a PEM certificate (or CA) to trust besides the system's roots, e.g. the `tls-cert` the proxy \
             serves; by default, that of the `proxy-switch` named.",
        ),
    ],
    effect: Effect::ReadOnly,
    undo: "Nothing: it only reads.",
};

/// A smoke step's settings: its checks, and paths absolute.
#[derive(Debug)]
pub struct Settings {
    base: String,
    host: Option<String>,
    checks: Vec<Check>,
    /// The page whose first asset must load, and whether it must reference one (`auto`: `/`, and it need not).
    static_from: Option<(String, bool)>,
    static_facts: Option<PathBuf>,
    request_timeout: Duration,
    /// The proxy-switch step whose new instance's answers count.
    proxy_switch: Option<String>,
    origin_within: Duration,
    error_log: Option<PathBuf>,
    /// `tls-trust`: a PEM file whose certificates the HTTPS checks trust besides the system's roots.
    tls_trust: Option<PathBuf>,
}

#[derive(Debug)]
struct Check {
    path: String,
    status: u16,
    contains: Option<String>,
    header: Option<(String, String)>,
}

fn checks_settings(ctx: &SettingsCtx<'_>) -> Vec<Check> {
    let mut all: Vec<Check> = ctx.all("get").iter().filter_map(check).collect();
    let listed = ctx.str("paths").unwrap_or_default().split_whitespace().map(|path| Check {
        path: path.to_owned(),
        status: 200,
        contains: None,
        header: None,
    });
    all.extend(listed);
    all
}

fn check(f: &FieldValue) -> Option<Check> {
    let path = f.value.as_ref().and_then(Value::as_str)?.to_owned();
    let status = match f.prop("status") {
        Some(Value::Int(i)) => u16::try_from(*i).unwrap_or(200),
        _ => 200,
    };
    let header =
        f.prop_str("header").and_then(|h| h.split_once(':')).map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()));
    Some(Check { path, status, contains: f.prop_str("contains").map(str::to_owned), header })
}

fn mismatch(c: &Check, a: &Answer) -> Option<String> {
    if a.status != c.status {
        return Some(format!("status {} (expected {})", a.status, c.status));
    }
    if let Some(text) = &c.contains
        && !a.body.contains(text.as_str())
    {
        return Some(format!("body lacks {text:?}"));
    }
    if let Some((name, value)) = &c.header {
        let got = a.headers.get(name.as_str()).and_then(|v| v.to_str().ok());
        if got != Some(value.as_str()) {
            return Some(format!("header {name} is {got:?} (expected {value:?})"));
        }
    }
    None
}

/// The new instance's address in its answers, from the `proxy-switch` step the smoke follows (`None`: no such
/// field, or socket mode, where answers cannot tell and need not).
fn expected_origin(s: &Settings, plan: &Plan, slot: &str) -> Result<Option<String>, StepError> {
    let Some(name) = &s.proxy_switch else {
        return Ok(None);
    };
    let switch = plan
        .step_by_name(name)
        .filter(|s| s.kind == "proxy-switch")
        .and_then(|s| s.settings.get::<crate::proxy::Settings>())
        .ok_or_else(|| StepError::fatal(format!("`{name}` is not a proxy-switch step of this plan")))?;
    switch.nginx.origin(slot)
}

/// The certificate the HTTPS checks trust besides the system's roots: `tls-trust`, else the one the
/// `proxy-switch` step the smoke follows serves (its `tls-cert`), as that step's confirmation does.
fn switch_certificate(s: &Settings, plan: &Plan) -> Option<std::path::PathBuf> {
    if let Some(trust) = &s.tls_trust {
        return Some(trust.clone());
    }
    let switch = plan.step_by_name(s.proxy_switch.as_deref()?)?.settings.get::<crate::proxy::Settings>()?;
    switch.nginx.tls.as_ref().map(|t| t.cert.clone())
}

#[async_trait]
impl TypedKind for Smoke {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        Ok(Settings {
            base: ctx.required("base")?.to_owned(),
            host: ctx.given("host").map(str::to_owned),
            checks: checks_settings(ctx),
            static_from: ctx.given("static-from").map(|page| {
                let (page, required) = static_page(page);
                (page.to_owned(), required)
            }),
            static_facts: ctx.path("static-facts"),
            request_timeout: ctx.duration("request-timeout", Duration::from_secs(5)),
            proxy_switch: ctx.given("proxy-switch").map(str::to_owned),
            origin_within: ctx.duration("origin-within", Duration::from_secs(10)),
            error_log: ctx.path("error-log"),
            tls_trust: ctx.path("tls-trust"),
        })
    }

    async fn preview(&self, s: &Settings, ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let base = &s.base;
        let from = OriginFilter::new(expected_origin(s, &ctx.plan, &ctx.target.slot)?).from_expected();
        let mut actions: Vec<PlannedAction> = s
            .checks
            .iter()
            .map(|c| PlannedAction::Http {
                description: format!(
                    "GET {base}{} expect {}{}{}{from}",
                    c.path,
                    c.status,
                    c.contains.as_ref().map(|t| format!(" containing {t:?}")).unwrap_or_default(),
                    c.header.as_ref().map(|(k, v)| format!(" with {k}: {v}")).unwrap_or_default()
                ),
            })
            .collect();
        if let Some((page, required)) = &s.static_from {
            let facts = s.static_facts.as_ref().map_or_else(String::new, |f| format!(" (from {})", f.display()));
            let skip = if *required { "" } else { "; skipped if it references none" };
            actions.push(PlannedAction::Http {
                description: format!(
                    "GET {base}{page}, then the first asset under STATIC_URL{facts} it references{skip}"
                ),
            });
        }
        Ok(Preview { actions, checks: vec![], undo: vec![] })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let base = ProbeUrl::parse(&s.base).map_err(StepError::fatal)?;
        let host = s.host.as_deref();
        let trust = switch_certificate(s, &ctx.plan);
        let client = probe::client_trusting(ctx.host.as_ref(), &base, s.request_timeout, trust.as_deref()).await?;
        let until = Instant::now() + s.origin_within;
        let mut proxy = ThroughProxy {
            client,
            host,
            filter: OriginFilter::new(expected_origin(s, &ctx.plan, &ctx.target.slot)?),
            until,
        };
        let from = proxy.filter.from_expected();
        let switch = s.proxy_switch.as_deref().and_then(|name| ctx.plan.step_by_name(name));
        let log_name = switch
            .and_then(|step| step.settings.get::<crate::proxy::Settings>())
            .map_or("the proxy's log", crate::proxy::Settings::log_name);
        let error_log = crate::proxy::ErrorLog::open(s.error_log.as_deref(), log_name, ctx).await;
        let mut failures = Vec::new();
        for c in &s.checks {
            let url = base.with_path(&c.path);
            match proxy.get(&ctx.cancel, &url).await {
                Ok(a) => match mismatch(c, &a) {
                    None => ctx.message(format!("GET {} -> {}{from}", c.path, a.status)),
                    Some(why) => failures.push(format!("GET {}: {why}{from}", c.path)),
                },
                Err(StepError::Cancelled) => return Err(StepError::Cancelled),
                Err(e) => failures.push(format!("GET {}: {e}", c.path)),
            }
        }
        if let Some((page, required)) = &s.static_from {
            let (page, required) = (page.as_str(), *required);
            let static_url = static_url(s, ctx).await?;
            match static_check(&mut proxy, &ctx.cancel, &base, page, host, &static_url).await {
                Ok(Found::Loaded(asset)) => ctx.message(format!("static asset {asset} loads")),
                Ok(Found::Remote(asset)) => ctx.message(format!(
                    "GET {page} references {asset}, on another origin (STATIC_URL {static_url}): not fetched"
                )),
                Ok(Found::Nothing(what)) if !required => ctx.message(format!(
                    "GET {page} references no asset under {static_url} ({what}): static asset check skipped"
                )),
                Ok(Found::Nothing(what)) => {
                    failures.push(format!("GET {page}: the page references no asset under {static_url} ({what})"));
                }
                Err(why) => failures.push(why),
            }
        }
        if proxy.filter.ignored() > 0 {
            ctx.message(format!(
                "not counted: {} (Nginx workers from before the reload)",
                proxy.filter.describe_ignored()
            ));
        }
        if failures.is_empty() {
            ctx.serving(s.base.clone());
            return Ok(());
        }
        let mut detail = failures.join("\n");
        if let Some(log) = &error_log {
            detail.push_str(&log.written_since(ctx).await);
        }
        Err(StepError::failed(format!("{} smoke check(s) failed", failures.len()))
            .with_detail(ctx.redactor.redact(&detail)))
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

/// `static-from`'s page, and whether it must reference an asset (`auto`: `/`, and it need not).
fn static_page(field: &str) -> (&str, bool) {
    if field == "auto" { ("/", false) } else { (field, true) }
}

/// Django's `STATIC_URL` as the collectstatic step recorded it in the release; `/static/` without a record.
async fn static_url(s: &Settings, ctx: &StepCtx) -> Result<String, StepError> {
    const DEFAULT: &str = "/static/";
    let Some(file) = &s.static_facts else {
        return Ok(DEFAULT.to_owned());
    };
    let facts = StaticFacts::read(ctx.host.as_ref(), file).await.map_err(StepError::failed)?;
    if let Some(url) = facts.and_then(|f| f.static_url) {
        Ok(url)
    } else {
        ctx.message(format!("no STATIC_URL recorded in {}: looking under {DEFAULT}", file.display()));
        Ok(DEFAULT.to_owned())
    }
}

/// What the static asset check found on the page.
enum Found {
    /// The asset, fetched through the proxy with status 200.
    Loaded(String),
    /// An asset on another origin (a CDN's `STATIC_URL`), not fetched.
    Remote(String),
    /// No asset under `STATIC_URL`; what the page was (its content type).
    Nothing(String),
}

/// The page from the new instance (its assets are the new release's), the asset from wherever Nginx serves it.
async fn static_check(
    proxy: &mut ThroughProxy<'_>,
    cancel: &tokio_util::sync::CancellationToken,
    base: &ProbeUrl,
    page: &str,
    host: Option<&str>,
    static_url: &str,
) -> Result<Found, String> {
    let page_url = base.with_path(page);
    let answer = proxy.get(cancel, &page_url).await.map_err(|e| format!("GET {page}: {e}"))?;
    if answer.status != 200 {
        return Err(format!("GET {page}: status {} (the static asset check needs the page)", answer.status));
    }
    // Links are resolved against the page as the site sees it: the Host header's name, when the check sends one.
    let path = if page.starts_with('/') { page.to_owned() } else { format!("/{page}") };
    let seen_as = host.map_or_else(|| page_url.url.clone(), |h| format!("http://{h}{path}"));
    let seen_as = url::Url::parse(&seen_as).map_err(|e| format!("GET {page}: {seen_as}: {e}"))?;
    match first_asset(&answer.body, &seen_as, static_url) {
        Some(Asset::Local(asset)) => {
            let a = proxy.get_any(&base.with_path(&asset)).await.map_err(|e| format!("GET {asset}: {e}"))?;
            if a.status == 200 {
                Ok(Found::Loaded(asset))
            } else {
                Err(format!("static asset {asset} (from {page}): status {}", a.status))
            }
        }
        Some(Asset::Remote(asset)) => Ok(Found::Remote(asset)),
        None => {
            let content_type = answer.headers.get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok());
            Ok(Found::Nothing(content_type.unwrap_or("no content type").to_owned()))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use zdd_engine::kind::StepKind;
    use zdd_engine::plan::Step;
    use zdd_engine::settings::Typed;

    use super::*;
    use crate::testing::FakeProxy;

    const OLD: Option<&str> = Some("127.0.0.1:8001");
    const NEW: Option<&str> = Some("127.0.0.1:8002");

    /// A smoke step following the proxy-switch step `switch`, checking `/` on `base`.
    fn smoke_step(base: &str) -> Step {
        crate::testing::step(
            "smoke",
            "smoke",
            &[
                ("base", Value::Str(base.to_owned())),
                ("host", Value::Str("localhost".into())),
                ("paths", Value::Str("/".into())),
                ("proxy-switch", Value::Str("switch".into())),
                ("origin-within", Value::Duration(Duration::from_millis(500))),
            ],
        )
    }

    /// The context of a deploy into slot 8002 with a proxy-switch step named `switch` in `mode`.
    fn ctx(mode: &str) -> StepCtx {
        let mut ctx = crate::testing::ctx("smoke", std::path::Path::new("/"), Arc::default());
        ctx.target.slot = "8002".into();
        let switch = crate::testing::step(
            "switch",
            "proxy-switch",
            &[
                ("app", Value::Str("shop".into())),
                ("root", Value::Path("/srv/shop".into())),
                ("mode", Value::Str(mode.into())),
                ("site-conf", Value::Path("/etc/nginx/sites-enabled/shop.conf".into())),
            ],
        );
        let mut plan = (*ctx.plan).clone();
        plan.steps.push(switch);
        ctx.plan = Arc::new(plan);
        ctx
    }

    /// The finding: a release whose home page raises passed smoke on the old release's answer, 20 ms after the
    /// reload. Answers of the old instance are asked again; the new instance's 500 fails the smoke.
    #[tokio::test]
    async fn a_broken_release_fails_though_the_old_instance_answers_first() {
        let proxy = FakeProxy::start(|n| if n < 3 { (200, OLD, "v2") } else { (500, NEW, "Server Error") });
        let err = Typed(Smoke).run(&smoke_step(&proxy.base), &ctx("port")).await.unwrap_err();
        let StepError::Failed { detail, .. } = err else { panic!("{err}") };
        assert_eq!(detail.as_deref(), Some("GET /: status 500 (expected 200) from 127.0.0.1:8002"));
        assert_eq!(proxy.requests(), 4);
    }

    /// The rollback direction: the instance switched back to answers 200 while the one left still answers 500.
    #[tokio::test]
    async fn a_good_release_passes_though_the_old_instance_answers_500() {
        let proxy = FakeProxy::start(|n| if n < 3 { (500, OLD, "Server Error") } else { (200, NEW, "v1") });
        Typed(Smoke).run(&smoke_step(&proxy.base), &ctx("port")).await.unwrap();
        assert_eq!(proxy.requests(), 4);
    }

    #[tokio::test]
    async fn only_old_answers_fail_after_origin_within() {
        let proxy = FakeProxy::start(|_| (200, OLD, "v2"));
        let err = Typed(Smoke).run(&smoke_step(&proxy.base), &ctx("port")).await.unwrap_err();
        let StepError::Failed { detail, .. } = err else { panic!("{err}") };
        let detail = detail.unwrap_or_default();
        assert!(detail.starts_with("GET /: 127.0.0.1:8002 (the new instance) never answered: only "), "{detail}");
        assert!(detail.ends_with("answers from 127.0.0.1:8001"), "{detail}");
    }

    /// Socket mode: one link, swapped atomically; every answer after the switch is the new instance's.
    #[tokio::test]
    async fn socket_mode_counts_every_answer() {
        let proxy = FakeProxy::start(|_| (200, None, "v2"));
        Typed(Smoke).run(&smoke_step(&proxy.base), &ctx("socket")).await.unwrap();
        assert_eq!(proxy.requests(), 1);
    }

    #[tokio::test]
    async fn the_switch_named_must_be_a_proxy_switch() {
        let step = crate::testing::step(
            "smoke",
            "smoke",
            &[("base", Value::Str("http://127.0.0.1:9".into())), ("proxy-switch", Value::Str("web".into()))],
        );
        let err = Typed(Smoke).run(&step, &ctx("port")).await.unwrap_err();
        assert!(err.to_string().contains("`web` is not a proxy-switch step"), "{err}");
    }

    #[test]
    fn auto_checks_the_home_page_and_may_skip() {
        assert_eq!(static_page("auto"), ("/", false));
        assert_eq!(static_page("/"), ("/", true));
        assert_eq!(static_page("/about/"), ("/about/", true));
    }
}
