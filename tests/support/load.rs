//! A load generator for 127.0.0.1 only: raw HTTP/1.1 over TCP (or over TLS, with rustls) with keep-alive, a few dozen concurrent clients,
//! bounded in time and in requests, that records every response (status, `X-App-Version`, latency) and
//! classifies every failure. It never retries: a request that did not get a good answer is counted.
//!
//! It runs on its own thread and tokio runtime, so synchronous tests start it, deploy, and collect the report.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A client's connection: plain TCP or TLS over it.
trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

type Connection = BufReader<Box<dyn Stream>>;

/// What to send.
#[derive(Debug, Clone)]
pub(crate) struct LoadConfig {
    pub port: u16,
    /// Clients cycling through `paths` with keep-alive.
    pub clients: usize,
    /// Clients requesting `slow_path` in a loop (requests in flight across a cutover: the drain test).
    pub slow_clients: usize,
    pub paths: Vec<String>,
    pub slow_path: String,
    /// Pause of a fast client between two requests (the machine is shared; the point is coverage, not peak rate).
    pub pause: Duration,
    pub max_duration: Duration,
    pub max_requests: u64,
    pub request_timeout: Duration,
    /// HTTPS: every connection is TLS with this client configuration (a handshake failure is a failed request).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl LoadConfig {
    /// 16 fast clients over `/`, `/health/` and the stylesheet the page links (its hashed name, as a browser
    /// would ask for it), 2 slow clients on `/slow/?s=2` (each holds a gunicorn sync worker for 2 s: the app
    /// needs more workers than slow clients).
    pub(crate) fn standard(port: u16) -> LoadConfig {
        Self::standard_over(port, None)
    }

    /// [`Self::standard`] over HTTPS on `port`, trusting what `tls` trusts.
    pub(crate) fn standard_tls(port: u16, tls: Arc<rustls::ClientConfig>) -> LoadConfig {
        Self::standard_over(port, Some(tls))
    }

    fn standard_over(port: u16, tls: Option<Arc<rustls::ClientConfig>>) -> LoadConfig {
        let stylesheet = page_stylesheet(port, tls.as_ref()).unwrap_or_else(|| "/static/catalog/shop.css".to_string());
        LoadConfig {
            port,
            clients: 16,
            slow_clients: 2,
            paths: vec!["/".into(), "/health/".into(), "/".into(), stylesheet],
            slow_path: "/slow/?s=2".into(),
            pause: Duration::from_millis(5),
            max_duration: Duration::from_mins(3),
            max_requests: 2_000_000,
            request_timeout: Duration::from_secs(10),
            tls,
        }
    }
}

/// The stylesheet `/` links (`<link rel="stylesheet" href="...">`), fetched once through `port`.
pub(crate) fn page_stylesheet(port: u16, tls: Option<&Arc<rustls::ClientConfig>>) -> Option<String> {
    let page = super::tls::get(port, "/", tls)?;
    let start = page.find("href=\"/static/")? + "href=\"".len();
    let end = page[start..].find('"')?;
    Some(page[start..start + end].to_string())
}

/// How a request failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) enum FailKind {
    /// A 5xx answer (from Nginx or the app).
    Status5xx,
    /// Any other answer that is not 2xx or 3xx.
    UnexpectedStatus,
    ConnectionRefused,
    ConnectionReset,
    /// The connection closed before any byte of the response (Nginx's keep-alive race on reload).
    ClosedWithoutResponse,
    /// The connection closed in the middle of a response.
    Truncated,
    Timeout,
    Other,
}

impl fmt::Display for FailKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            FailKind::Status5xx => "5xx",
            FailKind::UnexpectedStatus => "unexpected status",
            FailKind::ConnectionRefused => "connection refused",
            FailKind::ConnectionReset => "connection reset",
            FailKind::ClosedWithoutResponse => "closed without response",
            FailKind::Truncated => "truncated response",
            FailKind::Timeout => "timeout",
            FailKind::Other => "other error",
        };
        f.write_str(name)
    }
}

/// One request's result.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    /// When the request was sent, since the load started.
    pub at: Duration,
    pub latency: Duration,
    pub path: String,
    pub slow: bool,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// The `X-App-Version` header of the answer.
    pub version: Option<String>,
    pub failure: Option<FailKind>,
    /// Sent on a kept-alive connection that had already carried a request.
    pub reused: bool,
}

/// A running load; `finish` stops it and returns the report.
pub(crate) struct Load {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    started: Instant,
    started_at: SystemTime,
    thread: Option<JoinHandle<()>>,
}

