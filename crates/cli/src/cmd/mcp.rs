//! `blackbox mcp wrap` and `blackbox mcp proxy` (docs/MCP.md).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow, bail};
use blackbox_mcp::{Audit, Config, Pins, Refusal, Session};

use crate::Outcome;
use crate::cli::{McpCmd, McpGatewayArgs, McpRefusal};

/// How long a stopping gateway tries to send what it has not yet recorded before it spools it.
const CLOSE_DEADLINE: Duration = Duration::from_millis(600);

fn logging() {
    // stdout is the MCP connection of `wrap`: logs go to stderr only.
    let filter = tracing_subscriber::EnvFilter::try_from_env("BLACKBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let ansi = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .try_init();
}

fn state_dir(given: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(d) = given {
        return Ok(d);
    }
    if let Some(x) = std::env::var_os("XDG_STATE_HOME").filter(|x| !x.is_empty()) {
        return Ok(PathBuf::from(x).join("blackbox").join("mcp"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| {
            anyhow!("no HOME: give --state-dir (where tool pins and unsent records are kept)")
        })?;
    Ok(PathBuf::from(home).join(".local/state/blackbox/mcp"))
}

struct Parts {
    cfg: Arc<Config>,
    audit: Arc<Audit>,
    pins: Arc<Pins>,
    /// The service run inside the gateway (`--data-dir`).
    embedded: Option<Embedded>,
}

/// Decisions asked of the service inside the gateway, as `POST /v1/decide` takes them once
/// authenticated (the run's own ingest token is the caller): no loopback HTTP on a call's path.
struct InProcess {
    state: blackbox_server::AppState,
    /// The run's token, authenticated again when the last check is older than
    /// [`AUTH_AGAIN`] (a revocation holds here as over HTTP, within that time). Never printed.
    token: String,
    /// The last check of `token`: when, and what it authenticated.
    checked: std::sync::Mutex<Option<(std::time::Instant, blackbox_server::tokens::TokenInfo)>>,
}

/// How long the run's token, once authenticated, is taken as still valid by [`InProcess`]: a
/// check reads the token store (a read transaction on `tokens.db`, file locks), which would
/// otherwise run for every call.
const AUTH_AGAIN: std::time::Duration = std::time::Duration::from_millis(100);

impl InProcess {
    fn authenticate(
        &self,
    ) -> Result<blackbox_server::tokens::TokenInfo, blackbox_mcp::audit::DecideError> {
        let now = std::time::Instant::now();
        let mut checked = self
            .checked
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((at, info)) = checked.as_ref()
            && now.duration_since(*at) < AUTH_AGAIN
        {
            return Ok(info.clone());
        }
        match self.state.tokens.authenticate(&self.token) {
            Ok(Some(t)) => {
                *checked = Some((now, t.clone()));
                Ok(t)
            }
            Ok(None) => {
                *checked = None;
                Err(blackbox_mcp::audit::DecideError::Refused(
                    "the run's token was revoked".to_owned(),
                ))
            }
            Err(e) => {
                *checked = None;
                Err(blackbox_mcp::audit::DecideError::Unavailable(e.to_string()))
            }
        }
    }
}

impl std::fmt::Debug for InProcess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InProcess(..)")
    }
}

impl blackbox_mcp::audit::LocalDecider for InProcess {
    fn decide<'a>(
        &'a self,
        request: blackbox_api::decide::DecideRequest,
    ) -> futures_util::future::BoxFuture<
        'a,
        Result<blackbox_api::decide::Decision, blackbox_mcp::audit::DecideError>,
    > {
        Box::pin(async move {
            let token = self.authenticate()?;
            blackbox_server::api::decide_for(&self.state, &token, request, None)
                .await
                .map_err(|e| {
                    let why = format!("{} ({})", e.message, e.code);
                    if e.status.as_u16() == 429 || e.status.is_server_error() {
                        blackbox_mcp::audit::DecideError::Unavailable(why)
                    } else {
                        blackbox_mcp::audit::DecideError::Refused(why)
                    }
                })
        })
    }
}

