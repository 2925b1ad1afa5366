//! The writer: one thread owns the store and the signing keys and commits what the request
//! handlers hand it, in groups.
//!
//! Handlers validate and normalise events on their own (in parallel), then queue a job and wait
//! for its reply. The writer takes every job that is waiting, appends them all, commits once
//! (one fsync for the whole group) and answers each job with its entries: requests that arrive
//! together share a commit, so durability does not cost one fsync per request. A failed commit
//! (disk full, I/O error) rolls the whole group back and answers each job with an error; the
//! next group tries again, so the service recovers by itself when the disk does.
//!
//! `access_denied` records are queued without a reply and written with the next group; when the
//! queue is full they are counted and a summary record says how many were lost.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};

use blackbox_core::entry::NormalizedEvent;
use blackbox_core::ids::TenantId;
use blackbox_detect::rules::{Action, RuleSet};
use blackbox_detect::{Detector, Features, Firing, Gate, Observation};
use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::{AppendSink, Appended, BatchOutcome, Writer};
use blackbox_store::sqlite::SqliteStore;
use blackbox_store::{Store, StoreError};
use serde_json::{Value, json};
use tokio::sync::oneshot;

use crate::detection::{self, Subject, Written};
use crate::error::ApiError;
use crate::metrics::{Metrics, TenantLabel};
use crate::mirror::Mirror;

/// Most events committed in one group.
const MAX_GROUP_EVENTS: usize = 50_000;

/// Why a job was not committed.
#[derive(Debug, Clone)]
pub enum IngestFailure {
    /// The store could not commit (the message is for the log, not for clients).
    Store(String),
}

/// The entries committed, and the job's events given back to be freed by the handler's thread
/// (memory freed on another thread than it was allocated on costs page faults with mimalloc).
type Committed = (Vec<Appended>, Vec<NormalizedEvent>);

type Reply = oneshot::Sender<Result<Committed, IngestFailure>>;

struct Job {
    tenant: TenantId,
    events: Vec<NormalizedEvent>,
    /// What the detector needs of each event (one per event).
    features: Vec<Features>,
    reply: Reply,
    queued: Instant,
}

/// A tool call an agent asks permission for (`POST /v1/decide`).
#[derive(Debug)]
pub struct DecideRequest {
    /// Tenant (from the token).
    pub tenant: TenantId,
    /// Agent.
    pub agent_id: String,
    /// Session.
    pub session_id: String,
    /// The `tool_call` payload to record, raw content already hashed, without `authorization`.
    pub payload: serde_json::Map<String, Value>,
    /// The agent's per-session counter.
    pub client_seq: Option<u64>,
    /// Features of the call (pattern hits on the raw arguments).
    pub features: Features,
    /// Who asked: the token, through `decide` (the record's origin).
    pub origin: blackbox_core::origin::Origin,
}

/// A rule that decided.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleHit {
    /// Rule name.
    pub name: String,
    /// Its action.
    pub action: &'static str,
    /// Its severity.
    pub severity: &'static str,
}

/// The answer to a [`DecideRequest`].
#[derive(Debug, Clone)]
pub struct Decision {
    /// `allow`, `block`, `throttle` or `paused`.
    pub decision: &'static str,
    /// For `throttle`: when to retry.
    pub retry_after_ms: Option<i64>,
    /// Rules that fired on the call.
    pub rules: Vec<RuleHit>,
    /// The recorded `tool_call` entry.
    pub entry: Appended,
    /// Whether the record was durably committed before this answer (see [`DecideAnswer`]).
    pub durable: bool,
}

/// When `POST /v1/decide` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DecideAnswer {
    /// Once the record of the attempted call is durably committed (the default).
    #[default]
    Durable,
    /// Once the record is sequenced and signed, before its commit: no fsync on the agent's
    /// path. Should the commit then fail (or the service crash first), the record is lost; the
    /// service writes a `decisions_unrecorded` entry naming the lost entry ids when it can.
    Sequenced,
}

/// A decision answered before its commit, whose commit failed (or may fail: until it
/// succeeds, the decision is noted in the [`AnsweredJournal`]).
#[derive(Debug, Clone)]
struct LostDecision {
    tenant: String,
    agent: String,
    entry_id: uuid::Uuid,
    decision: &'static str,
    cause: LossCause,
}

/// Why an answered decision has no record in the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LossCause {
    /// Its group's commit failed.
    CommitFailed,
    /// The service stopped (crashed, was killed) before the commit.
    Stopped,
}

impl LossCause {
    fn reason(self) -> &'static str {
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
struct JournalLine {
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

