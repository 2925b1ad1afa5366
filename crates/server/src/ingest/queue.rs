//! The group commit: messages from the handlers are sequenced into the open group, which is
//! handed to the store thread as one batch; replies wait for their group's commit.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError};

use blackbox_core::entry::NormalizedEvent;
use blackbox_detect::Detector;
use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::{AppendSink, Appended, BatchOutcome};
use blackbox_store::StoreError;
use tokio::sync::oneshot;

use super::control::{ControlReply, control};
use super::decide::{DecideAnswer, Decision, count_decision, decide};
use super::erasure::erase_now;
use super::journal::{LossCause, LostDecision, note_committed, unrecorded_entries};
use super::{IngestFailure, Job, MAX_GROUP_EVENTS, Msg, Shared};
use crate::metrics::TenantLabel;
use crate::mirror::Mirror;
use blackbox_ledger::appender::{Appender, Written};

/// A reply waiting for its group's commit.
pub(super) enum Pending {
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
    pub(super) fn fail(self, why: &str, shared: &Shared) {
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
pub(super) fn fail_all(pending: Vec<Pending>, why: &str, shared: &Shared) {
    for p in pending {
        p.fail(why, shared);
    }
}

pub(super) fn summary_denial(dropped: u64, system_tenant: &str) -> Option<NormalizedEvent> {
    let ev = serde_json::json!({
        "tenant_id": system_tenant,
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
pub(super) fn follow(
    sink: &mut AppendSink<'_>,
    mirror: &mut Option<Mirror>,
    shared_store: Option<&dyn blackbox_store::Store>,
) {
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
    if let Some(store) = shared_store {
        // Other instances write too: the closing checkpoints are signed under the database's
        // lock, with the heads as stored (as `Pipeline::lock_heads` does).
        let fresh = sink.begin_batch().and_then(|()| {
            for h in store.chains()? {
                if sink.is_stale(&h) {
                    sink.reload(&h.tenant_id)?;
                }
            }
            Ok(())
        });
        if let Err(e) = fresh {
            tracing::error!(error = %e, "the JSONL mirror is full but the heads cannot be read; it rotates later");
            // The lock is not kept until the next group.
            let now = sink.now_ms();
            let _ = sink.commit(now, false);
            return;
        }
    }
    let now = sink.now_ms();
    let rotated = sink
        .close(now)
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
pub(super) struct Applied {
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
    pub(super) fn is_empty(&self) -> bool {
        self.started.is_none()
    }

    /// How much longer the group may wait for company before its commit: nothing when a reply
    /// waits for it.
    pub(super) fn linger(&self) -> Duration {
        match self.started {
            Some(t) if !self.waiters => LINGER.saturating_sub(t.elapsed()),
            _ => Duration::ZERO,
        }
    }
}

/// How long a group that nobody waits for (decisions answered once sequenced, refusal records)
/// gathers more before its commit: fewer, larger commits, and such records are durable within
/// this plus one commit.
pub(super) const LINGER: Duration = Duration::from_millis(5);

/// A group handed to the store thread; `done` tells how its commit went.
pub(super) struct InFlight {
    done: Receiver<Result<(), StoreError>>,
    group: Applied,
    outcome: BatchOutcome,
    /// The group's entries are durable in the commit journal (a failed store commit loses
    /// nothing: the writer appends them from the journal when it restarts).
    journaled: bool,
}

/// A reply to a decision, with the decision.
type Decided = (oneshot::Sender<Result<Decision, IngestFailure>>, Decision);

/// Where a group's entries stand on their way to disk.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stage {
    Waiting,
    Durable,
    Failed(String),
}

/// The decisions of a group, answered as soon as their records are durable: by the writer
/// thread once the commit journal holds them, or by the store thread once its commit returned,
/// whichever comes first. Refused only when neither made them durable.
struct Handoff {
    decided: Vec<Decided>,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
    journal: Stage,
    store: Stage,
}

impl Handoff {
    fn update(h: &std::sync::Mutex<Self>, f: impl FnOnce(&mut Self)) {
        let Ok(mut h) = h.lock() else {
            return;
        };
        f(&mut h);
        let answer = if h.journal == Stage::Durable || h.store == Stage::Durable {
            Ok(())
        } else if let (Stage::Failed(_), Stage::Failed(why)) = (&h.journal, &h.store) {
            Err(why.clone())
        } else {
            return;
        };
        for (reply, d) in std::mem::take(&mut h.decided) {
            let r = match &answer {
                Ok(()) => {
                    count_decision(&h.metrics, d.decision);
                    Ok(d)
                }
                Err(why) => Err(IngestFailure::Store(why.clone())),
            };
            let _ = reply.send(r);
        }
    }
}

/// The writer's loop with commits pipelined: while the store thread commits (fsyncs) one
/// group, the next is already being sequenced and signed, and it is handed over the moment the
/// first is durable. At most one group is in flight, so requests that arrive during a commit
/// share the next one. Nothing is answered before its own commit succeeded; when a commit
/// fails, the group sequenced after it fails too (the store thread refuses it) and the writer
/// restarts from what the store holds.
pub(super) struct Pipeline<'s> {
    shared: &'s Shared,
    open: Applied,
    /// Groups handed to the store thread, oldest first: one, or several durable in the commit
    /// journal and at most one plain group after them (see [`Pipeline::may_follow`]).
    inflight: std::collections::VecDeque<InFlight>,
    /// Messages were waiting in the queue when last looked: the writer is busy, and groups are
    /// formed and committed as usual (one fsync each, on the store thread) rather than journalled.
    backlog: bool,
    appender: Appender,
    last_heartbeat: Instant,
    /// A read-only handle on a store other instances write to as well, and when it was last
    /// looked at for their entries.
    watch: Option<(&'s dyn blackbox_store::Store, Instant)>,
}

/// Most groups in flight at once: journalled ones (a lone decision each, durable in the commit
/// journal; the store thread commits them together) and at most one plain group after them. A
/// plain group is alone in flight otherwise: what arrives during its commit shares the next one.
pub(super) const MAX_IN_FLIGHT: usize = 64;

/// How often a writer on a store shared with other instances looks for their entries: an agent
/// paused through one instance is refused by the others within this (plus one commit).
pub(super) const FOLLOW_EVERY: Duration = Duration::from_millis(250);

/// How long after it last saw another instance's entries a writer takes the database's lock
/// before sequencing a group (see `Pipeline::catch_up`).
pub(super) const CONTENDED: Duration = Duration::from_secs(10);

/// How long a new instance on a shared database takes turns before it has seen another's
/// entries (see `Ingest::start`).
pub(super) const STARTUP_CONTENDED: Duration = Duration::from_secs(1);

pub(super) fn serve(
    sink: &mut AppendSink<'_>,
    rx: &Receiver<Msg>,
    shared: &Shared,
    mirror: &mut Option<Mirror>,
    det: &mut Detector,
    watch: Option<&dyn blackbox_store::Store>,
) -> Result<(), LedgerError> {
    let mut p = Pipeline {
        shared,
        open: Applied::default(),
        inflight: std::collections::VecDeque::new(),
        backlog: false,
        appender: Appender::new(),
        last_heartbeat: Instant::now(),
        watch: watch.map(|w| (w, Instant::now())),
    };
    let r = p.run(sink, rx, mirror, det);
    if let Err(e) = &r {
        // Whatever is in flight is answered as its commit went; what is open was not written.
        let why = e.to_string();
        while let Some(f) = p.inflight.front() {
            let r = f.done.recv().unwrap_or_else(|_| Err(store_gone()));
            let _ = p.finish(r);
        }
        fail_all(std::mem::take(&mut p.open.pending), &why, shared);
    }
    r
}

impl Pipeline<'_> {
    pub(super) fn run(
        &mut self,
        sink: &mut AppendSink<'_>,
        rx: &Receiver<Msg>,
        mirror: &mut Option<Mirror>,
        det: &mut Detector,
    ) -> Result<(), LedgerError> {
        loop {
            if self.open.is_empty() {
                self.catch_up(sink, det, false)?;
            }
            self.backlog = !rx.is_empty();
            if let Some(f) = self.inflight.front() {
                let done = f.done.clone();
                if self.open.events >= MAX_GROUP_EVENTS || self.inflight.len() >= MAX_IN_FLIGHT {
                    // The next group is full (or too many are in flight): wait for the store.
                    let r = done.recv().unwrap_or_else(|_| Err(store_gone()));
                    self.finish(r)?;
                    if self.inflight.is_empty() || self.may_follow(sink) {
                        self.hand_over(sink)?;
                    }
                    continue;
                }
                crossbeam_channel::select! {
                    recv(rx) -> m => match m {
                        Ok(m) => {
                            self.take(sink, det, mirror, m)?;
                            self.backlog = !rx.is_empty();
                            if self.may_follow(sink) {
                                self.hand_over(sink)?;
                            }
                        }
                        Err(_) => return self.shut_down(sink, mirror),
                    },
                    recv(done) -> r => {
                        self.finish(r.unwrap_or_else(|_| Err(store_gone())))?;
                        if self.open.is_empty() {
                            if self.inflight.is_empty() {
                                // Idle: the mirror catches up with what was just committed.
                                follow(sink, mirror, self.watch.map(|(w, _)| w));
                            }
                        } else if self.open.linger().is_zero()
                            && (self.inflight.is_empty() || self.may_follow(sink))
                        {
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
                let mut wait = self
                    .shared
                    .every
                    .saturating_sub(self.last_heartbeat.elapsed());
                if self.watch.is_some() {
                    wait = wait.min(FOLLOW_EVERY);
                }
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
                        // What waits now, not what waited before the group was taken: a lone
                        // decision that arrived while this thread finished the group before
                        // must not count as a backlog of its own, or it is committed without
                        // the journal (and answered after the store's commit).
                        self.backlog = !rx.is_empty();
                        if self.open.linger().is_zero() {
                            self.hand_over(sink)?;
                            follow(sink, mirror, self.watch.map(|(w, _)| w));
                        }
                    }
                    // Woken early to follow other instances (see `catch_up`): no heartbeat yet.
                    Err(RecvTimeoutError::Timeout)
                        if self.last_heartbeat.elapsed() < self.shared.every => {}
                    Err(RecvTimeoutError::Timeout) => {
                        self.heartbeat(sink)?;
                        follow(sink, mirror, self.watch.map(|(w, _)| w));
                    }
                    Err(RecvTimeoutError::Disconnected) => return self.shut_down(sink, mirror),
                }
            }
            if self.open.is_empty() && self.last_heartbeat.elapsed() >= self.shared.every {
                self.heartbeat(sink)?;
            }
        }
    }

    /// When the store is shared with other instances: reads what they committed since this one
    /// last committed or looked (the detector learns it, pauses and resumes included) and
    /// re-reads the heads of the chains they moved, so that the next group continues them
    /// instead of being refused. Between groups only (the group in flight is committed first).
    ///
    /// `group`: a group is about to open. While other instances write too (seen in the last
    /// [`CONTENDED`]), the group's batch is opened first, which takes the database's writer
    /// lock: nobody else commits until this group has, so it cannot be refused (instances take
    /// turns instead of pipelining). Otherwise (and every [`FOLLOW_EVERY`] while idle) the heads
    /// are compared without the lock, and when another instance moved one, the lock is taken
    /// before its entries are followed and its head re-read (the same entries for both).
    fn catch_up(
        &mut self,
        sink: &mut AppendSink<'_>,
        det: &mut Detector,
        group: bool,
    ) -> Result<(), LedgerError> {
        let Some((store, last)) = &mut self.watch else {
            return Ok(());
        };
        if !group && last.elapsed() < FOLLOW_EVERY {
            return Ok(());
        }
        *last = Instant::now();
        let store = *store;
        let poisoned = || LedgerError::Inconsistent("the chains' sizes lock is poisoned".into());
        let contended = self
            .shared
            .contended_until
            .lock()
            .map_err(|_| poisoned())?
            .is_some_and(|t| Instant::now() < t);
        let mut locked = false;
        if group && contended {
            self.settle()?;
            sink.begin_batch()?;
            locked = true;
        }
        let heads = store.chains()?;
        let moved = {
            let mut known = self.shared.known.lock().map_err(|_| poisoned())?.clone();
            // This instance's own group in flight (committed or not) is not another's.
            for f in &self.inflight {
                for (t, (_, last)) in &f.outcome.chains {
                    let k = known.entry(t.clone()).or_insert(0);
                    *k = (*k).max(*last);
                }
            }
            heads
                .iter()
                .any(|h| h.size > known.get(&h.tenant_id).copied().unwrap_or(0))
        };
        if !moved {
            return Ok(());
        }
        *self.shared.contended_until.lock().map_err(|_| poisoned())? =
            Some(Instant::now() + CONTENDED);
        if !locked {
            // Under the lock from here, so that the entries followed and the heads re-read are
            // the same (nobody commits meanwhile); this instance's group in flight first.
            self.settle()?;
            sink.begin_batch()?;
            locked = true;
        }
        let mut known = self.shared.known.lock().map_err(|_| poisoned())?.clone();
        let before = known.clone();
        let mut alerts = Vec::new();
        let followed = crate::detection::follow(store, det, &mut known, sink.now_ms(), &mut alerts);
        if !alerts.is_empty()
            && let Some(tx) = &self.shared.alerts
        {
            let _ = tx.send(alerts);
        }
        // What was read is known even when a later chain failed (never learnt twice).
        *self.shared.known.lock().map_err(|_| poisoned())? = known.clone();
        let n = followed.map_err(|e| LedgerError::Inconsistent(e.to_string()))?;
        for (tenant, size) in &known {
            if before.get(tenant) != Some(size) {
                sink.reload(tenant)?;
            }
        }
        if !group {
            // Between groups: the lock is released at once rather than with this instance's
            // next group. Before a group, the group's batch keeps it.
            let now = sink.now_ms();
            sink.commit(now, false)?;
        }
        tracing::debug!(entries = n, locked, "followed other instances' entries");
        Ok(())
    }

    /// Sequences one message into the open group, or runs an erasure on its own batch.
    pub(super) fn take(
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
            // On a shared store: what the other instances wrote is followed, and the erasure's
            // batch holds the writer lock over heads re-read under it (its markers continue
            // the chains as stored).
            self.catch_up(sink, det, true)?;
            self.lock_heads(sink)?;
            let watch = self.watch.map(|(w, _)| w);
            erase_now(sink, &req, reply, self.shared, mirror, watch)?;
            return Ok(());
        }
        if self.open.is_empty() {
            // A new group: on a shared store, it continues what other instances committed.
            self.catch_up(sink, det, true)?;
        }
        let now = sink.now_ms();
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
            appender: &mut self.appender,
            pending: &mut self.open.pending,
        };
        apply(sink, det, self.shared, m, now, &mut bufs)
    }

    /// Whether the open group goes to the store thread now although groups are in flight:
    /// nothing else is waiting to join it, and every group ahead of it is durable in the commit
    /// journal (the store thread may be keeping their transaction open for what follows, see
    /// `blackbox_ledger::writer`'s merged commits). Either the open group is journalled too (a
    /// lone decision: answered after one small fsync instead of after the commits ahead of it;
    /// a journalled group is never sequenced on top of entries a crash could lose), or replies
    /// wait for it: its plain commit then commits the merged groups ahead of it with it, at
    /// once, instead of after their merge window.
    fn may_follow(&self, sink: &AppendSink<'_>) -> bool {
        !self.open.is_empty()
            && !self.backlog
            && self.inflight.len() < MAX_IN_FLIGHT
            && self.inflight.iter().all(|f| f.journaled)
            && ((sink.can_journal() && self.lone_decision()) || self.open.linger().is_zero())
    }

    /// Whether the open group's one reply is a decision's: an agent waiting for its tool call,
    /// alone. Only such a group is journalled (its fsync on this thread, beside the store's
    /// commit, is what the agent waits for instead of the commit); when several replies share a
    /// group, requests are arriving together and one commit for all of them carries more.
    fn lone_decision(&self) -> bool {
        matches!(self.open.pending.as_slice(), [Pending::Decide(..)])
    }

    /// Hands the open group to the store thread (nothing to do when none is open). Only when
    /// nothing is in flight, or when [`Self::may_follow`] says so.
    pub(super) fn hand_over(&mut self, sink: &mut AppendSink<'_>) -> Result<(), LedgerError> {
        debug_assert!(self.inflight.is_empty() || self.may_follow(sink));
        if self.open.is_empty() {
            return Ok(());
        }
        let dropped = self.shared.dropped.swap(0, Ordering::Relaxed);
        if dropped > 0
            && let Some(ev) = summary_denial(dropped, &self.shared.system_tenant)
        {
            let now = sink.now_ms();
            self.appender.add(sink, None, &ev, None, now)?;
        }
        let lost: Vec<LostDecision> = self
            .shared
            .lost
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        if !lost.is_empty() {
            for ev in unrecorded_entries(&lost) {
                let now = sink.now_ms();
                if let Err(e) = self.appender.add(sink, None, &ev, None, now) {
                    self.shared.lose(lost);
                    return Err(e);
                }
            }
            self.open.reported = lost;
        }
        let (tx, done) = crossbeam_channel::bounded(1);
        // What the service wrote itself in this group, for metrics and webhooks once committed.
        self.open.written = self.appender.take_written();
        // Decisions waiting for this commit are answered as soon as their records are durable:
        // by this thread once the commit journal holds them (one small fsync, while the store
        // commits), or by the store thread as soon as its commit returns, not after a hand-over
        // back to this thread (see `Handoff`).
        let mut decided = Vec::new();
        for p in std::mem::take(&mut self.open.pending) {
            match p {
                Pending::Decide(reply, d) => decided.push((reply, d)),
                other => self.open.pending.push(other),
            }
        }
        let now = sink.now_ms();
        let (outcome, journaled) = if decided.is_empty() {
            let outcome = sink.commit_then(now, false, move |r| {
                let _ = tx.send(r);
            })?;
            (outcome, false)
        } else {
            // The group's one reply is a decision (see `lone_decision`).
            let lone = decided.len() == 1 && self.open.pending.is_empty();
            let h = std::sync::Arc::new(std::sync::Mutex::new(Handoff {
                decided,
                metrics: std::sync::Arc::clone(&self.shared.metrics),
                journal: Stage::Waiting,
                store: Stage::Waiting,
            }));
            let on_store = std::sync::Arc::clone(&h);
            // Reads wait for this group's commit should its decisions be answered first.
            let pending = self.shared.visible.begin();
            let done = move |r: Result<(), StoreError>| {
                let _pending = pending;
                Handoff::update(&on_store, |h| {
                    h.store = match &r {
                        Ok(()) => Stage::Durable,
                        Err(e) => Stage::Failed(e.to_string()),
                    };
                });
                let _ = tx.send(r);
            };
            // A busy writer (messages waiting, or several replies in the group) commits as it
            // would without the journal: the journal's fsync on this thread would hold up the
            // sequencing of what waits, and the group's decisions are answered by the store
            // thread after its commit.
            let (outcome, journal) = if self.backlog || !lone {
                (sink.commit_then(now, false, done)?, None)
            } else {
                sink.commit_journaled(now, done)?
            };
            let journaled = match journal {
                Some(Ok(())) => true,
                Some(Err(e)) => {
                    tracing::error!(error = %e, "the commit journal could not be written; decisions are answered after the store's commit");
                    false
                }
                None => false,
            };
            Handoff::update(&h, |h| {
                h.journal = if journaled {
                    Stage::Durable
                } else {
                    Stage::Failed("not journalled".to_owned())
                };
            });
            (outcome, journaled)
        };
        self.inflight.push_back(InFlight {
            done,
            group: std::mem::take(&mut self.open),
            outcome,
            journaled,
        });
        Ok(())
    }

    /// Waits for the groups in flight, if any, and answers them.
    pub(super) fn settle(&mut self) -> Result<(), LedgerError> {
        while let Some(f) = self.inflight.front() {
            let r = f.done.recv().unwrap_or_else(|_| Err(store_gone()));
            self.finish(r)?;
        }
        Ok(())
    }

    /// Commits everything: the group in flight, then the open one.
    pub(super) fn drain(&mut self, sink: &mut AppendSink<'_>) -> Result<(), LedgerError> {
        self.settle()?;
        self.hand_over(sink)?;
        self.settle()
    }

    pub(super) fn heartbeat(&mut self, sink: &mut AppendSink<'_>) -> Result<(), LedgerError> {
        self.last_heartbeat = Instant::now();
        let shared_store = self.lock_heads(sink)?;
        // Behind the group in flight: the store commits in order.
        let now = sink.now_ms();
        match sink.heartbeat(now).and_then(|signed| {
            if signed == 0 && shared_store {
                // Nothing was due after all: the lock is released now.
                sink.commit(now, false)?;
            }
            Ok(signed)
        }) {
            Ok(_) => {
                if self.inflight.is_empty() {
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

    /// On a store other instances write to: takes the database's writer lock (this writer's
    /// next batch opened now) and re-reads every head another instance moved or signed
    /// meanwhile, so that a checkpoint signed in that batch is signed by one instance, once per
    /// size. Returns whether the store is shared (the lock is then held until the next commit).
    fn lock_heads(&mut self, sink: &mut AppendSink<'_>) -> Result<bool, LedgerError> {
        let Some((store, _)) = self.watch else {
            return Ok(false);
        };
        self.settle()?;
        sink.begin_batch()?;
        for h in store.chains()? {
            if sink.is_stale(&h) {
                sink.reload(&h.tenant_id)?;
            }
        }
        Ok(true)
    }

    pub(super) fn shut_down(
        &mut self,
        sink: &mut AppendSink<'_>,
        mirror: &mut Option<Mirror>,
    ) -> Result<(), LedgerError> {
        self.shared.stopping.store(true, Ordering::Relaxed);
        self.drain(sink)?;
        let shared_store = self.lock_heads(sink)?;
        // Shutting down: every chain's last entry gets a signed checkpoint.
        let now = sink.now_ms();
        let n = sink.close(now)?;
        if n == 0 && shared_store {
            sink.commit(now, false)?;
        }
        tracing::info!(checkpoints = n, "closing checkpoints signed");
        follow(sink, mirror, self.watch.map(|(w, _)| w));
        Ok(())
    }

    /// Answers the oldest group in flight with how its commit went.
    pub(super) fn finish(&mut self, result: Result<(), StoreError>) -> Result<(), LedgerError> {
        let Some(InFlight {
            group,
            outcome,
            done: _,
            journaled,
        }) = self.inflight.pop_front()
        else {
            return Ok(());
        };
        let shared = self.shared;
        let failed = match result {
            Ok(()) => None,
            Err(e) if journaled => {
                // Durable in the commit journal: answered as committed, and the writer restarts,
                // appending them from the journal before anything else.
                shared.ready.store(false, Ordering::Relaxed);
                shared.metrics.commit_failures.inc();
                tracing::error!(error = %e, events = group.events, "group commit failed; its entries are durable in the commit journal and are appended when the writer restarts");
                Some(e)
            }
            Err(e) => {
                if matches!(e, StoreError::SeqConflict { .. }) {
                    // Another instance's entries under this group: the writer restarts at once
                    // and takes the database's lock before sequencing for a while.
                    shared.conflicted.store(true, Ordering::Relaxed);
                    if let Ok(mut c) = shared.contended_until.lock() {
                        *c = Some(Instant::now() + CONTENDED);
                    }
                }
                shared.ready.store(false, Ordering::Relaxed);
                shared.metrics.commit_failures.inc();
                tracing::error!(error = %e, events = group.events, "group commit failed; answering 503");
                fail_all(group.pending, &e.to_string(), shared);
                shared.lose(group.reported);
                // The sink resets when it next runs (the store thread told it); restarting it
                // tracks every chain again.
                return Err(e.into());
            }
        };
        if failed.is_none() {
            shared.ready.store(true, Ordering::Relaxed);
        }
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
        if let Ok(mut known) = shared.known.lock() {
            for (tenant, (_, last)) in &outcome.chains {
                known.insert(tenant.clone(), *last);
            }
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
        match failed {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }
}

pub(super) fn store_gone() -> StoreError {
    StoreError::Invalid {
        what: "the store thread stopped before reporting the commit".to_owned(),
    }
}

/// Buffers of one group, reused from message to message.
pub(super) struct Bufs<'a> {
    appender: &'a mut Appender,
    pending: &'a mut Vec<Pending>,
}

/// Appends what one message calls for; its reply waits in `pending` for the commit.
pub(super) fn apply(
    sink: &mut AppendSink<'_>,
    det: &mut Detector,
    shared: &Shared,
    m: Msg,
    now: i64,
    b: &mut Bufs<'_>,
) -> Result<(), LedgerError> {
    let Bufs { appender, pending } = b;
    match m {
        Msg::Job(job) => {
            let mut out = Vec::with_capacity(job.events.len());
            for (i, ev) in job.events.iter().enumerate() {
                // The handler set each event's tenant to the token's (or refused the request).
                debug_assert_eq!(ev.tenant_id.as_ref(), Some(&job.tenant));
                let a = appender.add(sink, Some(&mut *det), ev, job.features.get(i), now)?;
                out.push(a);
            }
            pending.push(Pending::Job(job, out));
        }
        Msg::Denial(d) => {
            appender.add(sink, None, &d, None, now)?;
        }
        Msg::Decide(req, reply) => {
            // Answered now when sequenced (then its loss must be traceable to tenant and agent).
            let early = (shared.decide_answer == DecideAnswer::Sequenced)
                .then(|| (req.tenant.as_str().to_owned(), req.agent_id.clone()));
            match decide(sink, det, appender, &shared.metrics, req, now)? {
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
            let r = control(sink, det, appender, c, now, &shared.system_tenant)?;
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
