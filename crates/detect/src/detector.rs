//! The detector: per-agent bucketed counters, rule evaluation, suppression and enforcement state
//! (paused, throttled).
//!
//! One [`Detector`] is owned by one thread (the service's writer), so it needs no lock. Memory is
//! bounded: per agent and counter, 64 one-minute buckets and one bucket per hour of the longest
//! baseline window (at most 31 days), at most [`MAX_SESSIONS_PER_AGENT`] open sessions for
//! per-session metrics, and at most [`Detector::max_agents`] agents (the least recently seen are
//! forgotten first; paused and throttled agents are kept apart and never forgotten).
//!
//! ## Metric rules
//! The baseline of a per-minute metric is its mean over the agent's *active* minutes (minutes
//! with a non-zero value) within `baseline_window`, the current minute excluded. A rule fires
//! when the current minute's value exceeds `threshold_multiplier × baseline` **and** reaches the
//! rule's `floor`, and only once the agent has history: first seen at least `min_history` ago
//! (default 1 h) with at least [`MIN_ACTIVE_BUCKETS`] active minutes. Per-session metrics work
//! the same way with sessions in place of minutes (mean rows per session over the sessions that
//! started within the window).
//!
//! Events are placed in buckets by their own timestamp. An event up to `late_tolerance` (default
//! 5 min) older than the newest one seen for the agent still lands in its minute and is
//! evaluated; an older one only feeds the hourly baseline.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use uuid::Uuid;

use crate::features::Features;
use crate::rules::{Action, Kind, Metric, RuleSet, SuppressBy};

/// Active buckets (minutes, or sessions) needed before a metric rule can fire.
pub const MIN_ACTIVE_BUCKETS: u32 = 10;
/// Open sessions remembered per agent for per-session metrics.
pub const MAX_SESSIONS_PER_AGENT: usize = 1024;
/// Entries remembered per agent to name what triggered an alert.
pub const RECENT_ENTRIES: usize = 16;
const MINUTE_SLOTS: usize = 64;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;

/// One event as the detector sees it.
#[derive(Debug, Clone, Copy)]
pub struct Observation<'a> {
    /// Tenant.
    pub tenant: &'a str,
    /// Agent.
    pub agent: &'a str,
    /// Session.
    pub session: &'a str,
    /// Event type.
    pub event_type: &'a str,
    /// Tool name of a tool call.
    pub tool: Option<&'a str>,
    /// Event time, Unix ms.
    pub ts_ms: i64,
    /// Payload features.
    pub features: &'a Features,
}

/// A rule that fired on an event.
#[derive(Debug, Clone, PartialEq)]
pub struct Firing {
    /// Index of the rule in the rule set.
    pub rule: usize,
    /// The rule's name.
    pub name: String,
    /// The rule's action.
    pub action: Action,
    /// The alert is suppressed (the same alert was raised within the rule's `suppress`
    /// period): no new alert is recorded, but the action still applies.
    pub suppressed: bool,
    /// The value measured (metric rules: the current minute's or session's value; time-window
    /// rules: events in this occurrence of the window).
    pub observed: Option<f64>,
    /// The baseline (metric rules).
    pub baseline: Option<f64>,
    /// The value that had to be exceeded (metric rules).
    pub threshold: Option<f64>,
    /// Patterns that matched, as `match_patterns[i]` / `match_regex[i]` with the pattern as
    /// written in the rules file (pattern rules).
    pub matched: Vec<String>,
    /// Start of the window occurrence, Unix ms (time-window rules).
    pub window_start_ms: Option<i64>,
    /// Earlier entries of the agent that count towards the alert (the current one excluded),
    /// newest first.
    pub earlier: Vec<Uuid>,
}

/// Whether an agent may act now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Nothing stops it.
    Open,
    /// Paused until an operator resumes it.
    Paused,
    /// Throttled: the next call is allowed in this many ms.
    Throttled {
        /// Wait before retrying.
        retry_after_ms: i64,
    },
}

/// Why an agent is paused.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Pause {
    /// Since, Unix ms.
    pub since_ms: i64,
    /// Who paused it: `rule:<name>` or `operator:<token id>`.
    pub by: String,
}

/// An agent's throttle.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Throttle {
    /// Until, Unix ms.
    pub until_ms: i64,
    /// Calls allowed per minute meanwhile.
    pub per_minute: u32,
    /// Who throttled it.
    pub by: String,
    #[serde(skip)]
    next_ms: i64,
}

#[derive(Debug, Clone, Default)]
struct Control {
    paused: Option<Pause>,
    throttle: Option<Throttle>,
}

/// An agent as `agents list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AgentInfo {
    /// Tenant.
    pub tenant_id: String,
    /// Agent.
    pub agent_id: String,
    /// `active`, `paused` or `throttled`.
    pub state: &'static str,
    /// First seen since the service started (or in the history it replayed), Unix ms.
    pub first_seen_ms: Option<i64>,
    /// Last event, Unix ms.
    pub last_seen_ms: Option<i64>,
    /// The last record an MCP gateway (`blackbox mcp`) wrote for it (`mcp_*` and
    /// `tool_result` events), Unix ms.
    pub mcp_last_seen_ms: Option<i64>,
    /// Events seen.
    pub events: u64,
    /// Pause details.
    pub paused: Option<Pause>,
    /// Throttle details.
    pub throttle: Option<Throttle>,
}

#[derive(Debug, Clone, Copy, Default)]
struct HourAgg {
    hour: i64,
    sum: u64,
    active: u32,
}

#[derive(Debug)]
struct Counter {
    minutes: [(i64, u64); MINUTE_SLOTS],
    hours: Vec<HourAgg>,
    /// Per-session metrics: session → (start hour, value), oldest first.
    sessions: VecDeque<(Box<str>, i64, u64)>,
    newest_ms: i64,
}