    fn line(d: &LostDecision) -> Vec<u8> {
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

    fn file(&mut self) -> std::io::Result<&mut (std::fs::File, u64)> {
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
    fn note(&mut self, d: &LostDecision) -> std::io::Result<()> {
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
    fn keep_only<'d>(
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
    fn recover(&mut self, store: &SqliteStore) -> Vec<LostDecision> {
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
fn decision_name(d: &str) -> &'static str {
    match d {
        "allow" => "allow",
        "block" => "block",
        "throttle" => "throttle",
        "paused" => "paused",
        _ => "unknown",
    }
}

/// Operator actions on agents and rules.
#[derive(Debug)]
pub enum Control {
    /// Pause an agent.
    Pause {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        agent: String,
        /// `operator:<token id>`.
        by: String,
        /// Why.
        reason: String,
    },
    /// Resume an agent.
    Resume {
        /// Tenant.
        tenant: TenantId,
        /// Agent.
        agent: String,
        /// `operator:<token id>`.
        by: String,
        /// Why.
        reason: String,
        /// The alert this resume answers (checked by the caller: an alert of this agent).
        alert_id: Option<String>,
    },
    /// Record an alert's triage step (checked by the caller against the chain, under the
    /// service's triage lock).
    Triage(
        Box<blackbox_ledger::alerts::Alert>,
        blackbox_core::alert::TriageRequest,
    ),
    /// Put new rules in force.
    Rules(Arc<RuleSet>, String),
    /// List agents.
    List(Option<String>),
    /// A retention step (archive a segment, or record an expiry), committed with the group.
    Retention(Box<blackbox_archive::run::Staged>),
}

/// What a [`Control`] did.
#[derive(Debug)]
pub enum ControlReply {
    /// The state changed (and the entry recording it), or `None` when it was already so.
    Changed(Option<Appended>),
    /// Agents.
    Agents(Vec<blackbox_detect::detector::AgentInfo>),
    /// Refused, nothing written: why.
    Refused(String),
}

/// What an erasure (`POST /v1/erasures`) did.
#[derive(Debug)]
pub struct EraseReply {
    /// Entries redacted and markers written.
    pub outcome: blackbox_ledger::erase::ErasureOutcome,
    /// Why the write-ahead log could not be purged yet (`None`: purged).
    pub purge_failed: Option<String>,
    /// Mirror files rewritten and the personal records removed from each, or why that failed.
    pub mirror: Result<Vec<(std::path::PathBuf, u64)>, String>,
}

enum Msg {
    Job(Job),
    Erase(
        blackbox_ledger::erase::ErasureRequest,
        oneshot::Sender<Result<EraseReply, IngestFailure>>,
    ),
    Denial(NormalizedEvent),
    Decide(
        DecideRequest,
        oneshot::Sender<Result<Decision, IngestFailure>>,
    ),
    Control(
        Control,
        oneshot::Sender<Result<ControlReply, IngestFailure>>,
    ),
}

/// What the writer thread is started with.
#[derive(Debug)]
pub struct WriterOptions {
    /// Heartbeat checkpoints this often.
    pub heartbeat_every_ms: i64,
    /// Jobs waiting before new ones get 503.
    pub queue_capacity: usize,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The JSONL mirror.
    pub mirror: Option<Mirror>,
    /// The anomaly detector (its state lives in the writer thread).
    pub detector: Detector,
    /// Where the entries detection writes are sent after their commit (webhooks).
    pub alerts: Option<tokio::sync::mpsc::UnboundedSender<Vec<Written>>>,
    /// When decisions are answered.
    pub decide_answer: DecideAnswer,
    /// Where decisions answered before their commit are noted until it (`DATA_DIR/
    /// decisions-answered.jsonl`; see [`AnsweredJournal`]). Read at start whatever the mode, so
    /// that a run in `sequenced` mode that died is accounted for by the next.
    pub answered_journal: Option<PathBuf>,
}

/// The handlers' end of the writer.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: Sender<Msg>,
    ready: Arc<AtomicBool>,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
}

/// The writer thread; join it after the last [`Ingest`] handle is dropped (it then signs closing
/// checkpoints and stops).
#[derive(Debug)]
pub struct WriterThread(std::thread::JoinHandle<()>);

impl WriterThread {
    /// Waits for the writer to finish its last commit.
    pub fn join(self) {
        let _ = self.0.join();
    }
}

use crate::now_ms;

impl Ingest {
    /// Starts the writer over an opened store and writer.
    #[must_use]
    pub fn start(store: SqliteStore, writer: Writer, o: WriterOptions) -> (Self, WriterThread) {
        let WriterOptions {
            heartbeat_every_ms,
            queue_capacity,
            metrics,
            mirror,
            detector,
            alerts,
            decide_answer,
            answered_journal,
        } = o;
        let (tx, rx) = crossbeam_channel::bounded(queue_capacity);
        let ready = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            ready: Arc::clone(&ready),
            stopping: AtomicBool::new(false),
            dropped: Arc::clone(&dropped),
            metrics: Arc::clone(&metrics),
            every: Duration::from_millis(u64::try_from(heartbeat_every_ms).unwrap_or(60_000)),
            alerts,
            decide_answer,
            lost: std::sync::Mutex::new(Vec::new()),
            journal: answered_journal.map(|p| std::sync::Mutex::new(AnsweredJournal::new(p))),
        };
        let handle = std::thread::Builder::new()
            .name("blackbox-writer".into())
            .spawn(move || run(store, writer, &rx, &shared, mirror, detector));
        let handle = match handle {
            Ok(h) => h,
            // Spawning fails only when the OS is out of threads: the service cannot run then.
            Err(e) => {
                tracing::error!(error = %e, "cannot start the writer thread");
                std::process::exit(2);
            }
        };
        (
            Self {
                tx,
                ready,
                dropped,
                metrics,
            },
            WriterThread(handle),
        )
    }

    /// Whether the last commit succeeded.
    #[must_use]
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Appends `events` to `tenant`'s chain and waits until they are durably committed.
    ///
    /// # Errors
    /// 503 when the queue is full or the commit failed (nothing of the request was written).
    pub async fn submit(
        &self,
        tenant: TenantId,
        events: Vec<NormalizedEvent>,
        features: Vec<Features>,
    ) -> Result<Vec<Appended>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tenant,
            events,
            features,
            reply,
            queued: Instant::now(),
        };
        self.send(Msg::Job(job))?;
        match rx.await {
            Ok(Ok((appended, events))) => {
                drop(events);
                Ok(appended)
            }
            Ok(Err(IngestFailure::Store(_))) | Err(_) => Err(ApiError::unavailable(
                "the store could not commit (disk full or I/O error); nothing of this request was written; retry later",
                2,
            )),
        }
    }

