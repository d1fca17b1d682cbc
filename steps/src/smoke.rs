//! The `smoke` kind: HTTP checks through the proxy after the switch: pages answer with the right status, text
//! and headers, and a static asset a page references actually loads. A failure shows what Nginx's error log
//! (`error-log`) got meanwhile.

use std::time::Duration;

use async_trait::async_trait;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, StepKind, UndoFacts};
use zdd_engine::plan::{FieldValue, Step, Value};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, PropSpec, ValueType};

use crate::common::{opt_str, req_str};
use crate::health_gate::HOST;
use crate::probe::{self, Answer, ProbeUrl};

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
            "A page whose first `/static/...` reference (href or src) must load with status 200.",
        ),
        FieldSpec::new("request-timeout", ValueType::Duration, "Timeout of each request.").default("5s"),
        FieldSpec::new(
            "error-log",
            ValueType::Path,
            "Nginx's error log: a failed check shows the lines Nginx wrote during the checks.",
        ),
    ],
    effect: Effect::ReadOnly,
    undo: "Nothing: it only reads.",
};

struct Check {
    path: String,
    status: u16,
    contains: Option<String>,
    header: Option<(String, String)>,
}

fn checks(step: &Step) -> Vec<Check> {
    let mut all: Vec<Check> = step.fields.all("get").iter().filter_map(check).collect();
    let listed = step.fields.str("paths").unwrap_or_default().split_whitespace().map(|path| Check {
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

/// The first `/static/...` URL an HTML page references in an `href` or `src` attribute.
pub fn first_static_ref(html: &str, prefix: &str) -> Option<String> {
    ["href=\"", "src=\"", "href='", "src='"].iter().find_map(|attr| {
        html.match_indices(attr).find_map(|(i, _)| {
            let rest = &html[i + attr.len()..];
            let end = rest.find(['"', '\''])?;
            let url = &rest[..end];
            url.starts_with(prefix).then(|| url.to_owned())
        })
    })
}

#[async_trait]
impl StepKind for Smoke {
    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    async fn preview(&self, step: &Step, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        let base = req_str(step, "base")?;
        let mut actions: Vec<PlannedAction> = checks(step)
            .iter()
            .map(|c| PlannedAction::Http {
                description: format!(
                    "GET {base}{} expect {}{}{}",
                    c.path,
                    c.status,
                    c.contains.as_ref().map(|t| format!(" containing {t:?}")).unwrap_or_default(),
                    c.header.as_ref().map(|(k, v)| format!(" with {k}: {v}")).unwrap_or_default()
                ),
            })
            .collect();
        if let Some(page) = opt_str(&step.fields, "static-from") {
            actions.push(PlannedAction::Http {
                description: format!("GET {base}{page}, then the first /static/ asset it references"),
            });
        }
        Ok(Preview { actions, checks: vec![], undo: vec![] })
    }

    async fn run(&self, step: &Step, ctx: &StepCtx) -> Result<(), StepError> {
        let base = ProbeUrl::parse(req_str(step, "base")?).map_err(StepError::fatal)?;
        let host = opt_str(&step.fields, "host");
        let timeout = step.fields.duration("request-timeout").unwrap_or(Duration::from_secs(5));
        let client = probe::client(&base, timeout).map_err(StepError::fatal)?;
        let error_log = crate::proxy::ErrorLog::open(step, ctx).await;
        let mut failures = Vec::new();
        for c in checks(step) {
            let url = base.with_path(&c.path);
            match probe::get(&client, &url, host).await {
                Ok(a) => match mismatch(&c, &a) {
                    None => ctx.message(format!("GET {} -> {}", c.path, a.status)),
                    Some(why) => failures.push(format!("GET {}: {why}", c.path)),
                },
                Err(e) => failures.push(format!("GET {}: {e}", c.path)),
            }
        }
        if let Some(page) = opt_str(&step.fields, "static-from") {
            match static_check(&client, &base, page, host).await {
                Ok(asset) => ctx.message(format!("static asset {asset} loads")),
                Err(why) => failures.push(why),
            }
        }
        if failures.is_empty() {
            return Ok(());
        }
        let mut detail = failures.join("\n");
        if let Some(log) = &error_log {
            detail.push_str(&log.written_since(ctx).await);
        }
        Err(StepError::failed(format!("{} smoke check(s) failed", failures.len()))
            .with_detail(ctx.redactor.redact(&detail)))
    }

    async fn undo(&self, _step: &Step, _facts: &UndoFacts, _ctx: &StepCtx) -> Result<(), StepError> {
        Ok(())
    }
}

async fn static_check(
    client: &reqwest::Client,
    base: &ProbeUrl,
    page: &str,
    host: Option<&str>,
) -> Result<String, String> {
    let answer = probe::get(client, &base.with_path(page), host).await.map_err(|e| format!("GET {page}: {e}"))?;
    let asset = first_static_ref(&answer.body, "/static/")
        .ok_or_else(|| format!("GET {page}: the page references no /static/ asset"))?;
    let a = probe::get(client, &base.with_path(&asset), host).await.map_err(|e| format!("GET {asset}: {e}"))?;
    if a.status == 200 { Ok(asset) } else { Err(format!("static asset {asset} (from {page}): status {}", a.status)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_first_static_reference() {
        let html = r#"<link rel="icon" href="/favicon.ico"><link href="/static/css/site.3f2a.css" rel="stylesheet"><script src='/static/app.js'>"#;
        assert_eq!(first_static_ref(html, "/static/").as_deref(), Some("/static/css/site.3f2a.css"));
        assert_eq!(first_static_ref("<p>none</p>", "/static/"), None);
    }
}