impl Load {
    /// Starts the clients on a background thread.
    pub(crate) fn start(config: LoadConfig) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let samples = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let started_at = SystemTime::now();
        let thread = {
            let stop = stop.clone();
            let samples = samples.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("load runtime");
                runtime.block_on(run_clients(config, stop, samples, started));
            })
        };
        Load { stop, samples, started, started_at, thread: Some(thread) }
    }

    /// Time since the load started.
    pub(crate) fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A copy of the samples so far.
    pub(crate) fn snapshot(&self) -> Vec<Sample> {
        self.samples.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until `count` good answers from `version` arrived (false after `timeout`).
    pub(crate) fn wait_for_version(&self, version: &str, count: usize, timeout: Duration) -> bool {
        super::proc::wait_until(timeout, || {
            self.samples.lock().is_ok_and(|s| {
                s.iter().filter(|x| x.failure.is_none() && x.version.as_deref() == Some(version)).count() >= count
            })
        })
    }

    /// Stops the clients (requests in flight finish or time out) and returns the report.
    pub(crate) fn finish(mut self) -> Report {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        let samples = std::mem::take(&mut *self.samples.lock().expect("samples"));
        Report { samples, duration: self.started.elapsed(), started_at: self.started_at }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

async fn run_clients(config: LoadConfig, stop: Arc<AtomicBool>, samples: Arc<Mutex<Vec<Sample>>>, started: Instant) {
    let budget = Arc::new(AtomicU64::new(config.max_requests));
    let deadline = started + config.max_duration;
    let mut tasks = tokio::task::JoinSet::new();
    for index in 0..config.clients + config.slow_clients {
        let slow = index >= config.clients;
        let paths = if slow { vec![config.slow_path.clone()] } else { config.paths.clone() };
        let client = Client {
            port: config.port,
            paths,
            slow,
            offset: index,
            pause: if slow { Duration::ZERO } else { config.pause },
            timeout: config.request_timeout,
            tls: config.tls.clone(),
        };
        let (stop, samples, budget) = (stop.clone(), samples.clone(), budget.clone());
        tasks.spawn(async move { client.run(stop, samples, budget, started, deadline).await });
    }
    while tasks.join_next().await.is_some() {}
}

struct Client {
    port: u16,
    paths: Vec<String>,
    slow: bool,
    offset: usize,
    pause: Duration,
    timeout: Duration,
    tls: Option<Arc<rustls::ClientConfig>>,
}

impl Client {
    async fn run(
        self,
        stop: Arc<AtomicBool>,
        samples: Arc<Mutex<Vec<Sample>>>,
        budget: Arc<AtomicU64>,
        started: Instant,
        deadline: Instant,
    ) {
        let mut connection: Option<Connection> = None;
        let mut n = self.offset;
        while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
            if budget.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |b| b.checked_sub(1)).is_err() {
                break;
            }
            let path = self.paths[n % self.paths.len()].clone();
            n += 1;
            let sent = Instant::now();
            let reused = connection.is_some();
            let result =
                tokio::time::timeout(self.timeout, request(&mut connection, self.port, self.tls.as_ref(), &path)).await;
            let latency = sent.elapsed();
            let (status, version, failure) = match result {
                Err(_) => {
                    connection = None;
                    (None, None, Some(FailKind::Timeout))
                }
                Ok(Err(failure)) => {
                    connection = None;
                    (None, None, Some(failure))
                }
                Ok(Ok(answer)) => {
                    let failure = match answer.status {
                        500..=599 => Some(FailKind::Status5xx),
                        200..=399 => None,
                        _ => Some(FailKind::UnexpectedStatus),
                    };
                    (Some(answer.status), answer.version, failure)
                }
            };
            let sample = Sample {
                at: sent.duration_since(started),
                latency,
                path,
                slow: self.slow,
                status,
                version,
                failure,
                reused,
            };
            if let Ok(mut all) = samples.lock() {
                all.push(sample);
            }
            if !self.pause.is_zero() {
                tokio::time::sleep(self.pause).await;
            }
        }
    }
}

struct Answer {
    status: u16,
    version: Option<String>,
}

