//! The one clock: where the writer, the service, retention and alerts read the time.
//!
//! Every reading of "now" in Blackbox goes through a [`Clock`], passed to whoever needs it. The
//! process's clock ([`Clock::from_env`], also behind [`now_ms`]) is the system clock, unless
//! `BLACKBOX_TEST_NOW` holds an RFC 3339 time: then the time stands still there (a testing aid
//! only, for time-dependent behaviour such as retention and forward-secure epochs, in the CLI and
//! in `blackbox serve` alike). Tests in Rust use [`Clock::fixed`] or [`Clock::manual`].

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The environment variable that stops the process's clock at an RFC 3339 time.
pub const TEST_NOW_VAR: &str = "BLACKBOX_TEST_NOW";

/// A source of the current time, in Unix milliseconds. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Clock(Source);

#[derive(Debug, Clone)]
enum Source {
    System,
    Fixed(i64),
    Manual(Arc<AtomicI64>),
}

impl Default for Clock {
    fn default() -> Self {
        Self::system()
    }
}

impl Clock {
    /// The system clock.
    #[must_use]
    pub fn system() -> Self {
        Self(Source::System)
    }

    /// A clock that always reads `ms`.
    #[must_use]
    pub fn fixed(ms: i64) -> Self {
        Self(Source::Fixed(ms))
    }

    /// A clock that reads `start_ms` until moved with [`Clock::set`] or [`Clock::advance`]
    /// (every clone moves with it).
    #[must_use]
    pub fn manual(start_ms: i64) -> Self {
        Self(Source::Manual(Arc::new(AtomicI64::new(start_ms))))
    }

    /// The process's clock: fixed at `BLACKBOX_TEST_NOW` when that holds an RFC 3339 time,
    /// else the system clock. The variable is read once per process.
    #[must_use]
    pub fn from_env() -> Self {
        static TEST_NOW: std::sync::OnceLock<Option<i64>> = std::sync::OnceLock::new();
        let fixed = TEST_NOW.get_or_init(|| {
            std::env::var_os(TEST_NOW_VAR).and_then(|t| {
                t.to_str()
                    .and_then(|t| blackbox_core::entry::parse_time_bound(t, false).ok())
            })
        });
        match fixed {
            Some(ms) => Self::fixed(*ms),
            None => Self::system(),
        }
    }

    /// The current time, Unix ms.
    #[must_use]
    pub fn now_ms(&self) -> i64 {
        match &self.0 {
            Source::System => system_ms(),
            Source::Fixed(ms) => *ms,
            Source::Manual(ms) => ms.load(Ordering::Acquire),
        }
    }

    /// Whether the time stands still (a fixed clock: `BLACKBOX_TEST_NOW` or [`Clock::fixed`]).
    #[must_use]
    pub fn is_fixed(&self) -> bool {
        matches!(self.0, Source::Fixed(_))
    }

    /// Sets a manual clock to `ms` (other clocks are not moved).
    pub fn set(&self, ms: i64) {
        if let Source::Manual(t) = &self.0 {
            t.store(ms, Ordering::Release);
        }
    }

    /// Moves a manual clock `ms` forward (other clocks are not moved).
    pub fn advance(&self, ms: i64) {
        if let Source::Manual(t) = &self.0 {
            t.fetch_add(ms, Ordering::AcqRel);
        }
    }
}

/// The process's clock ([`Clock::from_env`]) read now, Unix ms: for callers that are handed no
/// clock of their own (command-line entry points).
#[must_use]
pub fn now_ms() -> i64 {
    Clock::from_env().now_ms()
}

fn system_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_moves_with_its_clones_and_a_fixed_one_stands_still() {
        let c = Clock::manual(1_000);
        let d = c.clone();
        c.advance(500);
        assert_eq!(d.now_ms(), 1_500);
        d.set(42);
        assert_eq!(c.now_ms(), 42);
        let f = Clock::fixed(7);
        f.advance(10);
        assert_eq!(f.now_ms(), 7);
        assert!(f.is_fixed());
        assert!(!c.is_fixed());
    }

    #[test]
    fn the_system_clock_reads_the_present() {
        // 2025-01-01 and 2100-01-01: a sanity window, not a precise check.
        let now = Clock::system().now_ms();
        assert!(now > 1_735_689_600_000 && now < 4_102_444_800_000, "{now}");
    }
}
