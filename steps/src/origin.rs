//! Which instance answered a check made through the proxy, so that the checks after a port switch count only the
//! new instance's answers.
//!
//! In port (reload) mode, Nginx workers from before the reload still accept new connections for a moment and
//! proxy them to the old port: a check right after the switch can be answered by the old release (a broken
//! release passes, or a rollback fails on the release it leaves). The site file zdd renders in port mode names
//! the upstream that answered in [`UPSTREAM_HEADER`] (Nginx's `$upstream_addr`), only on requests that carry
//! [`PROBE_HEADER`] (zdd's own checks send it; visitors never see the header). An answer that names another
//! instance, or none (a worker still running a site file without the header), is not counted: the check asks
//! again until the new instance answers or its time is up.
//!
//! Socket mode needs none of this: the upstream is one symlink, swapped atomically, and Nginx resolves it at each
//! connect without a reload, so every connection made after the swap reaches the new instance.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use tokio_util::sync::CancellationToken;
use zdd_engine::kind::StepError;

use crate::common::{Backoff, sleep};
use crate::probe::{self, Answer, ProbeUrl};

/// The request header zdd's checks send, asking the proxy to name the instance that answers.
pub const PROBE_HEADER: &str = "X-Zdd-Probe";
/// The response header that names it (the value of Nginx's `$upstream_addr`).
pub const UPSTREAM_HEADER: &str = "X-Zdd-Upstream";

/// The server that produced the answer, from an `$upstream_addr` value. Nginx lists every server it tried,
/// `, `-separated, and the groups of an internal redirect ` : `-separated
/// (`127.0.0.1:8001, 127.0.0.1:8002 : unix:/run/x.sock`): the answer came from the last one.
pub fn answering_server(upstream_addr: &str) -> Option<&str> {
    upstream_addr.split(|c: char| c == ',' || c.is_whitespace()).rfind(|s| !s.is_empty() && *s != ":")
}

/// Where an answer came from, as the proxy says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The instance the checks are for.
    Expected,
    /// Another instance (the previous one, through an Nginx worker from before the reload).
    Other(String),
    /// The answer names no instance: an Nginx worker still running a site file without the header.
    Unnamed,
}

/// The origin of an answer with `headers`, for checks of the instance at `expected` (`127.0.0.1:<port>`).
pub fn origin(headers: &HeaderMap, expected: &str) -> Origin {
    let named = headers.get(UPSTREAM_HEADER).and_then(|v| v.to_str().ok()).and_then(answering_server);
    match named {
        Some(server) if server == expected => Origin::Expected,
        Some(server) => Origin::Other(server.to_owned()),
        None => Origin::Unnamed,
    }
}

/// Counts only the answers of the expected instance (every answer, when no instance is expected), and keeps a
/// tally of the others for the run's messages.
#[derive(Debug, Default, Clone)]
pub struct OriginFilter {
    /// `127.0.0.1:<port>` of the new instance; `None`: the answers cannot tell (socket mode), all count.
    pub expected: Option<String>,
    other: BTreeMap<String, u32>,
    unnamed: u32,
}

impl OriginFilter {
    pub fn new(expected: Option<String>) -> Self {
        Self { expected, ..Self::default() }
    }

    /// Does this answer count? An answer of another instance is noted and does not.
    pub fn admits(&mut self, answer: &Answer) -> bool {
        let Some(expected) = &self.expected else {
            return true;
        };
        match origin(&answer.headers, expected) {
            Origin::Expected => true,
            Origin::Other(server) => {
                *self.other.entry(server).or_default() += 1;
                false
            }
            Origin::Unnamed => {
                self.unnamed += 1;
                false
            }
        }
    }

    /// How many answers were not counted.
    pub fn ignored(&self) -> u32 {
        self.other.values().sum::<u32>() + self.unnamed
    }

    /// " from 127.0.0.1:8002" when the answers name their instance, else nothing: for the checks' messages.
    pub fn from_expected(&self) -> String {
        self.expected.as_ref().map(|e| format!(" from {e}")).unwrap_or_default()
    }

    /// What was not counted: `3 answers from 127.0.0.1:8001 and 1 naming no instance`.
    pub fn describe_ignored(&self) -> String {
        let mut parts: Vec<String> =
            self.other.iter().map(|(server, n)| format!("{} from {server}", answers(*n))).collect();
        if self.unnamed > 0 {
            parts.push(format!("{} naming no instance", answers(self.unnamed)));
        }
        match parts.len() {
            0 => "no answers".to_owned(),
            _ => parts.join(" and "),
        }
    }
}

