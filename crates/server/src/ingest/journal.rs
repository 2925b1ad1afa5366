//! Decisions answered before their commit (`decide_answer = "sequenced"`): the journal that
//! keeps them until committed, and the `decisions_unrecorded` entries for those that were lost.

use std::path::PathBuf;

use blackbox_core::entry::NormalizedEvent;
use blackbox_store::Store;
use serde_json::json;

use super::Shared;

/// A decision answered before its commit, whose commit failed (or may fail: until it
/// succeeds, the decision is noted in the [`AnsweredJournal`]).
#[derive(Debug, Clone)]
pub(super) struct LostDecision {
    pub(super) tenant: String,
    pub(super) agent: String,
    pub(super) entry_id: uuid::Uuid,
    pub(super) decision: &'static str,
    pub(super) cause: LossCause,
}

/// Why an answered decision has no record in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum LossCause {
    /// Its group's commit failed.
    CommitFailed,
    /// The service stopped (crashed, was killed) before the commit.
    Stopped,
}

impl LossCause {
    pub(super) fn reason(self) -> &'static str {
        match self {
            Self::CommitFailed => {
                "answered before the record was committed (decide_answer = \"sequenced\"); the commit failed"
            }
            Self::Stopped => {
                "answered before the record was committed (decide_answer = \"sequenced\"); the service stopped before the commit"
            }
        }
    }
}

/// Decisions answered before their commit (`DecideAnswer::Sequenced`), one JSON line each
/// (`tenant_id`, `agent_id`, `entry_id`, `decision`), in `DATA_DIR/decisions-answered.jsonl`:
/// a line is written before the answer leaves, and the file is rewritten to what is still
/// uncommitted after every commit. If the service dies in between, its next start finds the
/// lines, looks their entry ids up in the store and writes a `decisions_unrecorded` entry for
/// those that are missing, so that no answered decision vanishes silently. (Written without
/// fsync: it survives the process, not the machine.)
#[derive(Debug)]
pub struct AnsweredJournal {
    path: PathBuf,
    /// The file (opened when first needed) and its length.
    file: Option<(std::fs::File, u64)>,
}

/// One journal line.
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct JournalLine {
    tenant_id: String,
    agent_id: String,
    entry_id: String,
    decision: String,
}

impl AnsweredJournal {
    /// The journal at `path`.
    #[must_use]
    pub fn new(path: PathBuf) -> Self {
        Self { path, file: None }
    }

    pub(super) fn line(d: &LostDecision) -> Vec<u8> {
        let mut l = serde_json::to_vec(&JournalLine {
            tenant_id: d.tenant.clone(),
            agent_id: d.agent.clone(),
            entry_id: d.entry_id.to_string(),
            decision: d.decision.to_owned(),
        })
        .unwrap_or_default();
        l.push(b'\n');
        l
    }

    pub(super) fn file(&mut self) -> std::io::Result<&mut (std::fs::File, u64)> {
        if self.file.is_none() {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&self.path)?;
            let len = f.metadata()?.len();
            self.file = Some((f, len));
        }
        match &mut self.file {
            Some(f) => Ok(f),
            None => Err(std::io::Error::other("the journal is not open")),
        }
    }

    /// Notes a decision about to be answered.
    pub(super) fn note(&mut self, d: &LostDecision) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let line = Self::line(d);
        let (f, len) = self.file()?;
        f.write_all_at(&line, *len)?;
        *len += line.len() as u64;
        Ok(())
    }

    /// Makes the file hold `still` (the decisions not yet committed), rewritten in place:
    /// written over from the start, then cut to length. A crash between the two leaves old
    /// lines after the new ones, which the next start finds committed (or cut, and skips):
    /// a line still needed is never missing.
    pub(super) fn keep_only<'d>(
        &mut self,
        still: impl Iterator<Item = &'d LostDecision>,
    ) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt as _;
        let body: Vec<u8> = still.flat_map(Self::line).collect();
        // Nothing to keep and nothing there (a journal left by an earlier run was opened by
        // `recover`): no system call.
        if body.is_empty() && self.file.as_ref().is_none_or(|(_, len)| *len == 0) {
            return Ok(());
        }
        let (f, len) = self.file()?;
        if !body.is_empty() {
            f.write_all_at(&body, 0)?;
        }
        f.set_len(body.len() as u64)?;
        *len = body.len() as u64;
        Ok(())
    }

    /// The decisions a stopped run noted that the store does not hold (read at start).
    pub(super) fn recover(&mut self, store: &dyn Store) -> Vec<LostDecision> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Vec::new(),
            Err(e) => {
                tracing::error!(error = %e, path = %self.path.display(), "cannot read the journal of answered decisions");
                return Vec::new();
            }
        };
        if !text.is_empty()
            && let Err(e) = self.file()
        {
            tracing::error!(error = %e, path = %self.path.display(), "cannot open the journal of answered decisions");
        }
        let mut lost = Vec::new();
        for (i, l) in text.lines().enumerate() {
            // A line cut short by the crash is the only kind that can be unreadable.
            let Some((j, id)) = serde_json::from_str::<JournalLine>(l)
                .ok()
                .and_then(|j| uuid::Uuid::parse_str(&j.entry_id).ok().map(|id| (j, id)))
            else {
                tracing::warn!(
                    line = i + 1,
                    "an unreadable line in the journal of answered decisions"
                );
                continue;
            };
            match store.entry_by_id(id.as_bytes()) {
                Ok(Some(_)) => {}
                Ok(None) => lost.push(LostDecision {
                    tenant: j.tenant_id,
                    agent: j.agent_id,
                    entry_id: id,
                    decision: decision_name(&j.decision),
                    cause: LossCause::Stopped,
                }),
                Err(e) => tracing::error!(error = %e, "cannot look up an answered decision"),
            }
        }
        if !lost.is_empty() {
            tracing::warn!(
                count = lost.len(),
                "decisions the previous run answered before their commit are not in the chain; recording them as decisions_unrecorded"
            );
        }
        lost
    }
}

