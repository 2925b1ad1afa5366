//! Webhook delivery end to end: a real receiver on loopback that fails on purpose, checks
//! signatures and timestamps; restarts in the middle of a retry sequence; dead letters; the
//! outbox; secret references; golden payloads.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use blackbox_webhooks::{
    AlertEntry, Backoff, DeliveryInfo, DeliveryStatus, DispatcherConfig, Outbox, PayloadFormat,
    SecretRef, SqliteOutbox, WebhookError, WebhookSecret, WebhookStats, WebhookTarget, payload,
    resolve_secret, spawn_dispatcher, verify_signature, webhook_id,
};
use tokio::sync::watch;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

// ---------------------------------------------------------------------------------------------
// A receiver

#[derive(Debug, Clone)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    content_type: String,
    body: Vec<u8>,
    at: Instant,
}

#[derive(Debug, Clone, Copy)]
enum Reply {
    Status(u16),
    RetryAfter(u16, &'static str),
    Hang,
}

type Script = Arc<dyn Fn(usize) -> Reply + Send + Sync>;

#[derive(Clone)]
struct Rx {
    log: Arc<Mutex<Vec<Received>>>,
    script: Script,
}

async fn hook(State(rx): State<Rx>, headers: HeaderMap, body: Bytes) -> Response {
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned()
    };
    let n = {
        let mut log = rx.log.lock().unwrap();
        log.push(Received {
            id: h("webhook-id"),
            timestamp: h("webhook-timestamp"),
            signature: h("webhook-signature"),
            content_type: h("content-type"),
            body: body.to_vec(),
            at: Instant::now(),
        });
        log.len() - 1
    };
    match (rx.script)(n) {
        Reply::Status(s) => StatusCode::from_u16(s).unwrap().into_response(),
        Reply::RetryAfter(s, after) => (
            StatusCode::from_u16(s).unwrap(),
            [("retry-after", after)],
            "busy",
        )
            .into_response(),
        Reply::Hang => {
            std::future::pending::<()>().await;
            StatusCode::OK.into_response()
        }
    }
}