/// Requests sent, for each one's user agent: to a canary that keeps each client on its side by address and user
/// agent, the load is many visitors (one would put all of it on one side).
static REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Sends one GET on the kept-alive connection (opening one if needed) and reads the whole response.
async fn request(
    connection: &mut Option<Connection>,
    port: u16,
    tls: Option<&Arc<rustls::ClientConfig>>,
    path: &str,
) -> Result<Answer, FailKind> {
    if connection.is_none() {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.map_err(|e| classify(&e, false))?;
        let _ = stream.set_nodelay(true);
        let stream: Box<dyn Stream> = match tls {
            Some(config) => {
                let name = rustls::pki_types::ServerName::try_from("127.0.0.1").map_err(|_| FailKind::Other)?;
                let connector = tokio_rustls::TlsConnector::from(config.clone());
                Box::new(connector.connect(name, stream).await.map_err(|e| classify(&e, false))?)
            }
            None => Box::new(stream),
        };
        *connection = Some(BufReader::new(stream));
    }
    let Some(conn) = connection.as_mut() else {
        return Err(FailKind::Other);
    };
    let n = REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: zdd-load-{n}\r\n\r\n");
    conn.get_mut().write_all(request.as_bytes()).await.map_err(|e| classify(&e, false))?;

    let mut line = String::new();
    let read = conn.read_line(&mut line).await.map_err(|e| classify(&e, false))?;
    if read == 0 {
        return Err(FailKind::ClosedWithoutResponse);
    }
    let status: u16 = line.split_whitespace().nth(1).and_then(|s| s.parse().ok()).ok_or(FailKind::Other)?;
    let mut content_length = None;
    let mut chunked = false;
    let mut close = false;
    let mut version = None;
    loop {
        line.clear();
        let read = conn.read_line(&mut line).await.map_err(|e| classify(&e, true))?;
        if read == 0 {
            return Err(FailKind::Truncated);
        }
        let header = line.trim_end();
        if header.is_empty() {
            break;
        }
        let Some((name, value)) = header.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.parse::<usize>().ok(),
            "transfer-encoding" => chunked = value.eq_ignore_ascii_case("chunked"),
            "connection" => close = value.eq_ignore_ascii_case("close"),
            "x-app-version" => version = Some(value.to_string()),
            _ => {}
        }
    }
    if chunked {
        read_chunked(conn).await?;
    } else if let Some(length) = content_length {
        let mut body = vec![0u8; length];
        conn.read_exact(&mut body).await.map_err(|e| classify(&e, true))?;
    } else {
        let mut body = Vec::new();
        conn.read_to_end(&mut body).await.map_err(|e| classify(&e, true))?;
        close = true;
    }
    if close {
        *connection = None;
    }
    Ok(Answer { status, version })
}

async fn read_chunked(conn: &mut Connection) -> Result<(), FailKind> {
    let mut line = String::new();
    loop {
        line.clear();
        if conn.read_line(&mut line).await.map_err(|e| classify(&e, true))? == 0 {
            return Err(FailKind::Truncated);
        }
        let size =
            usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16).map_err(|_| FailKind::Other)?;
        let mut chunk = vec![0u8; size + 2];
        conn.read_exact(&mut chunk).await.map_err(|e| classify(&e, true))?;
        if size == 0 {
            return Ok(());
        }
    }
}

fn classify(error: &io::Error, mid_response: bool) -> FailKind {
    match error.kind() {
        io::ErrorKind::ConnectionRefused => FailKind::ConnectionRefused,
        io::ErrorKind::ConnectionReset | io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionAborted => {
            FailKind::ConnectionReset
        }
        io::ErrorKind::UnexpectedEof if mid_response => FailKind::Truncated,
        io::ErrorKind::UnexpectedEof => FailKind::ClosedWithoutResponse,
        _ => FailKind::Other,
    }
}

/// Everything the load saw.
#[derive(Debug, Clone)]
pub(crate) struct Report {
    pub samples: Vec<Sample>,
    pub duration: Duration,
    /// Wall-clock time of the start, to line samples up with zdd's event timestamps.
    pub started_at: SystemTime,
}

impl Report {
    pub(crate) fn total(&self) -> usize {
        self.samples.len()
    }

    pub(crate) fn ok(&self) -> usize {
        self.samples.iter().filter(|s| s.failure.is_none()).count()
    }

    pub(crate) fn failed(&self) -> usize {
        self.total() - self.ok()
    }

    /// Failures per kind.
    /// Answers that were redirects (3xx): not failures, but over HTTPS the app answers every request itself.
    pub(crate) fn redirects(&self) -> usize {
        self.samples.iter().filter(|s| s.status.is_some_and(|c| (300..400).contains(&c))).count()
    }

    pub(crate) fn failures_by_kind(&self) -> BTreeMap<FailKind, usize> {
        let mut counts = BTreeMap::new();
        for kind in self.samples.iter().filter_map(|s| s.failure) {
            *counts.entry(kind).or_insert(0) += 1;
        }
        counts
    }

    /// Failures of one kind.
    pub(crate) fn failures_of(&self, kind: FailKind) -> usize {
        self.samples.iter().filter(|s| s.failure == Some(kind)).count()
    }

    /// Requests whose connection the server closed or reset instead of answering. Behind Nginx this is
    /// Nginx itself (an upstream failure is a 502, not a dropped client connection): on reload, old workers close
    /// their idle client connections, kept-alive ones and ones accepted a moment before, whatever the upstream.
    pub(crate) fn keepalive_races(&self) -> usize {
        self.samples
            .iter()
            .filter(|s| matches!(s.failure, Some(FailKind::ClosedWithoutResponse | FailKind::ConnectionReset)))
            .count()
    }

