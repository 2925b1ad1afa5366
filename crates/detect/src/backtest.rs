//! Backtests: a rules file run over entries already in a log (a data directory or exported
//! JSONL), counting what each rule would have fired, without writing anything.
//!
//! Raw content is hashed before it is stored, so pattern rules see only fields kept in clear.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use blackbox_core::entry::EntryView;
use blackbox_core::event::Node;

use crate::rules::RuleSet;
use crate::{DETECTION_EVENTS, Detector, Features, Firing, Observation};

/// Runs `f` on the observation of a stored entry: its features as [`stored_features`] reads
/// them, at the entry's time (history replay, following other instances, backtests).
pub fn with_stored_observation<R>(
    view: &EntryView<'_>,
    rules: &RuleSet,
    f: impl FnOnce(&Observation<'_>) -> R,
) -> R {
    let (features, tool) = stored_features(view, rules);
    f(&Observation {
        tenant: &view.tenant_id,
        agent: &view.agent_id,
        session: &view.session_id,
        event_type: &view.event_type,
        tool: tool.as_deref(),
        ts_ms: view.timestamp_ms,
        features: &features,
    })
}

/// Reads features from a stored entry (history replay and backtests; raw content is gone, so
/// pattern rules see only what the log holds). Also returns the entry's `payload.tool_name`.
#[must_use]
pub fn stored_features(view: &EntryView<'_>, rules: &RuleSet) -> (Features, Option<String>) {
    let mut f = Features::default();
    let mut tool = None;
    if let Ok(Node::Obj(p)) = serde_json::from_str::<Node<'_>>(view.payload.get()) {
        f.fill(&view.event_type, &p, &rules.patterns);
        if let Some((_, Node::Str(t))) = p.iter().find(|(k, _)| k == "tool_name") {
            tool = Some(t.to_string());
        }
    }
    (f, tool)
}

/// What one rule would have done.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuleReport {
    /// Times it fired.
    pub fired: u64,
    /// Times it matched while suppressed.
    pub suppressed: u64,
    /// `tenant/agent` of the agents it fired for.
    pub agents: BTreeSet<String>,
    /// Claimed time of its first firing, Unix ms.
    pub first: Option<i64>,
    /// Claimed time of its last firing, Unix ms.
    pub last: Option<i64>,
    /// Entry ids of its first firings (at most the number asked for).
    pub examples: Vec<String>,
}

/// A backtest in progress: feed it entries in log order, then read the counts.
#[derive(Debug)]
pub struct Backtest {
    det: Detector,
    rules: Arc<RuleSet>,
    /// Per rule (index into the rule set), the rules that matched at least once.
    pub reports: BTreeMap<usize, RuleReport>,
    /// Entries evaluated (detection's own entries are not).
    pub entries: u64,
    /// Lines that could not be read as entries.
    pub skipped: u64,
    /// Earliest claimed time evaluated, Unix ms.
    pub from: Option<i64>,
    /// Latest claimed time evaluated, Unix ms.
    pub to: Option<i64>,
    examples: usize,
    firings: Vec<Firing>,
}

impl Backtest {
    /// A backtest of `rules`, keeping up to `examples` entry ids per rule.
    #[must_use]
    pub fn new(rules: Arc<RuleSet>, examples: usize) -> Self {
        Self {
            det: Detector::new(Arc::clone(&rules)),
            rules,
            reports: BTreeMap::new(),
            entries: 0,
            skipped: 0,
            from: None,
            to: None,
            examples,
            firings: Vec::new(),
        }
    }

    /// Evaluates one entry line (a line that is not an entry is counted in `skipped`; the
    /// detector's own entries are passed over).
    pub fn line(&mut self, line: &[u8]) {
        let Ok(view) = EntryView::parse(line) else {
            self.skipped += 1;
            return;
        };
        if DETECTION_EVENTS.contains(&view.event_type.as_ref()) {
            return;
        }
        self.entries += 1;
        let ts = view.timestamp_ms;
        self.from = Some(self.from.map_or(ts, |f| f.min(ts)));
        self.to = Some(self.to.map_or(ts, |t| t.max(ts)));
        self.firings.clear();
        let (det, firings) = (&mut self.det, &mut self.firings);
        with_stored_observation(&view, &self.rules, |ob| det.observe(ob, firings));
        self.det
            .note_entry(&view.tenant_id, &view.agent_id, ts, view.entry_id);
        for fi in &self.firings {
            let r = self.reports.entry(fi.rule).or_default();
            if fi.suppressed {
                r.suppressed += 1;
                continue;
            }
            r.fired += 1;
            r.agents
                .insert(format!("{}/{}", view.tenant_id, view.agent_id));
            r.first = Some(r.first.map_or(ts, |x| x.min(ts)));
            r.last = Some(r.last.map_or(ts, |x| x.max(ts)));
            if r.examples.len() < self.examples {
                r.examples.push(view.entry_id.to_string());
            }
        }
    }
}
