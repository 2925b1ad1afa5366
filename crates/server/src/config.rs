//! Service settings: defaults, then an optional TOML file, then environment variables and flags
//! (the binary passes those two as [`Overrides`]: clap reads `BLACKBOX_…` variables for each
//! flag). Checked once, here, into a typed [`ServerConfig`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ServerError;
pub use crate::ingest::DecideAnswer;

/// Default listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7700";

/// An example file with every setting and its default, for `--config`.
pub const EXAMPLE: &str = r#"# blackbox serve settings (all optional; flags and BLACKBOX_* variables override them)
[server]
listen = "127.0.0.1:7700"
data_dir = "./blackbox-data"
# Largest request body accepted (bytes); larger ones get 413.
body_limit_bytes = 16777216
# Most events in one POST /v1/events.
max_events_per_request = 10000
# Ingest requests waiting for the writer before new ones get 503.
queue_capacity = 4096
# The forensic console at /ui (docs/CONSOLE.md): "auto" serves it when `listen` is a loopback
# address, "on" everywhere, "off" never. It holds no data itself: every view asks /v1/ with the
# token the user signs in with.
console = "auto"

[server.rate_limit]
# Requests per second per token (token bucket); 0 turns the limit off.
requests_per_second = 2000
burst = 4000
# Requests without a valid token, per second per client address (IPv6: per /64), in bursts of
# `unauthenticated_burst`; beyond, they get 429 instead of 401 (a valid token is still answered).
# 0 turns the limit off.
unauthenticated_per_second = 2
unauthenticated_burst = 20

[server.limits]
# A request body that sends nothing for this many seconds is answered 408 and its connection
# closed; so is one not complete after `body_deadline_secs`.
body_idle_timeout_secs = 10
body_deadline_secs = 60
# Seconds a client has to send a request's headers (also how long an idle kept-alive
# connection stays open).
header_timeout_secs = 30
# Bytes of POST /v1/events bodies in flight (their Content-Length, or body_limit_bytes when not
# given), all tenants together: beyond, 503. One tenant may hold `tenant_ingest_bytes` of them
# (at least body_limit_bytes): beyond, that tenant gets 429 and the others are still answered.
ingest_bytes_in_flight = 268435456
tenant_ingest_bytes = 67108864
# Expensive reads (verify, exports, proofs) running at once, all tenants together, and how many
# of them one tenant (or one admin token without a tenant) may run: beyond, 429 for that tenant.
heavy_reads = 4
tenant_heavy_reads = 2
# Unpaged (streamed) GET /v1/entries answers being read at once, all tenants together, and per
# tenant: each holds a worker thread while its client reads.
streams = 64
tenant_streams = 16

[mirror]
# Also append every committed entry and checkpoint to this JSONL file (for log shippers).
# log_file = "/var/log/blackbox/audit.jsonl"
# Start a new file when the current one reaches this size.
rotate_bytes = 268435456

[detection]
# Anomaly-detection rules (YAML, the seed's `anomaly_detection:` schema); reloaded on SIGHUP
# and when the file changes.
# rules_file = "/etc/blackbox/rules.yaml"
# Where `hmac_secret_ref: k8s-secret/NAME` secrets are mounted (one file per secret).
secrets_dir = "/var/run/secrets/blackbox"
# When POST /v1/decide answers: "durable" once the record of the attempted call is committed
# (fsynced), or "sequenced" once it is sequenced and signed, before its commit: no disk wait on
# the agent's path, but a crash or failed commit in the next milliseconds loses the record (the
# loss is then written down as a `decisions_unrecorded` entry naming the lost ids: after a
# failed commit by the next one, after a crash by the next start).
decide_answer = "durable"

[otlp]
# OpenTelemetry intake (docs/OTEL.md). OTLP/HTTP (POST /v1/traces, /v1/logs) is always served on
# the main listener with the same tokens; these add listeners on the standard ports (off unless
# set; `--otlp` sets both to their loopback defaults).
# http = "127.0.0.1:4318"
# grpc = "127.0.0.1:4317"
# Record spans and log records that are not GenAI (as `otel_span` / `otel_log`, attributes and
# bodies hashed) instead of skipping them.
keep_other = false

