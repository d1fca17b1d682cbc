//! The canary's verdict, from the access-log lines Nginx wrote during its window: the new instance (the canary)
//! against the old one (the baseline) over the same minutes, on their 5xx rate and their p95 latency. Pure: the
//! step reads the log and hands its text here.
//!
//! A line is `<msec> <side> <status> <upstream_response_time>` (the site's `zdd_canary_<app>` log format): the
//! time the instance took, not the client's transfer. Lines from before the window, of another side, WebSocket
//! upgrades (101, as long as their connection) and lines that do not parse are not counted.

use std::fmt;
use std::time::Duration;

/// What the plan asks of the canary.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    /// How far the canary's 5xx rate may exceed the baseline's (a fraction: 0.01 is one point).
    pub max_error_rate: f64,
    /// How many times the baseline's p95 latency the canary's may be.
    pub max_latency_ratio: f64,
    /// The fewest requests each side needs for a verdict.
    pub min_requests: u64,
}

/// Latencies under this count as this: Nginx logs milliseconds, and the ratio of two tiny p95s is noise.
pub const LATENCY_FLOOR: Duration = Duration::from_millis(5);

/// One side's requests over the window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Sample {
    pub requests: u64,
    pub errors: u64,
    latencies_ms: Vec<u64>,
}

impl Sample {
    fn add(&mut self, status: u16, latency_ms: Option<u64>) {
        self.requests += 1;
        if status >= 500 {
            self.errors += 1;
        }
        self.latencies_ms.extend(latency_ms);
    }

    /// The share of 5xx answers (0 with no request).
    pub fn error_rate(&self) -> f64 {
        if self.requests == 0 { 0.0 } else { ratio(self.errors, self.requests) }
    }

    /// The 95th percentile latency (nearest rank), `None` with no request.
    pub fn p95(&self) -> Option<Duration> {
        let mut sorted = self.latencies_ms.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        if n == 0 {
            return None;
        }
        // Nearest rank: the smallest value with at least 95% of the values at or below it.
        let rank = (n * 95).div_ceil(100).max(1);
        Some(Duration::from_millis(sorted[rank - 1]))
    }
}

/// `a / b` for counts far below 2^52.
#[allow(clippy::cast_precision_loss)]
fn ratio(a: u64, b: u64) -> f64 {
    a as f64 / b as f64
}

/// The two sides of a window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Window {
    pub canary: Sample,
    pub baseline: Sample,
}

impl Window {
    /// The lines of `log` written at or after `since_ms` (milliseconds since the epoch).
    pub fn from_log(log: &str, since_ms: u64) -> Self {
        let mut window = Self::default();
        for line in log.lines() {
            let mut words = line.split_whitespace();
            // The time is the last word: with retries Nginx lists each upstream's (`0.900, 0.300`).
            let (Some(msec), Some(variant), Some(status), Some(time)) =
                (words.next(), words.next(), words.next(), words.last())
            else {
                continue;
            };
            let (Some(at), Ok(status)) = (millis(msec), status.parse::<u16>()) else {
                continue;
            };
            // A WebSocket's 101 lasts as long as its connection: not a request to judge.
            if at < since_ms || status == 101 {
                continue;
            }
            // `-` when no upstream answered (Nginx's own 502): an error without a latency.
            let latency = millis(time);
            match variant {
                "canary" => window.canary.add(status, latency),
                "stable" => window.baseline.add(status, latency),
                _ => {}
            }
        }
        window
    }

    /// The verdict on this window.
    pub fn judge(&self, t: &Thresholds) -> Verdict {
        let (canary, baseline) = (&self.canary, &self.baseline);
        let outcome = if canary.requests < t.min_requests || baseline.requests < t.min_requests {
            Outcome::Inconclusive(format!(
                "too few requests for a verdict: {} on the canary and {} on the baseline, {} each needed",
                canary.requests, baseline.requests, t.min_requests
            ))
        } else if canary.error_rate() > baseline.error_rate() + t.max_error_rate {
            Outcome::Fail(format!(
                "the canary's 5xx rate {} exceeds the baseline's {} by more than {}",
                percent_text(canary.error_rate()),
                percent_text(baseline.error_rate()),
                percent_text(t.max_error_rate)
            ))
        } else if self.latency_ratio().is_some_and(|r| r > t.max_latency_ratio) {
            Outcome::Fail(format!(
                "the canary's p95 latency is {:.2} times the baseline's, more than {}",
                self.latency_ratio().unwrap_or_default(),
                t.max_latency_ratio
            ))
        } else {
            Outcome::Pass
        };
        Verdict { window: self.clone(), outcome }
    }

    /// The canary's p95 over the baseline's, each at least [`LATENCY_FLOOR`].
    pub fn latency_ratio(&self) -> Option<f64> {
        let floor = |d: Duration| d.max(LATENCY_FLOOR).as_secs_f64();
        Some(floor(self.canary.p95()?) / floor(self.baseline.p95()?))
    }
}