    fn send(&self, m: Msg) -> Result<(), ApiError> {
        match self.tx.try_send(m) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(_)) => {
                self.metrics.reject("overloaded");
                Err(ApiError::unavailable(
                    "the writer's queue is full; nothing was written; retry shortly",
                    1,
                ))
            }
            Err(TrySendError::Disconnected(_)) => Err(ApiError::unavailable(
                "the service is shutting down; nothing was written",
                5,
            )),
        }
    }

    /// Decides on a tool call, records it, and waits until the record is durably committed.
    ///
    /// # Errors
    /// 503 as [`Ingest::submit`].
    pub async fn decide(&self, req: DecideRequest) -> Result<Decision, ApiError> {
        self.ask(
            |reply| Msg::Decide(req, reply),
            "the store could not commit (disk full or I/O error); the call was not recorded; retry later",
        )
        .await
    }

    /// Runs an operator action in the writer (recorded in the chain where it changes state).
    ///
    /// # Errors
    /// 503 as [`Ingest::submit`].
    pub async fn control(&self, c: Control) -> Result<ControlReply, ApiError> {
        self.ask(
            |reply| Msg::Control(c, reply),
            "the store could not commit (disk full or I/O error); nothing changed; retry later",
        )
        .await
    }

    /// Erases a data subject (in the writer, between groups: the sidecars' deletion and the
    /// markers commit together), then purges the write-ahead log and rewrites the mirror.
    ///
    /// # Errors
    /// 503 as [`Ingest::submit`] (nothing was erased then).
    pub async fn erase(
        &self,
        req: blackbox_ledger::erase::ErasureRequest,
    ) -> Result<EraseReply, ApiError> {
        self.ask(
            |reply| Msg::Erase(req, reply),
            "the store could not commit the erasure (disk full or I/O error); nothing was erased; retry later",
        )
        .await
    }

    /// Sends a message that carries its reply channel and waits for the answer.
    async fn ask<T>(
        &self,
        msg: impl FnOnce(oneshot::Sender<Result<T, IngestFailure>>) -> Msg,
        failed: &'static str,
    ) -> Result<T, ApiError> {
        let (reply, rx) = oneshot::channel();
        self.send(msg(reply))?;
        match rx.await {
            Ok(Ok(d)) => Ok(d),
            Ok(Err(IngestFailure::Store(_))) | Err(_) => Err(ApiError::unavailable(failed, 2)),
        }
    }

    /// Counts a refusal that is not recorded on its own (it is summarised in the next
    /// `access_denied` summary record).
    pub fn count_unrecorded(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
        self.metrics.denials_dropped.inc();
    }

    /// Queues an `access_denied` record (never waits; counted and summarised when the queue is
    /// full).
    pub fn deny(&self, event: NormalizedEvent) {
        if self.tx.try_send(Msg::Denial(event)).is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.metrics.denials_dropped.inc();
        }
    }
}

struct Shared {
    ready: Arc<AtomicBool>,
    /// The handlers are gone: the writer is closing.
    stopping: AtomicBool,
    dropped: Arc<AtomicU64>,
    metrics: Arc<Metrics>,
    every: Duration,
    alerts: Option<tokio::sync::mpsc::UnboundedSender<Vec<Written>>>,
    decide_answer: DecideAnswer,
    /// Decisions answered before their commit, whose commit failed: written down in a
    /// `decisions_unrecorded` entry by the next group.
    lost: std::sync::Mutex<Vec<LostDecision>>,
    /// Decisions answered and not yet committed (used by the writer thread only).
    journal: Option<std::sync::Mutex<AnsweredJournal>>,
}

impl Shared {
    fn lose(&self, l: impl IntoIterator<Item = LostDecision>) {
        if let Ok(mut v) = self.lost.lock() {
            v.extend(l);
        }
    }
}

/// Clears `ready` when the writer thread ends, however it ends (a panic included), so that
/// `/readyz` tells.
struct ReadyGuard(Arc<AtomicBool>);

impl Drop for ReadyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

fn run(
    mut store: SqliteStore,
    mut writer: Writer,
    rx: &Receiver<Msg>,
    shared: &Shared,
    mut mirror: Option<Mirror>,
    mut detector: Detector,
) {
    let _guard = ReadyGuard(Arc::clone(&shared.ready));
    let mut failures = 0u32;
    // Decisions a stopped run answered and never committed: written down first.
    let mut recovered = match &shared.journal {
        Some(j) => j.lock().map(|mut j| j.recover(&store)).unwrap_or_default(),
        None => Vec::new(),
    };
    loop {
        // Every chain is tracked from each (re)start, so heartbeats and closing checkpoints
        // cover chains nobody writes to.
        let tenants: Vec<String> = match store.chains() {
            Ok(c) => c.into_iter().map(|h| h.tenant_id).collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read the chains");
                Vec::new()
            }
        };
        let r = writer.stream(&mut store, |sink| {
            for t in &tenants {
                sink.track(t)?;
            }
            if !recovered.is_empty() {
                for ev in unrecorded_entries(&recovered) {
                    sink.add(&ev, now_ms())?;
                }
                sink.commit(now_ms(), false)?;
                recovered.clear();
                note_committed(shared, std::iter::empty());
            }
            serve(sink, rx, shared, &mut mirror, &mut detector)
        });
        match r {
            Ok(()) => return,
            Err(e) => {
                shared.ready.store(false, Ordering::Relaxed);
                failures += 1;
                if shared.stopping.load(Ordering::Relaxed) && failures >= 3 {
                    tracing::error!(error = %e, "the writer cannot sign its closing checkpoints; stopping without them");
                    return;
                }
                tracing::error!(error = %e, "the writer failed; restarting it in 1 s");
                std::thread::sleep(Duration::from_secs(1));
            }
        }
    }
}