    /// 5xx answers that came from one version (its own broken answers, as opposed to the proxy's).
    pub(crate) fn errors_from_version(&self, version: &str) -> usize {
        self.samples.iter().filter(|s| s.failure.is_some() && s.version.as_deref() == Some(version)).count()
    }

    /// Failures not attributable to `version`'s own answers.
    pub(crate) fn failed_excluding_version(&self, version: &str) -> usize {
        self.failed() - self.errors_from_version(version)
    }

    /// Good answers per version, in the order the versions first answered.
    pub(crate) fn versions_seen(&self) -> Vec<(String, usize)> {
        let mut seen: Vec<(String, usize)> = Vec::new();
        let mut sorted: Vec<&Sample> = self.samples.iter().collect();
        sorted.sort_by_key(|s| s.at);
        // Static files come from Nginx and carry no version.
        for sample in sorted.iter().filter(|s| s.failure.is_none()) {
            let Some(version) = sample.version.clone() else {
                continue;
            };
            match seen.iter_mut().find(|(v, _)| *v == version) {
                Some((_, count)) => *count += 1,
                None => seen.push((version, 1)),
            }
        }
        seen
    }

    /// Good answers from `version` among requests sent in `[from, to)`.
    pub(crate) fn ok_from_version_between(&self, version: &str, from: Duration, to: Duration) -> usize {
        self.samples
            .iter()
            .filter(|s| s.failure.is_none() && s.at >= from && s.at < to && s.version.as_deref() == Some(version))
            .count()
    }

    /// The version of the last good answer of a fast request.
    pub(crate) fn last_version(&self) -> Option<String> {
        self.samples
            .iter()
            .filter(|s| s.failure.is_none() && !s.slow && s.version.is_some())
            .max_by_key(|s| s.at)
            .and_then(|s| s.version.clone())
    }

    /// The `q` quantile (0..=1) of the latency of the fast requests that succeeded.
    pub(crate) fn latency_quantile(&self, q: f64) -> Duration {
        let mut latencies: Vec<Duration> =
            self.samples.iter().filter(|s| !s.slow && s.failure.is_none()).map(|s| s.latency).collect();
        if latencies.is_empty() {
            return Duration::ZERO;
        }
        latencies.sort();
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)] // q is in 0..=1
        let index = ((latencies.len() - 1) as f64 * q).round() as usize;
        latencies[index.min(latencies.len() - 1)]
    }

    /// Slow requests that succeeded.
    pub(crate) fn slow_ok(&self) -> usize {
        self.samples.iter().filter(|s| s.slow && s.failure.is_none()).count()
    }

    /// When the first good answer from `version` arrived (the request's send time plus its latency), as a wall
    /// clock time.
    pub(crate) fn first_answer_from(&self, version: &str) -> Option<SystemTime> {
        self.samples
            .iter()
            .filter(|s| s.failure.is_none() && s.version.as_deref() == Some(version))
            .map(|s| self.started_at + s.at + s.latency)
            .min()
    }

    /// When the last good answer from `version` to a fast request arrived, as a wall clock time.
    pub(crate) fn last_answer_from(&self, version: &str) -> Option<SystemTime> {
        self.samples
            .iter()
            .filter(|s| s.failure.is_none() && !s.slow && s.version.as_deref() == Some(version))
            .map(|s| self.started_at + s.at + s.latency)
            .max()
    }

    /// One paragraph for test output.
    pub(crate) fn summary(&self) -> String {
        let kinds: Vec<String> = self.failures_by_kind().iter().map(|(k, n)| format!("{k}: {n}")).collect();
        let versions: Vec<String> = self.versions_seen().iter().map(|(v, n)| format!("{v}: {n}")).collect();
        format!(
            "{} requests in {:.1} s, {} ok, {} failed [{}]; versions [{}]; slow ok {}; p50 {:?} p99 {:?}",
            self.total(),
            self.duration.as_secs_f64(),
            self.ok(),
            self.failed(),
            kinds.join(", "),
            versions.join(", "),
            self.slow_ok(),
            self.latency_quantile(0.5),
            self.latency_quantile(0.99)
        )
    }

    /// The first few failures, for assertion messages.
    pub(crate) fn failure_examples(&self, limit: usize) -> String {
        self.failure_examples_excluding("", limit)
    }

    /// The first few failures not answered by `version`.
    pub(crate) fn failure_examples_excluding(&self, version: &str, limit: usize) -> String {
        self.samples
            .iter()
            .filter(|s| s.failure.is_some() && s.version.as_deref() != Some(version))
            .take(limit)
            .map(|s| {
                format!(
                    "  at {:?} {} -> {:?} status {:?} version {:?}",
                    s.at,
                    s.path,
                    s.failure.unwrap_or(FailKind::Other),
                    s.status,
                    s.version
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}
