//! When to try again: exponential backoff with full jitter (the receiver's `Retry-After` is
//! read by [`blackbox_core::duration::retry_after`]).

use std::time::Duration;

/// Retry delays: full jitter over an exponential ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Ceiling after the first failed attempt (doubling after each further one).
    pub base: Duration,
    /// Largest delay, `Retry-After` included.
    pub cap: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(1),
            cap: Duration::from_secs(3600),
        }
    }
}

impl Backoff {
    /// `min(cap, base × 2^(attempt−1))`: the longest delay after failed attempt `attempt`.
    #[must_use]
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.cap)
    }

    /// The delay after failed attempt `attempt`: uniformly random in `[0, ceiling]`, and at
    /// least `retry_after` (itself capped).
    #[must_use]
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let ceiling_ms = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        // Without randomness, the ceiling (no jitter) is still a valid backoff.
        let jittered = match getrandom::u64() {
            Ok(r) => Duration::from_millis(r % ceiling_ms.saturating_add(1)),
            Err(_) => ceiling,
        };
        jittered.max(retry_after.unwrap_or_default().min(self.cap))
    }
}
