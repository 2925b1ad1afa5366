//! The dispatcher: takes due deliveries from an [`Outbox`], signs and sends them, records each
//! attempt's outcome before it schedules the next.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::outbox::{AttemptFailure, Delivery, NextStep, Outbox};
use crate::retry::Backoff;
use crate::signing::{resolve_secret, sign};
use crate::{DEFAULT_K8S_SECRETS_DIR, SecretRef, WebhookError, ms, now_ms, redact_url};

/// The HTTP(S) client of outgoing deliveries (webhooks, and the service's guardrail spans):
/// HTTP/1.1, rustls with the system's trusted roots.
pub type HttpClient = HyperClient<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Longest `last_error` kept.
const MAX_ERROR_CHARS: usize = 200;
/// Most bytes of a response body read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;
const USER_AGENT: &str = concat!("blackbox-webhooks/", env!("CARGO_PKG_VERSION"));

/// Counters and gauges of webhook delivery, for the Prometheus exporter:
///
/// - `attempts`: attempts started (counter; suggested name `blackbox_webhook_attempts_total`);
/// - `delivered`: deliveries answered 2xx (counter; `blackbox_webhook_delivered_total`);
/// - `failed_attempts`: attempts that failed: non-2xx, network error, timeout, unreadable
///   secret (counter; `blackbox_webhook_failed_attempts_total`);
/// - `dead_lettered`: deliveries given up (counter; `blackbox_webhook_dead_lettered_total`);
/// - `pending`: deliveries waiting or in flight, refreshed from the outbox about every second
///   (gauge; `blackbox_webhook_pending`);
/// - `dead`: deliveries in the dead-letter state, refreshed likewise (gauge;
///   `blackbox_webhook_dead`).
#[derive(Debug, Default)]
pub struct WebhookStats {
    /// Attempts started.
    pub attempts: AtomicU64,
    /// Deliveries answered 2xx.
    pub delivered: AtomicU64,
    /// Attempts that failed.
    pub failed_attempts: AtomicU64,
    /// Deliveries dead-lettered.
    pub dead_lettered: AtomicU64,
    /// Deliveries pending (gauge).
    pub pending: AtomicU64,
    /// Deliveries dead (gauge).
    pub dead: AtomicU64,
}

/// Settings of a [`Dispatcher`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatcherConfig {
    /// Directory of `k8s-secret/NAME` secrets (default [`DEFAULT_K8S_SECRETS_DIR`]).
    pub k8s_dir: PathBuf,
    /// Retry delays (default base 1 s, cap 1 h).
    pub backoff: Backoff,
    /// How often the outbox is checked for due deliveries besides wake-ups (default 250 ms).
    pub poll_interval: Duration,
    /// Attempts in flight at once (default 8).
    pub concurrency: usize,
    /// On shutdown, how long attempts in flight may finish before they are abandoned (they
    /// are made again after the restart; default 5 s).
    pub shutdown_grace: Duration,
    /// How long delivered rows keep their payload (default 7 days; the delivery record stays).
    pub keep_delivered: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        Self {
            k8s_dir: PathBuf::from(DEFAULT_K8S_SECRETS_DIR),
            backoff: Backoff::default(),
            poll_interval: Duration::from_millis(250),
            concurrency: 8,
            shutdown_grace: Duration::from_secs(5),
            keep_delivered: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

struct Inner {
    outbox: Arc<dyn Outbox>,
    config: DispatcherConfig,
    stats: Arc<WebhookStats>,
    client: HttpClient,
}

/// Sends due deliveries of an [`Outbox`] (see the module docs for the retry policy).
pub struct Dispatcher {
    inner: Arc<Inner>,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("outbox", &self.inner.outbox)
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

/// A new [`HttpClient`].
///
/// # Errors
/// The TLS configuration cannot be built.
pub fn http_client() -> Result<HttpClient, WebhookError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    let (added, _unparsable) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        tracing::warn!(
            "no trusted CA certificates found (system store, SSL_CERT_FILE, SSL_CERT_DIR); \
             https:// webhooks will fail until some are installed"
        );
    }
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(http);
    Ok(HyperClient::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .build(https))
}

/// Runs `f` on the outbox off the async workers (SQLite may wait for a lock).
async fn db<T: Send + 'static>(
    outbox: &Arc<dyn Outbox>,
    f: impl FnOnce(&dyn Outbox) -> Result<T, WebhookError> + Send + 'static,
) -> Result<T, WebhookError> {
    let o = Arc::clone(outbox);
    tokio::task::spawn_blocking(move || f(&*o))
        .await
        .map_err(|e| WebhookError::Io(std::io::Error::other(e.to_string())))?
}

enum Sent {
    Delivered(u16),
    Gone(u16),
    Failed(AttemptFailure),
}

