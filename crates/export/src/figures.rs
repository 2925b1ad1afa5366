//! The figures of a report, computed in one streamed pass over the period's entries (memory
//! bounded by the number of sessions and days, not by the number of entries), plus a
//! verification of the tenant's chain.

use std::collections::{BTreeMap, BinaryHeap, HashMap, HashSet};

use blackbox_core::entry::{EntryView, format_timestamp};
use blackbox_core::event::Node;
use blackbox_core::keys::Keyring;
use blackbox_core::note::NoteVerifier;
use blackbox_ledger::datadir::DataDir;
use blackbox_store::Store;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use crate::ExportError;

const DAY_MS: i64 = 86_400_000;

/// Gaps listed one by one (all are counted).
pub const MAX_GAPS_LISTED: usize = 1000;

/// A reporting period: whole UTC days, both ends included.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Period {
    /// First day, `YYYY-MM-DD`.
    pub start: String,
    /// Last day, `YYYY-MM-DD`.
    pub end: String,
    /// First millisecond.
    #[serde(skip)]
    pub start_ms: i64,
    /// Last millisecond.
    #[serde(skip)]
    pub end_ms: i64,
    /// A whole-log export: the population is every entry of these seqs (first and last kept),
    /// whatever their times; `start` and `end` are then the days of the earliest and latest
    /// writer time among them. `None`: the entries whose writer time is in the period.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seqs: Option<(u64, u64)>,
}

impl Period {
    /// Parses `YYYY-MM-DD/YYYY-MM-DD`.
    ///
    /// # Errors
    /// A message saying what is wrong and the expected form.
    pub fn parse(s: &str) -> Result<Self, ExportError> {
        let bad = |why: &str| {
            ExportError::Usage(format!(
                "--period {s:?}: {why}; write START/END as dates, e.g. 2025-01-01/2025-12-31 (both days included, UTC)"
            ))
        };
        let (a, b) = s
            .split_once('/')
            .ok_or_else(|| bad("no `/` between start and end"))?;
        let day = |d: &str| -> Result<i64, ExportError> {
            let date: jiff::civil::Date = d
                .trim()
                .parse()
                .map_err(|_| bad(&format!("`{d}` is not a date")))?;
            let ts = date
                .to_zoned_datetime(jiff::tz::TimeZone::UTC)
                .map_err(|_| bad(&format!("`{d}` is out of range")))?
                .timestamp();
            Ok(ts.as_millisecond())
        };
        let start_ms = day(a)?;
        let end_ms = day(b)? + DAY_MS - 1;
        if end_ms < start_ms {
            return Err(bad("the end is before the start"));
        }
        if end_ms - start_ms > 3700 * DAY_MS {
            return Err(bad("the period is longer than ten years"));
        }
        Ok(Self {
            start: a.trim().to_owned(),
            end: b.trim().to_owned(),
            start_ms,
            end_ms,
            seqs: None,
        })
    }

    /// Days in the period.
    #[must_use]
    pub fn days(&self) -> usize {
        usize::try_from((self.end_ms - self.start_ms) / DAY_MS + 1).unwrap_or(0)
    }
}

/// What was counted.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Population {
    /// Entries the service wrote in the period (by seq for a whole-log export).
    pub entries: u64,
    /// By event type.
    pub by_event_type: BTreeMap<String, u64>,
    /// By tool (tool calls).
    pub by_tool: BTreeMap<String, u64>,
    /// Distinct agents.
    pub agents: u64,
    /// Their ids, sorted (the report's scope).
    pub agent_ids: Vec<String>,
    /// Distinct sessions.
    pub sessions: u64,
    /// Lowest and highest seq among them.
    pub seq_range: Option<(u64, u64)>,
    /// The query that selects them, for the auditor.
    pub query: String,
}

/// A run of missing entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// `chain` (seq numbers missing from the chain) or `session` (an agent's `client_seq`
    /// numbers never received).
    pub kind: &'static str,
    /// Agent (session gaps).
    pub agent_id: Option<String>,
    /// Session (session gaps).
    pub session_id: Option<String>,
    /// First missing number.
    pub from: u64,
    /// Last missing number.
    pub to: u64,
}

/// Log completeness.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Completeness {
    /// Entries present.
    pub present: u64,
    /// Entries expected: present + missing.
    pub expected: u64,
    /// Seq numbers missing from the chain within the period's seq range.
    pub chain_missing: u64,
    /// Agents' `client_seq` numbers never received (inside a session's range, or up to a
    /// heartbeat's `last_client_seq`).
    pub session_missing: u64,
    /// Events received twice with the same `client_seq`.
    pub session_duplicates: u64,
    /// Sessions whose `client_seq` was checked.
    pub sessions_checked: u64,
    /// present / expected, percent, 4 decimals.
    pub percent: f64,
    /// Gaps, at most [`MAX_GAPS_LISTED`].
    pub gaps: Vec<Gap>,
    /// Gaps in all.
    pub gaps_total: u64,
}

/// Log integrity.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Integrity {
    /// `ok` or `tampered`.
    pub status: String,
    /// The verifier's one-line verdict.
    pub summary: String,
    /// Entries of the chain verified (the whole chain, not only the period).
    pub entries_verified: u64,
    /// HMACs verified per key id.
    pub hmac_by_key: BTreeMap<String, u64>,
    /// Checkpoint signatures verified.
    pub checkpoints_verified: u64,
    /// Largest checkpoint verified.
    pub largest_checkpoint: u64,
    /// The chain's head (entry hash) and Merkle root.
    pub head: String,
    /// Merkle root of the whole chain.
    pub root: String,
    /// Problems found (at most 50).
    pub findings: Vec<String>,
    /// Public key the signatures were checked with.
    pub public_key: String,
    /// Its fingerprint.
    pub public_key_fingerprint: String,
    /// The latest signed checkpoint: tree size, time, root (base64, as in the note).
    pub checkpoint: Option<CheckpointRef>,
    /// The chain's size when the figures were computed.
    pub chain_size: u64,
    /// Entries after the latest signed checkpoint (all of them without one): verified by their
    /// HMACs and hash links, but not yet covered by a signature the public key checks.
    pub after_checkpoint: u64,
}

/// A checkpoint the figures were computed against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckpointRef {
    /// Tree size.
    pub size: u64,
    /// When it was signed.
    pub timestamp: String,
    /// Merkle root, base64 (as in the note).
    pub root: String,
    /// The signed note.
    pub note: String,
}