[otlp.guardrails]
# Export every enforcement decision (a call blocked, an agent paused or throttled) as an
# OpenTelemetry `apply_guardrail` span to this OTLP/HTTP traces endpoint (off unless set).
# endpoint = "http://127.0.0.1:4318/v1/traces"
# Headers sent with each export; a value `env:NAME` is read from the environment variable NAME.
# headers = { authorization = "env:COLLECTOR_AUTH" }
"#;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Validated service settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The data directory (initialised on first start).
    pub data_dir: PathBuf,
    /// Largest request body, bytes.
    pub body_limit: usize,
    /// Most events per ingest request.
    pub max_events_per_request: usize,
    /// Ingest requests queued for the writer.
    pub queue_capacity: usize,
    /// Per-token requests per second (0: no limit).
    pub rate_per_second: u32,
    /// Per-token burst.
    pub rate_burst: u32,
    /// JSONL mirror file.
    pub mirror: Option<PathBuf>,
    /// Mirror rotation size, bytes.
    pub mirror_rotate_bytes: u64,
    /// Log line format.
    pub log_format: LogFormat,
    /// Anomaly-detection rules file.
    pub rules: Option<PathBuf>,
    /// Directory of `k8s-secret/NAME` webhook secrets.
    pub secrets_dir: PathBuf,
    /// When `POST /v1/decide` answers.
    pub decide_answer: DecideAnswer,
    /// Requests without a valid token, per second per client address (0: no limit).
    pub unauthenticated_per_second: u32,
    /// Their burst.
    pub unauthenticated_burst: u32,
    /// Longest pause between two reads of a request body.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body.
    pub body_deadline: Duration,
    /// Longest time to receive a request's headers.
    pub header_timeout: Duration,
    /// Bytes of ingest bodies in flight, all tenants.
    pub ingest_bytes_in_flight: usize,
    /// Bytes of ingest bodies in flight one tenant may hold.
    pub tenant_ingest_bytes: usize,
    /// Expensive reads at once, all tenants.
    pub heavy_reads: usize,
    /// Expensive reads at once one tenant (or tenantless token) may run.
    pub tenant_heavy_reads: usize,
    /// Unpaged answers read at once, all tenants.
    pub streams: usize,
    /// Unpaged answers one tenant (or tenantless token) may read at once.
    pub tenant_streams: usize,
    /// Extra OTLP/HTTP listener (`[otlp] http`, `--otlp-http`).
    pub otlp_http: Option<SocketAddr>,
    /// OTLP/gRPC listener (`[otlp] grpc`, `--otlp-grpc`).
    pub otlp_grpc: Option<SocketAddr>,
    /// Record spans and records that are not GenAI instead of skipping them.
    pub otlp_keep_other: bool,
    /// Where guardrail spans are exported (`[otlp.guardrails]`).
    pub guardrails: Option<GuardrailExport>,
    /// Serve the forensic console at `/ui` (`[server] console`, `--console`).
    pub console: bool,
}

/// The standard OTLP/HTTP port's loopback address, for `--otlp`.
pub const DEFAULT_OTLP_HTTP: &str = "127.0.0.1:4318";
/// The standard OTLP/gRPC port's loopback address, for `--otlp`.
pub const DEFAULT_OTLP_GRPC: &str = "127.0.0.1:4317";

/// An OTLP/HTTP traces endpoint guardrail spans are sent to. Its `Debug` form names the headers
/// but never their values (they usually hold a credential).
#[derive(Clone, PartialEq, Eq)]
pub struct GuardrailExport {
    /// `http://` or `https://` URL of the collector's traces endpoint.
    pub endpoint: String,
    /// Headers sent with each export (values already read from the environment).
    pub headers: Vec<(String, String)>,
}