fn short(s: &str) -> String {
    if s.chars().count() <= MAX_ERROR_CHARS {
        return s.to_owned();
    }
    let mut out: String = s.chars().take(MAX_ERROR_CHARS - 1).collect();
    out.push('…');
    out
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    short(&out)
}

fn failed(status: Option<u16>, error: String, retry_after: Option<Duration>) -> Sent {
    Sent::Failed(AttemptFailure {
        status,
        error: short(&error),
        retry_after,
    })
}

async fn send(inner: &Inner, d: &Delivery) -> Sent {
    let secret = match SecretRef::parse(&d.secret_ref)
        .and_then(|r| resolve_secret(&r, &inner.config.k8s_dir))
    {
        Ok(s) => s,
        Err(e) => return failed(None, e.to_string(), None),
    };
    let timestamp = now_ms() / 1000;
    let signature = sign(&secret, &d.webhook_id, timestamp, &d.body);
    drop(secret);
    let req = hyper::Request::post(d.url.as_str())
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .header(hyper::header::USER_AGENT, USER_AGENT)
        .header("webhook-id", d.webhook_id.as_str())
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(d.body.clone())));
    let req = match req {
        Ok(r) => r,
        Err(e) => return failed(None, format!("cannot build the request: {e}"), None),
    };
    let resp = match tokio::time::timeout(d.timeout, inner.client.request(req)).await {
        Err(_) => {
            return failed(
                None,
                format!("no answer within {} ms", d.timeout.as_millis()),
                None,
            );
        }
        Ok(Err(e)) => return failed(None, error_chain(&e), None),
        Ok(Ok(resp)) => resp,
    };
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| blackbox_core::duration::retry_after(v, now_ms()));
    // Read (and drop) a little of the answer so the connection can be reused.
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        Limited::new(resp.into_body(), MAX_RESPONSE_BYTES).collect(),
    )
    .await;
    let code = status.as_u16();
    if status.is_success() {
        Sent::Delivered(code)
    } else if status == hyper::StatusCode::GONE {
        Sent::Gone(code)
    } else {
        let mut error = format!("HTTP {code}");
        if let Some(reason) = status.canonical_reason() {
            error.push(' ');
            error.push_str(reason);
        }
        if status.is_redirection() {
            error.push_str(" (redirects are not followed)");
        }
        failed(Some(code), error, retry_after)
    }
}

async fn attempt(inner: Arc<Inner>, d: Delivery) {
    let stats = &inner.stats;
    stats.attempts.fetch_add(1, Ordering::Relaxed);
    let url = redact_url(&d.url);
    tracing::debug!(%url, webhook_id = %d.webhook_id, attempt = d.attempt, "sending webhook");
    let outcome = send(&inner, &d).await;
    let now = now_ms();
    let (id, n) = (d.id, d.attempt);
    let result = match outcome {
        Sent::Delivered(status) => {
            stats.delivered.fetch_add(1, Ordering::Relaxed);
            tracing::info!(%url, webhook_id = %d.webhook_id, attempt = n, status, "webhook delivered");
            db(&inner.outbox, move |o| o.mark_delivered(id, status, now)).await
        }
        Sent::Gone(status) => {
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(
                %url, webhook_id = %d.webhook_id, attempt = n, status,
                "webhook receiver answered 410 Gone: dead-lettered without further attempts"
            );
            let failure = AttemptFailure {
                status: Some(status),
                error: "HTTP 410 Gone (the receiver asked to stop)".to_owned(),
                retry_after: None,
            };
            db(&inner.outbox, move |o| {
                o.mark_failed(id, n, &failure, NextStep::Dead, now)
            })
            .await
        }
        Sent::Failed(failure) => {
            stats.failed_attempts.fetch_add(1, Ordering::Relaxed);
            let next = if n >= d.max_attempts {
                stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    %url, webhook_id = %d.webhook_id, attempt = n, status = failure.status,
                    error = %failure.error,
                    "webhook failed its last attempt: dead-lettered (`blackbox webhooks retry` resends it)"
                );
                NextStep::Dead
            } else {
                let delay = inner.config.backoff.delay(n, failure.retry_after);
                tracing::warn!(
                    %url, webhook_id = %d.webhook_id, attempt = n, status = failure.status,
                    error = %failure.error, retry_in_ms = delay.as_millis(),
                    "webhook attempt failed; will retry"
                );
                NextStep::RetryAt(now.saturating_add(ms(delay)))
            };
            db(&inner.outbox, move |o| {
                o.mark_failed(id, n, &failure, next, now)
            })
            .await
        }
    };
    if let Err(e) = result {
        // The lease taken before the attempt still stands: the delivery is retried after it.
        tracing::error!(webhook_id = %d.webhook_id, error = %e, "cannot record a webhook attempt");
    }
}