impl Counter {
    fn new(window_hours: usize) -> Self {
        Self {
            minutes: [(i64::MIN, 0); MINUTE_SLOTS],
            hours: vec![
                HourAgg {
                    hour: i64::MIN,
                    ..HourAgg::default()
                };
                window_hours + 1
            ],
            sessions: VecDeque::new(),
            newest_ms: i64::MIN,
        }
    }

    fn hour_slot(&mut self, hour: i64) -> Option<&mut HourAgg> {
        let n = i64::try_from(self.hours.len()).ok()?;
        let i = usize::try_from(hour.rem_euclid(n)).ok()?;
        let slot = self.hours.get_mut(i)?;
        if slot.hour == hour {
            Some(slot)
        } else if slot.hour < hour {
            *slot = HourAgg {
                hour,
                sum: 0,
                active: 0,
            };
            Some(slot)
        } else {
            None
        }
    }

    /// Adds a per-minute value; returns the current minute's total when the event is current.
    fn add_minute(&mut self, ts: i64, v: u64, tolerance: i64) -> Option<u64> {
        let minute = ts.div_euclid(MINUTE_MS);
        let current = ts >= self.newest_ms.saturating_sub(tolerance);
        self.newest_ms = self.newest_ms.max(ts);
        let i = usize::try_from(minute.rem_euclid(MINUTE_SLOTS as i64)).ok()?;
        let mut newly_active = false;
        let mut total = None;
        if let Some(slot) = self.minutes.get_mut(i) {
            if slot.0 < minute {
                *slot = (minute, 0);
            }
            if slot.0 == minute {
                newly_active = slot.1 == 0 && v > 0;
                slot.1 = slot.1.saturating_add(v);
                total = Some(slot.1);
            }
        }
        if total.is_none() {
            // Older than the minute ring: the baseline still learns it (activity unknown).
            newly_active = v > 0;
        }
        if let Some(h) = self.hour_slot(minute.div_euclid(60)) {
            h.sum = h.sum.saturating_add(v);
            if newly_active {
                h.active += 1;
            }
        }
        if current { total } else { None }
    }

    /// Adds a per-session value; returns the session's total.
    fn add_session(&mut self, ts: i64, session: &str, v: u64) -> u64 {
        let hour = ts.div_euclid(HOUR_MS);
        let pos = self
            .sessions
            .iter()
            .rposition(|(s, _, _)| s.as_ref() == session);
        let (start, total) = match pos.and_then(|p| self.sessions.get_mut(p)) {
            Some(e) => {
                e.2 = e.2.saturating_add(v);
                (e.1, e.2)
            }
            None => {
                if self.sessions.len() >= MAX_SESSIONS_PER_AGENT {
                    self.sessions.pop_front();
                }
                self.sessions.push_back((session.into(), hour, v));
                if let Some(h) = self.hour_slot(hour) {
                    h.active += 1;
                }
                (hour, v)
            }
        };
        if let Some(h) = self.hour_slot(start) {
            h.sum = h.sum.saturating_add(v);
        }
        total
    }

    /// Sum and active buckets over the hours of `window_ms` ending at `ts`.
    fn baseline(&self, ts: i64, window_ms: i64) -> (u64, u32) {
        let now_h = ts.div_euclid(HOUR_MS);
        let from_h = (ts - window_ms).div_euclid(HOUR_MS);
        self.hours
            .iter()
            .filter(|h| h.hour > from_h && h.hour <= now_h)
            .fold((0, 0), |(s, a), h| (s.saturating_add(h.sum), a + h.active))
    }
}

#[derive(Debug)]
struct AgentState {
    first_seen_ms: i64,
    last_seen_ms: i64,
    mcp_last_seen_ms: Option<i64>,
    events: u64,
    counters: Vec<Option<Box<Counter>>>,
    /// Per rule (time-window rules only): (occurrence start, events counted).
    windows: Vec<(i64, u64)>,
    recent: VecDeque<(i64, Uuid)>,
}

impl AgentState {
    fn new(ts: i64, counters: usize, rules: usize) -> Self {
        Self {
            first_seen_ms: ts,
            last_seen_ms: ts,
            mcp_last_seen_ms: None,
            events: 0,
            counters: (0..counters).map(|_| None).collect(),
            windows: vec![(i64::MIN, 0); rules],
            recent: VecDeque::with_capacity(RECENT_ENTRIES),
        }
    }
}

/// The detector of one service.
#[derive(Debug)]
pub struct Detector {
    rules: Arc<RuleSet>,
    window_hours: usize,
    agents: HashMap<String, AgentState>,
    control: HashMap<String, Control>,
    suppress: HashMap<(usize, String), i64>,
    /// Per agent: until when `clock_skew` alerts are suppressed.
    clock_skew: HashMap<String, i64>,
    key: String,
    /// Most agents tracked at once.
    pub max_agents: usize,
    /// Alerts suppressed so far.
    pub suppressed: u64,
}

fn key_into(buf: &mut String, tenant: &str, agent: &str) {
    buf.clear();
    buf.push_str(tenant);
    buf.push('\u{0}');
    buf.push_str(agent);
}

/// How long a `clock_skew` alert suppresses the next one of the same agent.
pub const CLOCK_SKEW_SUPPRESS_MS: i64 = 5 * 60_000;

/// The built-in rule the service raises for an event whose claimed time is outside `[clock]`.
pub const CLOCK_SKEW_RULE: &str = "clock_skew";

/// The group an alert is suppressed in.
fn suppress_group(by: SuppressBy, tenant: &str, agent: &str, session: &str) -> String {
    match by {
        SuppressBy::Agent => format!("{tenant}\u{0}{agent}"),
        SuppressBy::Session => format!("{tenant}\u{0}{agent}\u{0}{session}"),
        SuppressBy::Tenant => tenant.to_owned(),
        SuppressBy::Rule => String::new(),
    }
}