/// Values from flags or environment variables (`None`: not given).
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--listen` / `BLACKBOX_LISTEN`.
    pub listen: Option<String>,
    /// `--data-dir` / `BLACKBOX_DATA_DIR`.
    pub data_dir: Option<PathBuf>,
    /// `--log-file` / `BLACKBOX_LOG_FILE`.
    pub log_file: Option<PathBuf>,
    /// `--log-format` / `BLACKBOX_LOG_FORMAT`.
    pub log_format: Option<String>,
    /// `--rate-limit` / `BLACKBOX_RATE_LIMIT` (requests per second per token; 0 = off).
    pub rate_limit: Option<u32>,
    /// `--rules` / `BLACKBOX_RULES`.
    pub rules: Option<PathBuf>,
    /// `BLACKBOX_SECRETS_DIR`.
    pub secrets_dir: Option<PathBuf>,
    /// `--decide-answer` / `BLACKBOX_DECIDE_ANSWER` (`durable` or `sequenced`).
    pub decide_answer: Option<String>,
    /// `--otlp-http` / `BLACKBOX_OTLP_HTTP` (an address, or `off`).
    pub otlp_http: Option<String>,
    /// `--otlp-grpc` / `BLACKBOX_OTLP_GRPC` (an address, or `off`).
    pub otlp_grpc: Option<String>,
    /// `--console` / `BLACKBOX_CONSOLE` (`auto`, `on` or `off`).
    pub console: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    mirror: RawMirror,
    #[serde(default)]
    detection: RawDetection,
    #[serde(default)]
    otlp: RawOtlp,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    http: Option<String>,
    grpc: Option<String>,
    keep_other: Option<bool>,
    guardrails: Option<RawGuardrails>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawGuardrails {
    endpoint: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

impl std::fmt::Debug for GuardrailExport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardrailExport")
            .field("endpoint", &self.endpoint)
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(n, _)| format!("{n}: <redacted>"))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An optional listener: an address, or `off`.
fn parse_optional_listen(s: &str, whence: &str) -> Result<Option<SocketAddr>, ServerError> {
    if s.eq_ignore_ascii_case("off") {
        Ok(None)
    } else {
        parse_listen(s, whence).map(Some)
    }
}

fn guardrails(
    raw: Option<RawGuardrails>,
    whence: &str,
) -> Result<Option<GuardrailExport>, ServerError> {
    let Some(g) = raw else { return Ok(None) };
    let Some(endpoint) = g.endpoint else {
        if g.headers.is_empty() {
            return Ok(None);
        }
        return Err(ServerError::Config(format!(
            "{whence}: otlp.guardrails has headers but no endpoint; add endpoint = \"http://collector:4318/v1/traces\""
        )));
    };
    if !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        || endpoint.parse::<axum::http::Uri>().is_err()
    {
        return Err(ServerError::Config(format!(
            "{whence}: otlp.guardrails.endpoint `{endpoint}` is not an http:// or https:// URL"
        )));
    }
    let mut headers = Vec::new();
    for (name, value) in g.headers {
        if axum::http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(ServerError::Config(format!(
                "{whence}: otlp.guardrails.headers: `{name}` is not a header name"
            )));
        }
        let value = match value.strip_prefix("env:") {
            Some(var) => std::env::var(var).map_err(|_| {
                ServerError::Config(format!(
                    "{whence}: otlp.guardrails.headers.{name} reads the environment variable {var}, which is not set"
                ))
            })?,
            None => value,
        };
        if axum::http::HeaderValue::from_str(&value).is_err() {
            // The value may be a secret: never repeated in the message.
            return Err(ServerError::Config(format!(
                "{whence}: otlp.guardrails.headers.{name}: the value is not a valid header value"
            )));
        }
        headers.push((name, value));
    }
    Ok(Some(GuardrailExport { endpoint, headers }))
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawDetection {
    rules_file: Option<PathBuf>,
    secrets_dir: Option<PathBuf>,
    decide_answer: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    body_limit_bytes: Option<usize>,
    max_events_per_request: Option<usize>,
    queue_capacity: Option<usize>,
    #[serde(default)]
    rate_limit: RawRate,
    #[serde(default)]
    limits: RawLimits,
    log_format: Option<String>,
    console: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests_per_second: Option<u32>,
    burst: Option<u32>,
    unauthenticated_per_second: Option<u32>,
    unauthenticated_burst: Option<u32>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    body_idle_timeout_secs: Option<u64>,
    body_deadline_secs: Option<u64>,
    header_timeout_secs: Option<u64>,
    ingest_bytes_in_flight: Option<usize>,
    tenant_ingest_bytes: Option<usize>,
    heavy_reads: Option<usize>,
    tenant_heavy_reads: Option<usize>,
    streams: Option<usize>,
    tenant_streams: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMirror {
    log_file: Option<PathBuf>,
    rotate_bytes: Option<u64>,
}

fn parse_listen(s: &str, whence: &str) -> Result<SocketAddr, ServerError> {
    s.parse().map_err(|_| {
        ServerError::Config(format!(
            "{whence}: `{s}` is not an address to listen on; give IP:PORT such as 127.0.0.1:7700 or 0.0.0.0:7700"
        ))
    })
}

/// A setting from its flag (or variable), else from the file, parsed with where it came from;
/// `None` when neither gives it.
fn choose<T>(
    flag: (Option<&str>, &str),
    file: (Option<&str>, &str),
    parse: fn(&str, &str) -> Result<T, ServerError>,
) -> Option<Result<T, ServerError>> {
    match (flag, file) {
        ((Some(v), whence), _) | ((None, _), (Some(v), whence)) => Some(parse(v, whence)),
        ((None, _), (None, _)) => None,
    }
}

/// `auto`, `on` or `off`: `Some(bool)`, or `None` for `auto`.
fn parse_console(s: &str, whence: &str) -> Result<Option<bool>, ServerError> {
    match s {
        "auto" => Ok(None),
        "on" | "true" => Ok(Some(true)),
        "off" | "false" => Ok(Some(false)),
        other => Err(ServerError::Config(format!(
            "{whence}: `{other}` is not a console setting; use auto (on for a loopback listener), on or off"
        ))),
    }
}

fn parse_decide_answer(s: &str, whence: &str) -> Result<DecideAnswer, ServerError> {
    match s {
        "durable" => Ok(DecideAnswer::Durable),
        "sequenced" => Ok(DecideAnswer::Sequenced),
        other => Err(ServerError::Config(format!(
            "{whence}: `{other}` is not a way to answer decisions; use durable (after the commit) or sequenced (before it)"
        ))),
    }
}

fn parse_log_format(s: &str, whence: &str) -> Result<LogFormat, ServerError> {
    match s {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ServerError::Config(format!(
            "{whence}: log format `{other}` is unknown; use text or json"
        ))),
    }
}

impl ServerConfig {
    /// Builds the settings: defaults, then `file` (if given), then `o`.
    ///
    /// # Errors
    /// [`ServerError::Config`] naming the file, key or flag that is wrong.
    pub fn load(file: Option<&Path>, o: &Overrides) -> Result<Self, ServerError> {
        let raw: RawFile = match file {
            None => RawFile::default(),
            Some(p) => {
                let text = std::fs::read_to_string(p).map_err(|e| {
                    ServerError::Config(format!("cannot read --config {}: {e}", p.display()))
                })?;
                toml::from_str(&text).map_err(|e| {
                    ServerError::Config(format!("{}: {}", p.display(), e.to_string().trim()))
                })?
            }
        };
        let whence = file.map_or_else(String::new, |p| p.display().to_string());
        let listen = choose(
            (o.listen.as_deref(), "--listen"),
            (
                raw.server.listen.as_deref(),
                &format!("{whence}: server.listen"),
            ),
            parse_listen,
        )
        .unwrap_or_else(|| parse_listen(DEFAULT_LISTEN, "default"))?;
        let data_dir = o
            .data_dir
            .clone()
            .or(raw.server.data_dir)
            .unwrap_or_else(|| PathBuf::from(blackbox_ledger::datadir::DEFAULT_DATA_DIR));
        let log_format = choose(
            (o.log_format.as_deref(), "--log-format"),
            (
                raw.server.log_format.as_deref(),
                &format!("{whence}: server.log_format"),
            ),
            parse_log_format,
        )
        .transpose()?
        .unwrap_or(LogFormat::Text);
        let decide_answer = choose(
            (o.decide_answer.as_deref(), "--decide-answer"),
            (
                raw.detection.decide_answer.as_deref(),
                &format!("{whence}: detection.decide_answer"),
            ),
            parse_decide_answer,
        )
        .transpose()?
        .unwrap_or(DecideAnswer::Durable);
        let positive =
            |v: Option<usize>, default: usize, key: &str| -> Result<usize, ServerError> {
                match v {
                    Some(0) => Err(ServerError::Config(format!(
                        "{whence}: server.{key} must be at least 1"
                    ))),
                    Some(n) => Ok(n),
                    None => Ok(default),
                }
            };
        let rate_per_second = o
            .rate_limit
            .or(raw.server.rate_limit.requests_per_second)
            .unwrap_or(2000);
        let rate_burst = raw
            .server
            .rate_limit
            .burst
            .unwrap_or(rate_per_second.saturating_mul(2))
            .max(rate_per_second);
        let body_limit = positive(raw.server.body_limit_bytes, 16 << 20, "body_limit_bytes")?;
        let l = &raw.server.limits;
        let secs = |v: Option<u64>, default: u64, key: &str| -> Result<Duration, ServerError> {
            match v {
                Some(0) => Err(ServerError::Config(format!(
                    "{whence}: server.limits.{key} must be at least 1 (seconds)"
                ))),
                Some(n) => Ok(Duration::from_secs(n)),
                None => Ok(Duration::from_secs(default)),
            }
        };
        let body_idle_timeout = secs(l.body_idle_timeout_secs, 10, "body_idle_timeout_secs")?;
        let body_deadline = secs(l.body_deadline_secs, 60, "body_deadline_secs")?;
        let header_timeout = secs(l.header_timeout_secs, 30, "header_timeout_secs")?;
        let ingest_bytes_in_flight = positive(
            l.ingest_bytes_in_flight,
            crate::INGEST_BYTES_IN_FLIGHT,
            "limits.ingest_bytes_in_flight",
        )?;
        if u32::try_from(ingest_bytes_in_flight).is_err() {
            return Err(ServerError::Config(format!(
                "{whence}: server.limits.ingest_bytes_in_flight must be below 4 GiB"
            )));
        }
        let tenant_ingest_bytes = positive(
            l.tenant_ingest_bytes,
            (ingest_bytes_in_flight / 4).max(body_limit),
            "limits.tenant_ingest_bytes",
        )?;
        if tenant_ingest_bytes < body_limit || tenant_ingest_bytes > ingest_bytes_in_flight {
            return Err(ServerError::Config(format!(
                "{whence}: server.limits.tenant_ingest_bytes ({tenant_ingest_bytes}) must be between server.body_limit_bytes ({body_limit}) and server.limits.ingest_bytes_in_flight ({ingest_bytes_in_flight}): a tenant must be able to send one largest body, and cannot hold more than all"
            )));
        }
        let heavy_reads = positive(l.heavy_reads, 4, "limits.heavy_reads")?;
        let tenant_heavy_reads = positive(
            l.tenant_heavy_reads,
            (heavy_reads / 2).max(1),
            "limits.tenant_heavy_reads",
        )?;
        if tenant_heavy_reads > heavy_reads {
            return Err(ServerError::Config(format!(
                "{whence}: server.limits.tenant_heavy_reads ({tenant_heavy_reads}) cannot be more than server.limits.heavy_reads ({heavy_reads})"
            )));
        }
        let streams = positive(l.streams, 64, "limits.streams")?;
        let tenant_streams = positive(
            l.tenant_streams,
            (streams / 4).max(1),
            "limits.tenant_streams",
        )?;
        if tenant_streams > streams {
            return Err(ServerError::Config(format!(
                "{whence}: server.limits.tenant_streams ({tenant_streams}) cannot be more than server.limits.streams ({streams})"
            )));
        }
        let unauthenticated_per_second = raw
            .server
            .rate_limit
            .unauthenticated_per_second
            .unwrap_or(2);
        let unauthenticated_burst = raw
            .server
            .rate_limit
            .unauthenticated_burst
            .unwrap_or(20)
            .max(1);
        let otlp_http = choose(
            (o.otlp_http.as_deref(), "--otlp-http"),
            (raw.otlp.http.as_deref(), &format!("{whence}: otlp.http")),
            parse_optional_listen,
        )
        .transpose()?
        .flatten();
        let otlp_grpc = choose(
            (o.otlp_grpc.as_deref(), "--otlp-grpc"),
            (raw.otlp.grpc.as_deref(), &format!("{whence}: otlp.grpc")),
            parse_optional_listen,
        )
        .transpose()?
        .flatten();
        let guardrails = guardrails(raw.otlp.guardrails, &whence)?;
        let console = choose(
            (o.console.as_deref(), "--console"),
            (
                raw.server.console.as_deref(),
                &format!("{whence}: server.console"),
            ),
            parse_console,
        )
        .transpose()?
        .flatten()
        .unwrap_or_else(|| listen.ip().is_loopback());
        Ok(Self {
            console,
            otlp_http,
            otlp_grpc,
            otlp_keep_other: raw.otlp.keep_other.unwrap_or(false),
            guardrails,
            listen,
            data_dir,
            body_limit,
            max_events_per_request: positive(
                raw.server.max_events_per_request,
                10_000,
                "max_events_per_request",
            )?,
            queue_capacity: positive(raw.server.queue_capacity, 4096, "queue_capacity")?,
            rate_per_second,
            rate_burst,
            mirror: o.log_file.clone().or(raw.mirror.log_file),
            mirror_rotate_bytes: raw.mirror.rotate_bytes.unwrap_or(256 << 20).max(1 << 16),
            log_format,
            rules: o.rules.clone().or(raw.detection.rules_file),
            secrets_dir: o
                .secrets_dir
                .clone()
                .or(raw.detection.secrets_dir)
                .unwrap_or_else(|| PathBuf::from("/var/run/secrets/blackbox")),
            decide_answer,
            unauthenticated_per_second,
            unauthenticated_burst,
            body_idle_timeout,
            body_deadline,
            header_timeout,
            ingest_bytes_in_flight,
            tenant_ingest_bytes,
            heavy_reads,
            tenant_heavy_reads,
            streams,
            tenant_streams,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_console_is_on_for_a_loopback_listener_unless_told() {
        let load = |listen: &str, console: Option<&str>| {
            ServerConfig::load(
                None,
                &Overrides {
                    listen: Some(listen.into()),
                    console: console.map(Into::into),
                    ..Overrides::default()
                },
            )
        };
        assert!(load("127.0.0.1:7700", None).unwrap().console);
        assert!(load("[::1]:7700", None).unwrap().console);
        assert!(!load("0.0.0.0:7700", None).unwrap().console);
        assert!(load("0.0.0.0:7700", Some("on")).unwrap().console);
        assert!(!load("127.0.0.1:7700", Some("off")).unwrap().console);
        assert!(load("127.0.0.1:7700", Some("auto")).unwrap().console);
        let e = load("127.0.0.1:7700", Some("maybe"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("--console") && e.contains("auto"), "{e}");
    }

    #[test]
    fn defaults_file_and_overrides() {
        let c = ServerConfig::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.data_dir, PathBuf::from("./blackbox-data"));
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.toml");
        std::fs::write(&f, EXAMPLE.replace("127.0.0.1:7700", "127.0.0.1:9000")).unwrap();
        let c = ServerConfig::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.rate_per_second, 2000);
        assert_eq!(c.decide_answer, DecideAnswer::Durable);
        std::fs::write(
            &f,
            EXAMPLE.replace(
                "decide_answer = \"durable\"",
                "decide_answer = \"sequenced\"",
            ),
        )
        .unwrap();
        let c = ServerConfig::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.decide_answer, DecideAnswer::Sequenced);
        let o = Overrides {
            decide_answer: Some("durable".into()),
            ..Overrides::default()
        };
        assert_eq!(
            ServerConfig::load(Some(&f), &o).unwrap().decide_answer,
            DecideAnswer::Durable
        );
        let o = Overrides {
            decide_answer: Some("fast".into()),
            ..Overrides::default()
        };
        let e = ServerConfig::load(Some(&f), &o).unwrap_err();
        assert!(e.to_string().contains("--decide-answer"), "{e}");
        let o = Overrides {
            listen: Some("0.0.0.0:7800".into()),
            rate_limit: Some(0),
            ..Overrides::default()
        };
        let c = ServerConfig::load(Some(&f), &o).unwrap();
        assert_eq!(c.listen.port(), 7800);
        assert_eq!(c.rate_per_second, 0);
    }

    #[test]
    fn limits_have_defaults_and_are_checked() {
        let c = ServerConfig::load(None, &Overrides::default()).unwrap();
        assert_eq!(c.body_idle_timeout, Duration::from_secs(10));
        assert_eq!(c.body_deadline, Duration::from_secs(60));
        assert_eq!(c.header_timeout, Duration::from_secs(30));
        assert_eq!(c.ingest_bytes_in_flight, 256 << 20);
        assert_eq!(c.tenant_ingest_bytes, 64 << 20);
        assert_eq!((c.heavy_reads, c.tenant_heavy_reads), (4, 2));
        assert_eq!((c.streams, c.tenant_streams), (64, 16));
        assert_eq!(
            (c.unauthenticated_per_second, c.unauthenticated_burst),
            (2, 20)
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.toml");
        std::fs::write(&f, EXAMPLE).unwrap();
        assert_eq!(
            ServerConfig::load(Some(&f), &Overrides::default()).unwrap(),
            c
        );
        std::fs::write(
            &f,
            "[server.limits]\nbody_idle_timeout_secs = 2\nheavy_reads = 8\n",
        )
        .unwrap();
        let c = ServerConfig::load(Some(&f), &Overrides::default()).unwrap();
        assert_eq!(c.body_idle_timeout, Duration::from_secs(2));
        assert_eq!((c.heavy_reads, c.tenant_heavy_reads), (8, 4));
        for (bad, key) in [
            ("body_idle_timeout_secs = 0", "body_idle_timeout_secs"),
            ("tenant_ingest_bytes = 1024", "tenant_ingest_bytes"),
            ("tenant_heavy_reads = 5", "tenant_heavy_reads"),
            (
                "ingest_bytes_in_flight = 8589934592",
                "ingest_bytes_in_flight",
            ),
            ("tenant_streams = 65", "tenant_streams"),
        ] {
            std::fs::write(&f, format!("[server.limits]\n{bad}\n")).unwrap();
            let e = ServerConfig::load(Some(&f), &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(key), "{bad}: {e}");
        }
    }

    #[test]
    fn bad_settings_name_where_they_are() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("s.toml");
        std::fs::write(&f, "[server]\nlisten = \"nope\"\n").unwrap();
        let e = ServerConfig::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("server.listen"), "{e}");
        std::fs::write(&f, "[server]\nlisen = \"x\"\n").unwrap();
        let e = ServerConfig::load(Some(&f), &Overrides::default()).unwrap_err();
        assert!(e.to_string().contains("lisen"), "{e}");
        let o = Overrides {
            listen: Some("7700".into()),
            ..Overrides::default()
        };
        let e = ServerConfig::load(None, &o).unwrap_err();
        assert!(e.to_string().contains("--listen"), "{e}");
    }
}