/// Alerts of one rule and action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleCount {
    /// Rule.
    pub rule: String,
    /// Action.
    pub action: String,
    /// Severity.
    pub severity: String,
    /// Alerts.
    pub count: u64,
    /// Of which resolved (see [`Anomalies::resolution`]).
    pub resolved: u64,
}

/// Anomalies flagged.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Anomalies {
    /// `anomaly_detected` entries in the period.
    pub total: u64,
    /// Resolved among them.
    pub resolved: u64,
    /// Per rule and action.
    pub by_rule: Vec<RuleCount>,
    /// Agents paused and resumed in the period.
    pub paused: u64,
    /// Agents resumed in the period.
    pub resumed: u64,
    /// Rules files loaded (`rules_loaded` entries of the service, all tenants).
    pub resolution: String,
}

/// Retention.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Retention {
    /// The chain's first entry kept (store or archive), by the writer's clock.
    pub oldest_entry: Option<String>,
    /// The day the figure is as of: the earlier of the period's last day and the export's.
    pub as_of: String,
    /// Days the log reaches back as of `as_of`: from the oldest entry's day to `as_of`, both
    /// days counted (0 when the oldest entry is after `as_of`).
    pub oldest_age_days: u64,
    /// Required days.
    pub required_days: u64,
    /// Where the requirement comes from.
    pub requirement: String,
    /// Whether the log reaches back far enough.
    pub met: bool,
}

/// One sampled entry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct SampleRow {
    /// Entry id.
    pub entry_id: String,
    /// Seq.
    pub seq: u64,
    /// Time.
    pub timestamp: String,
    /// Agent.
    pub agent_id: String,
    /// Event type.
    pub event_type: String,
    /// Tool, for tool calls.
    pub tool: String,
    /// `authorization.decision`, else `allowed` / `denied`, else empty.
    pub decision: String,
    /// Who supplied the entry: `service`, `token`, `local` (FORMAT.md §2), or `none` (format v1).
    pub origin: String,
}

impl SampleRow {
    /// The row as table cells: seq, entry id, time, agent, event type, tool, decision, origin.
    #[must_use]
    pub fn cells(&self) -> Vec<String> {
        vec![
            self.seq.to_string(),
            self.entry_id.clone(),
            self.timestamp.clone(),
            self.agent_id.clone(),
            self.event_type.clone(),
            self.tool.clone(),
            self.decision.clone(),
            self.origin.clone(),
        ]
    }
}

/// One day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// Entries.
    pub entries: u64,
    /// Anomalies flagged.
    pub anomalies: u64,
}

/// Agents × tools × data classification (GDPR).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Touch {
    /// Agent.
    pub agent_id: String,
    /// Tool.
    pub tool: String,
    /// `result.data_classification`.
    pub data_classification: String,
    /// Calls.
    pub calls: u64,
}

/// Data subjects of one category (pseudonymous ids are counted, never listed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectCategory {
    /// Category.
    pub category: String,
    /// Distinct subjects.
    pub subjects: u64,
    /// Entries naming at least one subject of the category (each entry once).
    pub entries: u64,
    /// Mentions: subject ids of the category named, summed over the entries (an entry naming
    /// three customers counts three).
    pub mentions: u64,
}

/// Erasures (GDPR Art. 17) recorded in the period: erasure markers the service wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Erasures {
    /// Erasures carried out (one per erasure of this chain, however many markers it took).
    pub erasures: u64,
    /// Entries whose personal data they removed.
    pub entries_redacted: u64,
}

/// The oldest personal data an agent's entries still hold (GDPR storage limitation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PersonalKept {
    /// Agent.
    pub agent_id: String,
    /// The oldest entry of the agent that still holds personal data (not erased).
    pub seq: u64,
    /// Its writer time.
    pub written_at: String,
    /// Days kept as of the report's as-of day, both days counted.
    pub days_kept: u64,
    /// Entries of the agent holding personal data.
    pub entries: u64,
}

/// Every figure of a report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Figures {
    /// Tenant.
    pub tenant_id: String,
    /// What was counted.
    pub population: Population,
    /// Completeness.
    pub completeness: Completeness,
    /// Integrity.
    pub integrity: Integrity,
    /// Anomalies.
    pub anomalies: Anomalies,
    /// Retention.
    pub retention: Retention,
    /// The random sample.
    pub sample: Vec<SampleRow>,
    /// Its seed.
    pub sample_seed: String,
    /// Per day.
    pub daily: Vec<Day>,
    /// Agents × tools × classification.
    pub touches: Vec<Touch>,
    /// Data subjects by category (only with `--include-data-subjects true`).
    pub data_subjects: Option<Vec<SubjectCategory>>,
    /// Erasures recorded in the period.
    pub erasures: Erasures,
    /// Per agent, the oldest personal data the chain still holds (GDPR reports only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal_kept: Option<Vec<PersonalKept>>,
    /// The alert register: every alert of the period, tested, and the rules versions.
    pub alerts: crate::alerts::AlertRegister,
}

/// A set of numbers as sorted, disjoint, non-adjacent ranges (cheap for mostly increasing input).
#[derive(Debug, Default)]
struct RangeSet {
    ranges: Vec<(u64, u64)>,
    duplicates: u64,
}

impl RangeSet {
    fn insert(&mut self, n: u64) {
        if let Some(last) = self.ranges.last_mut() {
            if n == last.1 + 1 {
                last.1 = n;
                return;
            }
            if n > last.1 + 1 {
                self.ranges.push((n, n));
                return;
            }
        } else {
            self.ranges.push((n, n));
            return;
        }
        // Out of order: find its place.
        let i = self.ranges.partition_point(|r| r.1 < n);
        if let Some(r) = self.ranges.get(i)
            && r.0 <= n
        {
            self.duplicates += 1;
            return;
        }
        let joins_prev = i > 0 && self.ranges.get(i - 1).is_some_and(|p| p.1 + 1 == n);
        let joins_next = self.ranges.get(i).is_some_and(|r| r.0 == n + 1);
        match (joins_prev, joins_next) {
            (true, true) => {
                let hi = self.ranges[i].1;
                self.ranges[i - 1].1 = hi;
                self.ranges.remove(i);
            }
            (true, false) => self.ranges[i - 1].1 = n,
            (false, true) => self.ranges[i].0 = n,
            (false, false) => self.ranges.insert(i, (n, n)),
        }
    }
}

#[derive(Default)]
struct SessionState {
    seen: RangeSet,
    heartbeat_max: u64,
}

