//! # blackbox-server
//!
//! The audit service behind `blackbox serve`: agents write events to it over HTTP and auditors
//! read from it; only it holds the signing keys. docs/API.md describes the API and
//! `openapi.json` (served at `GET /openapi.json`) is its machine-readable form, generated from
//! the request and response types of `blackbox-api`, which this crate and the Rust client share.
//!
//! - [`config`]: settings from defaults, a TOML file, environment and flags;
//! - [`tokens`]: API tokens (hashed at rest, constant-time comparison);
//! - [`ingest`]: the writer thread with group commit;
//! - [`api`]: the routes, one file per resource, each handler authorised by the `Caller<Scope>`
//!   it asks for;
//! - [`metrics`]: Prometheus metrics;
//! - [`limits`]: what keeps one tenant or client from starving the others;
//! - [`mirror`]: the optional JSONL mirror with size-based rotation;
//! - [`webhooks`]: the wiring of [`blackbox_webhooks`] (targets, outbox, hand-over of alerts).
//!
//! What it leaves out: TLS (put the service behind a TLS-terminating proxy, or keep it on
//! loopback as by default).
#![forbid(unsafe_code)]

pub mod api;
pub mod classifier;
pub mod config;
pub mod detection;
pub mod error;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod mirror;
pub mod otlp;
pub mod readers;
pub mod retention;
pub mod tokens;
pub mod webhooks;
pub mod witnessing;

use std::sync::Arc;

use blackbox_core::entry::RedactionPolicy;
use blackbox_core::note::NoteVerifier;
use blackbox_ledger::datadir::DataDir;

pub use config::ServerConfig;
pub use error::{ApiError, ServerError};

/// Default of the most bytes of request bodies being ingested at once (all tenants); beyond,
/// requests get 503 (`server.limits.ingest_bytes_in_flight`).
pub const INGEST_BYTES_IN_FLIGHT: usize = 256 << 20;

/// The chain that records refusals of requests that carried no valid token.
pub const SYSTEM_TENANT: &str = blackbox_core::ids::SERVICE_TENANT;

/// The service's own chain for data directory `dir`: [`SYSTEM_TENANT`], or on one database of
/// a tenant map `_blackbox.<database>` (each database has its own, and the map keeps it there:
/// `blackbox_store::sharded::TenantMap::shard_of`).
#[must_use]
pub fn system_tenant(dir: &DataDir) -> String {
    match dir.tenant_map() {
        Some((_, Some(db))) => format!("{SYSTEM_TENANT}.{db}"),
        _ => SYSTEM_TENANT.to_owned(),
    }
}

/// Whether `tenant` is a service's own chain ([`system_tenant`] of any data directory).
#[must_use]
pub fn is_system_tenant(tenant: &str) -> bool {
    blackbox_core::ids::is_service_tenant(tenant)
}

/// The OpenAPI document of the service: docs/openapi.json, which `blackbox-api`'s tests keep
/// equal to `blackbox_api::openapi::document()`.
pub const OPENAPI: &str = include_str!("../../../docs/openapi.json");

/// Everything the handlers share.
#[derive(Debug, Clone)]
pub struct AppState {
    /// Settings.
    pub config: Arc<ServerConfig>,
    /// The data directory.
    pub dir: DataDir,
    /// The writer.
    pub ingest: ingest::Ingest,
    /// API tokens.
    pub tokens: Arc<tokens::Tokens>,
    /// Read-only store connections.
    pub readers: Arc<readers::ReaderPool>,
    /// Metrics.
    pub metrics: Arc<metrics::Metrics>,
    /// What is hashed and what is personal.
    pub policy: Arc<RedactionPolicy>,
    /// How far a claimed timestamp may lie from the service's clock (`[clock]`).
    pub clock: blackbox_core::entry::ClockBound,
    /// Per-token rate limits.
    pub limiter: Arc<api::RateLimiter>,
    /// Which refusals are recorded on their own.
    pub denials: Arc<api::DenialSampler>,
    /// Bytes of ingest bodies in flight (bounds memory under load), shared fairly by tenants.
    pub ingest_bytes: Arc<limits::FairShare>,
    /// Expensive reads (verify, exports, proofs) running at once, shared fairly by tenants.
    pub heavy_reads: Arc<limits::FairShare>,
    /// Unpaged (streamed) answers being read, shared fairly by tenants.
    pub streams: Arc<limits::FairShare>,
    /// Requests without a valid token, per client address.
    pub unauthenticated: Arc<limits::AddressLimiter>,
    /// The checkpoint public key.
    pub verifier: Arc<NoteVerifier>,
    /// Anomaly-detection rules in force.
    pub rules: Arc<detection::Rules>,
    /// Webhook outbox, targets and delivery statistics.
    pub webhooks: Arc<detection::Webhooks>,
    /// Tells the webhook dispatcher to stop.
    pub stop_webhooks: Arc<tokio::sync::watch::Sender<bool>>,
    /// The OpenTelemetry intake's settings and guardrail exporter.
    pub otlp: Arc<otlp::Otlp>,
    /// Held from checking an alert's state to the commit of its triage entry, so two triage
    /// requests for one alert cannot both pass the check.
    pub triage: Arc<tokio::sync::Mutex<()>>,
    /// The witnesses checkpoints are submitted to (`[witnessing]`), their policy and status.
    pub witnessing: Arc<witnessing::Witnessing>,
}

