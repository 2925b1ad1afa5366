//! Rules in words: what a rule looks at and whom it applies to, for people reading the rules in
//! force (`GET /v1/rules`, the console) without the rules file at hand.

use std::collections::BTreeSet;

use crate::normalize::HIDDEN_KINDS;
use crate::rules::{Kind, Rule, RuleSet, Scope};

/// A duration in ms as the rules file writes it (`90s`, `15m`, `2h`, `7d`).
fn duration(ms: i64) -> String {
    const UNITS: [(i64, &str); 4] = [
        (86_400_000, "d"),
        (3_600_000, "h"),
        (60_000, "m"),
        (1000, "s"),
    ];
    for (unit, name) in UNITS {
        if ms >= unit && ms % unit == 0 {
            return format!("{}{name}", ms / unit);
        }
    }
    format!("{ms}ms")
}

fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl Rule {
    /// The rule's condition in words. A pattern rule says how many phrases and regexes it has,
    /// not what they are.
    #[must_use]
    pub fn condition(&self, set: &RuleSet) -> String {
        match &self.kind {
            Kind::Metric {
                metric,
                baseline_window_ms,
                multiplier,
                min_history_ms,
                floor,
                ..
            } => format!(
                "{} above {multiplier}× the agent's baseline over {} (and at least {floor}; after {} of history)",
                metric.as_str(),
                duration(*baseline_window_ms),
                duration(*min_history_ms),
            ),
            Kind::TimeWindow { window, min_count } => format!(
                "{} in {window} ({})",
                count(
                    usize::try_from(*min_count).unwrap_or(usize::MAX),
                    "event",
                    "events"
                ),
                set.time_zone_name
            ),
            Kind::Pattern {
                literals,
                regexes,
                near,
            } => {
                let mut parts = Vec::new();
                if !literals.is_empty() {
                    parts.push(count(literals.len(), "phrase", "phrases"));
                }
                if !regexes.is_empty() {
                    parts.push(count(regexes.len(), "regex", "regexes"));
                }
                if !near.is_empty() {
                    parts.push(count(near.len(), "proximity phrase", "proximity phrases"));
                }
                format!(
                    "tool arguments or prompt match one of {}",
                    if parts.is_empty() {
                        "no pattern".to_owned()
                    } else {
                        parts.join(", ")
                    }
                )
            }
            Kind::Score { at_least, signals } => {
                let which = if signals.is_empty() {
                    "all signals".to_owned()
                } else {
                    signals
                        .iter()
                        .filter_map(|i| set.rules.get(*i).map(|r| r.name.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                format!("weights of the signals that fired reach {at_least} ({which})")
            }
            Kind::Hidden { mask } => {
                let kinds: Vec<&str> = HIDDEN_KINDS
                    .iter()
                    .filter(|h| mask & h.bit() != 0)
                    .map(|h| h.name())
                    .collect();
                format!(
                    "hidden text in tool arguments or prompt: {}",
                    kinds.join(", ")
                )
            }
            Kind::Classifier { at_least } => {
                format!("the external classifier's score reaches {at_least}")
            }
        }
    }
}

fn set_text(what: &str, set: &BTreeSet<String>) -> Option<String> {
    (!set.is_empty()).then(|| {
        format!(
            "{what} {}",
            set.iter()
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join(", ")
        )
    })
}

impl Scope {
    /// Whether the scope can admit an event of `tenant` (its tenant list is empty or names it).
    #[must_use]
    pub fn may_apply_to(&self, tenant: &str) -> bool {
        self.tenants.is_empty() || self.tenants.contains(tenant)
    }

    /// Whom the scope admits, in words. With `for_tenant`, other tenants' names are left out
    /// (a tenant reads the rules that apply to it, not which other tenants exist).
    #[must_use]
    pub fn describe(&self, for_tenant: Option<&str>) -> String {
        let tenants = match for_tenant {
            Some(t) if !self.tenants.is_empty() => [t.to_owned()].into_iter().collect(),
            Some(_) => BTreeSet::new(),
            None => self.tenants.clone(),
        };
        let parts: Vec<String> = [
            set_text("tenants", &tenants),
            set_text("agents", &self.agents),
            set_text("roles", &self.roles),
            set_text("tools", &self.tools),
            set_text("event types", &self.event_types),
        ]
        .into_iter()
        .flatten()
        .collect();
        let mut text = if parts.is_empty() {
            "every agent".to_owned()
        } else {
            parts.join("; ")
        };
        // An exemption naming only other tenants does not concern a tenant's reader.
        let exemptions = self
            .except
            .iter()
            .filter(|e| for_tenant.is_none_or(|t| e.tenants.is_empty() || e.tenants.contains(t)))
            .count();
        if exemptions > 0 {
            text.push_str(&format!(
                "; except {}",
                count(exemptions, "exemption", "exemptions")
            ));
        }
        text
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn set(yaml: &str) -> RuleSet {
        RuleSet::parse(yaml).unwrap()
    }

    #[test]
    fn durations_read_as_the_rules_file_writes_them() {
        assert_eq!(duration(604_800_000), "7d");
        assert_eq!(duration(5_400_000), "90m");
        assert_eq!(duration(90_000), "90s");
        assert_eq!(duration(1500), "1500ms");
    }

    #[test]
    fn a_scope_read_by_a_tenant_names_no_other_tenant() {
        let s = Scope {
            tenants: ["acme".to_owned(), "globex".to_owned()].into(),
            tools: ["shell.exec".to_owned()].into(),
            ..Scope::default()
        };
        assert_eq!(s.describe(None), "tenants acme, globex; tools shell.exec");
        assert_eq!(s.describe(Some("acme")), "tenants acme; tools shell.exec");
        assert!(s.may_apply_to("acme"));
        assert!(!s.may_apply_to("initech"));
        assert_eq!(Scope::default().describe(Some("acme")), "every agent");
    }

    #[test]
    fn a_pattern_rule_counts_its_patterns_without_listing_them() {
        let rules = set(
            "anomaly_detection:\n  rules:\n    - name: inj\n      condition: {match_patterns: [\"ignore previous instructions\", \"reveal the system prompt\"]}\n      action: block_and_alert\n",
        );
        let text = rules.rules[0].condition(&rules);
        assert_eq!(text, "tool arguments or prompt match one of 2 phrases");
        assert!(!text.contains("ignore"), "{text}");
    }
}