fn get<'n, 'a>(o: &'n [(std::borrow::Cow<'a, str>, Node<'a>)], key: &str) -> Option<&'n Node<'a>> {
    o.binary_search_by(|(k, _)| k.as_ref().cmp(key))
        .ok()
        .and_then(|i| o.get(i))
        .map(|(_, v)| v)
}

fn obj<'n, 'a>(
    o: &'n [(std::borrow::Cow<'a, str>, Node<'a>)],
    key: &str,
) -> Option<&'n [(std::borrow::Cow<'a, str>, Node<'a>)]> {
    match get(o, key) {
        Some(Node::Obj(m)) => Some(m),
        _ => None,
    }
}

fn str_of<'n>(n: Option<&'n Node<'_>>) -> Option<&'n str> {
    match n {
        Some(Node::Str(s)) => Some(s),
        _ => None,
    }
}

/// Counts `k` without allocating when it is known already.
fn bump(m: &mut BTreeMap<String, u64>, k: &str) {
    match m.get_mut(k) {
        Some(n) => *n += 1,
        None => {
            m.insert(k.to_owned(), 1);
        }
    }
}

/// `authorization.decision`, else `allowed` / `denied`, else empty.
fn decision(pl: &[(std::borrow::Cow<'_, str>, Node<'_>)]) -> String {
    obj(pl, "authorization").map_or(String::new(), |a| {
        str_of(get(a, "decision")).map_or_else(
            || match get(a, "allowed") {
                Some(Node::Bool(true)) => "allowed".to_owned(),
                Some(Node::Bool(false)) => "denied".to_owned(),
                _ => String::new(),
            },
            str::to_owned,
        )
    })
}

/// What to compute.
#[derive(Debug, Clone)]
pub struct Request {
    /// Tenant.
    pub tenant: String,
    /// Period.
    pub period: Period,
    /// Sample size.
    pub sample_size: usize,
    /// Sample seed (any text; the same seed gives the same sample).
    pub seed: String,
    /// Count data subjects by category.
    pub data_subjects: bool,
    /// Required retention (days) and where it comes from.
    pub retention: (u64, String),
    /// When the export is made (Unix ms, the service's clock).
    pub now_ms: i64,
    /// Find, per agent, the oldest personal data the chain still holds (a pass over the whole
    /// chain; GDPR reports).
    pub personal_ages: bool,
    /// Alerts are due for triage within this many hours, and where that comes from.
    pub triage_hours: (u64, String),
}

fn time(ms: i64) -> String {
    format_timestamp(ms).unwrap_or_else(|_| ms.to_string())
}

/// The period of a whole-log export of `tenant`: every entry kept (in the store or the
/// archive's live segments) by seq, with the days of the earliest and latest writer time among
/// them (a clock that stepped back cannot drop an entry from it).
///
/// # Errors
/// Store or archive failures, or a chain without entries.
pub fn whole_log_period(dir: &DataDir, tenant: &str) -> Result<Period, ExportError> {
    let store = blackbox_ledger::open::open_reader(dir)?;
    let size = store
        .chains()?
        .into_iter()
        .find(|h| h.tenant_id == tenant)
        .map_or(0, |h| h.size);
    let archive = open_archive(dir, &store, tenant)?;
    let reader = archive_reader(archive.as_ref(), &store)?;
    let mut first: Option<u64> = None;
    let (mut lo, mut hi) = (i64::MAX, i64::MIN);
    chain_lines(
        &store,
        reader.as_ref(),
        tenant,
        1,
        size,
        &mut |seq, line, _| {
            let written = match blackbox_core::line_scan::scan(line) {
                Some(x) => Some(x.written_ms()),
                None => EntryView::parse(line).ok().map(|v| v.written_ms),
            };
            if let Some(w) = written {
                first.get_or_insert(seq);
                lo = lo.min(w);
                hi = hi.max(w);
            }
            Ok(true)
        },
    )?;
    let Some(first) = first else {
        return Err(ExportError::EmptyPeriod(format!(
            "tenant `{tenant}` has no entries: nothing to report"
        )));
    };
    let day = |ms: i64| time(ms).get(..10).unwrap_or_default().to_owned();
    let mut p = Period::parse(&format!("{}/{}", day(lo), day(hi)))?;
    p.seqs = Some((first, size));
    Ok(p)
}

/// Computes every figure for `req` from the data directory, in named steps: find the chain,
/// `count` it (one pass), then `completeness`, `anomalies`, `retention` and `tables`,
/// while the chain is verified on another core.
///
/// # Errors
/// Store and key failures, or a period without entries.
pub fn compute(
    dir: &DataDir,
    req: &Request,
    deliveries: &crate::alerts::DeliveryRecords<'_>,
) -> Result<Figures, ExportError> {
    let store = blackbox_ledger::open::open_reader(dir)?;
    let archive = open_archive(dir, &store, &req.tenant)?;
    let archived = archive_reader(archive.as_ref(), &store)?;
    // The chain is verified on another core while the figures are counted.
    let verification = {
        let (d, t) = (dir.clone(), req.tenant.clone());
        std::thread::spawn(move || integrity(&d, &t))
    };
    compute_on(
        &store,
        archived.as_ref(),
        &dir.root().display().to_string(),
        req,
        deliveries,
        move || {
            verification
                .join()
                .map_err(|_| ExportError::Usage("the verification thread failed".into()))?
        },
    )
}

/// Computes every figure for `req` from an exported JSONL log (docs/FORMAT.md §8): what a
/// bundle's report is made from and what `export reperform` does offline. The chain is
/// verified with `verifier` and, when given, the HMAC keys; deliveries to the SIEM are read
/// from `deliveries` (offline: not at all).
///
/// # Errors
/// As [`compute`].
pub fn compute_from_log(
    log: &crate::logfile::LogFileStore,
    keys: Option<Keyring>,
    verifier: NoteVerifier,
    req: &Request,
    deliveries: &crate::alerts::DeliveryRecords<'_>,
) -> Result<Figures, ExportError> {
    let verification = {
        let (mut s, t) = (log.clone(), req.tenant.clone());
        std::thread::spawn(move || integrity_of(&mut s, None, keys.as_ref(), verifier, &t))
    };
    compute_on(log, None, "the log file", req, deliveries, move || {
        verification
            .join()
            .map_err(|_| ExportError::Usage("the verification thread failed".into()))?
    })
}

