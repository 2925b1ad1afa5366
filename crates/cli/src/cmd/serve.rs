//! `blackbox serve`: the audit service.

use anyhow::{Result, anyhow};
use blackbox_server::config::{EXAMPLE, LogFormat, Overrides, ServerConfig};

use crate::Outcome;
use crate::cli::ServeArgs;

pub fn run(a: ServeArgs) -> Result<Outcome> {
    if a.print_config {
        print!("{EXAMPLE}");
        return Ok(Outcome::Ok);
    }
    let config = ServerConfig::load(
        a.config.as_deref(),
        &Overrides {
            listen: a.listen,
            data_dir: a.data_dir,
            log_file: a.log_file,
            log_format: a.log_format,
            rate_limit: a.rate_limit,
            rules: a.rules,
            secrets_dir: a.secrets_dir,
            decide_answer: a.decide_answer,
            otlp_http: a.otlp_http.or_else(|| {
                a.otlp
                    .then(|| blackbox_server::config::DEFAULT_OTLP_HTTP.to_owned())
            }),
            otlp_grpc: a.otlp_grpc.or_else(|| {
                a.otlp
                    .then(|| blackbox_server::config::DEFAULT_OTLP_GRPC.to_owned())
            }),
            console: a.console,
        },
    )?;
    init_logging(config.log_format);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("blackbox-http")
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))?;
    rt.block_on(blackbox_server::serve(config))?;
    Ok(Outcome::Ok)
}

pub(crate) fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("BLACKBOX_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let ansi = std::env::var_os("NO_COLOR").is_none()
        && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
