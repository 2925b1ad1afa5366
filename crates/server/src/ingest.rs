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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, SyncSender, TrySendError};
use std::time::{Duration, Instant};

use blackbox_core::entry::NormalizedEvent;
use blackbox_core::ids::TenantId;
use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::{AppendSink, Appended, Writer};
use blackbox_store::Store;
use blackbox_store::sqlite::SqliteStore;
use tokio::sync::oneshot;

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
    reply: Reply,
    queued: Instant,
}

enum Msg {
    Job(Job),
    Denial(NormalizedEvent),
}

/// The handlers' end of the writer.
#[derive(Debug, Clone)]
pub struct Ingest {
    tx: SyncSender<Msg>,
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Ingest {
    /// Starts the writer over an opened store and writer.
    #[must_use]
    pub fn start(
        store: SqliteStore,
        writer: Writer,
        heartbeat_every_ms: i64,
        queue_capacity: usize,
        metrics: Arc<Metrics>,
        mirror: Option<Mirror>,
    ) -> (Self, WriterThread) {
        let (tx, rx) = mpsc::sync_channel(queue_capacity);
        let ready = Arc::new(AtomicBool::new(true));
        let dropped = Arc::new(AtomicU64::new(0));
        let shared = Shared {
            ready: Arc::clone(&ready),
            stopping: AtomicBool::new(false),
            dropped: Arc::clone(&dropped),
            metrics: Arc::clone(&metrics),
            every: Duration::from_millis(u64::try_from(heartbeat_every_ms).unwrap_or(60_000)),
        };
        let handle = std::thread::Builder::new()
            .name("blackbox-writer".into())
            .spawn(move || run(store, writer, &rx, &shared, mirror));
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
    ) -> Result<Vec<Appended>, ApiError> {
        let (reply, rx) = oneshot::channel();
        let job = Job {
            tenant,
            events,
            reply,
            queued: Instant::now(),
        };
        match self.tx.try_send(Msg::Job(job)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.metrics.reject("overloaded");
                return Err(ApiError::unavailable(
                    "the writer's queue is full; nothing was written; retry shortly",
                    1,
                ));
            }
            Err(TrySendError::Disconnected(_)) => {
                return Err(ApiError::unavailable(
                    "the service is shutting down; nothing was written",
                    5,
                ));
            }
        }
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
    rx: &mpsc::Receiver<Msg>,
    shared: &Shared,
    mut mirror: Option<Mirror>,
) {
    let _guard = ReadyGuard(Arc::clone(&shared.ready));
    let mut failures = 0u32;
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
            serve(sink, rx, shared, &mut mirror)
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

/// One group: its jobs (with their replies) and denials.
struct Group {
    jobs: Vec<Job>,
    denials: Vec<NormalizedEvent>,
    events: usize,
}

impl Group {
    fn push(&mut self, m: Msg) {
        match m {
            Msg::Job(j) => {
                self.events += j.events.len();
                self.jobs.push(j);
            }
            Msg::Denial(d) => {
                self.events += 1;
                self.denials.push(d);
            }
        }
    }

    fn fail(self, why: &str, dropped: &AtomicU64) {
        // Refusal records of the group are lost with it: count them for the summary record.
        dropped.fetch_add(self.denials.len() as u64, Ordering::Relaxed);
        for j in self.jobs {
            let _ = j.reply.send(Err(IngestFailure::Store(why.to_owned())));
        }
    }
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

fn serve(
    sink: &mut AppendSink<'_>,
    rx: &mpsc::Receiver<Msg>,
    shared: &Shared,
    mirror: &mut Option<Mirror>,
) -> Result<(), LedgerError> {
    let mut last_heartbeat = Instant::now();
    loop {
        let wait = shared.every.saturating_sub(last_heartbeat.elapsed());
        let first = match rx.recv_timeout(wait.max(Duration::from_millis(10))) {
            Ok(m) => m,
            Err(RecvTimeoutError::Timeout) => {
                heartbeat(sink, shared);
                follow(sink, mirror);
                last_heartbeat = Instant::now();
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                shared.stopping.store(true, Ordering::Relaxed);
                // Shutting down: every chain's last entry gets a signed checkpoint.
                let n = sink.close(now_ms())?;
                tracing::info!(checkpoints = n, "closing checkpoints signed");
                follow(sink, mirror);
                return Ok(());
            }
        };
        let mut group = Group {
            jobs: Vec::new(),
            denials: Vec::new(),
            events: 0,
        };
        group.push(first);
        while group.events < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(m) => group.push(m),
                Err(_) => break,
            }
        }
        let dropped = shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0
            && let Some(ev) = summary_denial(dropped)
        {
            group.denials.push(ev);
        }
        commit_group(sink, group, shared)?;
        follow(sink, mirror);
        if last_heartbeat.elapsed() >= shared.every {
            heartbeat(sink, shared);
            last_heartbeat = Instant::now();
        }
    }
}

fn heartbeat(sink: &mut AppendSink<'_>, shared: &Shared) {
    match sink.heartbeat(now_ms()) {
        Ok(_) => shared.ready.store(true, Ordering::Relaxed),
        Err(e) => {
            shared.ready.store(false, Ordering::Relaxed);
            tracing::error!(error = %e, "heartbeat checkpoint failed");
        }
    }
}

fn commit_group(
    sink: &mut AppendSink<'_>,
    group: Group,
    shared: &Shared,
) -> Result<(), LedgerError> {
    let started = Instant::now();
    let now = now_ms();
    let mut results: Vec<Vec<Appended>> = Vec::with_capacity(group.jobs.len());
    for job in &group.jobs {
        let mut out = Vec::with_capacity(job.events.len());
        for ev in &job.events {
            // The handler set each event's tenant to the token's (or refused the request).
            debug_assert_eq!(ev.tenant_id.as_ref(), Some(&job.tenant));
            match sink.add(ev, now) {
                Ok(a) => out.push(a),
                Err(e) => {
                    // The sink cannot go on (its store thread is gone): answer everyone and let
                    // the caller restart it.
                    let why = e.to_string();
                    group.fail(&why, &shared.dropped);
                    return Err(e);
                }
            }
        }
        results.push(out);
    }
    for d in &group.denials {
        if let Err(e) = sink.add(d, now) {
            let why = e.to_string();
            group.fail(&why, &shared.dropped);
            return Err(e);
        }
    }
    match sink.commit(now, false) {
        Ok(outcome) => {
            shared.ready.store(true, Ordering::Relaxed);
            let m = &shared.metrics;
            m.ingest_events.inc_by(outcome.count);
            #[allow(clippy::cast_precision_loss)] // event counts are far below 2^52
            m.batch_events.observe(group.events as f64);
            m.commit_seconds.observe(started.elapsed().as_secs_f64());
            for (tenant, (_, last)) in &outcome.chains {
                m.chain_entries
                    .get_or_create(&TenantLabel {
                        tenant: tenant.clone(),
                    })
                    .set(i64::try_from(*last).unwrap_or(i64::MAX));
            }
            for (job, appended) in group.jobs.into_iter().zip(results) {
                m.ingest_latency.observe(job.queued.elapsed().as_secs_f64());
                let _ = job.reply.send(Ok((appended, job.events)));
            }
            Ok(())
        }
        Err(e) => {
            shared.ready.store(false, Ordering::Relaxed);
            shared.metrics.commit_failures.inc();
            tracing::error!(error = %e, events = group.events, "group commit failed; answering 503");
            group.fail(&e.to_string(), &shared.dropped);
            // The sink forgot its chains when the batch rolled back: restart it, so that every
            // chain is tracked again.
            Err(e)
        }
    }
}