fn compute_on(
    store: &dyn Store,
    archived: Option<&blackbox_archive::run::ArchiveReader<'_>>,
    where_: &str,
    req: &Request,
    deliveries: &crate::alerts::DeliveryRecords<'_>,
    verification: impl FnOnce() -> Result<Integrity, ExportError>,
) -> Result<Figures, ExportError> {
    let heads = store.chains()?;
    let Some(head) = heads.iter().find(|h| h.tenant_id == req.tenant) else {
        let known: Vec<&str> = heads.iter().map(|h| h.tenant_id.as_str()).collect();
        return Err(ExportError::Usage(format!(
            "no chain for tenant `{}` in {where_}; tenants: {}",
            req.tenant,
            if known.is_empty() {
                "none".to_owned()
            } else {
                known.join(", ")
            }
        )));
    };
    let p = &req.period;
    let mut f = Figures {
        tenant_id: req.tenant.clone(),
        sample_seed: req.seed.clone(),
        ..Figures::default()
    };
    f.population.query = match p.seqs {
        Some((a, b)) => format!(
            "tenant_id = {} AND {a} <= seq <= {b}: the whole log (blackbox export-log --tenant-id {})",
            req.tenant, req.tenant
        ),
        None => format!(
            "tenant_id = {} AND {} <= written_at <= {} (blackbox query --tenant-id {} --start {} --end {})",
            req.tenant,
            time(p.start_ms),
            time(p.end_ms),
            req.tenant,
            time(p.start_ms),
            time(p.end_ms)
        ),
    };
    let mut t = count(store, archived, req, head.size, &mut f)?;
    if f.population.entries == 0 {
        return Err(ExportError::EmptyPeriod(format!(
            "tenant `{}` has no entries between {} and {}: nothing to report; check --period and --tenant-id",
            req.tenant, p.start, p.end
        )));
    }
    f.population.agents = t.agents.len() as u64;
    f.population.agent_ids = t.agents.iter().cloned().collect();
    f.population.agent_ids.sort_unstable();
    f.population.sessions = t.sessions.len() as u64;
    f.population.seq_range = Some((t.min_seq, t.max_seq));

    f.completeness = completeness(
        store,
        archived,
        &req.tenant,
        (t.min_seq, t.max_seq),
        f.population.entries,
        &t.sessions,
    )?;
    if req.personal_ages {
        f.personal_kept = Some(personal_kept(store, archived, req, head.size)?);
    }
    if let Some(r) = retention(store, archived, req)? {
        f.retention = r;
    }
    let collector = std::mem::take(&mut t.alerts_seen);
    tables(&mut f, req, t);
    f.integrity = verification()?;
    f.alerts = collector.finish(
        store,
        &req.tenant,
        (p.start_ms, req.now_ms),
        deliveries,
        req.triage_hours.clone(),
        (&req.seed, req.sample_size),
        f.integrity.status == "ok",
    )?;
    anomalies(&mut f.anomalies, &f.alerts);
    Ok(f)
}

/// What one pass over the chain counted, for the steps after it.
struct Tally {
    daily: Vec<(u64, u64)>,
    agents: HashSet<String>,
    /// Keyed by `agent \0 session`.
    sessions: HashMap<String, SessionState>,
    min_seq: u64,
    max_seq: u64,
    alerts_seen: crate::alerts::Collector,
    touches: BTreeMap<String, u64>,
    /// Per category: distinct subjects, entries, mentions.
    subjects: BTreeMap<String, (HashSet<[u8; 16]>, u64, u64)>,
    heap: BinaryHeap<([u8; 32], SampleRow)>,
}

