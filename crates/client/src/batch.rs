//! Grouping events pushed from many tasks into few ingest requests.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use crate::client::Client;
use crate::error::Error;
use crate::types::EntryRef;

/// When a [`Batcher`] sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchConfig {
    /// At most this many events per request (default 256).
    pub max_events: usize,
    /// Send at the latest this long after the first event of a batch arrived (default 10 ms).
    pub max_delay: Duration,
    /// Events waiting to be batched; `push` waits while the queue is full (default 4096).
    pub queue_capacity: usize,
    /// Requests in flight at once (default 4). While all are busy, the next batch grows.
    pub max_in_flight: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_events: 256,
            max_delay: Duration::from_millis(10),
            queue_capacity: 4096,
            max_in_flight: 4,
        }
    }
}

struct Item {
    event: Value,
    reply: oneshot::Sender<Result<EntryRef, Error>>,
}

/// Accumulates events pushed from many tasks and sends them in requests of up to
/// [`BatchConfig::max_events`] events, or after [`BatchConfig::max_delay`], whichever comes first.
/// Each [`Batcher::push`] resolves with that event's own entry, or the error of its request.
///
/// Clones share the same queue and background task. Raw content is hashed in the pushing task
/// (with the client's policy) before the event is queued. When the service refuses a request
/// because of one event (an API error with an `index`), that event gets the error and the rest
/// of the batch is sent again without it; any other error goes to every event of the request.
/// Delivery is at-least-once at best, as for [`Client::append`].
#[derive(Clone)]
pub struct Batcher {
    client: Client,
    tx: mpsc::Sender<Item>,
    requests: Arc<AtomicU64>,
    worker: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for Batcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batcher")
            .field("client", &self.client)
            .field("requests_sent", &self.requests_sent())
            .finish_non_exhaustive()
    }
}

impl Batcher {
    /// Starts the background task on the current Tokio runtime.
    ///
    /// # Errors
    /// [`Error::NoRuntime`] when called outside a Tokio runtime.
    pub fn new(client: Client, config: BatchConfig) -> Result<Self, Error> {
        let rt = tokio::runtime::Handle::try_current().map_err(|_| Error::NoRuntime)?;
        let config = BatchConfig {
            max_events: config.max_events.max(1),
            queue_capacity: config.queue_capacity.max(1),
            max_in_flight: config.max_in_flight.max(1),
            ..config
        };
        let (tx, rx) = mpsc::channel(config.queue_capacity);
        let requests = Arc::new(AtomicU64::new(0));
        let worker = rt.spawn(run(client.clone(), rx, config, Arc::clone(&requests)));
        Ok(Self {
            client,
            tx,
            requests,
            worker: Arc::new(Mutex::new(Some(worker))),
        })
    }

    /// Queues one event and waits for its entry. Waits for room while the queue is full.
    ///
    /// # Errors
    /// [`Error::Event`] when the event cannot be hashed (it is not queued); the error of the
    /// request that carried it; [`Error::BatcherClosed`] when the background task has stopped.
    pub async fn push(&self, mut event: Value) -> Result<EntryRef, Error> {
        self.client.prepare(&mut event)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Item { event, reply })
            .await
            .map_err(|_| Error::BatcherClosed)?;
        rx.await.map_err(|_| Error::BatcherClosed)?
    }

    /// Requests sent so far (retries of one request not counted).
    #[must_use]
    pub fn requests_sent(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Stops taking events and waits until everything queued has been sent and answered. With
    /// other clones still alive, this waits until they are dropped too.
    pub async fn close(self) {
        let Self { tx, worker, .. } = self;
        drop(tx);
        let handle = worker
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(handle) = handle {
            // A panicked worker has dropped every reply sender already; nothing more to do.
            let _ = handle.await;
        }
    }
}

async fn run(
    client: Client,
    mut rx: mpsc::Receiver<Item>,
    config: BatchConfig,
    requests: Arc<AtomicU64>,
) {
    let slots = Arc::new(Semaphore::new(config.max_in_flight));
    let mut in_flight = JoinSet::new();
    loop {
        // A free slot first: while every request is in flight, events wait in the queue and the
        // next batch comes out full.
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break; // the semaphore is never closed
        };
        let Some(first) = rx.recv().await else {
            break;
        };
        let mut batch = vec![first];
        let deadline = Instant::now() + config.max_delay;
        while batch.len() < config.max_events {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(item)) => batch.push(item),
                // Time is up, or every sender is gone: send what there is.
                Ok(None) | Err(_) => break,
            }
        }
        let client = client.clone();
        let requests = Arc::clone(&requests);
        in_flight.spawn(async move {
            send_batch(&client, batch, &requests).await;
            drop(permit);
        });
        while in_flight.try_join_next().is_some() {}
    }
    while in_flight.join_next().await.is_some() {}
}