struct Receiver {
    url: String,
    log: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(script: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let log = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(hook))
            .with_state(Rx {
                log: Arc::clone(&log),
                script: Arc::new(script),
            });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            url: format!("http://{addr}/hook"),
            log,
        }
    }

    fn received(&self) -> Vec<Received> {
        self.log.lock().unwrap().clone()
    }

    /// Every request carries `id`, a valid signature over id.timestamp.body, a fresh
    /// timestamp, and `body`.
    fn check_all(&self, id: &str, body: &[u8]) {
        let secret = WebhookSecret::from_text(SECRET).unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for (i, r) in self.received().iter().enumerate() {
            assert_eq!(r.id, id, "request {i}");
            assert_eq!(r.content_type, "application/json");
            let ts: i64 = r.timestamp.parse().unwrap();
            assert!(
                (now - ts).abs() <= 300,
                "request {i}: timestamp {ts}, now {now}"
            );
            assert!(
                verify_signature(&secret, &r.id, ts, &r.body, &r.signature),
                "request {i}: bad signature {}",
                r.signature
            );
            assert_eq!(r.body, body, "request {i}: the body changed");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures

fn entry(tenant: &str, seq: u64, event_type: &str) -> AlertEntry {
    let entry_id = format!("0193a5b0-7c1e-7000-8000-{seq:012}");
    let timestamp = "2026-11-30T12:00:00.000Z".to_owned();
    let payload = if event_type == "anomaly_detected" {
        r#"{"rule":"prompt_injection_in_tool_args","description":"Tool arguments contain a prompt injection","severity":"critical","action":"block_and_alert","kind":"pattern","triggered_by":["0193a5b0-7c1e-7000-8000-000000000041"],"matched":["literal 1"],"metric":null,"observed":null,"baseline":null,"threshold":null,"enforcement":"blocked"}"#
    } else {
        r#"{"rule":"excessive_tool_calls","reason":"paused by rule"}"#
    };
    let entry_json = format!(
        r#"{{"entry_id":"{entry_id}","timestamp":"{timestamp}","tenant_id":"{tenant}","agent_id":"agent-7","session_id":"s1","event_type":"{event_type}","payload":{payload},"seq":{seq},"key_id":"k1","prev_entry_hash":"sha256:5d41402abc4b2a76b9719d911017c592","hmac_sha256":"a1b2c3"}}"#
    );
    AlertEntry {
        tenant: tenant.to_owned(),
        seq,
        entry_id,
        event_type: event_type.to_owned(),
        timestamp,
        entry_json,
    }
}

/// A 0600 secret file holding [`SECRET`].
fn secret_file(dir: &Path) -> PathBuf {
    let path = dir.join("webhook.secret");
    std::fs::write(&path, format!("{SECRET}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    path
}

fn target(url: &str, events: &[&str], secret: &Path) -> WebhookTarget {
    let mut t = WebhookTarget::new(
        url,
        events.iter().map(|e| (*e).to_owned()).collect(),
        &format!("file:{}", secret.display()),
    )
    .unwrap();
    t.timeout = Duration::from_secs(5);
    t
}

fn config() -> DispatcherConfig {
    DispatcherConfig {
        backoff: Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_secs(5),
        },
        poll_interval: Duration::from_millis(50),
        shutdown_grace: Duration::from_secs(2),
        ..DispatcherConfig::default()
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls the delivery until `done` holds (generous deadline: the machine may be loaded).
async fn wait_for(
    outbox: &SqliteOutbox,
    id: i64,
    done: impl Fn(&DeliveryInfo) -> bool,
) -> DeliveryInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = outbox.get(id).unwrap().unwrap();
        if done(&d) {
            return d;
        }
        assert!(Instant::now() < deadline, "timed out; delivery is {d:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_requests(rx: &Receiver, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.received().len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} requests"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn only_delivery(outbox: &SqliteOutbox) -> DeliveryInfo {
    let all = outbox.list(None, 10).unwrap();
    assert_eq!(all.len(), 1, "{all:?}");
    all.into_iter().next().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Delivery

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_twice_then_delivers_with_same_id_valid_signatures_and_retry_after() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let rx = Receiver::start(|n| match n {
        0 => Reply::RetryAfter(503, "1"),
        1 => Reply::Status(503),
        _ => Reply::Status(200),
    })
    .await;
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("webhooks.db")).unwrap());
    let t = target(&rx.url, &["anomaly_detected"], &secret);
    let e = entry("acme", 42, "anomaly_detected");
    assert_eq!(
        outbox
            .enqueue(std::slice::from_ref(&t), std::slice::from_ref(&e), now_ms())
            .unwrap(),
        1
    );
    let stats = Arc::new(WebhookStats::default());
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(outbox.clone(), config(), Arc::clone(&stats), stopped).unwrap();

    let id = only_delivery(&outbox).id;
    let d = wait_for(&outbox, id, |d| d.status == DeliveryStatus::Delivered).await;
    stop.send(true).unwrap();
    handle.await.unwrap();

    let got = rx.received();
    assert_eq!(got.len(), 3, "{got:?}");
    let expected_id = webhook_id(&e.entry_id, &rx.url);
    rx.check_all(&expected_id, &payload(PayloadFormat::Json, &e).unwrap());
    // Retry-After: 1 on the first answer is the minimum delay before the second attempt.
    assert!(
        got[1].at.duration_since(got[0].at) >= Duration::from_millis(950),
        "Retry-After not honoured: {:?}",
        got[1].at.duration_since(got[0].at)
    );
    assert_eq!(d.webhook_id, expected_id);
    assert_eq!(d.attempts, 3);
    assert_eq!(d.last_status, Some(200));
    assert_eq!(d.last_error, None);
    assert!(d.delivered_at_ms.is_some());
    assert_eq!(d.next_attempt_at_ms, None);
    assert_eq!(stats.attempts.load(Ordering::Relaxed), 3);
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 1);
    assert_eq!(stats.failed_attempts.load(Ordering::Relaxed), 2);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_in_the_middle_of_a_retry_sequence_keeps_the_id_and_the_count() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let accept = Arc::new(AtomicBool::new(false));
    let a = Arc::clone(&accept);
    let rx = Receiver::start(move |_| {
        if a.load(Ordering::SeqCst) {
            Reply::Status(204)
        } else {
            Reply::RetryAfter(503, "1")
        }
    })
    .await;
    let path = tmp.path().join("webhooks.db");
    let e = entry("acme", 7, "anomaly_detected");
    let t = target(&rx.url, &["anomaly_detected"], &secret);

    // First run: at least one failed attempt, then a graceful stop.
    let first = {
        let outbox = Arc::new(SqliteOutbox::open(&path).unwrap());
        outbox
            .enqueue(std::slice::from_ref(&t), std::slice::from_ref(&e), now_ms())
            .unwrap();
        let id = only_delivery(&outbox).id;
        let (stop, stopped) = watch::channel(false);
        let handle = spawn_dispatcher(
            outbox.clone(),
            config(),
            Arc::new(WebhookStats::default()),
            stopped,
        )
        .unwrap();
        wait_for(&outbox, id, |d| d.last_status == Some(503)).await;
        stop.send(true).unwrap();
        handle.await.unwrap();
        outbox.get(id).unwrap().unwrap()
    };
    let sent_before = rx.received().len();
    assert!(sent_before >= 1);
    assert_eq!(first.status, DeliveryStatus::Pending);
    // Every attempt made is recorded before the next one is scheduled.
    assert_eq!(first.attempts as usize, sent_before);

    // Second run, new handles on the same file: the receiver now accepts.
    accept.store(true, Ordering::SeqCst);
    let outbox = Arc::new(SqliteOutbox::open(&path).unwrap());
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(
        outbox.clone(),
        config(),
        Arc::new(WebhookStats::default()),
        stopped,
    )
    .unwrap();
    let d = wait_for(&outbox, first.id, |d| d.status == DeliveryStatus::Delivered).await;
    stop.send(true).unwrap();
    handle.await.unwrap();

    assert_eq!(rx.received().len(), sent_before + 1);
    assert_eq!(d.attempts as usize, sent_before + 1);
    assert_eq!(d.last_status, Some(204));
    rx.check_all(
        &webhook_id(&e.entry_id, &rx.url),
        &payload(PayloadFormat::Json, &e).unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kill_during_an_attempt_resends_that_attempt_once_after_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    // The first request never gets an answer; later ones are accepted.
    let rx = Receiver::start(|n| {
        if n == 0 {
            Reply::Hang
        } else {
            Reply::Status(200)
        }
    })
    .await;
    let path = tmp.path().join("webhooks.db");
    let e = entry("acme", 9, "agent_paused");
    let mut t = target(&rx.url, &["agent_paused"], &secret);
    // The lease of an attempt in flight is its timeout plus its backoff.
    t.timeout = Duration::from_secs(2);
    let id = {
        let outbox = Arc::new(SqliteOutbox::open(&path).unwrap());
        outbox
            .enqueue(std::slice::from_ref(&t), std::slice::from_ref(&e), now_ms())
            .unwrap();
        let id = only_delivery(&outbox).id;
        let (_stop, stopped) = watch::channel(false);
        let handle = spawn_dispatcher(
            outbox.clone(),
            config(),
            Arc::new(WebhookStats::default()),
            stopped,
        )
        .unwrap();
        wait_requests(&rx, 1).await;
        // As abrupt as kill -9 for the dispatcher: no graceful path runs.
        handle.abort();
        let _ = handle.await;
        id
    };

    let outbox = Arc::new(SqliteOutbox::open(&path).unwrap());
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(
        outbox.clone(),
        config(),
        Arc::new(WebhookStats::default()),
        stopped,
    )
    .unwrap();
    let d = wait_for(&outbox, id, |d| d.status == DeliveryStatus::Delivered).await;
    stop.send(true).unwrap();
    handle.await.unwrap();

    // Exactly the interrupted attempt was made again, with the same id.
    assert_eq!(rx.received().len(), 2);
    assert_eq!(d.attempts, 2);
    rx.check_all(
        &webhook_id(&e.entry_id, &rx.url),
        &payload(PayloadFormat::Json, &e).unwrap(),
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_after_max_attempts_then_retry_delivers() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let accept = Arc::new(AtomicBool::new(false));
    let a = Arc::clone(&accept);
    let rx = Receiver::start(move |_| {
        if a.load(Ordering::SeqCst) {
            Reply::Status(200)
        } else {
            Reply::Status(500)
        }
    })
    .await;
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("webhooks.db")).unwrap());
    let mut t = target(&rx.url, &["anomaly_detected"], &secret);
    t.max_attempts = 3;
    let entries = [
        entry("acme", 1, "anomaly_detected"),
        entry("acme", 2, "anomaly_detected"),
    ];
    assert_eq!(
        outbox
            .enqueue(std::slice::from_ref(&t), &entries, now_ms())
            .unwrap(),
        2
    );
    let stats = Arc::new(WebhookStats::default());
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(outbox.clone(), config(), Arc::clone(&stats), stopped).unwrap();
    let ids: Vec<i64> = outbox
        .list(None, 10)
        .unwrap()
        .iter()
        .map(|d| d.id)
        .collect();
    for &id in &ids {
        let d = wait_for(&outbox, id, |d| d.status == DeliveryStatus::Dead).await;
        assert_eq!(d.attempts, 3);
        assert_eq!(d.last_status, Some(500));
        assert!(
            d.last_error.as_deref().unwrap().contains("HTTP 500"),
            "{d:?}"
        );
        assert_eq!(d.next_attempt_at_ms, None);
    }
    assert_eq!(rx.received().len(), 6);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 2);
    assert_eq!(outbox.counts().unwrap().dead, 2);
    // The gauges follow the outbox.
    let deadline = Instant::now() + Duration::from_secs(60);
    while stats.dead.load(Ordering::Relaxed) != 2 {
        assert!(Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    accept.store(true, Ordering::SeqCst);
    assert_eq!(outbox.retry(ids[0], now_ms()).unwrap(), 1);
    let d = wait_for(&outbox, ids[0], |d| d.status == DeliveryStatus::Delivered).await;
    assert_eq!(d.attempts, 1, "retry resets the count");
    assert_eq!(
        outbox.retry(ids[0], now_ms()).unwrap(),
        0,
        "delivered already"
    );
    assert_eq!(
        outbox.retry(9_999, now_ms()).unwrap(),
        0,
        "no such delivery"
    );
    assert_eq!(outbox.retry_dead(now_ms()).unwrap(), 1);
    wait_for(&outbox, ids[1], |d| d.status == DeliveryStatus::Delivered).await;
    assert_eq!(outbox.retry_dead(now_ms()).unwrap(), 0);
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(rx.received().len(), 8);
    assert_eq!(stats.delivered.load(Ordering::Relaxed), 2);
    let counts = outbox.counts().unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (0, 2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_dead_letters_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let rx = Receiver::start(|_| Reply::Status(410)).await;
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("webhooks.db")).unwrap());
    let t = target(&rx.url, &["anomaly_detected"], &secret);
    outbox
        .enqueue(
            std::slice::from_ref(&t),
            &[entry("acme", 1, "anomaly_detected")],
            now_ms(),
        )
        .unwrap();
    let stats = Arc::new(WebhookStats::default());
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(outbox.clone(), config(), Arc::clone(&stats), stopped).unwrap();
    let id = only_delivery(&outbox).id;
    let d = wait_for(&outbox, id, |d| d.status == DeliveryStatus::Dead).await;
    // Give a wrong retry a chance to show up before stopping.
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert_eq!(d.attempts, 1);
    assert_eq!(d.last_status, Some(410));
    assert_eq!(rx.received().len(), 1);
    assert_eq!(stats.dead_lettered.load(Ordering::Relaxed), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_secret_is_a_failed_attempt_that_names_the_ref_only() {
    let tmp = tempfile::tempdir().unwrap();
    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("webhooks.db")).unwrap());
    let mut t = WebhookTarget::new(
        &rx.url,
        vec!["anomaly_detected".into()],
        "k8s-secret/missing-secret",
    )
    .unwrap();
    t.max_attempts = 1;
    outbox
        .enqueue(
            std::slice::from_ref(&t),
            &[entry("acme", 1, "anomaly_detected")],
            now_ms(),
        )
        .unwrap();
    let cfg = DispatcherConfig {
        k8s_dir: tmp.path().join("k8s"),
        ..config()
    };
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(
        outbox.clone(),
        cfg,
        Arc::new(WebhookStats::default()),
        stopped,
    )
    .unwrap();
    let id = only_delivery(&outbox).id;
    let d = wait_for(&outbox, id, |d| d.status == DeliveryStatus::Dead).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert!(rx.received().is_empty(), "nothing unsigned is sent");
    let err = d.last_error.unwrap();
    assert!(err.contains("k8s-secret/missing-secret"), "{err}");
    assert_eq!(d.last_status, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_urls_go_through_tls() {
    // A plain-HTTP listener behind an https:// URL: the TLS handshake fails, which is recorded
    // as a failed attempt (the TLS client is set up; nothing is sent in clear text).
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let rx = Receiver::start(|_| Reply::Status(200)).await;
    let url = rx.url.replacen("http://", "https://", 1);
    let outbox = Arc::new(SqliteOutbox::open(&tmp.path().join("webhooks.db")).unwrap());
    let mut t = target(&url, &["anomaly_detected"], &secret);
    t.max_attempts = 1;
    outbox
        .enqueue(
            std::slice::from_ref(&t),
            &[entry("acme", 1, "anomaly_detected")],
            now_ms(),
        )
        .unwrap();
    let (stop, stopped) = watch::channel(false);
    let handle = spawn_dispatcher(
        outbox.clone(),
        config(),
        Arc::new(WebhookStats::default()),
        stopped,
    )
    .unwrap();
    let id = only_delivery(&outbox).id;
    let d = wait_for(&outbox, id, |d| d.status == DeliveryStatus::Dead).await;
    stop.send(true).unwrap();
    handle.await.unwrap();
    assert!(rx.received().is_empty());
    assert_eq!(d.last_status, None);
    assert!(!d.last_error.unwrap().is_empty());
}

// ---------------------------------------------------------------------------------------------
// The outbox

#[test]
fn enqueue_is_idempotent_and_records_high_water_marks() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let path = tmp.path().join("webhooks.db");
    let outbox = SqliteOutbox::open(&path).unwrap();
    let a = target(
        "https://siem.internal/a?token=t0ps3cret",
        &["anomaly_detected", "agent_paused"],
        &secret,
    );
    let mut b = target("https://siem.internal/b", &["agent_paused"], &secret);
    b.format = PayloadFormat::Ocsf;
    let entries = [
        entry("acme", 5, "anomaly_detected"),
        entry("acme", 6, "agent_paused"),
        entry("acme", 7, "tool_call"),
        entry("beta", 3, "anomaly_detected"),
    ];
    let targets = [a.clone(), b.clone()];
    assert_eq!(outbox.enqueue(&targets, &entries, 1_000).unwrap(), 4);
    assert_eq!(outbox.enqueue(&targets, &entries, 2_000).unwrap(), 0);
    assert_eq!(outbox.high_water_mark("acme").unwrap(), Some(7));
    assert_eq!(outbox.high_water_mark("beta").unwrap(), Some(3));
    assert_eq!(outbox.high_water_mark("gamma").unwrap(), None);
    // An older entry does not lower the mark.
    outbox
        .enqueue(&targets, &[entry("acme", 2, "tool_call")], 3_000)
        .unwrap();
    assert_eq!(outbox.high_water_mark("acme").unwrap(), Some(7));

    let all = outbox.list(None, 100).unwrap();
    assert_eq!(all.len(), 4);
    assert!(all.windows(2).all(|w| w[0].id > w[1].id), "newest first");
    let paused: Vec<&DeliveryInfo> = all
        .iter()
        .filter(|d| d.event_type == "agent_paused")
        .collect();
    assert_eq!(paused.len(), 2);
    assert_ne!(paused[0].webhook_id, paused[1].webhook_id);
    for d in &all {
        assert_eq!(d.status, DeliveryStatus::Pending);
        assert_eq!(d.attempts, 0);
        assert_eq!(d.max_attempts, 12);
        assert_eq!(d.created_at_ms, 1_000);
        assert_eq!(d.next_attempt_at_ms, Some(1_000));
        assert!(d.secret_ref.starts_with("file:"));
        assert!(!d.url.contains("t0ps3cret"), "listings hide query strings");
    }
    let ocsf = all.iter().find(|d| d.format == "ocsf").unwrap();
    assert_eq!(ocsf.url, "https://siem.internal/b");
    assert_eq!(outbox.due(1_000, 10).unwrap().len(), 4);
    assert_eq!(outbox.due(999, 10).unwrap().len(), 0);
    assert_eq!(
        outbox.list(Some(DeliveryStatus::Pending), 2).unwrap().len(),
        2
    );
    assert!(
        outbox
            .list(Some(DeliveryStatus::Dead), 10)
            .unwrap()
            .is_empty()
    );
    let counts = outbox.counts().unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead), (4, 0, 0));

    // Owner-only file, holding the secret reference and never the secret.
    drop(outbox);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mut bytes = std::fs::read(&path).unwrap();
    let mut wal = path.as_os_str().to_owned();
    wal.push("-wal");
    bytes.extend(std::fs::read(&wal).unwrap_or_default());
    let needle = &SECRET["whsec_".len()..];
    assert!(!bytes.windows(needle.len()).any(|w| w == needle.as_bytes()));

    // A file readable by others is refused.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = SqliteOutbox::open(&path).unwrap_err().to_string();
    assert!(err.contains("chmod 600"), "{err}");

    let err = DeliveryStatus::parse("failed").unwrap_err().to_string();
    assert!(err.contains("pending, delivered or dead"), "{err}");
    assert_eq!(DeliveryStatus::parse("dead").unwrap(), DeliveryStatus::Dead);
}

// ---------------------------------------------------------------------------------------------
// Secrets

fn write_mode(path: &Path, text: &str, mode: u32) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn secret_refs_parse_display_and_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    for s in [
        "env:WEBHOOK_SECRET",
        "file:/etc/blackbox/webhook.secret",
        "k8s-secret/moltbot-webhook-secret",
    ] {
        assert_eq!(SecretRef::parse(s).unwrap().to_string(), s);
    }
    assert_eq!(
        SecretRef::parse(" k8s-secret/x ").unwrap(),
        SecretRef::K8s("x".into())
    );
    for bad in [
        "whsec_c3VwZXJzZWNyZXQ=",
        "env:",
        "env:1X",
        "file:",
        "k8s-secret/",
        "k8s-secret/../etc/passwd",
        "vault:x",
    ] {
        let err = SecretRef::parse(bad).unwrap_err().to_string();
        assert!(err.contains("env:NAME"), "{err}");
        assert!(err.contains("k8s-secret/NAME"), "{err}");
        assert!(
            !err.contains("c3VwZXJzZWNyZXQ"),
            "the value is not echoed: {err}"
        );
    }

    // env: (PATH is always set; tests may not change the environment).
    let path_var = std::env::var("PATH").unwrap();
    let got = resolve_secret(&SecretRef::Env("PATH".into()), tmp.path()).unwrap();
    assert_eq!(got, WebhookSecret::from_text(&path_var).unwrap());
    let err = resolve_secret(
        &SecretRef::Env("BLACKBOX_TEST_UNSET_0x5eed".into()),
        tmp.path(),
    )
    .unwrap_err();
    assert!(matches!(err, WebhookError::SecretUnavailable { .. }));
    assert!(
        err.to_string()
            .contains("BLACKBOX_TEST_UNSET_0x5eed is not set")
    );

    // file: whsec_ is base64-decoded, a trailing newline ignored; 0600 only.
    let f = tmp.path().join("s1");
    write_mode(&f, "whsec_a2V5IGJ5dGVz\n", 0o600);
    let got = resolve_secret(&SecretRef::File(f.clone()), tmp.path()).unwrap();
    assert_eq!(
        got,
        WebhookSecret::from_bytes(b"key bytes".to_vec()).unwrap()
    );
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
    let err = resolve_secret(&SecretRef::File(f.clone()), tmp.path()).unwrap_err();
    assert!(matches!(err, WebhookError::SecretPermissions { .. }));
    assert!(err.to_string().contains("chmod 600"), "{err}");
    // Any other text is the key as raw bytes.
    let raw = tmp.path().join("s2");
    write_mode(&raw, "plain-secret\r\n", 0o600);
    let got = resolve_secret(&SecretRef::File(raw), tmp.path()).unwrap();
    assert_eq!(got, WebhookSecret::from_text("plain-secret").unwrap());
    assert_ne!(got, WebhookSecret::from_text("plain-secreT").unwrap());
    // Malformed secrets are refused without showing them.
    let bad = tmp.path().join("s3");
    write_mode(&bad, "whsec_not*base64!", 0o600);
    let err = resolve_secret(&SecretRef::File(bad.clone()), tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not valid base64") && !err.contains("not*base64"),
        "{err}"
    );
    write_mode(&bad, "\n", 0o600);
    let err = resolve_secret(&SecretRef::File(bad), tmp.path()).unwrap_err();
    assert!(err.to_string().contains("is empty"), "{err}");
    let err = resolve_secret(&SecretRef::File(tmp.path().join("nope")), tmp.path()).unwrap_err();
    assert!(matches!(err, WebhookError::SecretUnavailable { .. }));

    // k8s-secret/NAME under the mounted directory (0644 is the Kubernetes default).
    let k8s = tmp.path().join("k8s");
    std::fs::create_dir(&k8s).unwrap();
    write_mode(&k8s.join("moltbot-webhook-secret"), SECRET, 0o644);
    let got = resolve_secret(&SecretRef::K8s("moltbot-webhook-secret".into()), &k8s).unwrap();
    assert_eq!(got, WebhookSecret::from_text(SECRET).unwrap());
    let err = resolve_secret(&SecretRef::K8s("other".into()), &k8s)
        .unwrap_err()
        .to_string();
    assert!(err.contains("k8s-secret/other"), "{err}");

    // Debug shows nothing of the secret.
    let dbg = format!("{got:?}");
    assert_eq!(dbg, "WebhookSecret(<redacted>)");
    let plain = format!("{:?}", WebhookSecret::from_text("plain-secret").unwrap());
    assert!(!plain.contains("plain"), "{plain}");
}

// ---------------------------------------------------------------------------------------------
// Payloads

fn golden(name: &str, got: &[u8]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("BLACKBOX_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, got).unwrap();
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with BLACKBOX_BLESS=1 to create it",
            path.display()
        )
    });
    assert!(
        want == got,
        "{name} changed (a format change needs a version bump):\nwant {}\ngot  {}",
        String::from_utf8_lossy(&want),
        String::from_utf8_lossy(got)
    );
}