/// Step 1: one pass over the chain (archive segments from the first reaching into the period,
/// then the store) counting the population into `f` and everything the later steps need.
#[allow(clippy::too_many_lines)]
fn count(
    store: &dyn Store,
    archived: Option<&blackbox_archive::run::ArchiveReader<'_>>,
    req: &Request,
    head_size: u64,
    f: &mut Figures,
) -> Result<Tally, ExportError> {
    let p = &req.period;
    let days = p.days();
    let mut daily = vec![(0u64, 0u64); days];
    let mut agents: HashSet<String> = HashSet::new();
    // Keyed by `agent \0 session`.
    let mut sessions: HashMap<String, SessionState> = HashMap::new();
    let mut min_seq = u64::MAX;
    let mut max_seq = 0u64;
    let mut alerts_seen = crate::alerts::Collector::default();
    let mut touches: BTreeMap<String, u64> = BTreeMap::new();
    let mut subjects: BTreeMap<String, (HashSet<[u8; 16]>, u64, u64)> = BTreeMap::new();
    let mut categories_seen: Vec<String> = Vec::new();
    // Bottom-k sample: the k entries with the smallest SHA-256(seed, tenant, seq).
    let mut heap: BinaryHeap<([u8; 32], SampleRow)> = BinaryHeap::new();
    let seed_prefix = format!("{}\n{}\n", req.seed, req.tenant);
    let mut bad_lines = 0u64;
    // The chain is read in seq order (sequential reads; the verification reads it all anyway)
    // and entries outside the period are skipped.
    let mut key = String::new();
    // Archived segments from the first one reaching into the period.
    let first_seq = match p.seqs {
        Some((a, _)) => a,
        None => archived
            .and_then(|a| a.segments.get(&req.tenant))
            .and_then(|segs| segs.iter().find(|s| s.last_ts_ms >= p.start_ms))
            .map_or(1, |s| s.first_seq),
    };
    chain_lines(
        store,
        archived,
        &req.tenant,
        first_seq,
        head_size,
        &mut |_seq, line, personal| {
            // The envelope through the lean scanner (the full parser only when it declines, or
            // when the payload is needed).
            let fast = blackbox_core::line_scan::scan(line);
            let first = if fast.is_none() {
                if let Ok(v) = EntryView::parse(line) {
                    Some(v)
                } else {
                    bad_lines += 1;
                    return Ok(true);
                }
            } else {
                None
            };
            // Periods, days and ages are the writer's time (`written_at`: the agent's claimed
            // `timestamp` is not evidence of when anything was recorded).
            let (seq, ts_ms, agent, session, et, client_seq, by_service): (
                u64,
                i64,
                &str,
                &str,
                &str,
                Option<u64>,
                bool,
            ) = match (&fast, &first) {
                (Some(x), _) => (
                    x.seq,
                    x.written_ms(),
                    x.agent_id,
                    x.session_id,
                    x.event_type,
                    x.client_seq,
                    x.origin == Some(blackbox_core::origin::SERVICE_JCS),
                ),
                (None, Some(v)) => (
                    v.seq,
                    v.written_ms,
                    &v.agent_id,
                    &v.session_id,
                    &v.event_type,
                    v.client_seq,
                    v.by_service(),
                ),
                (None, None) => return Ok(true),
            };
            // The service's entry types count only when the service wrote them.
            let et = if blackbox_core::origin::is_reserved(et) && !by_service {
                "unattributed"
            } else {
                et
            };
            // Triage and enforcement of the period's alerts, also when they come after it.
            if by_service
                && matches!(
                    et,
                    blackbox_core::alert::ACKNOWLEDGED
                        | blackbox_core::alert::RESOLVED
                        | "agent_paused"
                        | "agent_throttled"
                )
                && let Ok(v) = EntryView::parse(line)
                && let Ok(pv) = serde_json::from_str::<serde_json::Value>(v.payload.get())
            {
                let id = v.entry_id.to_string();
                if et.starts_with("alert_") {
                    alerts_seen.triage(et, &pv, (&id, seq, ts_ms));
                } else {
                    alerts_seen.enforcement(&pv, &id);
                }
            }
            let member = match p.seqs {
                Some((a, b)) => (a..=b).contains(&seq),
                None => (p.start_ms..=p.end_ms).contains(&ts_ms),
            };
            if !member {
                return Ok(true);
            }
            if et == blackbox_core::erasure::EVENT_TYPE
                && by_service
                && let Ok(v) = EntryView::parse(line)
                && let Ok(m) =
                    serde_json::from_str::<blackbox_core::erasure::MarkerPayload>(v.payload.get())
            {
                f.erasures.erasures += u64::from(m.part == 1);
                f.erasures.entries_redacted += m.count;
            }
            let pop = &mut f.population;
            pop.entries += 1;
            bump(&mut pop.by_event_type, et);
            min_seq = min_seq.min(seq);
            max_seq = max_seq.max(seq);
            if !agents.contains(agent) {
                agents.insert(agent.to_string());
            }
            let day = usize::try_from((ts_ms - p.start_ms) / DAY_MS).unwrap_or(0);
            // An alert of the period, read once (a shadow rule's record is not one).
            let alert = (et == blackbox_core::alert::ALERT)
                .then(|| {
                    let v = EntryView::parse(line).ok()?;
                    let pv = serde_json::from_str::<serde_json::Value>(v.payload.get()).ok()?;
                    (!blackbox_core::alert::is_shadow(&pv)).then(|| (v.entry_id.to_string(), pv))
                })
                .flatten();
            let is_anomaly = alert.is_some();
            if let Some(d) = daily.get_mut(day) {
                d.0 += 1;
                d.1 += u64::from(is_anomaly);
            }
            // The sample rank first: the payload is read only for the event types that need it and
            // for entries that enter the sample.
            let rank: Option<[u8; 32]> = (req.sample_size > 0).then(|| {
                let mut h = Sha256::new();
                h.update(seed_prefix.as_bytes());
                h.update(seq.to_string().as_bytes());
                h.finalize().into()
            });
            let candidate = rank.is_some_and(|r| {
                heap.len() < req.sample_size || heap.peek().is_some_and(|(top, _)| r < *top)
            });
            let needs_payload =
                candidate || matches!(et, "tool_call" | "anomaly_detected" | "heartbeat");
            // The payload: straight from the line when the lean scanner read it (the envelope's
            // members before `payload` are restricted strings, so its first `"payload":` is the
            // envelope's), else from the full parse.
            let payload: Option<Node<'_>> = if !needs_payload {
                None
            } else if let Some(v) = &first {
                serde_json::from_str(v.payload.get()).ok()
            } else {
                memchr::memmem::find(line, b"\"payload\":").and_then(|at| {
                    let rest = line.get(at + 10..)?;
                    let mut de = serde_json::Deserializer::from_slice(rest);
                    serde::Deserialize::deserialize(&mut de).ok()
                })
            };
            let empty = Vec::new();
            let pl = match &payload {
                Some(Node::Obj(o)) => o.as_slice(),
                _ => empty.as_slice(),
            };
            let tool = str_of(get(pl, "tool_name")).unwrap_or("");
            if et == "tool_call" && !tool.is_empty() {
                bump(&mut pop.by_tool, tool);
                let class = obj(pl, "result")
                    .and_then(|r| str_of(get(r, "data_classification")))
                    .unwrap_or("unclassified");
                // Keyed by `agent \0 tool \0 classification`; allocated once per combination.
                key.clear();
                key.push_str(agent);
                key.push('\0');
                key.push_str(tool);
                key.push('\0');
                key.push_str(class);
                bump(&mut touches, &key);
            }
            // The agent's own counter.
            key.clear();
            key.push_str(agent);
            key.push('\0');
            key.push_str(session);
            if !sessions.contains_key(key.as_str()) {
                sessions.insert(key.clone(), SessionState::default());
            }
            {
                if let Some(s) = sessions.get_mut(key.as_str()) {
                    if let Some(c) = client_seq {
                        s.seen.insert(c);
                    }
                    if et == "heartbeat"
                        && let Some(Node::Pos(last)) = get(pl, "last_client_seq")
                    {
                        s.heartbeat_max = s.heartbeat_max.max(*last);
                    }
                }
            }
            match et {
                "anomaly_detected" => {
                    if let Some((id, pv)) = &alert {
                        alerts_seen.alert((id, seq, ts_ms), (agent, session), pv);
                    }
                }
                "agent_paused" => f.anomalies.paused += 1,
                "agent_resumed" => f.anomalies.resumed += 1,
                _ => {}
            }
            alerts_seen.note(
                match (&fast, &first) {
                    (Some(x), _) => x.entry_id,
                    (None, Some(v)) => v.entry_id.as_u128(),
                    (None, None) => 0,
                },
                seq,
                et,
                tool,
            );
            if let (true, Some(rank)) = (candidate, rank) {
                let entry_id = match (&fast, &first) {
                    (Some(x), _) => uuid::Uuid::from_u128(x.entry_id).to_string(),
                    (None, Some(v)) => v.entry_id.to_string(),
                    (None, None) => String::new(),
                };
                heap.push((
                    rank,
                    SampleRow {
                        entry_id,
                        seq,
                        timestamp: time(ts_ms),
                        agent_id: agent.to_string(),
                        event_type: et.to_string(),
                        tool: tool.to_owned(),
                        decision: decision(pl),
                        origin: match (&fast, &first) {
                            (Some(x), _) => x.origin.and_then(|o| {
                                blackbox_core::line_scan::OriginKind::of_jcs(o.as_bytes())
                            }),
                            (None, Some(v)) => v.origin.as_ref().map(Into::into),
                            (None, None) => None,
                        }
                        .map_or("none", blackbox_core::line_scan::OriginKind::as_str)
                        .to_owned(),
                    },
                ));
                if heap.len() > req.sample_size {
                    heap.pop();
                }
            }
            if req.data_subjects
                && let Some(side) = personal
                && let Ok(serde_json::Value::Object(sc)) =
                    serde_json::from_slice::<serde_json::Value>(side)
                && let Some(serde_json::Value::Object(fields)) = sc.get("fields")
                && let Some(serde_json::Value::Array(list)) = fields.get("data_subjects")
            {
                categories_seen.clear();
                for s in list {
                    let (id, cat) = match s {
                        serde_json::Value::String(id) => (id.clone(), "unspecified".to_owned()),
                        serde_json::Value::Object(o) => (
                            o.get("id")
                                .and_then(serde_json::Value::as_str)
                                .unwrap_or("")
                                .to_owned(),
                            o.get("category")
                                .and_then(serde_json::Value::as_str)
                                .unwrap_or("unspecified")
                                .to_owned(),
                        ),
                        _ => continue,
                    };
                    let digest: [u8; 32] = Sha256::digest(id.as_bytes()).into();
                    let mut short = [0u8; 16];
                    short.copy_from_slice(&digest[..16]);
                    let first_of_entry = !categories_seen.contains(&cat);
                    if first_of_entry {
                        categories_seen.push(cat.clone());
                    }
                    let entry = subjects.entry(cat).or_default();
                    entry.0.insert(short);
                    entry.1 += u64::from(first_of_entry);
                    entry.2 += 1;
                }
            }
            Ok(true)
        },
    )?;
    Ok(Tally {
        daily,
        agents,
        sessions,
        min_seq,
        max_seq,
        alerts_seen,
        touches,
        subjects,
        heap,
    })
}