fn split_key(k: &str) -> (&str, &str) {
    k.split_once('\u{0}').unwrap_or((k, ""))
}

fn window_hours(rules: &RuleSet) -> usize {
    usize::try_from(rules.max_window_ms.div_euclid(HOUR_MS)).unwrap_or(0) + 1
}

impl Detector {
    /// A detector applying `rules`.
    #[must_use]
    pub fn new(rules: Arc<RuleSet>) -> Self {
        Self {
            window_hours: window_hours(&rules),
            rules,
            agents: HashMap::new(),
            control: HashMap::new(),
            suppress: HashMap::new(),
            clock_skew: HashMap::new(),
            key: String::new(),
            max_agents: 100_000,
            suppressed: 0,
        }
    }

    /// The rules in force.
    #[must_use]
    pub fn rules(&self) -> &Arc<RuleSet> {
        &self.rules
    }

    /// Replaces the rules. Counters whose definition is unchanged keep their history; new ones
    /// start empty (and so cannot fire before `min_history`); suppression carries over by rule
    /// name.
    pub fn set_rules(&mut self, rules: Arc<RuleSet>) {
        let old = std::mem::replace(&mut self.rules, rules);
        let map: Vec<Option<usize>> = self
            .rules
            .counters
            .iter()
            .map(|c| old.counters.iter().position(|o| o == c))
            .collect();
        let new_hours = window_hours(&self.rules);
        let resized = new_hours != self.window_hours;
        self.window_hours = new_hours;
        let rule_map: Vec<Option<usize>> = self
            .rules
            .rules
            .iter()
            .map(|r| old.rules.iter().position(|o| o.name == r.name))
            .collect();
        for st in self.agents.values_mut() {
            let mut old_counters = std::mem::take(&mut st.counters);
            st.counters = map
                .iter()
                .map(|m| m.and_then(|i| old_counters.get_mut(i).and_then(Option::take)))
                .collect();
            if resized {
                for c in st.counters.iter_mut().flatten() {
                    let mut fresh = Counter::new(new_hours);
                    for h in &c.hours {
                        if let Some(s) = fresh.hour_slot(h.hour) {
                            *s = *h;
                        }
                    }
                    c.hours = fresh.hours;
                }
            }
            let old_windows = std::mem::take(&mut st.windows);
            st.windows = rule_map
                .iter()
                .map(|m| {
                    m.and_then(|i| old_windows.get(i).copied())
                        .unwrap_or((i64::MIN, 0))
                })
                .collect();
        }
        let old_suppress = std::mem::take(&mut self.suppress);
        for ((i, g), until) in old_suppress {
            let name = old.rules.get(i).map(|r| r.name.as_str());
            if let Some(j) = self
                .rules
                .rules
                .iter()
                .position(|r| Some(r.name.as_str()) == name)
            {
                self.suppress.insert((j, g), until);
            }
        }
    }

    fn agent(&mut self, tenant: &str, agent: &str, ts: i64) -> &mut AgentState {
        key_into(&mut self.key, tenant, agent);
        if !self.agents.contains_key(self.key.as_str()) {
            if self.agents.len() >= self.max_agents {
                self.evict();
            }
            self.agents.insert(
                self.key.clone(),
                AgentState::new(ts, self.rules.counters.len(), self.rules.rules.len()),
            );
        }
        let Some(st) = self.agents.get_mut(self.key.as_str()) else {
            unreachable!("inserted above")
        };
        st
    }

    /// Forgets the least recently seen tenth of the agents.
    fn evict(&mut self) {
        let mut seen: Vec<i64> = self.agents.values().map(|a| a.last_seen_ms).collect();
        if seen.is_empty() {
            return;
        }
        let k = seen.len() / 10;
        let (_, cut, _) = seen.select_nth_unstable(k);
        let cut = *cut;
        self.agents.retain(|_, a| a.last_seen_ms > cut);
    }

    /// Counts an event without evaluating any rule (replaying history on start).
    pub fn learn(&mut self, ob: &Observation<'_>) {
        self.update(ob, None);
    }

    /// Counts an event and evaluates every rule on it. Firings are appended to `out`, with
    /// `suppressed` set for alerts raised again within their rule's `suppress` period.
    pub fn observe(&mut self, ob: &Observation<'_>, out: &mut Vec<Firing>) {
        self.update(ob, Some(out));
    }

