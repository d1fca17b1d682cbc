//! The `http` kind: one HTTP request whose answer must have the expected status (a deploy notification, a
//! webhook, a one-off check). Read-only as far as zdd is concerned: nothing to undo.
//!
//! `http+unix://<socket>:<path>` URLs go over a unix socket. The request is sent from the step's host (through
//! [`Host::reach`](zdd_engine::host::Host::reach)): its `127.0.0.1` and its sockets, its view of the network.

use std::time::Duration;

use async_trait::async_trait;
use zdd_engine::diag::{Code, Diagnostic, Diagnostics};
use zdd_engine::host::Endpoint;
use zdd_engine::kind::{PlannedAction, Preview, PreviewCtx, StepCtx, StepError, UndoCtx, UndoFacts, tail_lines};
use zdd_engine::plan::{Step, Value};
use zdd_engine::schema::{Effect, FieldSpec, KindSpec, ValueType};
use zdd_engine::settings::{SettingsCtx, TypedKind};

use crate::probe;

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

static SPEC: KindSpec = KindSpec {
    name: "http",
    summary: "Send one HTTP request and check its status (a deploy notification, a webhook)",
    fields: &[
        FieldSpec::new(
            "url",
            ValueType::Url,
            "Where to send it (`http://`, `https://`, `http+unix://<socket>:<path>`).",
        )
        .required(),
        FieldSpec::new("method", ValueType::Enum(METHODS), "The HTTP method.").default("GET"),
        FieldSpec::new("body", ValueType::String, "The request body."),
        FieldSpec::new("header", ValueType::Strings, "A request header: `header \"Name\" \"value\"` (repeatable).")
            .repeated(),
        FieldSpec::new("expect-status", ValueType::Int, "The status the answer must have (default: any 2xx)."),
    ],
    effect: Effect::ReadOnly,
    undo: "nothing to undo (a request is not taken back)",
};

/// The `http` kind.
#[derive(Debug, Default)]
pub struct Http;

/// A parsed request target: the URL to put in the request, and the unix socket to send it over, if any.
fn target(url: &str) -> (String, Option<String>) {
    match url.strip_prefix("http+unix://").and_then(|rest| rest.split_once(':')) {
        Some((socket, path)) => (format!("http://localhost{path}"), Some(socket.to_owned())),
        None => (url.to_owned(), None),
    }
}

/// An http step's settings.
#[derive(Debug)]
pub struct Settings {
    url: String,
    method: reqwest::Method,
    body: Option<String>,
    headers: Vec<(String, String)>,
    /// `None`: any 2xx.
    expect_status: Option<i64>,
}

/// An error with its causes: reqwest's own message ("error sending request for url") hides the one that says
/// what went wrong ("Connection refused").
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !text.contains(&message) {
            text.push_str(": ");
            text.push_str(&message);
        }
        cause = e.source();
    }
    text
}

fn describe(s: &Settings) -> String {
    let expect = s.expect_status.map_or_else(|| "2xx".to_owned(), |s| s.to_string());
    format!("{} {}, expect {expect}", s.method, s.url)
}

#[async_trait]
impl TypedKind for Http {
    type Settings = Settings;