/// Step 2, completeness: chain continuity over the period's seq range, then each session's
/// counter (`present` entries were counted in the period).
fn completeness(
    store: &dyn Store,
    archived: Option<&blackbox_archive::run::ArchiveReader<'_>>,
    tenant: &str,
    (min_seq, max_seq): (u64, u64),
    present: u64,
    sessions: &HashMap<String, SessionState>,
) -> Result<Completeness, ExportError> {
    let mut present_in_range = 0u64;
    let mut last = min_seq.saturating_sub(1);
    let mut gaps: Vec<Gap> = Vec::new();
    let mut gaps_total = 0u64;
    let mut chain_missing = 0u64;
    chain_lines(
        store,
        archived,
        tenant,
        min_seq,
        max_seq,
        &mut |seq, _, _| {
            if seq > last + 1 {
                chain_missing += seq - last - 1;
                gaps_total += 1;
                if gaps.len() < MAX_GAPS_LISTED {
                    gaps.push(Gap {
                        kind: "chain",
                        agent_id: None,
                        session_id: None,
                        from: last + 1,
                        to: seq - 1,
                    });
                }
            }
            last = seq;
            present_in_range += 1;
            Ok(true)
        },
    )?;
    if last < max_seq {
        chain_missing += max_seq - last;
        gaps_total += 1;
        if gaps.len() < MAX_GAPS_LISTED {
            gaps.push(Gap {
                kind: "chain",
                agent_id: None,
                session_id: None,
                from: last + 1,
                to: max_seq,
            });
        }
    }
    let mut session_missing = 0u64;
    let mut duplicates = 0u64;
    let mut keys: Vec<&String> = sessions.keys().collect();
    keys.sort();
    let mut checked = 0u64;
    for k in keys {
        let s = &sessions[k];
        duplicates += s.seen.duplicates;
        let r = &s.seen.ranges;
        if r.is_empty() && s.heartbeat_max == 0 {
            continue;
        }
        checked += 1;
        let mut holes: Vec<(u64, u64)> = r.windows(2).map(|w| (w[0].1 + 1, w[1].0 - 1)).collect();
        let top = r.last().map_or(0, |x| x.1);
        if s.heartbeat_max > top {
            holes.push((if r.is_empty() { 1 } else { top + 1 }, s.heartbeat_max));
        }
        for (a, b) in holes {
            session_missing += b - a + 1;
            gaps_total += 1;
            if gaps.len() < MAX_GAPS_LISTED {
                let (agent, session) = k.split_once('\0').unwrap_or((k.as_str(), ""));
                gaps.push(Gap {
                    kind: "session",
                    agent_id: Some(agent.to_owned()),
                    session_id: Some(session.to_owned()),
                    from: a,
                    to: b,
                });
            }
        }
    }
    let expected = present + chain_missing + session_missing;
    #[allow(clippy::cast_precision_loss)]
    let percent = ((present as f64 / expected as f64) * 100.0 * 10_000.0).round() / 10_000.0;
    let _ = present_in_range;
    Ok(Completeness {
        present,
        expected,
        chain_missing,
        session_missing,
        session_duplicates: duplicates,
        sessions_checked: checked,
        percent,
        gaps,
        gaps_total,
    })
}

/// Step 3, anomalies, from the alert register: resolved when a person resolved the alert
/// (docs/FORMAT.md §14), nothing else: not a resume, a throttle's end or an enforced block, and
/// nothing an agent can write.
fn anomalies(a: &mut Anomalies, register: &crate::alerts::AlertRegister) {
    let mut by_rule: BTreeMap<(String, String, String), (u64, u64)> = BTreeMap::new();
    let named = |s: &str| {
        if s.is_empty() {
            "?".to_owned()
        } else {
            s.to_owned()
        }
    };
    for x in &register.alerts {
        let c = by_rule
            .entry((named(&x.rule), named(&x.action), named(&x.severity)))
            .or_default();
        c.0 += 1;
        c.1 += u64::from(x.state == "resolved");
    }
    a.total = register.alerts.len() as u64;
    a.resolved = by_rule.values().map(|c| c.1).sum();
    a.by_rule = by_rule
        .into_iter()
        .map(|((rule, action, severity), (count, resolved))| RuleCount {
            rule,
            action,
            severity,
            count,
            resolved,
        })
        .collect();
    a.resolution = "resolved: an alert_resolved entry names the alert (triage by an admin token or the local CLI, recorded by the service; true_positive, false_positive or accepted_risk), in the period or after it; every other alert is open or acknowledged".into();
}

