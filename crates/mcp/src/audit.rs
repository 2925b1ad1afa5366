//! The gateway's link to the Blackbox service: decisions (`POST /v1/decide`, awaited before a
//! call is forwarded) and records (`POST /v1/events`, sent in the background in batches).
//!
//! Records are never dropped for a service that is away: they wait in memory and are sent when
//! it is back (retried with backoff); what is still unsent when the gateway stops is written to
//! a spool file, which the next gateway to start sends first. Every record is hashed before it
//! is queued, so neither the queue nor the spool holds raw content.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use blackbox_api::decide::{DecideRequest, Decision};
use serde_json::Value;

/// Why the service did not decide a call.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DecideError {
    /// It could not be reached, or answered that it cannot take the call now.
    #[error("the service is unavailable: {0}")]
    Unavailable(String),
    /// It refused the request itself (a token without the `ingest` scope, an invalid agent id):
    /// a configuration error of the gateway.
    #[error("the service refused the decision request: {0}")]
    Refused(String),
}

/// Where decisions are asked when not over HTTP: the service running inside the gateway's own
/// process (`--data-dir`), which takes the request as `POST /v1/decide` does once authenticated,
/// without the loopback round trip (about half of the latency a gateway adds).
pub trait LocalDecider: Send + Sync + std::fmt::Debug {
    /// Decides `request` (recording the attempt and the decision).
    fn decide<'a>(
        &'a self,
        request: DecideRequest,
    ) -> futures_util::future::BoxFuture<'a, Result<Decision, DecideError>>;
}

/// Counters of a gateway (exposed as Prometheus metrics by the HTTP gateway and recorded in the
/// session's end by the stdio gateway).
#[derive(Debug, Default)]
pub struct Stats {
    /// `tools/call` requests seen.
    pub calls: AtomicU64,
    /// `tools/call` requests refused (blocked, paused, throttled, undecided when failing
    /// closed).
    pub refused: AtomicU64,
    /// Decisions asked.
    pub decisions: AtomicU64,
    /// Decisions that could not be had.
    pub undecided: AtomicU64,
    /// Records sent.
    pub recorded: AtomicU64,
    /// Records waiting (in memory).
    pub waiting: AtomicU64,
    /// Microseconds spent waiting for decisions, in all.
    pub decide_micros: AtomicU64,
}

/// How long records gather before they are sent (at most [`BATCH`] a request): a request is
/// sent at most once per `GATHER` unless a full batch waits.
const GATHER: Duration = Duration::from_millis(25);

/// Most records in one request.
const BATCH: usize = 256;

/// Records waiting to be sent, shared by the gateway's tasks and the sender. A string in it
/// marks the end of a claimed spool file (`\u{0}remove:<path>`), removed once all before it
/// are sent.
#[derive(Debug, Default)]
struct Backlog {
    queue: Mutex<VecDeque<Value>>,
    more: tokio::sync::Notify,
    closing: std::sync::atomic::AtomicBool,
    /// Notified once `closing` is set (a sender gathering records stops waiting).
    closed: tokio::sync::Notify,
    /// A request with records is on its way to the service (its outcome not known yet).
    sending: std::sync::atomic::AtomicBool,
}

/// How long [`Audit::close`] waits, past its deadline, for a request already on its way:
/// stopping it then would leave its records neither known sent nor safe to spool (spooled,
/// they would be sent twice when the service did take them).
const IN_FLIGHT_GRACE: Duration = Duration::from_secs(10);