/// A reply waiting for its group's commit.
enum Pending {
    Job(Job, Vec<Appended>),
    Decide(oneshot::Sender<Result<Decision, IngestFailure>>, Decision),
    /// A decision already answered (`DecideAnswer::Sequenced`).
    Answered(LostDecision),
    Control(
        oneshot::Sender<Result<ControlReply, IngestFailure>>,
        ControlReply,
    ),
}

impl Pending {
    fn fail(self, why: &str, shared: &Shared) {
        let e = || IngestFailure::Store(why.to_owned());
        match self {
            Self::Job(j, _) => {
                let _ = j.reply.send(Err(e()));
            }
            Self::Decide(r, _) => {
                let _ = r.send(Err(e()));
            }
            Self::Answered(l) => shared.lose([l]),
            Self::Control(r, _) => {
                let _ = r.send(Err(e()));
            }
        }
    }
}

/// Answers every reply of a group that was not committed.
fn fail_all(pending: Vec<Pending>, why: &str, shared: &Shared) {
    for p in pending {
        p.fail(why, shared);
    }
}

/// How long an erasure waits for readers before reporting the log purge as incomplete.
const PURGE_WAIT: Duration = Duration::from_secs(10);

/// Runs one erasure on its own batch: erase and mark, commit, let the mirror catch up (so it
/// holds the marker), purge the write-ahead log, rewrite the mirror files.
fn erase_now(
    sink: &mut AppendSink<'_>,
    req: &blackbox_ledger::erase::ErasureRequest,
    reply: oneshot::Sender<Result<EraseReply, IngestFailure>>,
    shared: &Shared,
    mirror: &mut Option<Mirror>,
) -> Result<(), LedgerError> {
    let now = now_ms();
    // Committed even when nothing was redacted: the look-up opened the batch (and may have
    // cleaned up index rows), and the purge runs between batches.
    let done = blackbox_ledger::erase::erase(sink, req, now).and_then(|o| {
        sink.commit(now, false)?;
        Ok(o)
    });
    let outcome = match done {
        Ok(o) => o,
        Err(e) => {
            // The batch may hold half of the erasure: the caller drops the sink (rolling it
            // back) and restarts it.
            tracing::error!(error = %e, "an erasure failed; nothing of it was committed");
            let _ = reply.send(Err(IngestFailure::Store(e.to_string())));
            return Err(e);
        }
    };
    shared.ready.store(true, Ordering::Relaxed);
    follow(sink, mirror);
    let purge_failed = sink.purge_erased(PURGE_WAIT).err().map(|e| {
        tracing::warn!(error = %e, "erased bytes are still in the write-ahead log");
        e.to_string()
    });
    let mirror = match mirror.as_mut() {
        None => Ok(Vec::new()),
        Some(m) => m.scrub(&outcome.archived_entries()).map_err(|e| {
            tracing::error!(error = %e, "the JSONL mirror could not be rewritten after an erasure");
            e.to_string()
        }),
    };
    tracing::info!(
        redacted = outcome.redacted(),
        markers = outcome.markers(),
        "erasure committed"
    );
    let _ = reply.send(Ok(EraseReply {
        outcome,
        purge_failed,
        mirror,
    }));
    Ok(())
}

fn summary_denial(dropped: u64) -> Option<NormalizedEvent> {
    let ev = serde_json::json!({
        "tenant_id": crate::SYSTEM_TENANT,
        "agent_id": "blackbox-server",
        "session_id": "service",
        "event_type": "access_denied",
        "payload": {"reason": "summary", "dropped_count": dropped,
            "message": "refusals not recorded one by one (more than one per second from the same token or address, or the queue was full)"},
    });
    blackbox_core::event::normalize_json(
        ev.to_string().as_bytes(),
        &blackbox_core::entry::RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .ok()
}

/// Brings the mirror up to date with the store, rotating it when it is full (after signing a
/// checkpoint at every chain's head, so the closed file ends verified and the new one can start
/// from anchors). Mirror failures are logged: the store keeps everything and the mirror catches
/// up after the next commit.
fn follow(sink: &mut AppendSink<'_>, mirror: &mut Option<Mirror>) {
    let Some(m) = mirror.as_mut() else {
        return;
    };
    let full = match m.catch_up() {
        Ok(full) => full,
        Err(e) => {
            tracing::error!(error = %e, "the JSONL mirror could not be written; it catches up later");
            return;
        }
    };
    if !full {
        return;
    }
    let rotated = sink
        .close(now_ms())
        .map_err(|e| e.to_string())
        .and_then(|_| m.catch_up().map_err(|e| e.to_string()))
        .and_then(|_| m.rotate().map_err(|e| e.to_string()));
    match rotated {
        Ok(p) => tracing::info!(rotated = %p.display(), "the JSONL mirror was rotated"),
        Err(e) => tracing::error!(error = %e, "rotating the JSONL mirror failed"),
    }
}

/// Messages sequenced and signed into the sink, whose replies wait for their commit.
#[derive(Default)]
struct Applied {
    pending: Vec<Pending>,
    written: Vec<Written>,
    events: usize,
    /// Lost decisions this group's `decisions_unrecorded` entries name.
    reported: Vec<LostDecision>,
    /// Whether a reply waits for the group's commit (else it may linger, see [`LINGER`]).
    waiters: bool,
    /// When the first message of the group was applied.
    started: Option<Instant>,
}

impl Applied {
    fn is_empty(&self) -> bool {
        self.started.is_none()
    }

    /// How much longer the group may wait for company before its commit: nothing when a reply
    /// waits for it.
    fn linger(&self) -> Duration {
        match self.started {
            Some(t) if !self.waiters => LINGER.saturating_sub(t.elapsed()),
            _ => Duration::ZERO,
        }
    }
}

/// How long a group that nobody waits for (decisions answered once sequenced, refusal records)
/// gathers more before its commit: fewer, larger commits, and such records are durable within
/// this plus one commit.
const LINGER: Duration = Duration::from_millis(5);

/// A group handed to the store thread; `done` tells how its commit went.
struct InFlight {
    done: Receiver<Result<(), StoreError>>,
    group: Applied,
    outcome: BatchOutcome,
}

/// The writer's loop with commits pipelined: while the store thread commits (fsyncs) one
/// group, the next is already being sequenced and signed, and it is handed over the moment the
/// first is durable. At most one group is in flight, so requests that arrive during a commit
/// share the next one. Nothing is answered before its own commit succeeded; when a commit
/// fails, the group sequenced after it fails too (the store thread refuses it) and the writer
/// restarts from what the store holds.
struct Pipeline<'s> {
    shared: &'s Shared,
    open: Applied,
    inflight: Option<InFlight>,
    firings: Vec<Firing>,
    last_heartbeat: Instant,
}