/// GDPR storage limitation: per agent, the oldest entry of the whole chain (store and archive)
/// that still holds personal data (a sidecar not erased), with its age as of the report.
fn personal_kept(
    store: &dyn Store,
    archived: Option<&blackbox_archive::run::ArchiveReader<'_>>,
    req: &Request,
    head_size: u64,
) -> Result<Vec<PersonalKept>, ExportError> {
    let as_of = req.period.end_ms.min(req.now_ms);
    // agent -> (oldest seq, its writer time, entries with personal data)
    let mut by_agent: BTreeMap<String, (u64, i64, u64)> = BTreeMap::new();
    chain_lines(
        store,
        archived,
        &req.tenant,
        1,
        head_size,
        &mut |seq, line, personal| {
            if personal.is_none() {
                return Ok(true);
            }
            let (agent, written) = match blackbox_core::line_scan::scan(line) {
                Some(x) => (x.agent_id.to_owned(), x.written_ms()),
                None => match EntryView::parse(line) {
                    Ok(v) => (v.agent_id.into_owned(), v.written_ms),
                    Err(_) => return Ok(true),
                },
            };
            let e = by_agent.entry(agent).or_insert((seq, written, 0));
            if written < e.1 {
                (e.0, e.1) = (seq, written);
            }
            e.2 += 1;
            Ok(true)
        },
    )?;
    Ok(by_agent
        .into_iter()
        .map(|(agent_id, (seq, written, entries))| PersonalKept {
            agent_id,
            seq,
            written_at: time(written),
            days_kept: days_inclusive(written, as_of),
            entries,
        })
        .collect())
}

/// Calendar days (UTC) from the day of `from_ms` to the day of `to_ms`, both counted: the same
/// day is 1, a log from 1 January to 31 December of 2025 covers 365; 0 when `from_ms` is on a
/// later day.
#[must_use]
pub fn days_inclusive(from_ms: i64, to_ms: i64) -> u64 {
    let (a, b) = (from_ms.div_euclid(DAY_MS), to_ms.div_euclid(DAY_MS));
    u64::try_from(b - a + 1).unwrap_or(0)
}

/// Step 4, retention: how far back the chain's first entry kept (in the archive's first live
/// segment, or the store's first) reaches, in days counted both ends, as of the earlier of the
/// period's end and the export's time.
fn retention(
    store: &dyn Store,
    archived: Option<&blackbox_archive::run::ArchiveReader<'_>>,
    req: &Request,
) -> Result<Option<Retention>, ExportError> {
    let p = &req.period;
    let mut oldest = None;
    // (The oldest entry kept: in the archive's first live segment, or the store's first.)
    let oldest_seq = archived
        .and_then(|a| a.segments.get(&req.tenant))
        .and_then(|segs| segs.first())
        .map(|s| s.first_seq)
        .or(store.anchor(&req.tenant)?.map(|a| a.size + 1))
        .unwrap_or(1);
    chain_lines(
        store,
        archived,
        &req.tenant,
        oldest_seq,
        oldest_seq,
        &mut |_, line, _| {
            oldest = EntryView::parse(line).ok().map(|v| v.written_ms);
            Ok(false)
        },
    )?;
    let (required, requirement) = req.retention.clone();
    let as_of = p.end_ms.min(req.now_ms);
    Ok(oldest.map(|o| {
        let age = days_inclusive(o, as_of);
        Retention {
            oldest_entry: Some(time(o)),
            as_of: time(as_of).get(..10).unwrap_or_default().to_owned(),
            oldest_age_days: age,
            required_days: required,
            requirement,
            met: age >= required,
        }
    }))
}

/// Step 5, the tables: the sample in seq order, entries per day, data touched, data subjects.
fn tables(f: &mut Figures, req: &Request, t: Tally) {
    let p = &req.period;
    let Tally {
        daily,
        touches,
        subjects,
        heap,
        ..
    } = t;
    // Sample, in seq order.
    let mut sample: Vec<SampleRow> = heap.into_iter().map(|(_, r)| r).collect();
    sample.sort_by_key(|r| r.seq);
    f.sample = sample;
    // Days after the export (a period that ends in the future) are not listed: nothing can be
    // in them yet.
    let last_day = p.end_ms.min(req.now_ms.max(p.start_ms));
    let listed = usize::try_from((last_day - p.start_ms) / DAY_MS + 1).unwrap_or(0);
    f.daily = daily
        .into_iter()
        .take(listed)
        .enumerate()
        .map(|(i, (entries, anomalies))| Day {
            date: time(p.start_ms + i64::try_from(i).unwrap_or(0) * DAY_MS)
                .get(..10)
                .unwrap_or_default()
                .to_owned(),
            entries,
            anomalies,
        })
        .collect();
    f.touches = touches
        .into_iter()
        .map(|(k, calls)| {
            let mut parts = k.splitn(3, '\0').map(str::to_owned);
            (
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                parts.next().unwrap_or_default(),
                calls,
            )
        })
        .map(|(agent_id, tool, data_classification, calls)| Touch {
            agent_id,
            tool,
            data_classification,
            calls,
        })
        .collect();
    if req.data_subjects {
        f.data_subjects = Some(
            subjects
                .into_iter()
                .map(|(category, (ids, entries, mentions))| SubjectCategory {
                    category,
                    subjects: ids.len() as u64,
                    entries,
                    mentions,
                })
                .collect(),
        );
    }
}

/// The archive of `dir`, opened when `tenant`'s chain has live archive segments (entries moved
/// out of the store by retention): the figures and the verification then read them too.
fn open_archive(
    dir: &DataDir,
    store: &dyn Store,
    tenant: &str,
) -> Result<Option<blackbox_archive::Archive>, ExportError> {
    let live = store
        .retention()?
        .archive_segments(tenant)?
        .iter()
        .any(|s| s.state == blackbox_store::SegmentState::Live);
    if !live {
        return Ok(None);
    }
    let config = blackbox_archive::settings::RetentionConfig::load(&dir.config_path())?;
    blackbox_archive::Archive::open(&config.archive_url, dir.root())
        .map(Some)
        .map_err(|e| {
            ExportError::Usage(format!(
                "entries of tenant `{tenant}` are archived but the archive cannot be opened: {e}"
            ))
        })
}