impl AppState {
    /// When this instance serves one database of a tenant map (`serve --store FILE.toml
    /// --database NAME`), the refusal of a request for a tenant kept in another database
    /// (421 Misdirected Request, naming where it goes).
    #[must_use]
    pub fn misdirected(&self, tenant: &str) -> Option<ApiError> {
        let (map, Some(here)) = self.dir.tenant_map()? else {
            return None;
        };
        let there = map.map().database_of(tenant);
        if there == Some(here) {
            return None;
        }
        let message = match there {
            Some(db) => format!(
                "tenant `{tenant}` is kept in the database `{db}` of the tenant map; send its \
                 requests to the service instances of `{db}` (this one serves `{here}`)"
            ),
            None => format!(
                "tenant `{tenant}` is in no database of the tenant map {}; add it under [tenants]",
                map.path().display()
            ),
        };
        Some(ApiError::new(
            axum::http::StatusCode::MISDIRECTED_REQUEST,
            "misdirected_tenant",
            message,
        ))
    }
}

/// [`start`] on a blocking thread: a store's client may block on its own runtime (the
/// PostgreSQL store's does), which a thread driving async tasks must not do.
///
/// # Errors
/// As [`start`].
pub async fn start_off_runtime(
    config: ServerConfig,
) -> Result<(AppState, ingest::WriterThread), ServerError> {
    tokio::task::spawn_blocking(move || start(config))
        .await
        .map_err(|e| ServerError::Config(format!("the service's start-up failed: {e}")))?
}

/// The service's clock, Unix ms: the process's one clock (`BLACKBOX_TEST_NOW` honoured), the
/// same the writer is given.
pub(crate) use blackbox_ledger::clock::now_ms;