fn serve(
    sink: &mut AppendSink<'_>,
    rx: &Receiver<Msg>,
    shared: &Shared,
    mirror: &mut Option<Mirror>,
    det: &mut Detector,
) -> Result<(), LedgerError> {
    let mut p = Pipeline {
        shared,
        open: Applied::default(),
        inflight: None,
        firings: Vec::new(),
        last_heartbeat: Instant::now(),
    };
    let r = p.run(sink, rx, mirror, det);
    if let Err(e) = &r {
        // Whatever is in flight is answered as its commit went; what is open was not written.
        let why = e.to_string();
        let _ = p.settle();
        fail_all(std::mem::take(&mut p.open.pending), &why, shared);
    }
    r
}

impl Pipeline<'_> {
    fn run(
        &mut self,
        sink: &mut AppendSink<'_>,
        rx: &Receiver<Msg>,
        mirror: &mut Option<Mirror>,
        det: &mut Detector,
    ) -> Result<(), LedgerError> {
        loop {
            if let Some(f) = &self.inflight {
                let done = f.done.clone();
                if self.open.events >= MAX_GROUP_EVENTS {
                    // The next group is full: wait for the store.
                    let r = done.recv().unwrap_or_else(|_| Err(store_gone()));
                    self.finish(r)?;
                    self.hand_over(sink)?;
                    continue;
                }
                crossbeam_channel::select! {
                    recv(rx) -> m => match m {
                        Ok(m) => self.take(sink, det, mirror, m)?,
                        Err(_) => return self.shut_down(sink, mirror),
                    },
                    recv(done) -> r => {
                        self.finish(r.unwrap_or_else(|_| Err(store_gone())))?;
                        if self.open.is_empty() {
                            // Idle: the mirror catches up with what was just committed.
                            follow(sink, mirror);
                        } else if self.open.linger().is_zero() {
                            self.hand_over(sink)?;
                        }
                    },
                }
            } else {
                if !self.open.is_empty() {
                    let linger = self.open.linger();
                    if linger.is_zero() {
                        self.hand_over(sink)?;
                        continue;
                    }
                    match rx.recv_timeout(linger) {
                        Ok(m) => self.take(sink, det, mirror, m)?,
                        Err(RecvTimeoutError::Timeout) => {}
                        Err(RecvTimeoutError::Disconnected) => return self.shut_down(sink, mirror),
                    }
                    continue;
                }
                let wait = self
                    .shared
                    .every
                    .saturating_sub(self.last_heartbeat.elapsed());
                match rx.recv_timeout(wait.max(Duration::from_millis(10))) {
                    Ok(m) => {
                        self.take(sink, det, mirror, m)?;
                        // Everything already waiting joins the group.
                        while self.open.events < MAX_GROUP_EVENTS {
                            match rx.try_recv() {
                                Ok(m) => self.take(sink, det, mirror, m)?,
                                Err(_) => break,
                            }
                        }
                        if self.open.linger().is_zero() {
                            self.hand_over(sink)?;
                            follow(sink, mirror);
                        }
                    }
                    Err(RecvTimeoutError::Timeout) => {
                        self.heartbeat(sink)?;
                        follow(sink, mirror);
                    }
                    Err(RecvTimeoutError::Disconnected) => return self.shut_down(sink, mirror),
                }
            }
            if self.open.is_empty() && self.last_heartbeat.elapsed() >= self.shared.every {
                self.heartbeat(sink)?;
            }
        }
    }

    /// Sequences one message into the open group, or runs an erasure on its own batch.
    fn take(
        &mut self,
        sink: &mut AppendSink<'_>,
        det: &mut Detector,
        mirror: &mut Option<Mirror>,
        m: Msg,
    ) -> Result<(), LedgerError> {
        if let Msg::Erase(req, reply) = m {
            // Erasures run between groups, each on its own batch (they end with a purge and a
            // rewrite of the mirror, which must not interleave with appends).
            self.drain(sink)?;
            erase_now(sink, &req, reply, self.shared, mirror)?;
            return Ok(());
        }
        let now = now_ms();
        if self.open.is_empty() {
            self.open.started = Some(Instant::now());
        }
        self.open.events += match &m {
            Msg::Job(j) => j.events.len(),
            Msg::Denial(_) | Msg::Decide(..) | Msg::Control(..) | Msg::Erase(..) => 1,
        };
        self.open.waiters |= match &m {
            Msg::Denial(_) => false,
            Msg::Decide(..) => self.shared.decide_answer == DecideAnswer::Durable,
            Msg::Job(_) | Msg::Control(..) | Msg::Erase(..) => true,
        };
        let mut bufs = Bufs {
            firings: &mut self.firings,
            written: &mut self.open.written,
            pending: &mut self.open.pending,
        };
        apply(sink, det, self.shared, m, now, &mut bufs)
    }

    /// Hands the open group to the store thread (nothing to do when none is open). Only when
    /// nothing is in flight.
    fn hand_over(&mut self, sink: &mut AppendSink<'_>) -> Result<(), LedgerError> {
        debug_assert!(self.inflight.is_none());
        if self.open.is_empty() {
            return Ok(());
        }
        let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0
            && let Some(ev) = summary_denial(dropped)
        {
            sink.add(&ev, now_ms())?;
        }
        let lost: Vec<LostDecision> = self
            .shared
            .lost
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        if !lost.is_empty() {
            for ev in unrecorded_entries(&lost) {
                if let Err(e) = sink.add(&ev, now_ms()) {
                    self.shared.lose(lost);
                    return Err(e);
                }
            }
            self.open.reported = lost;
        }
        let (tx, done) = crossbeam_channel::bounded(1);
        let outcome = sink.commit_then(now_ms(), false, move |r| {
            let _ = tx.send(r);
        })?;
        self.inflight = Some(InFlight {
            done,
            group: std::mem::take(&mut self.open),
            outcome,
        });
        Ok(())
    }

    /// Waits for the group in flight, if any, and answers it.
    fn settle(&mut self) -> Result<(), LedgerError> {
        let Some(f) = &self.inflight else {
            return Ok(());
        };
        let r = f.done.recv().unwrap_or_else(|_| Err(store_gone()));
        self.finish(r)
    }

    /// Commits everything: the group in flight, then the open one.
    fn drain(&mut self, sink: &mut AppendSink<'_>) -> Result<(), LedgerError> {
        self.settle()?;
        self.hand_over(sink)?;
        self.settle()
    }

    fn heartbeat(&mut self, sink: &mut AppendSink<'_>) -> Result<(), LedgerError> {
        self.last_heartbeat = Instant::now();
        // Behind the group in flight: the store commits in order.
        match sink.heartbeat(now_ms()) {
            Ok(_) => {
                if self.inflight.is_none() {
                    self.shared.ready.store(true, Ordering::Relaxed);
                }
                Ok(())
            }
            Err(e) => {
                self.shared.ready.store(false, Ordering::Relaxed);
                tracing::error!(error = %e, "heartbeat checkpoint failed");
                // The sink forgot its chains: restart it, so that every chain is tracked again.
                Err(e)
            }
        }
    }

    fn shut_down(
        &mut self,
        sink: &mut AppendSink<'_>,
        mirror: &mut Option<Mirror>,
    ) -> Result<(), LedgerError> {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.drain(sink)?;
        // Shutting down: every chain's last entry gets a signed checkpoint.
        let n = sink.close(now_ms())?;
        tracing::info!(checkpoints = n, "closing checkpoints signed");
        follow(sink, mirror);
        Ok(())
    }

    /// Answers the group in flight with how its commit went.
    fn finish(&mut self, result: Result<(), StoreError>) -> Result<(), LedgerError> {
        let Some(InFlight {
            group,
            outcome,
            done: _,
        }) = self.inflight.take()
        else {
            return Ok(());
        };
        let shared = self.shared;
        if let Err(e) = result {
            shared.ready.store(false, Ordering::Relaxed);
            shared.metrics.commit_failures.inc();
            tracing::error!(error = %e, events = group.events, "group commit failed; answering 503");
            fail_all(group.pending, &e.to_string(), shared);
            shared.lose(group.reported);
            // The sink resets when it next runs (the store thread told it); restarting it
            // tracks every chain again.
            return Err(e.into());
        }
        shared.ready.store(true, Ordering::Relaxed);
        if shared.journal.is_some() {
            // What the journal must still hold: decisions answered in the open group, lost
            // ones it reports, and lost ones waiting for a group to report them.
            let waiting = shared.lost.lock().map(|v| v.clone()).unwrap_or_default();
            let answered = self.open.pending.iter().filter_map(|p| match p {
                Pending::Answered(l) => Some(l),
                _ => None,
            });
            note_committed(shared, answered.chain(&self.open.reported).chain(&waiting));
        }
        let m = &shared.metrics;
        m.ingest_events.inc_by(outcome.count);
        #[allow(clippy::cast_precision_loss)] // event counts are far below 2^52
        m.batch_events.observe(group.events as f64);
        if let Some(t) = group.started {
            m.commit_seconds.observe(t.elapsed().as_secs_f64());
        }
        for (tenant, (_, last)) in &outcome.chains {
            m.chain_entries
                .get_or_create(&TenantLabel {
                    tenant: tenant.clone(),
                })
                .set(i64::try_from(*last).unwrap_or(i64::MAX));
        }
        for w in &group.written {
            m.detection_entry(w);
        }
        for p in group.pending {
            match p {
                Pending::Job(job, appended) => {
                    m.ingest_latency.observe(job.queued.elapsed().as_secs_f64());
                    let _ = job.reply.send(Ok((appended, job.events)));
                }
                Pending::Decide(r, d) => {
                    count_decision(m, d.decision);
                    let _ = r.send(Ok(d));
                }
                Pending::Answered(l) => count_decision(m, l.decision),
                Pending::Control(r, c) => {
                    let _ = r.send(Ok(c));
                }
            }
        }
        if !group.written.is_empty()
            && let Some(tx) = &shared.alerts
        {
            let _ = tx.send(group.written);
        }
        Ok(())
    }
}