async fn send_batch(client: &Client, batch: Vec<Item>, requests: &AtomicU64) {
    let (mut events, mut replies): (Vec<Value>, Vec<_>) =
        batch.into_iter().map(|i| (i.event, i.reply)).unzip();
    // Each round either answers everything or drops one event, so this ends.
    while !events.is_empty() {
        requests.fetch_add(1, Ordering::Relaxed);
        match client.append_prepared(&events).await {
            Ok(resp) => {
                for (reply, entry) in replies.into_iter().zip(resp.entries) {
                    // The pusher may have given up waiting; its event is written all the same.
                    let _ = reply.send(Ok(entry));
                }
                return;
            }
            Err(err) => match &err {
                Error::Api {
                    status: 400..=499,
                    index: Some(i),
                    ..
                } if *i < events.len() && events.len() > 1 => {
                    events.remove(*i);
                    let _ = replies.remove(*i).send(Err(err));
                }
                _ => {
                    for reply in replies {
                        let _ = reply.send(Err(err.clone()));
                    }
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testserver::{Behaviour, TestServer};
    use serde_json::json;

    fn ev(i: usize) -> Value {
        json!({"agent_id": format!("agent-{}", i % 3), "session_id": "s", "event_type": "llm_request",
               "client_seq": i, "payload": {"model": "m", "prompt": format!("secret prompt {i}")}})
    }

    #[tokio::test]
    async fn each_push_gets_its_own_entry_in_few_requests() {
        let server = TestServer::start(Behaviour::default()).await;
        let batcher = Batcher::new(
            server.client(),
            BatchConfig {
                max_events: 8,
                max_delay: Duration::from_millis(50),
                queue_capacity: 4,
                max_in_flight: 2,
            },
        )
        .unwrap();
        let mut tasks = JoinSet::new();
        for i in 0..40 {
            let b = batcher.clone();
            tasks.spawn(async move { (i, b.push(ev(i)).await) });
        }
        let mut seen = std::collections::BTreeSet::new();
        while let Some(r) = tasks.join_next().await {
            let (i, entry) = r.unwrap();
            let entry = entry.unwrap();
            // Each push got its own entry: read back, it carries the push's client_seq.
            let rec = server.client().entry(&entry.entry_id, None).await.unwrap();
            assert_eq!(rec.entry["client_seq"], i, "{}", rec.line);
            assert!(seen.insert(entry.seq));
        }
        assert_eq!(seen.len(), 40);
        let sizes = server.batch_sizes();
        assert!(sizes.iter().all(|&n| n <= 8), "{sizes:?}");
        assert_eq!(sizes.iter().sum::<usize>(), 40);
        assert!(sizes.len() < 40, "not batched: {sizes:?}");
        assert_eq!(batcher.requests_sent(), sizes.len() as u64);
        assert!(!server.bodies().iter().any(|b| b.contains("secret prompt")));
        batcher.close().await;
    }

    #[tokio::test]
    async fn a_lone_event_goes_after_the_delay() {
        let server = TestServer::start(Behaviour::default()).await;
        let batcher = Batcher::new(
            server.client(),
            BatchConfig {
                max_events: 1000,
                max_delay: Duration::from_millis(20),
                ..BatchConfig::default()
            },
        )
        .unwrap();
        let t0 = std::time::Instant::now();
        let entry = batcher.push(ev(5)).await.unwrap();
        let took = t0.elapsed();
        let rec = server.client().entry(&entry.entry_id, None).await.unwrap();
        assert_eq!(rec.entry["client_seq"], 5);
        assert!(took >= Duration::from_millis(20), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(server.batch_sizes(), [1]);
    }

    #[tokio::test]
    async fn one_bad_event_fails_alone() {
        // The front of the test service refuses any request holding an event with client_seq 3.
        let server = TestServer::start(Behaviour {
            refuse_client_seq: Some(3),
            ..Behaviour::default()
        })
        .await;
        let batcher = Batcher::new(
            server.client(),
            BatchConfig {
                max_events: 6,
                max_delay: Duration::from_millis(200),
                ..BatchConfig::default()
            },
        )
        .unwrap();
        let mut tasks = JoinSet::new();
        for i in 0..6 {
            let b = batcher.clone();
            tasks.spawn(async move { (i, b.push(ev(i)).await) });
        }
        while let Some(r) = tasks.join_next().await {
            let (i, res) = r.unwrap();
            if i == 3 {
                let e = res.unwrap_err();
                assert_eq!(e.code(), Some("invalid_event"), "{e:?}");
            } else {
                let rec = server
                    .client()
                    .entry(&res.unwrap().entry_id, None)
                    .await
                    .unwrap();
                assert_eq!(rec.entry["client_seq"], i);
            }
        }
        batcher.close().await;
    }

    #[tokio::test]
    async fn a_failed_request_fails_every_event_of_it() {
        let server = TestServer::start(Behaviour {
            always_status: Some(401),
            ..Behaviour::default()
        })
        .await;
        let batcher = Batcher::new(server.client(), BatchConfig::default()).unwrap();
        let (a, b) = tokio::join!(batcher.push(ev(1)), batcher.push(ev(2)));
        assert_eq!(a.unwrap_err().code(), Some("unauthenticated"));
        assert_eq!(b.unwrap_err().status(), Some(401));
    }

    #[tokio::test]
    async fn unhashable_events_are_refused_before_queueing() {
        let server = TestServer::start(Behaviour::default()).await;
        let batcher = Batcher::new(server.client(), BatchConfig::default()).unwrap();
        let bad = json!({"agent_id": "a", "session_id": "s", "event_type": "x",
                         "payload": {"prompt": "p", "prompt_hash": format!("sha256:{}", "0".repeat(64))}});
        assert!(matches!(
            batcher.push(bad).await,
            Err(Error::Event { index: 0, .. })
        ));
        batcher.close().await;
        assert!(server.batch_sizes().is_empty());
    }

    #[test]
    fn outside_a_runtime_new_fails_cleanly() {
        let client = Client::new("http://127.0.0.1:1", "t").unwrap();
        assert!(matches!(
            Batcher::new(client, BatchConfig::default()),
            Err(Error::NoRuntime)
        ));
    }
}