/// Opens (initialising on first start) the data directory and starts the writer.
///
/// # Errors
/// Configuration, key and store failures.
pub fn start(config: ServerConfig) -> Result<(AppState, ingest::WriterThread), ServerError> {
    let dir = DataDir::new(config.data_dir.clone());
    if !dir.is_initialised() {
        let name = blackbox_ledger::open::default_log_name()?;
        let out = blackbox_ledger::open::init(&dir, &name)?;
        tracing::info!(
            data_dir = %dir.root().display(),
            log_name = %out.log_name,
            public_key = %out.verifier.to_vkey(),
            fingerprint = %out.verifier.fingerprint(),
            "initialised a new data directory"
        );
    }
    let rules = Arc::new(detection::Rules::load(config.rules.as_deref())?);
    let (mut store, mut writer, ledger_config) = blackbox_ledger::open::open_writer(&dir)?;
    let mut detector = blackbox_detect::Detector::new(rules.get());
    let started = std::time::Instant::now();
    // The sizes first: what other instances sharing the store commit from now on is followed
    // (an entry of theirs replayed and followed both is learnt twice, none is missed).
    let known: detection::Known = blackbox_store::Store::chains(&store)?
        .into_iter()
        .map(|h| (h.tenant_id, h.size))
        .collect();
    let replayed = detection::replay(&store, &mut detector, writer.now_ms())?;
    {
        let set = rules.get();
        tracing::info!(
            rules = set.rules.len(),
            webhooks = set.webhooks.len(),
            replayed,
            ms = started.elapsed().as_millis(),
            "anomaly detection ready (recent history replayed)"
        );
    }
    let mirror = match &config.mirror {
        None => None,
        Some(path) => {
            // A new mirror file starts from anchors, which need a checkpoint at every head.
            let now = writer.now_ms();
            writer.heartbeat(&mut store, now, true)?;
            let m = mirror::Mirror::open(path, config.mirror_rotate_bytes, &dir.store_location())?;
            tracing::info!(log_file = %path.display(), "mirroring committed entries to a JSONL file");
            Some(m)
        }
    };
    let webhooks = Arc::new(detection::Webhooks::open(&dir, &rules.get())?);
    webhooks.check_secrets(&config.secrets_dir);
    let caught_up = webhooks.catch_up(&store)?;
    if caught_up > 0 {
        tracing::info!(
            deliveries = caught_up,
            "alerts committed before the last stop were put in the webhook outbox"
        );
    }
    let (alerts_tx, alerts_rx) = tokio::sync::mpsc::unbounded_channel();
    let verifier = blackbox_ledger::open::public_key(&dir)?;
    let tokens = tokens::Tokens::open_for(&dir)?;
    let metrics = Arc::new(metrics::Metrics::new());
    let visible = Arc::new(readers::Visibility::default());
    let (ingest, thread) = ingest::Ingest::start(
        store,
        writer,
        ingest::WriterOptions {
            heartbeat_every_ms: ledger_config.checkpoint_every_ms,
            queue_capacity: config.queue_capacity,
            metrics: Arc::clone(&metrics),
            mirror,
            detector,
            alerts: Some(alerts_tx),
            decide_answer: config.decide_answer,
            answered_journal: Some(dir.root().join("decisions-answered.jsonl")),
            shared_store: match dir.store_location() {
                loc @ blackbox_ledger::datadir::StoreLocation::Postgres { .. } => {
                    Some(blackbox_ledger::open::open_location(&loc, true)?)
                }
                blackbox_ledger::datadir::StoreLocation::Sharded { map, .. } => {
                    return Err(ServerError::Config(format!(
                        "a service instance serves one database of the tenant map {}: give \
                         --database NAME ({})",
                        map.path().display(),
                        map.map().names().join(", ")
                    )));
                }
                blackbox_ledger::datadir::StoreLocation::Sqlite(_) => None,
            },
            known,
            system_tenant: system_tenant(&dir),
            visible: Arc::clone(&visible),
        },
    );
    let readers = Arc::new(readers::ReaderPool::with_visibility(
        dir.store_location(),
        Arc::clone(&visible),
    ));
    let (stop_webhooks, stop_rx) = tokio::sync::watch::channel(false);
    // Delivery needs the async runtime; without one (tools that only write), alerts wait in the
    // chain and are enqueued by the next service start's catch-up.
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::spawn(detection::feed_webhooks(
            Arc::clone(&webhooks),
            Arc::clone(&readers),
            alerts_rx,
        ));
        let dc = blackbox_webhooks::DispatcherConfig {
            k8s_dir: config.secrets_dir.clone(),
            ..blackbox_webhooks::DispatcherConfig::default()
        };
        blackbox_webhooks::spawn_dispatcher(
            Arc::clone(&webhooks.outbox),
            dc,
            Arc::clone(&webhooks.stats),
            stop_rx,
        )
        .map_err(|e| ServerError::Config(format!("webhook delivery: {e}")))?;
    }
    let guardrails = match (&config.guardrails, tokio::runtime::Handle::try_current()) {
        (Some(g), Ok(_)) => Some(
            otlp::guardrails::Exporter::start(g.clone(), Arc::clone(&metrics))
                .map_err(|e| ServerError::Config(format!("otlp.guardrails: {e}")))?,
        ),
        _ => None,
    };
    let otlp = Arc::new(otlp::Otlp::new(
        &ledger_config.redaction,
        config.otlp_keep_other,
        guardrails,
    ));
    let state = AppState {
        otlp,
        denials: Arc::new(api::DenialSampler::default()),
        ingest_bytes: limits::FairShare::new(
            config.ingest_bytes_in_flight,
            config.tenant_ingest_bytes,
        ),
        heavy_reads: limits::FairShare::new(config.heavy_reads, config.tenant_heavy_reads),
        streams: limits::FairShare::new(config.streams, config.tenant_streams),
        unauthenticated: Arc::new(limits::AddressLimiter::new(
            config.unauthenticated_per_second,
            config.unauthenticated_burst,
        )),
        limiter: Arc::new(api::RateLimiter::new(
            config.rate_per_second,
            config.rate_burst,
        )),
        config: Arc::new(config),
        readers,
        dir,
        ingest,
        tokens: Arc::new(tokens),
        metrics,
        clock: ledger_config.clock,
        policy: Arc::new(ledger_config.redaction),
        verifier: Arc::new(verifier),
        rules,
        webhooks,
        stop_webhooks: Arc::new(stop_webhooks),
        triage: Arc::new(tokio::sync::Mutex::new(())),
        witnessing: Arc::new(witnessing::Witnessing::new(ledger_config.witnessing)),
    };
    Ok((state, thread))
}

