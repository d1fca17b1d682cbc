//! HTTP probes for health gates, smoke checks and the proxy switch's confirmation: `http://`, `https://`, and
//! `http+unix://<socket path>:<request path>` (an instance's own unix socket, before any traffic reaches it).

use std::path::PathBuf;
use std::time::Duration;

use reqwest::header::HeaderMap;

use crate::origin;

/// A parsed probe URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// The unix socket to connect to, for `http+unix://`.
    pub socket: Option<PathBuf>,
    /// The URL the request is made for (`http://localhost/<path>` for a socket).
    pub url: String,
}

impl ProbeUrl {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(rest) = text.strip_prefix("http+unix://") {
            let (socket, path) = rest
                .split_once(":/")
                .ok_or_else(|| format!("`{text}`: expected http+unix://<socket path>:/<request path>"))?;
            if socket.is_empty() {
                return Err(format!("`{text}`: the socket path is empty"));
            }
            return Ok(Self { socket: Some(PathBuf::from(socket)), url: format!("http://localhost/{path}") });
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            return Ok(Self { socket: None, url: text.to_owned() });
        }
        Err(format!("`{text}` is not an http://, https:// or http+unix:// URL"))
    }

    /// This URL with another path (for smoke checks relative to a base).
    #[must_use]
    pub fn with_path(&self, path: &str) -> Self {
        let base = match self.url.find("://").and_then(|i| self.url[i + 3..].find('/').map(|j| i + 3 + j)) {
            Some(end) => &self.url[..end],
            None => self.url.as_str(),
        };
        let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
        Self { socket: self.socket.clone(), url: format!("{base}{path}") }
    }
}

/// What a probe got back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// A client for one probe URL (a unix-socket client sends every request over its socket).
pub fn client(url: &ProbeUrl, timeout: Duration) -> Result<reqwest::Client, String> {
    // Every check on a fresh connection: right after an Nginx reload, an old worker may close a kept-alive
    // connection just as a request is sent on it (Nginx's keep-alive race). A check must fail for the app's
    // reasons, not for that one.
    let mut builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0);
    if let Some(socket) = &url.socket {
        builder = builder.unix_socket(socket.clone());
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// GET the URL, with an optional Host header (Django checks it against `ALLOWED_HOSTS`). Every probe says it is
/// one ([`origin::PROBE_HEADER`]), so that a site zdd rendered names the instance that answered.
pub async fn get(client: &reqwest::Client, url: &ProbeUrl, host: Option<&str>) -> Result<Answer, String> {
    let mut req = client.get(&url.url).header(origin::PROBE_HEADER, "1");
    if let Some(h) = host {
        req = req.header(reqwest::header::HOST, h);
    }
    let resp = req.send().await.map_err(|e| describe(&e))?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().await.map_err(|e| describe(&e))?;
    Ok(Answer { status, headers, body })
}

fn describe(e: &reqwest::Error) -> String {
    // reqwest's Display hides the cause ("error sending request"); the source chain says what happened.
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Does the answer's JSON body have `field` (dotted path) equal to `value`?
pub fn json_field_is(body: &str, field: &str, value: &str) -> bool {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    let found = field.split('.').try_fold(&json, |v, key| v.get(key));
    match found {
        Some(serde_json::Value::String(s)) => s == value,
        Some(other) => serde_json::from_str::<serde_json::Value>(value).is_ok_and(|v| &v == other),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_unix_socket_urls() {
        let u = ProbeUrl::parse("http+unix:///srv/shop/run/a.sock:/health/").unwrap();
        assert_eq!(u.socket.as_deref(), Some(std::path::Path::new("/srv/shop/run/a.sock")));
        assert_eq!(u.url, "http://localhost/health/");
        assert!(ProbeUrl::parse("http+unix:///srv/a.sock").is_err());
        assert!(ProbeUrl::parse("ftp://x").is_err());
    }

    #[test]
    fn with_path_replaces_the_path() {
        let u = ProbeUrl::parse("http://127.0.0.1:8080/health/").unwrap();
        assert_eq!(u.with_path("/static/a.css").url, "http://127.0.0.1:8080/static/a.css");
        let u = ProbeUrl::parse("http://127.0.0.1:8080").unwrap();
        assert_eq!(u.with_path("x").url, "http://127.0.0.1:8080/x");
    }

    #[test]
    fn json_fields() {
        assert!(json_field_is(r#"{"status":"ok","db":{"up":true}}"#, "status", "ok"));
        assert!(json_field_is(r#"{"status":"ok","db":{"up":true}}"#, "db.up", "true"));
        assert!(!json_field_is("not json", "status", "ok"));
    }
}