impl Dispatcher {
    /// A dispatcher over `outbox` (builds the HTTP client and loads the trusted CA
    /// certificates).
    ///
    /// # Errors
    /// [`WebhookError::Tls`] when the TLS client cannot be set up.
    pub fn new(
        outbox: Arc<dyn Outbox>,
        config: DispatcherConfig,
        stats: Arc<WebhookStats>,
    ) -> Result<Self, WebhookError> {
        Ok(Self {
            inner: Arc::new(Inner {
                outbox,
                config,
                stats,
                client: http_client()?,
            }),
        })
    }

    /// Runs [`Dispatcher::run`] on the current tokio runtime.
    pub fn spawn(self, shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(self.run(shutdown))
    }

    /// Sends due deliveries until `shutdown` turns true (or its sender is dropped), then lets
    /// attempts in flight finish for up to [`DispatcherConfig::shutdown_grace`]; attempts still
    /// running then are abandoned and made again after the next start.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let inner = self.inner;
        let cfg = inner.config.clone();
        let wake = inner.outbox.notifier();
        let mut tasks: JoinSet<()> = JoinSet::new();
        let mut running: HashMap<tokio::task::Id, i64> = HashMap::new();
        let mut gauges_at: Option<Instant> = None;
        let mut pruned_at: Option<Instant> = None;
        let mut stop = *shutdown.borrow();
        tracing::info!(outbox = %inner.outbox.location(), "webhook dispatcher started");
        while !stop {
            let free = cfg.concurrency.max(1).saturating_sub(running.len());
            if free > 0 {
                let exclude: HashSet<i64> = running.values().copied().collect();
                let backoff = cfg.backoff;
                match db(&inner.outbox, move |o| {
                    o.claim_due(now_ms(), free, &backoff, &exclude)
                })
                .await
                {
                    Ok(batch) => {
                        for d in batch {
                            let id = d.id;
                            let h = tasks.spawn(attempt(Arc::clone(&inner), d));
                            running.insert(h.id(), id);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "webhook outbox unavailable; will retry"),
                }
            }
            if gauges_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                gauges_at = Some(Instant::now());
                match db(&inner.outbox, |o| o.counts()).await {
                    Ok(c) => {
                        inner.stats.pending.store(c.pending, Ordering::Relaxed);
                        inner.stats.dead.store(c.dead, Ordering::Relaxed);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot count webhook deliveries"),
                }
            }
            if pruned_at.is_none_or(|t| t.elapsed() >= Duration::from_secs(3600)) {
                pruned_at = Some(Instant::now());
                let before = now_ms().saturating_sub(ms(cfg.keep_delivered));
                match db(&inner.outbox, move |o| o.prune_delivered(before)).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(
                        payloads = n,
                        "dropped the payloads of old delivered webhook rows"
                    ),
                    Err(e) => tracing::warn!(error = %e, "cannot prune delivered webhook rows"),
                }
            }
            tokio::select! {
                changed = shutdown.changed() => {
                    stop = changed.is_err() || *shutdown.borrow();
                }
                () = wake.notified() => {}
                () = tokio::time::sleep(cfg.poll_interval) => {}
                Some(done) = tasks.join_next_with_id(), if !tasks.is_empty() => {
                    forget(&mut running, done);
                }
            }
        }
        if !tasks.is_empty() {
            tracing::info!(
                in_flight = tasks.len(),
                "webhook dispatcher stopping: waiting for attempts in flight"
            );
            let grace = tokio::time::sleep(cfg.shutdown_grace);
            tokio::pin!(grace);
            loop {
                tokio::select! {
                    done = tasks.join_next_with_id() => match done {
                        Some(done) => forget(&mut running, done),
                        None => break,
                    },
                    () = &mut grace => {
                        tracing::warn!(
                            abandoned = tasks.len(),
                            "webhook attempts still in flight are abandoned; they are made again after the restart"
                        );
                        tasks.abort_all();
                        while tasks.join_next().await.is_some() {}
                        break;
                    }
                }
            }
        }
        tracing::info!("webhook dispatcher stopped");
    }
}

fn forget(
    running: &mut HashMap<tokio::task::Id, i64>,
    done: Result<(tokio::task::Id, ()), tokio::task::JoinError>,
) {
    let task = match done {
        Ok((task, ())) => task,
        Err(e) => {
            tracing::error!(error = %e, "a webhook attempt failed unexpectedly");
            e.id()
        }
    };
    running.remove(&task);
}

/// Starts a [`Dispatcher`] over `outbox` on the current tokio runtime. Poke
/// [`Outbox::notifier`] to make it look at once (enqueue and retry do it themselves).
///
/// # Errors
/// As [`Dispatcher::new`].
pub fn spawn_dispatcher(
    outbox: Arc<dyn Outbox>,
    config: DispatcherConfig,
    stats: Arc<WebhookStats>,
    shutdown: watch::Receiver<bool>,
) -> Result<JoinHandle<()>, WebhookError> {
    Ok(Dispatcher::new(outbox, config, stats)?.spawn(shutdown))
}