/// The audit service inside the gateway, and the token made for this run.
struct Embedded {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), blackbox_server::error::ServerError>>,
    tokens: blackbox_server::tokens::Tokens,
    token_id: String,
    decider: Arc<InProcess>,
}

impl Embedded {
    /// Starts the service on `dir` (initialising it if needed) on a free loopback port; returns
    /// its URL and a token for the run.
    async fn start(g: &McpGatewayArgs, dir: &std::path::Path) -> Result<(Self, String, String)> {
        let config = blackbox_server::config::ServerConfig::load(
            None,
            &blackbox_server::config::Overrides {
                listen: Some("127.0.0.1:0".into()),
                data_dir: Some(dir.to_path_buf()),
                rules: g.rules.clone(),
                decide_answer: g.decide_answer.clone(),
                rate_limit: Some(0),
                otlp_http: Some("off".into()),
                otlp_grpc: Some("off".into()),
                console: Some("off".into()),
                ..Default::default()
            },
        )?;
        let (state, writer) = blackbox_server::start_off_runtime(config)
            .await
            .map_err(|e| anyhow!("--data-dir {}: {e}", dir.display()))?;
        let tenant = blackbox_core::ids::TenantId::parse(&g.tenant_id)
            .map_err(|e| anyhow!("--tenant-id: {e}"))?;
        let tokens = blackbox_server::tokens::Tokens::open_for(
            &blackbox_ledger::datadir::DataDir::new(dir),
        )?;
        let (info, token) = tokens.create(
            Some(&tenant),
            blackbox_server::tokens::Scopes::parse("ingest").map_err(|e| anyhow!(e))?,
            &format!(
                "blackbox mcp --agent-id {} (revoked at its end)",
                g.agent_id
            ),
        )?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let decider = Arc::new(InProcess {
            state: state.clone(),
            token: token.clone(),
            checked: std::sync::Mutex::new(None),
        });
        let task = tokio::spawn(blackbox_server::serve_on(
            state,
            writer,
            listener,
            async move {
                let _ = stopped.await;
            },
        ));
        Ok((
            Self {
                stop,
                task,
                tokens,
                token_id: info.id,
                decider,
            },
            url,
            token,
        ))
    }

    /// Stops the service (its writer signs closing checkpoints) and revokes the run's token.
    async fn stop(self) {
        let Self {
            stop,
            task,
            tokens,
            token_id,
            decider,
        } = self;
        // The service stops once nothing holds its state (the gateway's link released it at
        // its close).
        drop(decider);
        let _ = stop.send(());
        match task.await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("blackbox mcp: the embedded audit service failed: {e}"),
            Err(e) => eprintln!("blackbox mcp: the embedded audit service failed: {e}"),
        }
        if let Err(e) = tokens.revoke(&token_id) {
            eprintln!("blackbox mcp: cannot revoke the run's token {token_id}: {e}");
        }
    }
}

async fn parts(g: &McpGatewayArgs, transport: &'static str, upstream: String) -> Result<Parts> {
    if let Err(e) = blackbox_core::ids::AgentId::parse(&g.agent_id) {
        bail!("--agent-id `{}`: {e}", g.agent_id);
    }
    if !(g.decide_timeout > 0.0 && g.decide_timeout <= 300.0) {
        bail!("--decide-timeout must be between 0 and 300 seconds");
    }
    let dir = state_dir(g.state_dir.clone())?;
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("cannot create the state directory {}", dir.display()))?;
    let pins = Pins::load(dir.join("pins.json")).map_err(|e| anyhow!(e))?;
    let (embedded, server, token) = match (&g.data_dir, &g.server, &g.token) {
        (Some(d), _, _) => {
            let (e, url, token) = Embedded::start(g, d).await?;
            (Some(e), url, token)
        }
        (None, Some(s), Some(t)) => (None, s.clone(), t.clone()),
        (None, Some(_), None) => bail!(
            "--server needs --token (or BLACKBOX_TOKEN): an ingest token of the agent's tenant"
        ),
        (None, None, _) => bail!(
            "give --server URL --token T (the service that decides and records the calls), or --data-dir DIR"
        ),
    };
    let client = blackbox_client::Client::builder(&server, token.as_str())
        // The gateway's records hold digests only; what a peer put in them (server info,
        // capabilities) is the service's to check, which names the one record it refuses.
        .hash_raw_content(false)
        .timeout(Some(Duration::from_secs_f64(g.decide_timeout)))
        .connect_timeout(Duration::from_secs(2))
        .retry_policy(blackbox_client::RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_millis(200),
            max_retry_after: Duration::from_secs(1),
            retry_unknown_outcome: false,
        })
        .build()
        .map_err(|e| anyhow!("--server {server}: {e}"))?;
    let local = embedded
        .as_ref()
        .map(|e| e.decider.clone() as Arc<dyn blackbox_mcp::audit::LocalDecider>);
    let audit = Audit::start(client, Some(dir.join("spool")), local).map_err(|e| anyhow!(e))?;
    Ok(Parts {
        cfg: Arc::new(Config {
            agent_id: g.agent_id.clone(),
            agent_role: g.agent_role.clone(),
            refusal: match g.refusal {
                McpRefusal::Error => Refusal::Error,
                McpRefusal::ToolError => Refusal::ToolError,
            },
            fail_open: g.fail_open,
            transport,
            upstream,
        }),
        audit,
        pins: Arc::new(pins),
        embedded,
    })
}