/// The link to the service.
#[derive(Debug)]
pub struct Audit {
    client: blackbox_client::Client,
    backlog: Arc<Backlog>,
    /// Counters.
    pub stats: Arc<Stats>,
    spool_dir: Option<PathBuf>,
    worker: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Released by [`Audit::close`] (the service in this process stops only once nothing
    /// holds it).
    local: Mutex<Option<Arc<dyn LocalDecider>>>,
}

fn summary(e: &blackbox_client::Error) -> String {
    // The client's errors never carry the token.
    e.to_string()
}

/// Whether the service is away or cannot take the request now (try again later), rather than
/// refusing it. A token the service refuses (401, 403) counts as away too: records wait until
/// an operator fixes the token rather than being dropped.
fn unavailable(e: &blackbox_client::Error) -> bool {
    match e {
        blackbox_client::Error::Connect(_) | blackbox_client::Error::Transport(_) => true,
        _ => matches!(e.status(), Some(s) if s == 401 || s == 403 || s == 429 || s >= 500),
    }
}

impl Audit {
    /// Starts the background sender. With a `spool_dir`, records a previous gateway left there
    /// are sent first, and what cannot be sent at [`Audit::close`] is left there. With `local`,
    /// decisions are asked of the service in this process rather than over HTTP (records still
    /// go through the client, in the background, off the calls' path).
    ///
    /// # Errors
    /// The spool directory cannot be created or read.
    pub fn start(
        client: blackbox_client::Client,
        spool_dir: Option<PathBuf>,
        local: Option<Arc<dyn LocalDecider>>,
    ) -> Result<Arc<Self>, String> {
        let mut backlog = VecDeque::new();
        if let Some(dir) = &spool_dir {
            std::fs::create_dir_all(dir)
                .map_err(|e| format!("cannot create the spool directory {}: {e}", dir.display()))?;
            backlog = claim_spool(dir)?;
        }
        let stats = Arc::new(Stats::default());
        stats.waiting.store(
            backlog.iter().filter(|v| !v.is_string()).count() as u64,
            Ordering::Relaxed,
        );
        let backlog = Arc::new(Backlog {
            queue: Mutex::new(backlog),
            ..Backlog::default()
        });
        let worker = tokio::spawn(send_loop(client.clone(), backlog.clone(), stats.clone()));
        Ok(Arc::new(Self {
            client,
            backlog,
            stats,
            spool_dir,
            worker: Mutex::new(Some(worker)),
            local: Mutex::new(local),
        }))
    }