/// The reader of `archive`'s live segments (`None` without an archive).
/// Appends the live archive segments of `tenant`, in order, as JSONL (each segment as sealed:
/// it starts at its anchor record), for a log that reads as one stream with the store's part.
///
/// # Errors
/// Store or archive failures (a missing or altered segment).
pub(crate) fn archived_segments(
    dir: &DataDir,
    store: &dyn Store,
    tenant: &str,
    out: &mut Vec<u8>,
) -> Result<(), ExportError> {
    let archive = open_archive(dir, store, tenant)?;
    let Some(reader) = archive_reader(archive.as_ref(), store)? else {
        return Ok(());
    };
    for seg in reader.segments.get(tenant).into_iter().flatten() {
        let mut r = reader
            .open_segment(seg)
            .map_err(|e| ExportError::Usage(format!("reading the archive: {e}")))?;
        std::io::Read::read_to_end(&mut r, out).map_err(|cause| ExportError::Io {
            path: seg.object.clone(),
            cause,
        })?;
        if out.last().is_some_and(|b| *b != b'\n') {
            out.push(b'\n');
        }
    }
    Ok(())
}

fn archive_reader<'a>(
    archive: Option<&'a blackbox_archive::Archive>,
    store: &dyn Store,
) -> Result<Option<blackbox_archive::run::ArchiveReader<'a>>, ExportError> {
    archive
        .map(|a| blackbox_archive::run::ArchiveReader::new(a, store))
        .transpose()
        .map_err(|e| ExportError::Usage(format!("reading the archive: {e}")))
}

/// Entries `from ..= to` of `tenant` in seq order: from the archive's live segments first, then
/// from the store.
fn chain_lines(
    store: &dyn Store,
    archive: Option<&blackbox_archive::run::ArchiveReader<'_>>,
    tenant: &str,
    from: u64,
    to: u64,
    f: &mut blackbox_store::LineVisitor<'_>,
) -> Result<(), ExportError> {
    if let Some(a) = archive
        && let Some(segs) = a.segments.get(tenant)
    {
        for seg in segs {
            if seg.last_seq < from || seg.first_seq > to {
                continue;
            }
            let went_on = a
                .for_each_entry(seg, &mut |seq, line, personal| {
                    if seq < from {
                        return Ok(true);
                    }
                    if seq > to {
                        return Ok(false);
                    }
                    f(seq, line, personal)
                })
                .map_err(|e| ExportError::Usage(format!("reading the archive: {e}")))?;
            if !went_on {
                return Ok(());
            }
        }
    }
    store.scan_lines(tenant, from, to, f)?;
    Ok(())
}

fn integrity(dir: &DataDir, tenant: &str) -> Result<Integrity, ExportError> {
    let mut store = blackbox_ledger::open::open_reader(dir)?;
    let keys: Keyring = blackbox_ledger::datadir::load_keyring(&dir.hmac_keys_path())?;
    let verifier: NoteVerifier = blackbox_ledger::open::public_key(dir)?;
    let archive = open_archive(dir, &store, tenant)?;
    let reader = archive_reader(archive.as_ref(), &store)?;
    integrity_of(
        &mut store,
        reader
            .as_ref()
            .map(|r| r as &dyn blackbox_ledger::verify::ArchiveSource),
        Some(&keys),
        verifier,
        tenant,
    )
}

/// Verifies `tenant`'s chain in `store` (and its archive): HMACs when `keys` are given, hash
/// links, checkpoints with `verifier`.
fn integrity_of(
    store: &mut dyn Store,
    archive: Option<&dyn blackbox_ledger::verify::ArchiveSource>,
    keys: Option<&Keyring>,
    verifier: NoteVerifier,
    tenant: &str,
) -> Result<Integrity, ExportError> {
    let opts = blackbox_ledger::verify::StoreVerifyOptions {
        tenant: Some(tenant.to_owned()),
        trusted_checkpoints: Vec::new(),
        witness_policy: None,
    };
    let report = blackbox_ledger::verify::verify_chains_and_archive(
        store,
        archive,
        keys,
        Some(verifier.clone()),
        &opts,
        &|_| {},
    )?;
    let chain = report.chains.iter().find(|c| c.tenant_id == tenant);
    let checkpoint = store
        .checkpoints(tenant)?
        .into_iter()
        .max_by_key(|c| (c.size, c.ts_ms))
        .map(|c| {
            let root = c.note.lines().nth(2).unwrap_or("").to_owned();
            CheckpointRef {
                size: c.size,
                timestamp: time(c.ts_ms),
                root,
                note: c.note,
            }
        });
    let chain_size = store
        .chains()?
        .into_iter()
        .find(|h| h.tenant_id == tenant)
        .map_or(0, |h| h.size);
    let after_checkpoint = chain_size.saturating_sub(checkpoint.as_ref().map_or(0, |c| c.size));
    Ok(Integrity {
        chain_size,
        after_checkpoint,
        status: if report.ok() {
            "ok".into()
        } else {
            "tampered".into()
        },
        summary: blackbox_ledger::report::headline(&report),
        entries_verified: chain.map_or(0, |c| c.entries),
        hmac_by_key: report.hmac_valid_by_key.clone(),
        checkpoints_verified: chain.map_or(0, |c| c.checkpoints_verified),
        largest_checkpoint: chain.map_or(0, |c| c.largest_checkpoint),
        head: chain.map_or_else(String::new, |c| c.head.to_prefixed()),
        root: chain.map_or_else(String::new, |c| c.root.to_prefixed()),
        findings: report
            .findings
            .iter()
            .take(50)
            .map(|x| format!("{} seq {}: {} ({})", x.tenant_id, x.seq, x.message, x.kind))
            .collect(),
        public_key: verifier.to_vkey(),
        public_key_fingerprint: verifier.fingerprint(),
        checkpoint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_are_counted_both_ends_by_calendar_day() {
        let day = |d: &str| Period::parse(&format!("{d}/{d}")).unwrap().start_ms;
        // A log covering all of 2025 covers 365 days, whatever the hours.
        let last = Period::parse("2025-12-31/2025-12-31").unwrap().end_ms;
        assert_eq!(days_inclusive(day("2025-01-01"), last), 365);
        assert_eq!(days_inclusive(day("2025-01-01") + 3_600_000, last - 1), 365);
        assert_eq!(days_inclusive(day("2024-01-01"), day("2024-12-31")), 366);
        // The same day is one day; a start after the end is none.
        assert_eq!(
            days_inclusive(day("2025-06-01") + 5, day("2025-06-01") + 9),
            1
        );
        assert_eq!(days_inclusive(day("2025-06-02"), day("2025-06-01")), 0);
        // Before 1970 too (days are floored, not truncated toward zero).
        assert_eq!(days_inclusive(-1, 0), 2);
    }
}