/// Most lost entry ids one `decisions_unrecorded` entry lists (the count covers them all).
const LOST_IDS_PER_ENTRY: usize = 1000;

/// `decisions_unrecorded` entries, one per (tenant, agent), for decisions answered before a
/// commit that then failed (docs/FORMAT.md §14): the entry ids the agents were given do not
/// exist in the chain, and the chain says so.
fn unrecorded_entries(lost: &[LostDecision]) -> Vec<NormalizedEvent> {
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
fn note_committed<'d>(shared: &Shared, still: impl Iterator<Item = &'d LostDecision>) {
    if let Some(j) = &shared.journal
        && let Ok(mut j) = j.lock()
        && let Err(e) = j.keep_only(still)
    {
        tracing::error!(error = %e, "cannot rewrite the journal of answered decisions");
    }
}

fn count_decision(m: &Metrics, decision: &str) {
    m.decisions
        .get_or_create(&crate::metrics::DecisionLabel {
            decision: decision.to_owned(),
        })
        .inc();
}

fn store_gone() -> StoreError {
    StoreError::Invalid {
        what: "the store thread stopped before reporting the commit".to_owned(),
    }
}

/// Appends what one message calls for; its reply waits in `pending` for the commit.
/// Buffers of one group, reused from message to message.
struct Bufs<'a> {
    firings: &'a mut Vec<Firing>,
    written: &'a mut Vec<Written>,
    pending: &'a mut Vec<Pending>,
}