    /// Asks the service whether the call may go ahead (the service records the attempt and its
    /// decision either way).
    ///
    /// # Errors
    /// [`DecideError`].
    pub async fn decide(&self, request: &DecideRequest) -> Result<Decision, DecideError> {
        let started = Instant::now();
        self.stats.decisions.fetch_add(1, Ordering::Relaxed);
        let local = self
            .local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(local) = local {
            let r = local.decide(request.clone()).await;
            self.stats.decide_micros.fetch_add(
                u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
                Ordering::Relaxed,
            );
            if r.is_err() {
                self.stats.undecided.fetch_add(1, Ordering::Relaxed);
            }
            return r;
        }
        let body = serde_json::to_value(request)
            .map_err(|e| DecideError::Refused(format!("cannot write the request: {e}")))?;
        let r = self.client.decide(&body).await;
        self.stats.decide_micros.fetch_add(
            u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
        r.map_err(|e| {
            self.stats.undecided.fetch_add(1, Ordering::Relaxed);
            if unavailable(&e) {
                DecideError::Unavailable(summary(&e))
            } else {
                DecideError::Refused(summary(&e))
            }
        })
    }

    /// Queues an event to record (hashing nothing: the caller's events hold digests only).
    pub fn record(&self, event: Value) {
        self.stats.waiting.fetch_add(1, Ordering::Relaxed);
        self.backlog
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push_back(event);
        self.backlog.more.notify_one();
    }

    /// Sends what is queued, waiting at most `deadline`; what is left is written to a spool
    /// file (or, without a spool directory, reported lost). Returns how many records were left
    /// over.
    pub async fn close(&self, deadline: Duration) -> usize {
        self.local
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        self.backlog.closing.store(true, Ordering::Release);
        self.backlog.more.notify_one();
        self.backlog.closed.notify_one();
        let until = Instant::now() + deadline;
        while Instant::now() < until && self.stats.waiting.load(Ordering::Relaxed) > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // A request on its way is let finish (then the sender stops at once: closing).
        let grace = Instant::now() + IN_FLIGHT_GRACE;
        while Instant::now() < grace && self.backlog.sending.load(Ordering::Acquire) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let worker = self
            .worker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(w) = worker {
            w.abort();
            let _ = w.await;
        }
        let left: Vec<Value> = std::mem::take(
            &mut *self
                .backlog
                .queue
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
        .into();
        let mut records = Vec::new();
        let mut claimed = Vec::new();
        for v in left {
            match v {
                Value::String(s) => {
                    claimed.extend(s.strip_prefix("\u{0}remove:").map(PathBuf::from))
                }
                other => records.push(other),
            }
        }
        if records.is_empty() {
            for c in claimed {
                let _ = std::fs::remove_file(c);
            }
            return 0;
        }
        let Some(dir) = &self.spool_dir else {
            tracing::error!(
                "{} record(s) could not be sent to the service and are lost (no spool directory)",
                records.len()
            );
            return records.len();
        };
        let path = dir.join(format!("spool-{}.ndjson", uuid::Uuid::now_v7()));
        let mut text = String::new();
        for r in &records {
            text.push_str(&r.to_string());
            text.push('\n');
        }
        match std::fs::write(&path, text) {
            Ok(()) => {
                // The claimed files' records are in the new file now.
                for c in claimed {
                    let _ = std::fs::remove_file(c);
                }
                tracing::warn!(
                    "{} record(s) could not be sent yet; kept in {} for the next gateway",
                    records.len(),
                    path.display()
                );
            }
            Err(e) => tracing::error!(
                "{} record(s) could not be sent and cannot be spooled to {}: {e}",
                records.len(),
                path.display()
            ),
        }
        records.len()
    }

    /// The spool directory, if any.
    #[must_use]
    pub fn spool_dir(&self) -> Option<&Path> {
        self.spool_dir.as_deref()
    }
}

/// Takes over the spool files of stopped gateways (renamed first, so two starting gateways do
/// not both send one file).
fn claim_spool(dir: &Path) -> Result<VecDeque<Value>, String> {
    let mut out = VecDeque::new();
    let entries = std::fs::read_dir(dir)
        .map_err(|e| format!("cannot read the spool directory {}: {e}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        // A file claimed by a gateway that died before it sent it is claimed again.
        let orphan = ext
            .strip_prefix("claimed-")
            .and_then(|pid| pid.parse::<u32>().ok())
            .is_some_and(|pid| {
                pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
            });
        if ext != "ndjson" && !orphan {
            continue;
        }
        let claimed = path.with_extension(format!("claimed-{}", std::process::id()));
        if std::fs::rename(&path, &claimed).is_err() {
            continue; // another gateway took it
        }
        let text = std::fs::read_to_string(&claimed)
            .map_err(|e| format!("cannot read the spool file {}: {e}", claimed.display()))?;
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str(line) {
                Ok(v) => out.push_back(v),
                Err(e) => tracing::warn!("skipping an unreadable spooled record: {e}"),
            }
        }
        // Kept until sent: removed by the sender once the backlog is empty.
        out.push_back(Value::String(format!("\u{0}remove:{}", claimed.display())));
    }
    Ok(out)
}

/// Lets records gather into one request for [`GATHER`], or until the gateway closes: they are
/// not on any call's way, and a request per record would cost each call a write group of its
/// own in the service (ending the merged store commit its decision could join) and take CPU
/// from the calls in flight.
async fn gather(backlog: &Backlog) {
    if backlog.closing.load(Ordering::Acquire) {
        return;
    }
    tokio::select! {
        () = tokio::time::sleep(GATHER) => {}
        () = backlog.closed.notified() => {}
    }
}

/// The background sender: batches of up to 256 records, [`GATHER`] after the first.
async fn send_loop(client: blackbox_client::Client, backlog: Arc<Backlog>, stats: Arc<Stats>) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let batch: Vec<Value> = {
            let mut q = backlog.queue.lock().unwrap_or_else(PoisonError::into_inner);
            // Spool files fully sent are removed.
            while let Some(Value::String(s)) = q.front() {
                if let Some(path) = s.strip_prefix("\u{0}remove:") {
                    let _ = std::fs::remove_file(path);
                }
                q.pop_front();
            }
            q.iter()
                .take(BATCH)
                .take_while(|v| !v.is_string())
                .cloned()
                .collect()
        };
        if batch.is_empty() {
            if backlog.closing.load(Ordering::Acquire) {
                return;
            }
            backlog.more.notified().await;
            gather(&backlog).await;
            continue;
        }
        let n = batch.len();
        backlog.sending.store(true, Ordering::Release);
        let sent = client.append(&batch).await;
        {
            // Its outcome is known before `close` may take what is left.
            let mut q = backlog.queue.lock().unwrap_or_else(PoisonError::into_inner);
            if sent.is_ok() {
                q.drain(..n);
            }
            backlog.sending.store(false, Ordering::Release);
        }
        match sent {
            Ok(_) => {
                stats.recorded.fetch_add(n as u64, Ordering::Relaxed);
                stats.waiting.fetch_sub(n as u64, Ordering::Relaxed);
                backoff = Duration::from_millis(250);
                // Under a steady stream of calls the next record is already waiting: it still
                // gathers with the ones that follow (one request per `GATHER` unless a batch
                // is full).
                if n < BATCH {
                    gather(&backlog).await;
                }
            }
            Err(e) if !unavailable(&e) => {
                // The service refused the batch: drop the event it names (or, without an
                // index, the whole batch), say so, go on with the rest.
                let bad = match &e {
                    blackbox_client::Error::Api { index: Some(i), .. } if *i < n => *i..*i + 1,
                    _ => 0..n,
                };
                let dropped = bad.len();
                backlog
                    .queue
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .drain(bad);
                stats.waiting.fetch_sub(dropped as u64, Ordering::Relaxed);
                tracing::error!(
                    "the service refused {dropped} gateway record(s): {}",
                    summary(&e)
                );
            }
            Err(e) => {
                if backlog.closing.load(Ordering::Acquire) {
                    // Closing: the rest goes to the spool.
                    return;
                }
                tracing::warn!(
                    "cannot record {} event(s) yet ({}); retrying in {:?}",
                    stats.waiting.load(Ordering::Relaxed),
                    summary(&e),
                    backoff
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spool_files_are_claimed_once_and_a_dead_gateways_claim_is_taken_over() {
        let dir = std::env::temp_dir().join(format!("bbx-spool-test-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap_or_default();
        std::fs::write(dir.join("spool-a.ndjson"), "{\"n\":1}\n").unwrap_or_default();
        // Claimed by a process that no longer exists (pid beyond the kernel's limit).
        std::fs::write(dir.join("spool-b.claimed-4194305"), "{\"n\":2}\n").unwrap_or_default();
        let got = claim_spool(&dir).unwrap_or_default();
        let records: Vec<&Value> = got.iter().filter(|v| !v.is_string()).collect();
        assert_eq!(records.len(), 2, "{got:?}");
        // Claimed now: a second gateway finds nothing to take.
        let again = claim_spool(&dir).unwrap_or_default();
        assert!(again.is_empty(), "{again:?}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Under a steady stream of calls, records gather into few requests (at most one per
    /// `GATHER` unless a batch is full) rather than one request per record as soon as the
    /// previous one returns; none is lost.
    #[tokio::test]
    #[allow(clippy::unwrap_used)]
    async fn a_steady_stream_of_records_is_sent_in_gathered_requests() {
        let requests = Arc::new(AtomicU64::new(0));
        let received = Arc::new(AtomicU64::new(0));
        let app = axum::Router::new().route(
            "/v1/events",
            axum::routing::post({
                let (requests, received) = (requests.clone(), received.clone());
                move |body: axum::body::Bytes| async move {
                    // A service that takes a few milliseconds to commit a request.
                    tokio::time::sleep(Duration::from_millis(3)).await;
                    let events: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
                    requests.fetch_add(1, Ordering::Relaxed);
                    received.fetch_add(events.len() as u64, Ordering::Relaxed);
                    let entries: Vec<Value> = (0..events.len())
                        .map(|i| {
                            serde_json::json!({
                                "entry_id": format!("e{i}"),
                                "seq": i,
                                "entry_hash": format!("sha256:{}", "0".repeat(64)),
                            })
                        })
                        .collect();
                    axum::Json(serde_json::json!({
                        "tenant_id": "acme",
                        "count": events.len(),
                        "entries": entries,
                    }))
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        let client = blackbox_client::Client::new(&url, "bbx_0000000000000000_test").unwrap();
        let audit = Audit::start(client, None, None).unwrap();
        let started = Instant::now();
        // 120 records, one every millisecond or so (at least 120 ms): records keep arriving
        // while each request is on its way.
        for i in 0..120 {
            audit.record(serde_json::json!({
                "agent_id": "a",
                "session_id": "s",
                "event_type": "tool_result",
                "payload": {"n": i},
            }));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        assert_eq!(audit.close(Duration::from_secs(10)).await, 0);
        let ms = started.elapsed().as_millis();
        assert_eq!(received.load(Ordering::Relaxed), 120);
        let n = u128::from(requests.load(Ordering::Relaxed));
        // At most one per `GATHER` (25 ms) and a request's 3 ms, whatever this machine's pace;
        // sent as soon as the last returned, they would be one per 3 ms or so.
        assert!(n <= ms / 20 + 3, "{n} requests for 120 records in {ms} ms");
    }
}
