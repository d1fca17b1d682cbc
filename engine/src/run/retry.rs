//! Retry delays: exponential backoff with jitter, as a pure function of the attempt and a random fraction.

use std::time::Duration;

use crate::plan::Retry;

/// The longest a single backoff may grow to, whatever the policy and attempt count.
const MAX_BACKOFF: Duration = Duration::from_mins(5);

/// The delay before attempt `next_attempt` (2 for the first retry): `backoff * 2^(next_attempt - 2)` plus
/// `jitter * fraction`, where `fraction` is drawn uniformly from `[0, 1)` by the caller.
pub fn delay(policy: &Retry, next_attempt: u32, fraction: f64) -> Duration {
    let doublings = next_attempt.saturating_sub(2).min(16);
    let base = policy.backoff.saturating_mul(1 << doublings).min(MAX_BACKOFF);
    let jitter = policy.jitter.mul_f64(fraction.clamp(0.0, 1.0));
    base.saturating_add(jitter)
}

/// [`delay`] with a random jitter fraction.
pub fn random_delay(policy: &Retry, next_attempt: u32) -> Duration {
    delay(policy, next_attempt, rand::random::<f64>())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(backoff_ms: u64, jitter_ms: u64) -> Retry {
        Retry { attempts: 5, backoff: Duration::from_millis(backoff_ms), jitter: Duration::from_millis(jitter_ms) }
    }

    #[test]
    fn doubles_from_the_first_retry() {
        let p = policy(500, 0);
        assert_eq!(delay(&p, 2, 0.0), Duration::from_millis(500));
        assert_eq!(delay(&p, 3, 0.0), Duration::from_secs(1));
        assert_eq!(delay(&p, 4, 0.0), Duration::from_secs(2));
    }

    #[test]
    fn adds_a_fraction_of_the_jitter() {
        let p = policy(100, 200);
        assert_eq!(delay(&p, 2, 0.5), Duration::from_millis(200));
        assert_eq!(delay(&p, 2, 7.0), Duration::from_millis(300), "fraction is clamped");
    }

    #[test]
    fn is_capped() {
        let p = policy(60_000, 0);
        assert_eq!(delay(&p, 40, 0.0), MAX_BACKOFF);
    }
}