/// Runs the service until SIGINT or SIGTERM: stops accepting, drains in-flight requests, lets
/// the writer sign closing checkpoints, and returns.
///
/// # Errors
/// Start-up failures (bad settings, the address in use, the store).
pub async fn serve(config: ServerConfig) -> Result<(), ServerError> {
    let listen = config.listen;
    let (state, writer) = start_off_runtime(config).await?;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        ServerError::Config(format!(
            "cannot listen on {listen}: {e}; choose another address with --listen"
        ))
    })?;
    // Handlers are installed before the service says it is ready: a SIGTERM from then on is a
    // graceful shutdown, never the default "terminate at once".
    let shutdown = shutdown_signal()?;
    serve_on(state, writer, listener, shutdown).await
}

/// Runs a service [`start`]ed by the caller on `listener` until `shutdown` resolves, then stops
/// as [`serve`] does (in-flight requests finish, the writer signs closing checkpoints). For a
/// tool that runs the service inside its own process (the MCP gateway's `--data-dir`).
///
/// # Errors
/// As [`serve`], after start-up.
pub async fn serve_on(
    state: AppState,
    writer: ingest::WriterThread,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), ServerError> {
    let header_timeout = state.config.header_timeout;
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if let Some(path) = state.rules.path.clone() {
        let set = state.rules.get();
        state
            .ingest
            .control(ingest::Control::Rules(set, path.display().to_string()))
            .await
            .map_err(|e| {
                ServerError::Config(format!("recording the rules in force: {}", e.message))
            })?;
        tasks.push(tokio::spawn(watch_rules(state.clone(), path)));
    }
    if let Some(every) = retention::period(&state) {
        tasks.push(tokio::spawn(retention::schedule(state.clone(), every)));
    }
    if state.witnessing.enabled() {
        tasks.push(tokio::spawn(witnessing::run(state.clone())));
    }
    // The OTLP listeners stop with the main one.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let mut listeners: Vec<tokio::task::JoinHandle<()>> = Vec::new();
    if let Some(addr) = state.config.otlp_http {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            ServerError::Config(format!(
                "cannot listen for OTLP/HTTP on {addr}: {e}; choose another address with --otlp-http (or `off`)"
            ))
        })?;
        tracing::info!(otlp_http = %l.local_addr()?, "OTLP/HTTP intake listening (/v1/traces, /v1/logs)");
        let mut rx = stop_rx.clone();
        let app = otlp::http::router(state.clone());
        listeners.push(tokio::spawn(async move {
            serve_http(l, app, header_timeout, async move {
                let _ = rx.changed().await;
            })
            .await;
        }));
    }
    if let Some(addr) = state.config.otlp_grpc {
        let l = tokio::net::TcpListener::bind(addr).await.map_err(|e| {
            ServerError::Config(format!(
                "cannot listen for OTLP/gRPC on {addr}: {e}; choose another address with --otlp-grpc (or `off`)"
            ))
        })?;
        tracing::info!(otlp_grpc = %l.local_addr()?, "OTLP/gRPC intake listening (TraceService, LogsService)");
        let (st, rx) = (state.clone(), stop_rx.clone());
        listeners.push(tokio::spawn(async move {
            if let Err(e) = otlp::grpc::serve(l, st, rx).await {
                tracing::error!(error = %e, "the OTLP/gRPC listener failed");
            }
        }));
    }
    drop(stop_rx);
    tracing::info!(listen = %listener.local_addr()?, data_dir = %state.dir.root().display(), "blackbox serve is ready");
    let state_stop = Arc::clone(&state.stop_webhooks);
    let console = state.config.console;
    let mut app = api::router(state);
    if console {
        tracing::info!("forensic console at /ui");
        app = app.merge(blackbox_console::router());
    }
    serve_http(listener, app, header_timeout, async move {
        shutdown.await;
        let _ = stop_tx.send(());
    })
    .await;
    // In-flight exports finish; a client that keeps its connection open past that (an idle
    // HTTP/2 connection whose peer never reads the GOAWAY) does not hold the shutdown.
    for mut l in listeners {
        if tokio::time::timeout(std::time::Duration::from_secs(10), &mut l)
            .await
            .is_err()
        {
            tracing::warn!("an OTLP listener still had open connections after 10 s; closing them");
            l.abort();
            let _ = l.await;
        }
    }
    // Background tasks hold handles to the writer: stop them so that it can close.
    for t in &tasks {
        t.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let _ = state_stop.send(true);
    tracing::info!("draining: waiting for the writer's last commit");
    // The router (and every Ingest handle) is gone: the writer signs closing checkpoints.
    tokio::task::spawn_blocking(move || writer.join())
        .await
        .map_err(|e| ServerError::Config(format!("the writer thread failed: {e}")))?;
    tracing::info!("stopped");
    Ok(())
}