fn apply(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    shared: &Shared,
    m: Msg,
    now: i64,
    b: &mut Bufs<'_>,
) -> Result<(), LedgerError> {
    let Bufs {
        firings,
        written,
        pending,
    } = b;
    match m {
        Msg::Job(job) => {
            let mut out = Vec::with_capacity(job.events.len());
            for (i, ev) in job.events.iter().enumerate() {
                // The handler set each event's tenant to the token's (or refused the request).
                debug_assert_eq!(ev.tenant_id.as_ref(), Some(&job.tenant));
                let a = detection::add_evaluated(
                    sink,
                    det,
                    ev,
                    job.features.get(i),
                    now,
                    firings,
                    written,
                )?;
                out.push(a);
            }
            pending.push(Pending::Job(job, out));
        }
        Msg::Denial(d) => {
            sink.add(&d, now)?;
        }
        Msg::Decide(req, reply) => {
            // Answered now when sequenced (then its loss must be traceable to tenant and agent).
            let early = (shared.decide_answer == DecideAnswer::Sequenced)
                .then(|| (req.tenant.as_str().to_owned(), req.agent_id.clone()));
            match decide(sink, det, &shared.metrics, req, now, firings, written)? {
                Ok(mut d) => match early {
                    Some((tenant, agent)) => {
                        // Sequenced and signed: answered now, committed with the group; noted
                        // in the journal first, so that even a crash before the commit leaves
                        // a trace. Unless it cannot be noted: then the answer waits as usual.
                        let l = LostDecision {
                            tenant,
                            agent,
                            entry_id: d.entry.entry_id,
                            decision: d.decision,
                            cause: LossCause::CommitFailed,
                        };
                        let noted = match &shared.journal {
                            None => Ok(()),
                            Some(j) => j
                                .lock()
                                .map_err(|_| std::io::Error::other("journal lock poisoned"))
                                .and_then(|mut j| j.note(&l)),
                        };
                        match noted {
                            Ok(()) => {
                                d.durable = false;
                                pending.push(Pending::Answered(l));
                                let _ = reply.send(Ok(d));
                            }
                            Err(e) => {
                                tracing::error!(error = %e, "cannot note an answered decision; answering it after its commit");
                                pending.push(Pending::Decide(reply, d));
                            }
                        }
                    }
                    None => pending.push(Pending::Decide(reply, d)),
                },
                Err(why) => {
                    tracing::error!(error = %why, "a decision could not be recorded");
                    let _ = reply.send(Err(IngestFailure::Store(why)));
                }
            }
        }
        Msg::Control(c, reply) => {
            let r = control(sink, det, c, now, written)?;
            pending.push(Pending::Control(reply, r));
        }
        // `serve` takes erasures out of the group; should one get here, it is refused.
        Msg::Erase(_, reply) => {
            let _ = reply.send(Err(IngestFailure::Store(
                "erasures run outside groups".to_owned(),
            )));
        }
    }
    Ok(())
}