fn answers(n: u32) -> String {
    if n == 1 { "1 answer".to_owned() } else { format!("{n} answers") }
}

/// GETs through the proxy that wait for the expected instance's answer: answers of another instance are asked
/// again (after a short pause) until `until`, then the GET fails saying who answered instead.
pub struct ThroughProxy<'a> {
    pub client: reqwest::Client,
    pub host: Option<&'a str>,
    pub filter: OriginFilter,
    pub until: Instant,
}

impl ThroughProxy<'_> {
    /// The expected instance's answer to `url` (any answer, when no instance is expected). An error (no answer
    /// at all) is not retried: it says nothing about which instance is behind the proxy.
    pub async fn get(&mut self, cancel: &CancellationToken, url: &ProbeUrl) -> Result<Answer, StepError> {
        let mut backoff = Backoff::new(Duration::from_millis(10), Duration::from_millis(200));
        loop {
            let answer = self.get_any(url).await?;
            if self.filter.admits(&answer) {
                return Ok(answer);
            }
            if Instant::now() >= self.until {
                let expected = self.filter.expected.as_deref().unwrap_or_default();
                return Err(StepError::failed(format!(
                    "{expected} (the new instance) never answered: only {}",
                    self.filter.describe_ignored()
                )));
            }
            sleep(cancel, backoff.next_delay()).await?;
        }
    }

    /// One GET, whoever answers (a static file Nginx serves itself names no instance).
    pub async fn get_any(&self, url: &ProbeUrl) -> Result<Answer, StepError> {
        probe::get(&self.client, url, self.host).await.map_err(StepError::failed)
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::HeaderValue;

    use super::*;

    fn answer(upstream: Option<&str>) -> Answer {
        let mut headers = HeaderMap::new();
        if let Some(value) = upstream {
            headers.insert(UPSTREAM_HEADER, HeaderValue::from_str(value).unwrap());
        }
        Answer { status: 200, headers, body: String::new() }
    }

    #[test]
    fn the_answering_server_is_the_last_one_tried() {
        assert_eq!(answering_server("127.0.0.1:8002"), Some("127.0.0.1:8002"));
        assert_eq!(answering_server("127.0.0.1:8001, 127.0.0.1:8002"), Some("127.0.0.1:8002"));
        assert_eq!(
            answering_server("127.0.0.1:8001 : unix:/srv/shop/run/current.sock"),
            Some("unix:/srv/shop/run/current.sock")
        );
        assert_eq!(answering_server(""), None);
        assert_eq!(answering_server(" , "), None);
    }

    #[test]
    fn names_the_origin_of_an_answer() {
        let expected = "127.0.0.1:8002";
        assert_eq!(origin(&answer(Some("127.0.0.1:8002")).headers, expected), Origin::Expected);
        assert_eq!(origin(&answer(Some("127.0.0.1:8001")).headers, expected), Origin::Other("127.0.0.1:8001".into()));
        assert_eq!(origin(&answer(Some("127.0.0.1:80020")).headers, expected), Origin::Other("127.0.0.1:80020".into()));
        assert_eq!(origin(&answer(None).headers, expected), Origin::Unnamed);
        // Header names are case-insensitive on the wire; http's map stores them lowercased.
        let mut headers = HeaderMap::new();
        headers.insert("x-zdd-upstream", HeaderValue::from_static("127.0.0.1:8002"));
        assert_eq!(origin(&headers, expected), Origin::Expected);
    }

    #[test]
    fn the_filter_counts_only_the_expected_instance() {
        let mut filter = OriginFilter::new(Some("127.0.0.1:8002".into()));
        assert!(!filter.admits(&answer(Some("127.0.0.1:8001"))));
        assert!(!filter.admits(&answer(Some("127.0.0.1:8001"))));
        assert!(!filter.admits(&answer(None)));
        assert!(filter.admits(&answer(Some("127.0.0.1:8002"))));
        assert_eq!(filter.ignored(), 3);
        assert_eq!(filter.describe_ignored(), "2 answers from 127.0.0.1:8001 and 1 answer naming no instance");
        assert_eq!(filter.from_expected(), " from 127.0.0.1:8002");
    }

    #[test]
    fn without_an_expected_instance_every_answer_counts() {
        let mut filter = OriginFilter::new(None);
        assert!(filter.admits(&answer(None)));
        assert!(filter.admits(&answer(Some("unix:/srv/shop/run/current.sock"))));
        assert_eq!(filter.ignored(), 0);
        assert_eq!(filter.from_expected(), "");
    }
}