pub fn run(cmd: McpCmd) -> Result<Outcome> {
    logging();
    // stdio: one thread carries both directions (no wake-up across threads on a message's
    // way through, which is most of the latency a gateway adds); HTTP: a thread per core.
    let rt = match &cmd {
        McpCmd::Wrap { .. } => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?,
        McpCmd::Proxy { .. } => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()?,
    };
    match cmd {
        McpCmd::Wrap { gateway, command } => {
            let upstream = command
                .iter()
                .map(|a| a.to_string_lossy())
                .collect::<Vec<_>>()
                .join(" ");
            let (code, blocking) = rt.block_on(async {
                let p = parts(&gateway, "stdio", upstream).await?;
                let session = Arc::new(Session::new(p.cfg, p.audit.clone(), p.pins, None));
                let (client_in, client_out, blocking) = blackbox_mcp::stdio::client_streams();
                let code = blackbox_mcp::stdio::wrap(session, &command, client_in, client_out)
                    .await
                    .map_err(|e| anyhow!(e));
                p.audit.close(CLOSE_DEADLINE).await;
                if let Some(e) = p.embedded {
                    e.stop().await;
                }
                code.map(|c| (c, blocking))
            })?;
            rt.shutdown_timeout(Duration::from_millis(100));
            // Nothing reads or writes the client's pipes any more: they are left as they came.
            drop(blocking);
            // The server's exit code is the gateway's, as if the client had started it.
            std::process::exit(code);
        }
        McpCmd::Proxy {
            gateway,
            upstream,
            listen,
            body_limit,
            session_idle_timeout,
        } => {
            let done = rt.block_on(async {
            let p = parts(&gateway, "http", upstream.clone()).await?;
            let gw = Arc::new(
                blackbox_mcp::http::HttpGateway::new(
                    p.cfg,
                    p.audit.clone(),
                    p.pins,
                    &upstream,
                    body_limit,
                )
                .map_err(|e| anyhow!(e))?
                .with_session_idle(Duration::from_secs(session_idle_timeout)),
            );
            let listener = tokio::net::TcpListener::bind(listen)
                .await
                .with_context(|| format!("cannot listen on {listen}"))?;
            let local = listener.local_addr()?;
            eprintln!(
                "blackbox mcp proxy: http://{local} -> {upstream} (agent {}, metrics at http://{local}{})",
                gateway.agent_id,
                blackbox_mcp::http::METRICS_PATH
            );
            let stop = async {
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    () = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
                }
            };
            blackbox_mcp::http::serve(gw, listener, stop)
                .await
                .context("the gateway's listener failed")?;
            p.audit.close(Duration::from_secs(3)).await;
            if let Some(e) = p.embedded {
                e.stop().await;
            }
            Ok(Outcome::Ok)
            });
            // Connections a client still holds open do not keep the process.
            rt.shutdown_timeout(Duration::from_millis(200));
            done
        }
    }
}
