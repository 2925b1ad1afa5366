//! When and how long to wait before trying a request again.
//!
//! The client retries only when it knows nothing was written: a 429 (`rate_limited`) or 503
//! (`unavailable`) answer — the service writes nothing of a refused request — and a connection
//! that could not be made. A timeout or a lost response is *not* retried unless
//! [`RetryPolicy::retry_unknown_outcome`] is set, because the events may have been committed.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How many times to try a request and how long to wait in between.
///
/// The wait before retry *n* (1-based) is exponential with "equal jitter": with
/// `d = min(max_backoff, initial_backoff · 2^(n−1))`, a uniform value in `[d/2, d)`. When the
/// service sends `Retry-After: s`, the wait is `s` seconds plus up to `initial_backoff` of jitter
/// (so that many clients told the same `s` do not all come back at once); a `Retry-After` longer
/// than `max_retry_after` ends the retries and returns the error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in all, the first one included (1 = never retry).
    pub max_attempts: u32,
    /// Base of the exponential backoff.
    pub initial_backoff: Duration,
    /// Cap of the exponential backoff.
    pub max_backoff: Duration,
    /// The longest `Retry-After` the client is willing to wait.
    pub max_retry_after: Duration,
    /// Also retry requests that failed after they may have been sent (timeouts, resets). Safe for
    /// reads; for ingest it can write the same events twice. Off by default.
    pub retry_unknown_outcome: bool,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_retry_after: Duration::from_secs(60),
            retry_unknown_outcome: false,
        }
    }
}

impl RetryPolicy {
    /// A policy that never retries.
    #[must_use]
    pub fn none() -> Self {
        Self {
            max_attempts: 1,
            ..Self::default()
        }
    }

    /// The exponential backoff before retry `retry` (1-based), before jitter.
    #[must_use]
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.initial_backoff
            .checked_mul(factor)
            .unwrap_or(Duration::MAX)
            .min(self.max_backoff)
    }

    /// The wait before retry `retry` (1-based), given the server's `Retry-After` if any and a
    /// jitter value `unit` in `[0, 1)`; `None` when the server asks for a longer wait than
    /// [`RetryPolicy::max_retry_after`].
    #[must_use]
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>, unit: f64) -> Option<Duration> {
        let unit = unit.clamp(0.0, 1.0);
        match retry_after {
            Some(ra) if ra > self.max_retry_after => None,
            Some(ra) => Some(ra + self.initial_backoff.mul_f64(unit)),
            None => {
                let d = self.backoff_cap(retry);
                Some(d / 2 + (d / 2).mul_f64(unit))
            }
        }
    }
}

/// Reads a `Retry-After` value (delay seconds, or an HTTP-date: a past one is no wait) with
/// Blackbox's one parser, [`blackbox_core::duration::retry_after`].
#[must_use]
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    blackbox_core::duration::retry_after(value, now_ms)
}

/// A uniform value in `[0, 1)` for jitter: splitmix64 over a counter seeded randomly per process.
/// Not cryptographic; it only spreads retries.
pub(crate) fn jitter_unit() -> f64 {
    static STATE: AtomicU64 = AtomicU64::new(0);
    let mut s = STATE.load(Ordering::Relaxed);
    if s == 0 {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x5eed);
        // A lost race here only means two seeds were drawn; either is fine.
        let _ = STATE.compare_exchange(0, h.finish() | 1, Ordering::Relaxed, Ordering::Relaxed);
    }
    s = STATE.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed);
    let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    // 53 random bits into the mantissa of a double in [0, 1).
    #[allow(clippy::cast_precision_loss)] // exact: the value is below 2^53
    let r = (z >> 11) as f64 / (1u64 << 53) as f64;
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let p = RetryPolicy {
            initial_backoff: ms(100),
            max_backoff: ms(1000),
            ..RetryPolicy::default()
        };
        let caps: Vec<_> = (1..=6).map(|r| p.backoff_cap(r)).collect();
        assert_eq!(
            caps,
            [ms(100), ms(200), ms(400), ms(800), ms(1000), ms(1000)]
        );
        // Huge retry numbers saturate instead of overflowing.
        assert_eq!(p.backoff_cap(200), ms(1000));
    }

    #[test]
    fn jitter_keeps_the_delay_between_half_and_all_of_the_cap() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, None, 0.0), Some(ms(50)));
        assert_eq!(p.delay(3, None, 0.0), Some(ms(200)));
        let hi = p.delay(3, None, 0.999_999).unwrap();
        assert!(hi < ms(400) && hi > ms(399), "{hi:?}");
        for _ in 0..1000 {
            let u = jitter_unit();
            assert!((0.0..1.0).contains(&u));
            let d = p.delay(2, None, u).unwrap();
            assert!(d >= ms(100) && d < ms(200));
        }
    }

    #[test]
    fn retry_after_is_honoured_and_bounded() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(3)), 0.0),
            Some(Duration::from_secs(3))
        );
        // Jitter adds at most initial_backoff.
        let d = p.delay(4, Some(Duration::from_secs(3)), 0.5).unwrap();
        assert_eq!(d, Duration::from_secs(3) + ms(50));
        // Longer than max_retry_after: give up.
        assert_eq!(p.delay(1, Some(Duration::from_secs(61)), 0.0), None);
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(60)), 0.0),
            Some(Duration::from_secs(60))
        );
    }

    #[test]
    fn parses_retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        // A date in the past: no wait (dates were ignored before there was one parser).
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let later = parse_retry_after("Fri, 01 Jan 2100 00:00:00 GMT").unwrap();
        assert!(later > Duration::from_secs(86_400), "{later:?}");
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after(""), None);
    }

    #[test]
    fn jitter_values_differ() {
        let a: Vec<f64> = (0..8).map(|_| jitter_unit()).collect();
        assert!(a.windows(2).any(|w| w[0] != w[1]));
    }
}