    fn spec(&self) -> &'static KindSpec {
        &SPEC
    }

    fn settings(&self, ctx: &SettingsCtx<'_>) -> Result<Settings, Diagnostics> {
        // The spec's enum admits only methods reqwest knows.
        let method =
            reqwest::Method::from_bytes(ctx.str("method").unwrap_or("GET").as_bytes()).unwrap_or(reqwest::Method::GET);
        Ok(Settings {
            url: ctx.required("url")?.to_owned(),
            method,
            body: ctx.str("body").map(str::to_owned),
            headers: ctx
                .all("header")
                .iter()
                .filter_map(|f| match &f.value {
                    Some(Value::Strings(kv)) if kv.len() == 2 => Some((kv[0].clone(), kv[1].clone())),
                    _ => None,
                })
                .collect(),
            expect_status: ctx.int("expect-status"),
        })
    }

    fn check(&self, step: &Step, diags: &mut Diagnostics) {
        for field in step.fields.all("header") {
            if !matches!(&field.value, Some(Value::Strings(kv)) if kv.len() == 2 && !kv[0].is_empty()) {
                diags.push(
                    Diagnostic::error(Code::HttpBadHeader, "`header` takes a name and a value")
                        .at(field.span, "expected `header \"Name\" \"value\"`")
                        .help("write e.g. `header \"Content-Type\" \"application/json\"`"),
                );
            }
        }
        if let Some(status) = step.fields.int("expect-status")
            && !(100..=599).contains(&status)
        {
            let span = step.fields.all("expect-status").first().map_or(step.span, |f| f.span);
            diags.push(
                Diagnostic::error(Code::HttpBadStatus, format!("{status} is not an HTTP status"))
                    .at(span, "expected 100-599")
                    .help("write the status the answer must have, e.g. `expect-status 204`"),
            );
        }
    }

    async fn preview(&self, s: &Settings, _ctx: &PreviewCtx) -> Result<Preview, StepError> {
        Ok(Preview { actions: vec![PlannedAction::Http { description: describe(s) }], ..Preview::default() })
    }

    async fn run(&self, s: &Settings, ctx: &StepCtx) -> Result<(), StepError> {
        let url = &s.url;
        let (request_url, socket) = target(url);
        // To the socket or address as the step's host sees it (a webhook elsewhere is reached from that host too).
        let endpoint = match socket {
            Some(socket) => Endpoint::Unix(socket.into()),
            None => probe::tcp_endpoint(&request_url).map_err(StepError::fatal)?,
        };
        let builder = reqwest::Client::builder().connect_timeout(Duration::from_secs(10));
        let builder = probe::through_host(ctx.host.as_ref(), &endpoint, builder).await?;
        let client = builder.build().map_err(|e| StepError::fatal(format!("cannot build an HTTP client: {e}")))?;
        let mut request = client.request(s.method.clone(), &request_url);
        for (name, value) in &s.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &s.body {
            request = request.body(body.clone());
        }
        ctx.message(describe(s));
        let send = async {
            let response = request.send().await.map_err(|e| {
                // A request that cannot even be built (a bad URL) fails the same way every time.
                let error = if e.is_builder() { StepError::fatal } else { StepError::failed };
                error(format!("{url}: {}", with_causes(&e)))
            })?;
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            Ok::<_, StepError>((status, body))
        };
        let (status, body) = tokio::select! {
            result = send => result?,
            () = ctx.cancel.cancelled() => return Err(StepError::Cancelled),
        };
        let ok = match s.expect_status {
            Some(expected) => i64::from(status.as_u16()) == expected,
            None => status.is_success(),
        };
        if ok {
            return Ok(());
        }
        let expected = s.expect_status.map_or_else(|| "a 2xx status".to_owned(), |s| s.to_string());
        Err(StepError::failed(format!("{url} answered {status}, expected {expected}"))
            .with_detail(ctx.redactor.redact(&tail_lines(&body, 20))))
    }

    async fn undo(&self, _facts: &UndoFacts, _ctx: &UndoCtx) -> Result<(), StepError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::sync::{Arc, Mutex};

    use zdd_engine::kind::StepKind;
    use zdd_engine::settings::Typed;

    use super::*;

    #[test]
    fn unix_socket_urls_split_into_socket_and_path() {
        assert_eq!(
            target("http+unix:///run/app.sock:/health?x=1"),
            ("http://localhost/health?x=1".to_owned(), Some("/run/app.sock".to_owned()))
        );
        assert_eq!(target("http://127.0.0.1:8000/"), ("http://127.0.0.1:8000/".to_owned(), None));
    }

    /// A one-request HTTP server on 127.0.0.1 answering `status` and `body`; returns its URL and the request
    /// it received (request line, headers and body).
    fn serve_once(status: &str, body: &'static str) -> (String, Arc<Mutex<String>>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(String::new()));
        let record = seen.clone();
        let status = status.to_owned();
        std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap();
                }
                request.push_str(&line);
                if line == "\r\n" {
                    break;
                }
            }
            let mut content = vec![0; length];
            reader.read_exact(&mut content).unwrap();
            request.push_str(&String::from_utf8_lossy(&content));
            *record.lock().unwrap() = request;
            let mut stream = stream;
            write!(stream, "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}", body.len())
                .unwrap();
        });
        (url, seen)
    }

    fn step(fields: &[(&str, Value)]) -> Step {
        crate::testing::step("notify", "http", fields)
    }

    fn ctx() -> StepCtx {
        crate::testing::ctx("notify", std::path::Path::new("/"), std::sync::Arc::default())
    }

    #[tokio::test]
    async fn posts_the_body_and_headers_and_accepts_the_expected_status() {
        let (url, seen) = serve_once("204 No Content", "");
        let step = step(&[
            ("url", Value::Str(url)),
            ("method", Value::Str("POST".into())),
            ("body", Value::Str("{\"release\": \"r1\"}".into())),
            ("header", Value::Strings(vec!["X-Token".into(), "abc".into()])),
            ("expect-status", Value::Int(204)),
        ]);
        Typed(Http).run(&step, &ctx()).await.unwrap();
        let request = seen.lock().unwrap().clone();
        assert!(request.starts_with("POST /hook HTTP/1.1"), "{request}");
        assert!(request.to_ascii_lowercase().contains("x-token: abc"), "{request}");
        assert!(request.ends_with("{\"release\": \"r1\"}"), "{request}");
    }

    #[tokio::test]
    async fn an_unexpected_status_fails_with_the_body_as_detail() {
        let (url, _) = serve_once("500 Internal Server Error", "<h1>Server Error</h1>");
        let err = Typed(Http).run(&step(&[("url", Value::Str(url))]), &ctx()).await.unwrap_err();
        let StepError::Failed { message, detail } = err else { panic!("{err}") };
        assert!(message.contains("500") && message.contains("expected a 2xx status"), "{message}");
        assert_eq!(detail.as_deref(), Some("<h1>Server Error</h1>"));
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        drop(listener);
        let err = Typed(Http).run(&step(&[("url", Value::Str(url))]), &ctx()).await.unwrap_err();
        assert!(err.to_string().to_ascii_lowercase().contains("refused"), "{err}");
    }
}
