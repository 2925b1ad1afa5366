//! The service's writer: one thread owns the store and the signing keys and commits what the
//! request handlers hand it, in groups.
//!
//! Handlers validate and normalise events on their own (in parallel), then queue a job and wait
//! for its reply. The writer takes every job that is waiting, appends them all through the
//! ledger's appender ([`blackbox_ledger::appender`]), commits once (one fsync for the whole
//! group) and answers each job with its entries: requests that arrive together share a commit,
//! so durability does not cost one fsync per request. A failed commit (disk full, I/O error)
//! rolls the whole group back and answers each job with an error; the next group tries again, so
//! the service recovers by itself when the disk does.
//!
//! `access_denied` records are queued without a reply and written with the next group; when the
//! queue is full they are counted and a summary record says how many were lost.
//!
//! One file per job: `queue.rs` (the group commit loop), `decide.rs` (`POST /v1/decide`),
//! `journal.rs` (decisions answered before their commit), `control.rs` (operator actions) and
//! `erasure.rs` (`POST /v1/erasures`).

mod control;
mod decide;
mod erasure;
mod journal;
mod queue;

pub use control::{Control, ControlReply};
pub use decide::{DecideAnswer, DecideRequest, Decision, RuleHit};
pub use erasure::EraseReply;
pub use journal::AnsweredJournal;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use blackbox_core::entry::NormalizedEvent;
use blackbox_core::ids::TenantId;
use blackbox_detect::{Detector, Features};
use blackbox_ledger::writer::{Appended, Writer};
use blackbox_store::Store;
use tokio::sync::oneshot;

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::mirror::Mirror;
use blackbox_ledger::appender::{Appender, Written};
use journal::{LostDecision, note_committed, unrecorded_entries};
use queue::serve;

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
    /// A read-only handle on the store when other service instances write to it too (a
    /// PostgreSQL database): the writer follows their entries (detection state, pauses) and
    /// starts again from the store's heads when they moved.
    pub shared_store: Option<Box<dyn Store>>,
    /// The chains' sizes the detector's state was rebuilt from (entries beyond are followed).
    pub known: crate::detection::Known,
    /// The service's own chain ([`crate::system_tenant`]).
    pub system_tenant: String,
    /// Decisions answered before their commit, which reads wait for
    /// ([`crate::readers::Visibility`]).
    pub visible: Arc<crate::readers::Visibility>,
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

impl Ingest {
    /// Starts the writer over an opened store and writer.
    #[must_use]
    pub fn start(store: Box<dyn Store>, writer: Writer, o: WriterOptions) -> (Self, WriterThread) {
        let WriterOptions {
            heartbeat_every_ms,
            queue_capacity,
            metrics,
            mirror,
            detector,
            alerts,
            decide_answer,
            answered_journal,
            shared_store,
            known,
            system_tenant,
            visible,
        } = o;
        let (tx, rx) = crossbeam_channel::bounded(queue_capacity);
        let ready = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            visible,
            system_tenant,
            ready: Arc::clone(&ready),
            stopping: AtomicBool::new(false),
            dropped: Arc::clone(&dropped),
            metrics: Arc::clone(&metrics),
            every: Duration::from_millis(u64::try_from(heartbeat_every_ms).unwrap_or(60_000)),
            alerts,
            decide_answer,
            lost: std::sync::Mutex::new(Vec::new()),
            journal: answered_journal.map(|p| std::sync::Mutex::new(AnsweredJournal::new(p))),
            known: std::sync::Mutex::new(known),
            conflicted: AtomicBool::new(false),
            // A new instance on a shared database takes turns (the lock before sequencing) for
            // its first second, so that instances starting together under load do not refuse
            // each other's first groups; by then it has seen whether others write (and takes
            // turns for CONTENDED after each sighting) or pipelines as a lone writer does.
            contended_until: std::sync::Mutex::new(
                shared_store
                    .as_ref()
                    .map(|_| Instant::now() + queue::STARTUP_CONTENDED),
            ),
        };
        let handle = std::thread::Builder::new()
            .name("blackbox-writer".into())
            .spawn(move || run(store, writer, &rx, &shared, mirror, detector, shared_store));
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
    /// The service's own chain.
    system_tenant: String,
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
    /// Decisions answered before their commit (reads wait for it).
    visible: Arc<crate::readers::Visibility>,
    /// The chains' sizes as this instance last committed or followed them (entries beyond are
    /// other instances').
    known: std::sync::Mutex<crate::detection::Known>,
    /// Until when other instances are taken to be writing too (their entries or a refused
    /// batch seen lately).
    contended_until: std::sync::Mutex<Option<Instant>>,
    /// A group was refused for meeting another instance's entries (the writer restarts at once).
    conflicted: AtomicBool,
}

impl Shared {
    fn lose(&self, l: impl IntoIterator<Item = LostDecision>) {
        if let Ok(mut v) = self.lost.lock() {
            v.extend(l);
        }
    }
}