/// Serves HTTP/1.1 connections until `shutdown` completes, then lets every connection finish its
/// request in progress and waits for them to close. Like `axum::serve`, plus a header read
/// timeout (a client that never finishes its headers holds a connection for at most that long).
/// Also what `blackbox witness serve` listens with.
pub async fn serve_http(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    header_timeout: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    use hyper_util::rt::{TokioIo, TokioTimer};
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(());
    let (open_tx, open_rx) = tokio::sync::watch::channel(());
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, addr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let mut stop = stop_rx.clone();
        let open = open_rx.clone();
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let mut req = req.map(axum::body::Body::new);
                    req.extensions_mut()
                        .insert(axum::extract::ConnectInfo(addr));
                    tower::ServiceExt::oneshot(app.clone(), req)
                });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout);
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            let mut conn = std::pin::pin!(conn);
            let mut stopping = false;
            loop {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(error = %e, "connection ended with an error");
                        }
                        break;
                    }
                    _ = stop.changed(), if !stopping => {
                        stopping = true;
                        conn.as_mut().graceful_shutdown();
                    }
                }
            }
            drop(open);
        });
    }
    drop(listener);
    drop(stop_tx);
    drop(open_rx);
    open_tx.closed().await;
}

/// Reloads the rules file on SIGHUP and when its modification time or size changes (checked
/// every 2 s). An invalid file is refused with `file:line:column: reason`; the rules in force stay.
async fn watch_rules(state: AppState, path: std::path::PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let stamp = |p: &std::path::Path| {
        std::fs::metadata(p)
            .ok()
            .map(|m| (m.modified().ok(), m.len()))
    };
    let mut hup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; the rules file is still watched");
            None
        }
    };
    let mut last = stamp(&path);
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => true,
        };
        let now = stamp(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        let p = path.clone();
        let parsed = tokio::task::spawn_blocking(move || detection::read_rules(&p)).await;
        match parsed {
            Ok(Ok(set)) => {
                let targets = match detection::targets_of(&set) {
                    Ok(t) => t,
                    Err(e) => {
                        state.metrics.rules_reload_failures.inc();
                        tracing::error!(error = %e, "the rules file was refused; the previous rules stay in force");
                        continue;
                    }
                };
                state.webhooks.set_targets(targets);
                state.webhooks.check_secrets(&state.config.secrets_dir);
                let set = Arc::new(set);
                state.rules.set(Arc::clone(&set));
                match state
                    .ingest
                    .control(ingest::Control::Rules(
                        Arc::clone(&set),
                        path.display().to_string(),
                    ))
                    .await
                {
                    Ok(_) => tracing::info!(
                        file = %path.display(),
                        rules = set.rules.len(),
                        sha256 = %set.source_sha256,
                        "rules reloaded"
                    ),
                    Err(e) => {
                        tracing::error!(error = %e.message, "the reloaded rules could not be recorded; retrying at the next change")
                    }
                }
            }
            Ok(Err(e)) => {
                state.metrics.rules_reload_failures.inc();
                tracing::error!(error = %e, "the rules file was refused; the previous rules stay in force");
            }
            Err(e) => tracing::error!(error = %e, "reloading the rules failed"),
        }
    }
}

fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>, ServerError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("shutdown requested: draining requests, then closing checkpoints");
        // A second signal, or a drain that takes too long, ends the process at once (whatever
        // was acknowledged is durable already; closing checkpoints are then signed on the next
        // start's heartbeat).
        tokio::spawn(async move {
            tokio::select! {
                _ = term.recv() => tracing::warn!("second signal: stopping now"),
                _ = int.recv() => tracing::warn!("second signal: stopping now"),
                () = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                    tracing::warn!("draining took over 60 s: stopping now");
                }
            }
            std::process::exit(1);
        });
    })
}