/// The static name of a decision read back from the journal.
pub(super) fn decision_name(d: &str) -> &'static str {
    match d {
        "allow" => "allow",
        "block" => "block",
        "throttle" => "throttle",
        "paused" => "paused",
        _ => "unknown",
    }
}

/// Most lost entry ids one `decisions_unrecorded` entry lists (the count covers them all).
pub(super) const LOST_IDS_PER_ENTRY: usize = 1000;

/// `decisions_unrecorded` entries, one per (tenant, agent), for decisions answered before a
/// commit that then failed (docs/FORMAT.md §14): the entry ids the agents were given do not
/// exist in the chain, and the chain says so.
pub(super) fn unrecorded_entries(lost: &[LostDecision]) -> Vec<NormalizedEvent> {
    let mut by: std::collections::BTreeMap<(&str, &str, LossCause), Vec<&LostDecision>> =
        std::collections::BTreeMap::new();
    for l in lost {
        by.entry((l.tenant.as_str(), l.agent.as_str(), l.cause))
            .or_default()
            .push(l);
    }
    let mut out = Vec::new();
    for ((tenant, agent, cause), ls) in by {
        let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
        for l in &ls {
            *counts.entry(l.decision).or_default() += 1;
        }
        let ids: Vec<String> = ls
            .iter()
            .take(LOST_IDS_PER_ENTRY)
            .map(|l| l.entry_id.to_string())
            .collect();
        let ev = json!({
            "tenant_id": tenant,
            "agent_id": agent,
            "session_id": "service",
            "event_type": "decisions_unrecorded",
            "payload": {
                "count": ls.len(),
                "decisions": counts,
                "entry_ids": ids,
                "reason": cause.reason(),
            },
        });
        match blackbox_core::event::normalize_json(
            ev.to_string().as_bytes(),
            &blackbox_core::entry::RedactionPolicy::default(),
            &blackbox_core::origin::Origin::Service,
        ) {
            Ok(ev) => out.push(ev),
            Err(e) => tracing::error!(error = %e, tenant, "cannot record lost decisions"),
        }
    }
    out
}

/// Rewrites the journal of answered decisions to `still` after a commit (errors are logged:
/// the journal only ever holds too much, which the next start checks against the store).
pub(super) fn note_committed<'d>(shared: &Shared, still: impl Iterator<Item = &'d LostDecision>) {
    if let Some(j) = &shared.journal
        && let Ok(mut j) = j.lock()
        && let Err(e) = j.keep_only(still)
    {
        tracing::error!(error = %e, "cannot rewrite the journal of answered decisions");
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn decision(n: u128) -> LostDecision {
        LostDecision {
            tenant: "acme".to_owned(),
            agent: format!("agent-{n}"),
            entry_id: uuid::Uuid::from_u128(n),
            decision: "allow",
            cause: LossCause::CommitFailed,
        }
    }

    fn lines(path: &std::path::Path) -> Vec<String> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| {
                let j: JournalLine = serde_json::from_str(l).unwrap();
                j.agent_id
            })
            .collect()
    }

    /// The journal holds every noted decision until a rewrite names what is still
    /// uncommitted, then exactly that; rewrites that shrink leave no stale tail.
    #[test]
    fn the_answered_journal_appends_then_keeps_exactly_what_is_uncommitted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("decisions-answered.jsonl");
        let mut j = AnsweredJournal::new(path.clone());
        // Nothing noted, nothing kept: no file is made.
        j.keep_only(std::iter::empty()).unwrap();
        assert!(!path.exists());
        let ds: Vec<LostDecision> = (1..=4).map(decision).collect();
        for d in &ds[..3] {
            j.note(d).unwrap();
        }
        assert_eq!(lines(&path), ["agent-1", "agent-2", "agent-3"]);
        j.keep_only([&ds[2]].into_iter()).unwrap();
        assert_eq!(lines(&path), ["agent-3"]);
        j.note(&ds[3]).unwrap();
        assert_eq!(lines(&path), ["agent-3", "agent-4"]);
        j.keep_only(std::iter::empty()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
        // A new run finds what an earlier one left, appends after it and can empty it.
        j.note(&ds[0]).unwrap();
        let mut again = AnsweredJournal::new(path.clone());
        again.note(&ds[1]).unwrap();
        assert_eq!(lines(&path), ["agent-1", "agent-2"]);
        again.keep_only(std::iter::empty()).unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "");
    }
}