#[test]
fn payloads_match_golden_files() {
    let e = entry("acme", 42, "anomaly_detected");
    let json = payload(PayloadFormat::Json, &e).unwrap();
    let ocsf = payload(PayloadFormat::Ocsf, &e).unwrap();
    assert_eq!(json, payload(PayloadFormat::Json, &e).unwrap());
    assert_eq!(ocsf, payload(PayloadFormat::Ocsf, &e).unwrap());
    golden("webhook_json.json", &json);
    golden("webhook_ocsf.json", &ocsf);

    // The envelope carries the entry byte for byte.
    let text = String::from_utf8(json).unwrap();
    assert!(text.starts_with(
        r#"{"type":"anomaly_detected","timestamp":"2026-11-30T12:00:00.000Z","data":{"#
    ));
    assert!(text.contains(&e.entry_json));

    let v: serde_json::Value = serde_json::from_slice(&ocsf).unwrap();
    assert_eq!(v["class_uid"], 2004);
    assert_eq!(v["category_uid"], 2);
    assert_eq!(v["activity_id"], 1);
    assert_eq!(v["type_uid"], 200_401);
    assert_eq!(v["severity_id"], 5);
    assert_eq!(v["time"], 1_796_040_000_000_i64);
    assert_eq!(v["metadata"]["version"], "1.1.0");
    assert_eq!(v["metadata"]["uid"], e.entry_id.as_str());
    assert_eq!(v["finding_info"]["uid"], e.entry_id.as_str());
    assert_eq!(v["finding_info"]["title"], "prompt_injection_in_tool_args");
    assert_eq!(v["finding_info"]["types"][0], "pattern");
    assert_eq!(v["actor"]["user"]["uid"], "agent-7");
    assert_eq!(v["resources"][0]["group"]["uid"], "acme");
    let original: serde_json::Value = serde_json::from_str(&e.entry_json).unwrap();
    assert_eq!(v["unmapped"], original);

    // Another event type: title falls back to the rule or the event type; severity unknown.
    let paused = entry("acme", 43, "agent_paused");
    let v: serde_json::Value =
        serde_json::from_slice(&payload(PayloadFormat::Ocsf, &paused).unwrap()).unwrap();
    assert_eq!(v["severity_id"], 0);
    assert_eq!(v["finding_info"]["title"], "excessive_tool_calls");
    assert_eq!(v["message"], "agent_paused (agent agent-7)");
    assert!(v["finding_info"].get("desc").is_none());

    // Not an object: refused with the entry named.
    let mut bad = e.clone();
    bad.entry_json = "[1]".into();
    let err = payload(PayloadFormat::Json, &bad).unwrap_err().to_string();
    assert!(err.contains(&e.entry_id), "{err}");
}

#[test]
fn enqueue_skips_entries_that_cannot_be_delivered_but_advances_the_mark() {
    let tmp = tempfile::tempdir().unwrap();
    let secret = secret_file(tmp.path());
    let outbox = SqliteOutbox::open(&tmp.path().join("webhooks.db")).unwrap();
    let t = target("http://127.0.0.1:9/hook", &["anomaly_detected"], &secret);
    let mut bad = entry("acme", 11, "anomaly_detected");
    bad.entry_json = "not json".into();
    let good = entry("acme", 10, "anomaly_detected");
    assert_eq!(outbox.enqueue(&[t], &[good, bad], 0).unwrap(), 1);
    assert_eq!(outbox.high_water_mark("acme").unwrap(), Some(11));
}