/// Nginx's `1733284800.123` (seconds with milliseconds) as milliseconds.
fn millis(text: &str) -> Option<u64> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let secs: u64 = secs.parse().ok()?;
    let frac = format!("{frac:0<3}");
    let ms: u64 = frac.get(..3)?.parse().ok()?;
    secs.checked_mul(1000)?.checked_add(ms)
}

fn percent_text(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// What the analysis said.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Pass,
    Fail(String),
    Inconclusive(String),
}

/// A window's numbers and what they mean.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub window: Window,
    pub outcome: Outcome,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side = |s: &Sample| {
            let p95 = s.p95().map_or_else(|| "-".to_owned(), |d| format!("{} ms", d.as_millis()));
            format!("{} requests, {} 5xx ({}), p95 {p95}", s.requests, s.errors, percent_text(s.error_rate()))
        };
        let word = match &self.outcome {
            Outcome::Pass => "pass".to_owned(),
            Outcome::Fail(why) => format!("fail: {why}"),
            Outcome::Inconclusive(why) => format!("inconclusive: {why}"),
        };
        write!(f, "{word}; canary {}; baseline {}", side(&self.window.canary), side(&self.window.baseline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Thresholds = Thresholds { max_error_rate: 0.01, max_latency_ratio: 1.5, min_requests: 10 };

    /// `n` lines of `variant` at second 100, each `ms` long, `errors` of them 500s.
    fn lines(variant: &str, n: u64, errors: u64, ms: u64) -> String {
        let mut text = String::new();
        for i in 0..n {
            let status = if i < errors { 500 } else { 200 };
            text.push_str(&format!("100.{i:03} {variant} {status} {}.{:03}\n", ms / 1000, ms % 1000));
        }
        text
    }

    #[test]
    fn a_canary_like_its_baseline_passes() {
        let log = lines("canary", 20, 0, 12) + &lines("stable", 180, 1, 10);
        let verdict = Window::from_log(&log, 0).judge(&T);
        assert_eq!(verdict.outcome, Outcome::Pass);
        insta::assert_snapshot!(verdict, @"pass; canary 20 requests, 0 5xx (0.0%), p95 12 ms; baseline 180 requests, 1 5xx (0.6%), p95 10 ms");
    }

    #[test]
    fn errors_past_the_baseline_fail_it() {
        let log = lines("canary", 50, 10, 10) + &lines("stable", 450, 0, 10);
        let verdict = Window::from_log(&log, 0).judge(&T);
        insta::assert_snapshot!(verdict, @"fail: the canary's 5xx rate 20.0% exceeds the baseline's 0.0% by more than 1.0%; canary 50 requests, 10 5xx (20.0%), p95 10 ms; baseline 450 requests, 0 5xx (0.0%), p95 10 ms");
    }

    #[test]
    fn a_slow_canary_fails_but_tiny_latencies_are_not_compared() {
        let slow = lines("canary", 20, 0, 40) + &lines("stable", 20, 0, 10);
        assert!(matches!(Window::from_log(&slow, 0).judge(&T).outcome, Outcome::Fail(w) if w.contains("4.00 times")));
        // 3 ms against 1 ms is no slowdown: both are under the floor.
        let tiny = lines("canary", 20, 0, 3) + &lines("stable", 20, 0, 1);
        assert_eq!(Window::from_log(&tiny, 0).judge(&T).outcome, Outcome::Pass);
    }

    #[test]
    fn too_few_requests_are_inconclusive() {
        let log = lines("canary", 9, 0, 10) + &lines("stable", 100, 0, 10);
        let verdict = Window::from_log(&log, 0).judge(&T);
        assert!(matches!(verdict.outcome, Outcome::Inconclusive(w) if w.contains("9 on the canary")));
    }

    #[test]
    fn lines_before_the_window_or_unreadable_are_not_counted() {
        let log = "99.999 canary 500 0.010\n100.000 canary 200 0.010\ngarbage\n100.5 stable 200 0.2\n\
                   100.1 other 500 1\n100.2 canary 101 30.000\n100.3 canary 502 -\n100.4 stable 200 0.900, 0.300\n";
        let window = Window::from_log(log, 100_000);
        assert_eq!((window.canary.requests, window.canary.errors, window.baseline.requests), (2, 1, 2));
        assert_eq!(
            window.canary.p95(),
            Some(Duration::from_millis(10)),
            "the 502 has no latency, the 101 is not counted"
        );
        assert_eq!(window.baseline.p95(), Some(Duration::from_millis(300)), "the answering upstream's time");
    }

    #[test]
    fn p95_is_the_nearest_rank() {
        let mut s = Sample::default();
        for ms in 1..=100 {
            s.add(200, Some(ms));
        }
        assert_eq!(s.p95(), Some(Duration::from_millis(95)));
        assert_eq!(Sample::default().p95(), None);
    }
}
