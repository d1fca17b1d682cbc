//! HTTP probes for health gates, smoke checks and the proxy switch's confirmation: `http://`, `https://`, and
//! `http+unix://<socket path>:<request path>` (an instance's own unix socket, before any traffic reaches it).
//!
//! A probe connects to its socket or address as the step's host sees it ([`Host::reach`]): on this machine
//! directly, on an SSH host through a forward. The request itself (URL, `Host` header) is the same either way.
//!
//! `https://` is verified as any client would: the system's roots, plus, for a probe through a proxy that serves
//! a certificate of the plan's ([`client_trusting`]), that certificate, read from the step's host. There is no
//! way to turn verification off.

use std::path::{Path, PathBuf};
use std::time::Duration;

use reqwest::header::HeaderMap;
use zdd_engine::host::{Endpoint, Host};
use zdd_engine::kind::StepError;

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

    /// What the probe connects to, as the host sees it: the unix socket, else the URL's address.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        match &self.socket {
            Some(socket) => Ok(Endpoint::Unix(socket.clone())),
            None => tcp_endpoint(&self.url),
        }
    }
}

/// The TCP address an `http://` or `https://` URL names (its port, or the scheme's).
pub fn tcp_endpoint(text: &str) -> Result<Endpoint, String> {
    let url = url::Url::parse(text).map_err(|e| format!("`{text}`: {e}"))?;
    let host = match url.host() {
        Some(url::Host::Domain(name)) => name.to_owned(),
        Some(url::Host::Ipv4(address)) => address.to_string(),
        Some(url::Host::Ipv6(address)) => address.to_string(),
        None => return Err(format!("`{text}` names no host")),
    };
    let port = url.port_or_known_default().ok_or_else(|| format!("`{text}` names no port"))?;
    Ok(Endpoint::Tcp { host, port })
}

/// `builder`, made to connect to `endpoint` as `host` sees it (unchanged for a TCP address of this machine).
pub async fn through_host(
    host: &dyn Host,
    endpoint: &Endpoint,
    builder: reqwest::ClientBuilder,
) -> Result<reqwest::ClientBuilder, StepError> {
    let reached = host.reach(endpoint).await?;
    Ok(match reached.unix_socket() {
        Some(socket) => builder.unix_socket(socket.to_path_buf()),
        None => builder,
    })
}

/// The certificates of a PEM file on `host`, to trust.
async fn trusted_certificates(host: &dyn Host, file: &Path) -> Result<Vec<reqwest::Certificate>, StepError> {
    let pem = host
        .read_file(file)
        .await?
        .ok_or_else(|| StepError::fatal(format!("the certificate to trust, {}, does not exist", file.display())))?;
    let certs = reqwest::Certificate::from_pem_bundle(&pem)
        .map_err(|e| StepError::fatal(format!("{}: not a PEM certificate: {}", file.display(), describe(&e))))?;
    if certs.is_empty() {
        return Err(StepError::fatal(format!("{} holds no PEM certificate", file.display())));
    }
    Ok(certs)
}

/// What a probe got back.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: String,
}

/// A client for one probe URL on `host`: every request goes to the URL's socket or address as the host sees it
/// (so to the same place: [`ProbeUrl::with_path`] keeps both).
pub async fn client(host: &dyn Host, url: &ProbeUrl, timeout: Duration) -> Result<reqwest::Client, StepError> {
    client_trusting(host, url, timeout, None).await
}

/// [`client`], trusting the certificates in the PEM file `trust` (on `host`) besides the system's roots for an
/// `https://` URL: the certificate the proxy serves, self-signed or from a private CA.
pub async fn client_trusting(
    host: &dyn Host,
    url: &ProbeUrl,
    timeout: Duration,
    trust: Option<&Path>,
) -> Result<reqwest::Client, StepError> {
    // Every check on a fresh connection: right after an Nginx reload, an old worker may close a kept-alive
    // connection just as a request is sent on it (Nginx's keep-alive race). A check must fail for the app's
    // reasons, not for that one.
    let builder = reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(0);
    let builder = match trust.filter(|_| url.socket.is_none() && url.url.starts_with("https://")) {
        Some(file) => builder.tls_certs_merge(trusted_certificates(host, file).await?),
        None => builder,
    };
    let endpoint = url.endpoint().map_err(StepError::fatal)?;
    let builder = through_host(host, &endpoint, builder).await?;
    builder.build().map_err(|e| StepError::fatal(format!("HTTP client: {e}")))
}

/// GET the URL, with an optional Host header (Django checks it against `ALLOWED_HOSTS`). Every probe says it is
/// one ([`origin::PROBE_HEADER`]), so that a site zdd rendered names the instance that answered.
pub async fn get(client: &reqwest::Client, url: &ProbeUrl, host: Option<&str>) -> Result<Answer, String> {
    request(client.get(&url.url).header(origin::PROBE_HEADER, "1"), host).await
}

/// GET the URL as a visitor would, without the probe header: what people see (the maintenance page, which
/// zdd's own probes pass by).
pub async fn get_as_visitor(client: &reqwest::Client, url: &ProbeUrl, host: Option<&str>) -> Result<Answer, String> {
    request(client.get(&url.url), host).await
}

async fn request(mut req: reqwest::RequestBuilder, host: Option<&str>) -> Result<Answer, String> {
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
    fn endpoints_are_the_socket_or_the_address() {
        let u = ProbeUrl::parse("http+unix:///srv/shop/run/a.sock:/health/").unwrap();
        assert_eq!(u.endpoint().unwrap(), Endpoint::Unix("/srv/shop/run/a.sock".into()));
        let tcp = |host: &str, port| Ok(Endpoint::Tcp { host: host.into(), port });
        assert_eq!(ProbeUrl::parse("http://127.0.0.1:8001/health/").unwrap().endpoint(), tcp("127.0.0.1", 8001));
        assert_eq!(ProbeUrl::parse("http://shop.example/").unwrap().endpoint(), tcp("shop.example", 80));
        assert_eq!(ProbeUrl::parse("https://shop.example/x").unwrap().endpoint(), tcp("shop.example", 443));
        assert_eq!(ProbeUrl::parse("http://[::1]:8080/").unwrap().endpoint(), tcp("::1", 8080));
        assert!(ProbeUrl::parse("http://").unwrap().endpoint().is_err());
    }

    /// On this machine the client connects where the URL says, as it would without a host.
    #[tokio::test]
    async fn a_local_probe_connects_where_the_url_says() {
        use std::io::{Read as _, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let n = stream.read(&mut request).unwrap();
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok").unwrap();
            String::from_utf8_lossy(&request[..n]).into_owned()
        });
        let url = ProbeUrl::parse(&format!("http://127.0.0.1:{port}/health/")).unwrap();
        let client = client(&zdd_engine::host::LocalHost::new(), &url, Duration::from_secs(5)).await.unwrap();
        let answer = get(&client, &url, Some("shop.example")).await.unwrap();
        assert_eq!((answer.status, answer.body.as_str()), (200, "ok"));
        let request = server.join().unwrap().to_ascii_lowercase();
        assert!(request.starts_with("get /health/ http/1.1") && request.contains("host: shop.example"), "{request}");
    }

    #[test]
    fn json_fields() {
        assert!(json_field_is(r#"{"status":"ok","db":{"up":true}}"#, "status", "ok"));
        assert!(json_field_is(r#"{"status":"ok","db":{"up":true}}"#, "db.up", "true"));
        assert!(!json_field_is("not json", "status", "ok"));
    }
}
