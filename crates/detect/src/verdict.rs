//! What `/v1/decide` answers for a tool call, from the rules that fired on it and the agent's
//! state: the one decision function, shared by the service and `blackbox rules test`.

use crate::detector::{Firing, Gate};
use crate::rules::{Action, RuleSet};

/// The answer to a tool call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing stops it.
    Allow,
    /// A `block_and_alert` rule fired.
    Block,
    /// The agent is paused, or an `alert_and_pause` rule fired.
    Paused,
    /// Throttled: retry after this many ms.
    Throttle {
        /// Wait before retrying.
        retry_after_ms: i64,
    },
}

impl Verdict {
    /// `allow`, `block`, `paused` or `throttle`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Block => "block",
            Self::Paused => "paused",
            Self::Throttle { .. } => "throttle",
        }
    }

    /// When to retry (throttle only).
    #[must_use]
    pub fn retry_after_ms(self) -> Option<i64> {
        match self {
            Self::Throttle { retry_after_ms } => Some(retry_after_ms),
            _ => None,
        }
    }
}

/// Decides a call from `firings` (the rules that fired on it) and the agent's `gate`, strictest
/// first: a block, then a pause (the agent's or a rule's), then a throttle (a rule's, at its
/// slowest rate, or the agent's). Shadow rules (`log_only`) and signals never decide.
#[must_use]
pub fn decide(rules: &RuleSet, firings: &[Firing], gate: &Gate) -> Verdict {
    let has = |a: Action| firings.iter().any(|f| f.action == a);
    if has(Action::BlockAndAlert) {
        Verdict::Block
    } else if *gate == Gate::Paused || has(Action::AlertAndPause) {
        Verdict::Paused
    } else if has(Action::AlertAndThrottle) {
        let per_minute = firings
            .iter()
            .filter(|f| f.action == Action::AlertAndThrottle)
            .filter_map(|f| rules.rules.get(f.rule))
            .map(|r| r.throttle_per_minute)
            .min()
            .unwrap_or(1);
        Verdict::Throttle {
            retry_after_ms: 60_000 / i64::from(per_minute.max(1)),
        }
    } else if let Gate::Throttled { retry_after_ms } = *gate {
        Verdict::Throttle { retry_after_ms }
    } else {
        Verdict::Allow
    }
}

/// The names of the firings of one kind, in rule order, each once: the rules that acted
/// (`acting`), the shadow rules (`log_only`) and the signals, as a decision records them.
#[must_use]
pub fn names(rules: &RuleSet, firings: &[Firing]) -> Named {
    let mut n = Named::default();
    for f in firings {
        let Some(r) = rules.rules.get(f.rule) else {
            continue;
        };
        let list = match r.action {
            Action::Signal => {
                n.score += r.weight;
                &mut n.signals
            }
            Action::LogOnly => &mut n.shadow,
            _ => &mut n.acting,
        };
        if !list.contains(&r.name) {
            list.push(r.name.clone());
        }
    }
    n
}

/// The rules that fired on a call, by what they do.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Named {
    /// Rules that alert or enforce.
    pub acting: Vec<String>,
    /// Shadow rules (`log_only`).
    pub shadow: Vec<String>,
    /// Signals.
    pub signals: Vec<String>,
    /// The signals' weights summed.
    pub score: f64,
}