/// Answers what arrives for `wait` with a refusal (503): the writer cannot write now.
fn refuse_for(rx: &Receiver<Msg>, shared: &Shared, wait: Duration) {
    let why = || IngestFailure::Store("the writer cannot write now".to_owned());
    let until = Instant::now() + wait;
    while let Ok(m) = rx.recv_timeout(until.saturating_duration_since(Instant::now())) {
        match m {
            Msg::Job(j) => {
                let _ = j.reply.send(Err(why()));
            }
            Msg::Erase(_, r) => {
                let _ = r.send(Err(why()));
            }
            Msg::Decide(_, r) => {
                let _ = r.send(Err(why()));
            }
            Msg::Control(_, r) => {
                let _ = r.send(Err(why()));
            }
            // Counted: the next group's summary record says how many were not recorded.
            Msg::Denial(_) => {
                shared.dropped.fetch_add(1, Ordering::Relaxed);
            }
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
    mut store: Box<dyn Store>,
    mut writer: Writer,
    rx: &Receiver<Msg>,
    shared: &Shared,
    mut mirror: Option<Mirror>,
    mut detector: Detector,
    watch: Option<Box<dyn Store>>,
) {
    let _guard = ReadyGuard(Arc::clone(&shared.ready));
    let mut failures = 0u32;
    // Decisions a stopped run answered and never committed: written down first.
    let mut recovered = match &shared.journal {
        Some(j) => j
            .lock()
            .map(|mut j| j.recover(store.as_ref()))
            .unwrap_or_default(),
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
        let r = writer.stream(store.as_mut(), |sink| {
            for t in &tenants {
                sink.track(t)?;
            }
            if watch.is_some() && !tenants.is_empty() {
                // Reading the heads opened a batch, which holds the shared database's writer
                // lock: released now, not with this instance's first group (the other
                // instances would wait for it).
                let now = sink.now_ms();
                sink.commit(now, false)?;
            }
            if !recovered.is_empty() {
                for ev in unrecorded_entries(&recovered) {
                    let now = sink.now_ms();
                    Appender::new().add(sink, None, &ev, None, now)?;
                }
                let now = sink.now_ms();
                let outcome = sink.commit(now, false)?;
                if let Ok(mut k) = shared.known.lock() {
                    for (t, (_, last)) in outcome.chains {
                        k.insert(t, last);
                    }
                }
                recovered.clear();
                note_committed(shared, std::iter::empty());
            }
            serve(
                sink,
                rx,
                shared,
                &mut mirror,
                &mut detector,
                watch.as_deref(),
            )
        });
        let conflict = shared.conflicted.swap(false, Ordering::Relaxed)
            || matches!(
                &r,
                Err(blackbox_ledger::LedgerError::Store(
                    blackbox_store::StoreError::SeqConflict { .. }
                ))
            );
        let mut pending_journal = false;
        if r.is_err() {
            // Entries answered as durable through the commit journal whose store commit failed
            // are appended first (the next stream refuses to start until they are).
            match writer.recover_journal(store.as_mut()) {
                Ok(0) => {}
                Ok(n) => tracing::warn!(
                    entries = n,
                    "entries durable in the commit journal were appended to the store"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "cannot append the commit journal's entries yet; refusing requests until they are");
                    pending_journal = true;
                }
            }
            // A group that failed may have changed the detector (a pause, counters) before its
            // commit was refused: its state is rebuilt from what the store holds, and the
            // sizes it knows with it.
            let rules = Arc::clone(detector.rules());
            let mut fresh = Detector::new(rules);
            let sizes: Result<crate::detection::Known, _> = store
                .chains()
                .map(|c| c.into_iter().map(|h| (h.tenant_id, h.size)).collect());
            match sizes.map_err(|e| e.to_string()).and_then(|known| {
                crate::detection::replay(store.as_ref(), &mut fresh, writer.now_ms())
                    .map(|_| known)
                    .map_err(|e| e.to_string())
            }) {
                Ok(known) => {
                    detector = fresh;
                    if let Ok(mut k) = shared.known.lock() {
                        *k = known;
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot rebuild the detector's state"),
            }
            if conflict && watch.is_some() {
                // Another instance moved a chain's head under this one's batch: start again
                // from the store's heads at once, taking the lock before sequencing for a while.
                if let Ok(mut c) = shared.contended_until.lock() {
                    *c = Some(Instant::now() + queue::CONTENDED);
                }
                tracing::warn!(
                    "a group met another instance's entries; answered 503, re-reading the chains"
                );
                shared.ready.store(true, Ordering::Relaxed);
                continue;
            }
        }
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
                if pending_journal {
                    // Nothing is written before the journal's entries: what arrives meanwhile
                    // is refused at once rather than left waiting for the disk.
                    refuse_for(rx, shared, Duration::from_secs(1));
                } else {
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        }
    }
}