    #[allow(clippy::too_many_lines)]
    fn update(&mut self, ob: &Observation<'_>, out: Option<&mut Vec<Firing>>) {
        let rules = Arc::clone(&self.rules);
        let hours = self.window_hours;
        let tolerance = rules.late_tolerance_ms;
        let f = ob.features;
        let st = self.agent(ob.tenant, ob.agent, ob.ts_ms);
        st.first_seen_ms = st.first_seen_ms.min(ob.ts_ms);
        st.last_seen_ms = st.last_seen_ms.max(ob.ts_ms);
        if ob.event_type.starts_with("mcp_") || ob.event_type == "tool_result" {
            st.mcp_last_seen_ms = Some(st.mcp_last_seen_ms.unwrap_or(i64::MIN).max(ob.ts_ms));
        }
        st.events += 1;
        // Counters.
        let mut current: Vec<(usize, Option<u64>)> = Vec::new();
        for (ci, spec) in rules.counters.iter().enumerate() {
            let admitted = (spec.roles.is_empty()
                || f.role.as_deref().is_some_and(|r| spec.roles.contains(r)))
                && (spec.tools.is_empty() || ob.tool.is_some_and(|t| spec.tools.contains(t)))
                && (spec.event_types.is_empty() || spec.event_types.contains(ob.event_type));
            if !admitted {
                continue;
            }
            let v = match spec.metric {
                Metric::ToolCallsPerMinute => u64::from(ob.event_type == "tool_call"),
                Metric::LlmRequestsPerMinute => u64::from(ob.event_type == "llm_request"),
                Metric::TokensPerMinute => f.tokens,
                Metric::ErrorsPerMinute => u64::from(f.error),
                Metric::DeniedCallsPerMinute => u64::from(f.denied),
                Metric::ResultRowsPerSession => f.rows,
            };
            let per_session = spec.metric.per_session();
            if v == 0 && !(per_session && ob.event_type == "tool_call") {
                continue;
            }
            let Some(slot) = st.counters.get_mut(ci) else {
                continue;
            };
            let c = slot.get_or_insert_with(|| Box::new(Counter::new(hours)));
            let total = if per_session {
                Some(c.add_session(ob.ts_ms, ob.session, v))
            } else {
                c.add_minute(ob.ts_ms, v, tolerance)
            };
            if v > 0 {
                current.push((ci, total));
            }
        }
        let Some(out) = out else {
            // Learning: time windows still count, so a restart does not alert twice.
            for (ri, rule) in rules.rules.iter().enumerate() {
                if let Kind::TimeWindow { window, .. } = &rule.kind
                    && in_force(rule, ob)
                    && let Some(start) = window_start(window, ob.ts_ms, &rules)
                    && let Some(w) = st.windows.get_mut(ri)
                {
                    if w.0 != start {
                        *w = (start, 0);
                    }
                    w.1 += 1;
                }
            }
            return;
        };
        let first_seen = st.first_seen_ms;
        let mut fired: Vec<Firing> = Vec::new();
        for (ri, rule) in rules.rules.iter().enumerate() {
            // Rules that read what this event does not have are passed over before their scope
            // is looked at (most events match no pattern).
            let nothing_to_read = match &rule.kind {
                Kind::Pattern { .. } => !f.hits.contains(ri),
                Kind::Hidden { mask } => f.hits.hidden() & mask == 0,
                Kind::Classifier { .. } => f.classifier_score.is_none(),
                Kind::Score { .. } => true,
                Kind::Metric { .. } | Kind::TimeWindow { .. } => false,
            };
            if nothing_to_read || !in_force(rule, ob) {
                continue;
            }
            let firing = |observed, baseline, threshold, matched, window_start_ms| Firing {
                rule: ri,
                name: rule.name.clone(),
                action: rule.action,
                suppressed: false,
                observed,
                baseline,
                threshold,
                matched,
                window_start_ms,
                earlier: Vec::new(),
            };
            match &rule.kind {
                Kind::Metric {
                    metric,
                    counter,
                    baseline_window_ms,
                    multiplier,
                    min_history_ms,
                    floor,
                } => {
                    let Some(&(_, Some(value))) = current.iter().find(|(c, _)| c == counter) else {
                        continue;
                    };
                    if ob.ts_ms - first_seen < *min_history_ms {
                        continue;
                    }
                    let Some(Some(c)) = st.counters.get(*counter) else {
                        continue;
                    };
                    let (sum, active) = c.baseline(ob.ts_ms, *baseline_window_ms);
                    // The current minute (or session) is not part of its own baseline.
                    let (sum, active) = (sum.saturating_sub(value), active.saturating_sub(1));
                    if active < MIN_ACTIVE_BUCKETS {
                        continue;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let (baseline, value) = (sum as f64 / f64::from(active), value as f64);
                    let threshold = baseline * multiplier;
                    if value > threshold && value >= *floor {
                        let _ = metric;
                        fired.push(firing(
                            Some(value),
                            Some(baseline),
                            Some(threshold.max(*floor)),
                            Vec::new(),
                            None,
                        ));
                    }
                }
                Kind::TimeWindow { window, min_count } => {
                    let Some(start) = window_start(window, ob.ts_ms, &rules) else {
                        continue;
                    };
                    let Some(w) = st.windows.get_mut(ri) else {
                        continue;
                    };
                    if w.0 != start {
                        *w = (start, 0);
                    }
                    w.1 += 1;
                    if w.1 == *min_count {
                        #[allow(clippy::cast_precision_loss)]
                        fired.push(firing(
                            Some(w.1 as f64),
                            None,
                            None,
                            Vec::new(),
                            Some(start),
                        ));
                    }
                }
                Kind::Pattern {
                    literals,
                    regexes,
                    near,
                } => {
                    let Some(hit) = f.hits.get(ri) else {
                        continue;
                    };
                    // Where: the argument (a JSON Pointer) and the decoder that revealed it.
                    let at = match f.hits.location(ri) {
                        Some((path, step))
                            if !path.is_empty() || step != crate::normalize::Step::Plain =>
                        {
                            let path = if path.is_empty() { "the text" } else { path };
                            if step == crate::normalize::Step::Plain {
                                format!(" in {path}")
                            } else {
                                format!(" in {path} (decoded: {})", step.name())
                            }
                        }
                        _ => String::new(),
                    };
                    let matched = match hit {
                        crate::patterns::PatternRef::Literal(i) => format!(
                            "match_patterns[{i}]: {:?}{at}",
                            literals.get(i).map_or("", String::as_str)
                        ),
                        crate::patterns::PatternRef::Regex(i) if i >= regexes.len() => {
                            let j = i - regexes.len();
                            format!(
                                "match_near[{j}]: {:?}{at}",
                                near.get(j).map_or("", String::as_str)
                            )
                        }
                        crate::patterns::PatternRef::Regex(i) => format!(
                            "match_regex[{i}]: {:?}{at}",
                            regexes.get(i).map_or("", String::as_str)
                        ),
                    };
                    fired.push(firing(None, None, None, vec![matched], None));
                }
                Kind::Hidden { mask } => {
                    let seen = f.hits.hidden() & mask;
                    if seen != 0 {
                        let matched = crate::normalize::HIDDEN_KINDS
                            .into_iter()
                            .filter(|h| seen & h.bit() != 0)
                            .map(|h| h.name().to_owned())
                            .collect();
                        fired.push(firing(None, None, None, matched, None));
                    }
                }
                Kind::Classifier { at_least } => {
                    if let Some(score) = f.classifier_score
                        && score >= *at_least
                    {
                        fired.push(firing(Some(score), None, Some(*at_least), Vec::new(), None));
                    }
                }
                // Scores are summed once every signal is known (below).
                Kind::Score { .. } => {}
            }
        }
        // Score rules: the weights of the signals that fired on this event.
        if fired.iter().any(|fi| fi.action == Action::Signal) {
            for (ri, rule) in rules.rules.iter().enumerate() {
                let Kind::Score { at_least, signals } = &rule.kind else {
                    continue;
                };
                if !in_force(rule, ob) {
                    continue;
                }
                let counted: Vec<(&str, f64)> = fired
                    .iter()
                    .filter(|fi| fi.action == Action::Signal)
                    .filter(|fi| signals.is_empty() || signals.contains(&fi.rule))
                    .filter_map(|fi| rules.rules.get(fi.rule))
                    .map(|r| (r.name.as_str(), r.weight))
                    .collect();
                let score: f64 = counted.iter().map(|(_, w)| w).sum();
                if score >= *at_least {
                    fired.push(Firing {
                        rule: ri,
                        name: rule.name.clone(),
                        action: rule.action,
                        suppressed: false,
                        observed: Some(score),
                        baseline: None,
                        threshold: Some(*at_least),
                        matched: counted
                            .iter()
                            .map(|(n, w)| format!("signal {n} ({w})"))
                            .collect(),
                        window_start_ms: None,
                        earlier: Vec::new(),
                    });
                }
            }
        }
        if fired.is_empty() {
            return;
        }
        let recent: Vec<(i64, Uuid)> = st.recent.iter().copied().collect();
        for mut fi in fired {
            let Some(rule) = rules.rules.get(fi.rule) else {
                continue;
            };
            // A signal records nothing itself: no suppression, no triggering entries.
            if fi.action == Action::Signal {
                out.push(fi);
                continue;
            }
            // What counted: the agent's earlier entries of the same minute (metric), of the
            // window occurrence (time window); a pattern match is the event itself.
            let since = match (&rule.kind, fi.window_start_ms) {
                (Kind::Metric { metric, .. }, _) if !metric.per_session() => {
                    ob.ts_ms.div_euclid(MINUTE_MS) * MINUTE_MS
                }
                (Kind::TimeWindow { .. }, Some(s)) => s,
                _ => i64::MAX,
            };
            fi.earlier = recent
                .iter()
                .rev()
                .filter(|(t, _)| *t >= since)
                .take(RECENT_ENTRIES - 1)
                .map(|(_, id)| *id)
                .collect();
            let k = (
                fi.rule,
                suppress_group(rule.suppress_by, ob.tenant, ob.agent, ob.session),
            );
            match self.suppress.get(&k) {
                Some(until) if *until > ob.ts_ms => {
                    fi.suppressed = true;
                    self.suppressed += 1;
                }
                _ => {
                    if self.suppress.len() > 100_000 {
                        let now = ob.ts_ms;
                        self.suppress.retain(|_, u| *u > now);
                    }
                    self.suppress
                        .insert(k, ob.ts_ms.saturating_add(rule.suppress_ms));
                }
            }
            out.push(fi);
        }
    }

    /// Remembers an appended entry of an agent (to name what triggered a later alert).
    pub fn note_entry(&mut self, tenant: &str, agent: &str, ts_ms: i64, id: Uuid) {
        key_into(&mut self.key, tenant, agent);
        if let Some(st) = self.agents.get_mut(self.key.as_str()) {
            if st.recent.len() >= RECENT_ENTRIES {
                st.recent.pop_front();
            }
            st.recent.push_back((ts_ms, id));
        }
    }

    /// Whether a `clock_skew` alert for this agent is due at `at_ms` (at most one every
    /// [`CLOCK_SKEW_SUPPRESS_MS`]); when it is, the next one is suppressed until then.
    pub fn clock_skew_due(&mut self, tenant: &str, agent: &str, at_ms: i64) -> bool {
        key_into(&mut self.key, tenant, agent);
        match self.clock_skew.get_mut(self.key.as_str()) {
            Some(until) if *until > at_ms => false,
            Some(until) => {
                *until = at_ms.saturating_add(CLOCK_SKEW_SUPPRESS_MS);
                true
            }
            None => {
                self.clock_skew.insert(
                    self.key.clone(),
                    at_ms.saturating_add(CLOCK_SKEW_SUPPRESS_MS),
                );
                true
            }
        }
    }

    /// Restores a suppression from a recorded alert (replaying history on start).
    pub fn note_alert(
        &mut self,
        rule_name: &str,
        tenant: &str,
        agent: &str,
        session: &str,
        at_ms: i64,
    ) {
        let Some((i, rule)) = self
            .rules
            .rules
            .iter()
            .enumerate()
            .find(|(_, r)| r.name == rule_name)
        else {
            return;
        };
        let group = suppress_group(rule.suppress_by, tenant, agent, session);
        let until = at_ms.saturating_add(rule.suppress_ms);
        let e = self.suppress.entry((i, group)).or_insert(until);
        *e = (*e).max(until);
    }

    /// Whether the agent may act at `now_ms`; a throttled agent's allowed call is consumed.
    pub fn gate(&mut self, tenant: &str, agent: &str, now_ms: i64) -> Gate {
        key_into(&mut self.key, tenant, agent);
        let Some(c) = self.control.get_mut(self.key.as_str()) else {
            return Gate::Open;
        };
        if c.paused.is_some() {
            return Gate::Paused;
        }
        if let Some(t) = &mut c.throttle {
            if now_ms >= t.until_ms {
                c.throttle = None;
            } else if now_ms < t.next_ms {
                return Gate::Throttled {
                    retry_after_ms: t.next_ms - now_ms,
                };
            } else {
                t.next_ms = now_ms + 60_000 / i64::from(t.per_minute.max(1));
            }
        }
        if c.paused.is_none() && c.throttle.is_none() {
            self.control.remove(self.key.as_str());
        }
        Gate::Open
    }

    /// Pauses an agent; `false` when it was paused already.
    pub fn pause(&mut self, tenant: &str, agent: &str, now_ms: i64, by: &str) -> bool {
        key_into(&mut self.key, tenant, agent);
        let c = self.control.entry(self.key.clone()).or_default();
        if c.paused.is_some() {
            return false;
        }
        c.paused = Some(Pause {
            since_ms: now_ms,
            by: by.to_owned(),
        });
        true
    }

    /// Resumes a paused or throttled agent; `false` when it was neither.
    pub fn resume(&mut self, tenant: &str, agent: &str) -> bool {
        key_into(&mut self.key, tenant, agent);
        self.control.remove(self.key.as_str()).is_some()
    }

    /// Throttles an agent until `until_ms`; `false` when an equal or longer throttle (or a
    /// pause) is in force already.
    pub fn throttle(
        &mut self,
        tenant: &str,
        agent: &str,
        now_ms: i64,
        per_minute: u32,
        until_ms: i64,
        by: &str,
    ) -> bool {
        key_into(&mut self.key, tenant, agent);
        let c = self.control.entry(self.key.clone()).or_default();
        if c.paused.is_some()
            || c.throttle
                .as_ref()
                .is_some_and(|t| t.until_ms >= until_ms && t.until_ms > now_ms)
        {
            return false;
        }
        c.throttle = Some(Throttle {
            until_ms,
            per_minute: per_minute.max(1),
            by: by.to_owned(),
            // The call that tripped the throttle used the first slot.
            next_ms: now_ms + 60_000 / i64::from(per_minute.max(1)),
        });
        true
    }

    /// Agents known to the detector, paused and throttled ones first, then by tenant and id.
    #[must_use]
    pub fn agents(&self, tenant: Option<&str>, now_ms: i64) -> Vec<AgentInfo> {
        let mut out: Vec<AgentInfo> = Vec::new();
        let mut keys: Vec<&String> = self.agents.keys().chain(self.control.keys()).collect();
        keys.sort();
        keys.dedup();
        for k in keys {
            let (t, a) = split_key(k);
            if tenant.is_some_and(|x| x != t) {
                continue;
            }
            let st = self.agents.get(k);
            let c = self.control.get(k);
            let paused = c.and_then(|c| c.paused.clone());
            let throttle = c
                .and_then(|c| c.throttle.clone())
                .filter(|t| t.until_ms > now_ms);
            out.push(AgentInfo {
                tenant_id: t.to_owned(),
                agent_id: a.to_owned(),
                state: if paused.is_some() {
                    "paused"
                } else if throttle.is_some() {
                    "throttled"
                } else {
                    "active"
                },
                first_seen_ms: st.map(|s| s.first_seen_ms),
                last_seen_ms: st.map(|s| s.last_seen_ms),
                mcp_last_seen_ms: st.and_then(|s| s.mcp_last_seen_ms),
                events: st.map_or(0, |s| s.events),
                paused,
                throttle,
            });
        }
        out.sort_by_key(|a| match a.state {
            "paused" => 0,
            "throttled" => 1,
            _ => 2,
        });
        out
    }

    /// Agents tracked (for metrics).
    #[must_use]
    pub fn tracked_agents(&self) -> usize {
        self.agents.len()
    }
}

/// Whether `rule` is enabled and `ob` is in its scope.
fn in_force(rule: &crate::rules::Rule, ob: &Observation<'_>) -> bool {
    rule.enabled
        && rule.scope.admits(
            ob.tenant,
            ob.agent,
            ob.features.role.as_deref(),
            ob.tool,
            ob.event_type,
        )
}

fn window_start(
    window: &crate::timewindow::TimeWindow,
    ts_ms: i64,
    rules: &RuleSet,
) -> Option<i64> {
    let t = jiff::Timestamp::from_millisecond(ts_ms).ok()?;
    window
        .occurrence_start(t, &rules.time_zone)
        .map(|s| s.as_millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::patterns::Hits;

    const T0: i64 = 1_767_225_600_000; // 2026-01-01T00:00:00Z, a Thursday

    fn rules(yaml: &str) -> Arc<RuleSet> {
        Arc::new(RuleSet::parse(yaml).unwrap())
    }

    fn metric_rules(metric: &str, extra: &str) -> Arc<RuleSet> {
        rules(&format!(
            "anomaly_detection:\n  rules:\n    - name: m\n      condition: {{metric: {metric}, baseline_window: 1d, threshold_multiplier: 10, floor: 0{extra}}}\n      action: alert_and_pause\n"
        ))
    }

    struct Feed {
        det: Detector,
        f: Features,
        out: Vec<Firing>,
    }

    impl Feed {
        fn new(r: Arc<RuleSet>) -> Self {
            Self {
                det: Detector::new(r),
                f: Features::default(),
                out: Vec::new(),
            }
        }

        fn ev(
            &mut self,
            agent: &str,
            session: &str,
            event_type: &str,
            tool: Option<&str>,
            ts: i64,
        ) -> Vec<Firing> {
            self.out.clear();
            let ob = Observation {
                tenant: "acme",
                agent,
                session,
                event_type,
                tool,
                ts_ms: ts,
                features: &self.f,
            };
            self.det.observe(&ob, &mut self.out);
            self.det.note_entry("acme", agent, ts, Uuid::now_v7());
            self.out.clone()
        }

        /// `per_minute` tool calls in each of `minutes` minutes starting at `start`.
        fn history(&mut self, agent: &str, start: i64, minutes: i64, per_minute: i64) {
            for m in 0..minutes {
                for i in 0..per_minute {
                    let fired = self.ev(
                        agent,
                        "s",
                        "tool_call",
                        Some("t"),
                        start + m * 6 * MINUTE_MS + i * 100,
                    );
                    assert!(fired.is_empty(), "history fired: {fired:?}");
                }
            }
        }
    }

    #[test]
    fn a_metric_fires_just_over_its_threshold_and_not_just_under() {
        for (burst, fires) in [(20, false), (21, true)] {
            let mut feed = Feed::new(metric_rules("tool_calls_per_minute", ""));
            // 2 calls in each of 20 minutes over 2 hours: baseline 2/min, threshold 20.
            feed.history("a", T0, 20, 2);
            let start = T0 + 3 * HOUR_MS;
            let mut fired = Vec::new();
            for i in 0..burst {
                fired.extend(feed.ev("a", "s", "tool_call", Some("t"), start + i * 10));
            }
            assert_eq!(!fired.is_empty(), fires, "burst {burst}: {fired:?}");
            if fires {
                let f = &fired[0];
                assert_eq!(f.observed, Some(21.0));
                assert_eq!(f.baseline, Some(2.0));
                assert_eq!(f.threshold, Some(20.0));
                // What counted: the earlier entries of the same minute.
                assert_eq!(f.earlier.len(), 15);
            }
        }
    }

    #[test]
    fn a_new_or_quiet_agent_does_not_fire() {
        let mut feed = Feed::new(metric_rules("tool_calls_per_minute", ""));
        // A burst from an agent never seen before: no history, no alert.
        for i in 0..500 {
            assert!(feed.ev("new", "s", "tool_call", None, T0 + i).is_empty());
        }
        // Enough time but too few active minutes.
        let mut feed = Feed::new(metric_rules("tool_calls_per_minute", ""));
        feed.history("q", T0, 5, 1);
        for i in 0..100 {
            assert!(
                feed.ev("q", "s", "tool_call", None, T0 + 3 * HOUR_MS + i)
                    .is_empty()
            );
        }
        // The floor holds back small absolute values even against a tiny baseline.
        let mut feed = Feed::new(rules(
            "anomaly_detection:\n  rules:\n    - name: m\n      condition: {metric: tool_calls_per_minute, baseline_window: 1d, threshold_multiplier: 10, floor: 50}\n      action: alert\n",
        ));
        feed.history("f", T0, 20, 1);
        let fired: usize = (0..49)
            .map(|i| {
                feed.ev("f", "s", "tool_call", None, T0 + 3 * HOUR_MS + i)
                    .len()
            })
            .sum();
        assert_eq!(fired, 0);
        assert_eq!(
            feed.ev("f", "s", "tool_call", None, T0 + 3 * HOUR_MS + 60)
                .len(),
            1
        );
    }

    #[test]
    fn per_session_rows() {
        let r = metric_rules("result_rows_per_session", "");
        let mut feed = Feed::new(r);
        // 12 sessions of 100 rows over 2 hours: baseline 100 rows/session.
        for s in 0..12 {
            feed.f.rows = 100;
            let fired = feed.ev(
                "a",
                &format!("s{s}"),
                "tool_call",
                None,
                T0 + s * 10 * MINUTE_MS,
            );
            assert!(fired.is_empty());
        }
        feed.f.rows = 1000;
        assert!(
            feed.ev("a", "big", "tool_call", None, T0 + 3 * HOUR_MS)
                .is_empty(),
            "1000 = 10x is not over"
        );
        feed.f.rows = 1;
        let fired = feed.ev("a", "big", "tool_call", None, T0 + 3 * HOUR_MS + 1);
        assert_eq!(fired.len(), 1, "1001 rows in one session is over 10x");
        assert_eq!(fired[0].observed, Some(1001.0));
    }

    #[test]
    fn late_events_land_in_their_minute() {
        let mut feed = Feed::new(metric_rules("tool_calls_per_minute", ""));
        feed.history("a", T0, 20, 2);
        let minute = T0 + 3 * HOUR_MS;
        for i in 0..20 {
            assert!(feed.ev("a", "s", "tool_call", None, minute + i).is_empty());
        }
        // The agent moves on to later minutes…
        assert!(
            feed.ev("a", "s", "tool_call", None, minute + 2 * MINUTE_MS)
                .is_empty()
        );
        // …and a call of the earlier minute arrives late (within tolerance): it is the 21st.
        assert_eq!(feed.ev("a", "s", "tool_call", None, minute + 500).len(), 1);
        // Far too late: counted for the baseline only, never fires.
        let mut feed = Feed::new(metric_rules("tool_calls_per_minute", ""));
        feed.history("b", T0, 20, 2);
        feed.ev("b", "s", "tool_call", None, minute + HOUR_MS);
        for i in 0..30 {
            assert!(feed.ev("b", "s", "tool_call", None, minute + i).is_empty());
        }
    }

    #[test]
    fn time_windows_count_per_occurrence() {
        let r = rules(
            "anomaly_detection:\n  rules:\n    - name: night\n      condition:\n        tool: query_database\n        time_window: \"22:00-06:00\"\n        min_count: 2\n      action: alert\n      suppress: 1m\n",
        );
        let mut feed = Feed::new(r);
        let night = T0 + 23 * HOUR_MS; // Thursday 23:00 UTC
        assert!(
            feed.ev("a", "s", "tool_call", Some("query_database"), night)
                .is_empty()
        );
        assert!(
            feed.ev("a", "s", "tool_call", Some("other_tool"), night + 1)
                .is_empty()
        );
        let fired = feed.ev(
            "a",
            "s",
            "tool_call",
            Some("query_database"),
            night + 2 * HOUR_MS,
        );
        assert_eq!(
            fired.len(),
            1,
            "second call of the same night, after midnight"
        );
        assert_eq!(fired[0].window_start_ms, Some(T0 + 22 * HOUR_MS));
        assert_eq!(
            fired[0].earlier.len(),
            2,
            "the agent's entries since the window opened: {fired:?}"
        );
        // Daytime: nothing.
        for i in 0..5 {
            assert!(
                feed.ev(
                    "a",
                    "s",
                    "tool_call",
                    Some("query_database"),
                    T0 + 36 * HOUR_MS + i
                )
                .is_empty()
            );
        }
        // The next night is a new occurrence: one call is under min_count again.
        assert!(
            feed.ev(
                "a",
                "s",
                "tool_call",
                Some("query_database"),
                T0 + 47 * HOUR_MS
            )
            .is_empty()
        );
    }

    #[test]
    fn pattern_hits_fire_and_alerts_are_suppressed() {
        let r = rules(
            "anomaly_detection:\n  rules:\n    - name: inj\n      condition: {match_patterns: [\"ignore previous instructions\", jailbreak]}\n      action: block_and_alert\n      suppress: 10m\n",
        );
        let mut feed = Feed::new(Arc::clone(&r));
        let mut hits = Hits::new();
        r.patterns
            .scan_str("Please IGNORE previous   instructions", &mut hits);
        feed.f.hits = hits;
        let first = feed.ev("a", "s", "tool_call", None, T0);
        assert_eq!(first.len(), 1);
        assert!(!first[0].suppressed);
        assert_eq!(
            first[0].matched,
            ["match_patterns[0]: \"ignore previous instructions\""]
        );
        let again = feed.ev("a", "s", "tool_call", None, T0 + MINUTE_MS);
        assert!(again[0].suppressed, "within 10 minutes");
        assert_eq!(
            again[0].action,
            Action::BlockAndAlert,
            "suppression never lifts the block"
        );
        let other = feed.ev("b", "s", "tool_call", None, T0 + MINUTE_MS);
        assert!(!other[0].suppressed, "suppression is per agent by default");
        let later = feed.ev("a", "s", "tool_call", None, T0 + 11 * MINUTE_MS);
        assert!(!later[0].suppressed);
    }

    #[test]
    fn pause_throttle_resume() {
        let mut det = Detector::new(Arc::new(RuleSet::empty()));
        assert_eq!(det.gate("t", "a", T0), Gate::Open);
        assert!(det.pause("t", "a", T0, "operator:x"));
        assert!(!det.pause("t", "a", T0, "operator:x"));
        assert_eq!(det.gate("t", "a", T0), Gate::Paused);
        assert_eq!(det.gate("t", "b", T0), Gate::Open);
        assert!(det.resume("t", "a"));
        assert_eq!(det.gate("t", "a", T0), Gate::Open);
        assert!(det.throttle("t", "a", T0, 6, T0 + 15 * MINUTE_MS, "rule:x"));
        assert_eq!(
            det.gate("t", "a", T0 + 1),
            Gate::Throttled {
                retry_after_ms: 9_999
            }
        );
        assert_eq!(det.gate("t", "a", T0 + 10_000), Gate::Open);
        assert!(matches!(
            det.gate("t", "a", T0 + 10_001),
            Gate::Throttled { .. }
        ));
        assert_eq!(det.agents(None, T0)[0].state, "throttled");
        assert_eq!(
            det.gate("t", "a", T0 + 16 * MINUTE_MS),
            Gate::Open,
            "the throttle ends"
        );
        assert!(!det.resume("t", "a"));
    }

    #[test]
    fn memory_is_bounded_and_reload_keeps_history() {
        let r = metric_rules("tool_calls_per_minute", "");
        let mut feed = Feed::new(Arc::clone(&r));
        feed.det.max_agents = 100;
        for i in 0..1_000 {
            feed.ev(&format!("agent-{i}"), "s", "tool_call", None, T0 + i);
        }
        assert!(
            feed.det.tracked_agents() <= 100,
            "{}",
            feed.det.tracked_agents()
        );
        // A reload with the same counter keeps the baseline: the burst still fires.
        let mut feed = Feed::new(Arc::clone(&r));
        feed.history("a", T0, 20, 2);
        let r2 = rules(
            "anomaly_detection:\n  rules:\n    - name: renamed\n      condition: {metric: tool_calls_per_minute, baseline_window: 2d, threshold_multiplier: 10, floor: 0}\n      action: alert\n",
        );
        feed.det.set_rules(r2);
        let fired: usize = (0..21)
            .map(|i| {
                feed.ev("a", "s", "tool_call", None, T0 + 3 * HOUR_MS + i)
                    .len()
            })
            .sum();
        assert_eq!(fired, 1);
    }

    #[test]
    fn learning_restores_state_without_firing() {
        let r = metric_rules("tool_calls_per_minute", "");
        let mut det = Detector::new(Arc::clone(&r));
        let f = Features::default();
        for m in 0..20 {
            for i in 0..2 {
                let ob = Observation {
                    tenant: "acme",
                    agent: "a",
                    session: "s",
                    event_type: "tool_call",
                    tool: None,
                    ts_ms: T0 + m * 6 * MINUTE_MS + i,
                    features: &f,
                };
                det.learn(&ob);
            }
        }
        let mut out = Vec::new();
        for i in 0..21 {
            let ob = Observation {
                tenant: "acme",
                agent: "a",
                session: "s",
                event_type: "tool_call",
                tool: None,
                ts_ms: T0 + 3 * HOUR_MS + i,
                features: &f,
            };
            det.observe(&ob, &mut out);
        }
        assert_eq!(out.len(), 1, "the replayed baseline is in force");
        // A restored alert suppresses the same alert after a restart.
        let mut det = Detector::new(r);
        det.note_alert("m", "acme", "a", "s", T0);
        assert_eq!(det.suppress.len(), 1);
    }
}