fn decide(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    metrics: &Metrics,
    req: DecideRequest,
    now: i64,
    firings: &mut Vec<Firing>,
    written: &mut Vec<Written>,
) -> Result<Result<Decision, String>, LedgerError> {
    let started = Instant::now();
    let rules = Arc::clone(det.rules());
    let tenant = req.tenant.as_str().to_owned();
    let gate = det.gate(&tenant, &req.agent_id, now);
    firings.clear();
    let tool = req
        .payload
        .get("tool_name")
        .and_then(Value::as_str)
        .map(str::to_owned);
    let ob = Observation {
        tenant: &tenant,
        agent: &req.agent_id,
        session: &req.session_id,
        event_type: "tool_call",
        tool: tool.as_deref(),
        ts_ms: now,
        features: &req.features,
    };
    det.observe(&ob, firings);
    let has = |a: Action| firings.iter().any(|f| f.action == a);
    let mut retry_after_ms = None;
    let decision = if has(Action::BlockAndAlert) {
        "block"
    } else if gate == Gate::Paused || has(Action::AlertAndPause) {
        "paused"
    } else if has(Action::AlertAndThrottle) {
        let per_minute = firings
            .iter()
            .filter(|f| f.action == Action::AlertAndThrottle)
            .filter_map(|f| rules.rules.get(f.rule))
            .map(|r| r.throttle_per_minute)
            .min()
            .unwrap_or(1);
        retry_after_ms = Some(60_000 / i64::from(per_minute.max(1)));
        "throttle"
    } else if let Gate::Throttled { retry_after_ms: w } = gate {
        retry_after_ms = Some(w);
        "throttle"
    } else {
        "allow"
    };
    metrics
        .decide_eval_seconds
        .observe(started.elapsed().as_secs_f64());
    let hits: Vec<RuleHit> = firings
        .iter()
        .filter_map(|f| rules.rules.get(f.rule))
        .map(|r| RuleHit {
            name: r.name.clone(),
            action: r.action.as_str(),
            severity: r.severity.as_str(),
        })
        .collect();
    let mut payload = req.payload;
    let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
    payload.insert(
        "authorization".into(),
        json!({
            "allowed": decision == "allow",
            "decision": decision,
            "decided_by": "blackbox",
            "rules": names,
        }),
    );
    // `policy_matched` names what decided, when something other than "no rule objected" did.
    let policy = names.first().map_or_else(
        || match decision {
            "paused" => Some("agent paused".to_owned()),
            "throttle" => Some("agent throttled".to_owned()),
            _ => None,
        },
        |n| Some(format!("rule:{n}")),
    );
    if let (Some(p), Some(Value::Object(a))) = (policy, payload.get_mut("authorization")) {
        a.insert("policy_matched".into(), p.into());
    }
    let mut ev = json!({
        "tenant_id": tenant,
        "agent_id": req.agent_id,
        "session_id": req.session_id,
        "event_type": "tool_call",
        "payload": payload,
    });
    if let Some(c) = req.client_seq {
        ev["client_seq"] = c.into();
    }
    let ev = match blackbox_core::event::normalize_json(
        ev.to_string().as_bytes(),
        &blackbox_core::entry::RedactionPolicy::default(),
        &req.origin,
    ) {
        Ok(ev) => ev,
        // The handler checked the request; should the record still be invalid, only this call
        // fails, not the group.
        Err(e) => return Ok(Err(e.to_string())),
    };
    let entry = sink.add(&ev, now)?;
    det.note_entry(&tenant, ev.agent_id.as_str(), now, entry.entry_id);
    if !firings.is_empty() {
        let who = Subject {
            tenant: &tenant,
            agent: ev.agent_id.as_str(),
            session: ev.session_id.as_str(),
        };
        let t = detection::Trigger {
            who,
            entry: entry.entry_id,
            at_decide: true,
        };
        detection::record_firings(sink, det, t, firings, now, written)?;
    }
    Ok(Ok(Decision {
        decision,
        retry_after_ms,
        rules: hits,
        entry,
        durable: true,
    }))
}

fn control(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    c: Control,
    now: i64,
    written: &mut Vec<Written>,
) -> Result<ControlReply, LedgerError> {
    let record = |sink: &mut AppendSink<'_>,
                  tenant: &TenantId,
                  agent: &str,
                  t: &'static str,
                  payload: Value,
                  written: &mut Vec<Written>| {
        let who = Subject {
            tenant: tenant.as_str(),
            agent,
            session: "operator",
        };
        detection::append_system(sink, who, (t, None), payload, now, written)
    };
    Ok(match c {
        Control::Pause {
            tenant,
            agent,
            by,
            reason,
        } => {
            if det.pause(tenant.as_str(), &agent, now, &by) {
                let a = record(
                    sink,
                    &tenant,
                    &agent,
                    "agent_paused",
                    json!({"by": by, "reason": reason}),
                    written,
                )?;
                ControlReply::Changed(Some(a))
            } else {
                ControlReply::Changed(None)
            }
        }
        Control::Resume {
            tenant,
            agent,
            by,
            reason,
            alert_id,
        } => {
            // An agent a rule paused or throttled is resumed in answer to an alert: the resume
            // names it (an operator's own pause may be lifted without one).
            let by_rule = det
                .agents(Some(tenant.as_str()), now)
                .into_iter()
                .find(|a| a.agent_id == agent)
                .is_some_and(|a| {
                    a.paused.as_ref().is_some_and(|p| p.by.starts_with("rule:"))
                        || a.throttle
                            .as_ref()
                            .is_some_and(|t| t.by.starts_with("rule:"))
                });
            if by_rule && alert_id.is_none() {
                return Ok(ControlReply::Refused(format!(
                    "agent `{agent}` was paused or throttled by a rule: say which alert this resume answers with {{\"alert_id\": …}} (`blackbox alerts list --agent-id {agent}` shows its alerts)"
                )));
            }
            if det.resume(tenant.as_str(), &agent) {
                let mut payload = json!({"by": by, "reason": reason});
                if let Some(id) = alert_id {
                    payload["alert_id"] = id.into();
                }
                let a = record(sink, &tenant, &agent, "agent_resumed", payload, written)?;
                ControlReply::Changed(Some(a))
            } else {
                ControlReply::Changed(None)
            }
        }
        Control::Rules(set, file) => {
            let payload = json!({
                "rules_sha256": set.source_sha256,
                "rules": set.rules.len(),
                "enabled": set.rules.iter().filter(|r| r.enabled).count(),
                "webhooks": set.webhooks.len(),
                "file": file,
            });
            det.set_rules(set);
            let tenant = TenantId::parse(crate::SYSTEM_TENANT)
                .map_err(|e| detection::core_err(blackbox_core::Error::Field(e)))?;
            let a = record(
                sink,
                &tenant,
                "blackbox-server",
                "rules_loaded",
                payload,
                written,
            )?;
            ControlReply::Changed(Some(a))
        }
        Control::Triage(alert, req) => ControlReply::Changed(Some(
            blackbox_ledger::alerts::append(sink, &alert, &req, now)?,
        )),
        Control::List(tenant) => ControlReply::Agents(det.agents(tenant.as_deref(), now)),
        Control::Retention(staged) => ControlReply::Changed(staged.apply(sink, now)?),
    })
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
