//! Command-line arguments. Names follow the product description (the seed).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "blackbox", version, about = "Tamper-evident audit log for AI agents", long_about = None)]
pub struct Cli {
    /// Keep the entries in this PostgreSQL database (`postgres://USER[:PASSWORD]@HOST[:PORT]/DB
    /// [?sslmode=verify-full]`), or in the databases a tenant map file (`FILE.toml`) names,
    /// instead of the data directory's embedded SQLite file, for every command that opens a
    /// store. The data directory still holds the keys and settings.
    #[arg(
        long,
        global = true,
        env = "BLACKBOX_STORE",
        hide_env_values = true,
        value_name = "URL|FILE.toml"
    )]
    pub store: Option<String>,
    /// With a tenant map (`--store FILE.toml`): this one of its databases only (`serve` serves
    /// its tenants; tokens and the webhook outbox are each database's own).
    #[arg(long, global = true, env = "BLACKBOX_DATABASE", value_name = "NAME")]
    pub database: Option<String>,
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct DataDirArg {
    /// Data directory holding the store and keys.
    #[arg(long, env = "BLACKBOX_DATA_DIR", default_value = "./blackbox-data")]
    pub data_dir: PathBuf,
}

/// Work against a running `blackbox serve` instead of a local data directory.
#[derive(Args, Debug, Clone, Default)]
pub struct RemoteArgs {
    /// URL of a running service (e.g. http://127.0.0.1:7700); the command then asks it instead of
    /// reading a local data directory.
    #[arg(long, env = "BLACKBOX_SERVER")]
    pub server: Option<String>,
    /// API token for --server (read scope).
    #[arg(
        long,
        env = "BLACKBOX_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    pub token: Option<String>,
}

/// A witness policy (docs/WITNESS.md): checkpoints must be cosigned by a quorum of witnesses.
#[derive(Args, Debug, Clone, Default)]
pub struct WitnessPolicyArgs {
    /// A witness's public key: a file holding it (`blackbox witness keygen` writes
    /// `<key file>.pub`) or the key itself (`name+keyid+base64`, type 0x04). Repeat for each
    /// witness of the policy; each chain then needs a checkpoint cosigned by the quorum.
    #[arg(long = "witness-key", value_name = "FILE|VKEY")]
    pub witness_key: Vec<PathBuf>,
    /// How many of the --witness-key witnesses must have cosigned a checkpoint [default: all].
    #[arg(long, requires = "witness_key", value_name = "N")]
    pub witness_quorum: Option<usize>,
}

/// `--token`'s help on commands whose route needs the admin scope.
const ADMIN_TOKEN_HELP: &str = "API token for --server (admin scope)";

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOrJson {
    Text,
    Json,
}

/// The file `prove` writes for an entry.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofFormat {
    /// `blackbox.inclusion_proof.v1` (docs/FORMAT.md §10).
    Json,
    /// C2SP tlog-proof (the entry line as its extra data; docs/FORMAT.md §10).
    TlogProof,
}

/// Which of an entry's two times a query's bounds apply to (docs/FORMAT.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TimeBasis {
    /// `written_at`: when the service recorded the entry (an agent cannot move it).
    Written,
    /// `timestamp`: the time the agent claims (indexed; an agent can set it to any date).
    Claimed,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryFormat {
    Table,
    Csv,
    Json,
    Jsonl,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Create a store with a fresh HMAC key and checkpoint-signing key.
    Init {
        #[command(flatten)]
        dir: DataDirArg,
        /// Name of this log; checkpoint origins are `<log name>/<tenant>` (default: `blackbox/<8 random hex digits>`).
        #[arg(long)]
        log_name: Option<String>,
        #[command(flatten)]
        fss: ForwardSecureArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Append NDJSON events (one JSON object per line) from a file or standard input.
    Append {
        #[command(flatten)]
        dir: DataDirArg,
        /// Read events from this file instead of standard input.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Tenant for events that name none (events naming another tenant are refused).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Commit every N events instead of once for the whole input (each batch is
        /// all-or-nothing; use for endless streams).
        #[arg(long)]
        batch_size: Option<usize>,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Verify a store, or exported JSONL log files as one log: HMACs, chain links, checkpoints.
    Verify {
        /// Data directory when no --log-file [default: BLACKBOX_DATA_DIR, else ./blackbox-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Verify this exported JSONL log instead of the store. Repeat to verify several files
        /// in the given order as one log: a file that continues a chain starts with an anchor
        /// record (FORMAT.md §8) or with the next entry. Findings name the file and line.
        #[arg(long, conflicts_with = "data_dir", value_name = "FILE")]
        log_file: Vec<PathBuf>,
        /// HMAC keyring file (secret) to check every entry's HMAC. Repeat to combine several
        /// (e.g. the service's keyring and the initial file of a forward-secure generation);
        /// a forward-secure generation's initial file checks every one of its epochs.
        #[arg(long, value_name = "FILE")]
        key_file: Vec<PathBuf>,
        /// Checkpoint public key (checkpoint.pub) to check signed checkpoints.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// A trusted signed checkpoint kept by the auditor; a shorter or different log is TAMPERED.
        #[arg(long)]
        checkpoint: Vec<PathBuf>,
        /// Only this tenant's chain (store only).
        #[arg(long)]
        tenant_id: Option<String>,
        /// List every problem, not just the first.
        #[arg(long)]
        all: bool,
        /// Also read each chain's archive segments (`blackbox retention run`) first, and verify
        /// archive and store as one chain.
        #[arg(long, conflicts_with = "log_file")]
        include_archive: bool,
        #[command(flatten)]
        witness: WitnessPolicyArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Erase a data subject's personal data (GDPR Art. 17): delete the personal sidecars of every
    /// entry that names it and append a signed erasure marker per chain; `verify` still passes.
    #[command(mut_arg("token", |a| a.help(ADMIN_TOKEN_HELP)))]
    Erase {
        /// The data-subject id, as sent in `data_subjects`.
        #[arg(long, value_name = "ID")]
        data_subject: String,
        /// Why (recorded in the marker; up to 1,000 characters).
        #[arg(long)]
        reason: String,
        /// Your reference for the request (recorded in the marker).
        #[arg(long)]
        ticket: String,
        /// Data directory when no --server [default: BLACKBOX_DATA_DIR, else ./blackbox-data].
        #[arg(long, env = "BLACKBOX_DATA_DIR", conflicts_with = "server")]
        data_dir: Option<PathBuf>,
        /// A JSONL mirror of this store (`serve --log-file`) to rewrite without the erased
        /// personal records; its rotated files `FILE.1`, `FILE.2`, … are rewritten too. Repeat
        /// for several mirrors. (With --server the service rewrites its own mirror.)
        #[arg(long, value_name = "FILE", conflicts_with = "server")]
        log_file: Vec<PathBuf>,
        /// Only list what would be erased.
        #[arg(long, conflicts_with = "server")]
        dry_run: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
        #[command(flatten)]
        remote: RemoteArgs,
    },
    /// Search the audit trail (indexed filters; output streams).
    Query {
        #[command(flatten)]
        dir: DataDirArg,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        agent_id: Option<String>,
        #[arg(long)]
        session_id: Option<String>,
        #[arg(long)]
        tenant_id: Option<String>,
        /// Tool name of tool_call entries.
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        event_type: Option<String>,
        /// Only entries of this trace (their `payload.trace_id`: OTLP spans and log records).
        #[arg(long)]
        trace_id: Option<String>,
        /// Earliest entry time (RFC 3339, or a date YYYY-MM-DD meaning its start, UTC).
        #[arg(long)]
        start: Option<String>,
        /// Latest entry time, inclusive (RFC 3339, or a date meaning its end, UTC).
        #[arg(long)]
        end: Option<String>,
        /// Which time --start/--end bound: `written` (default: when the service recorded the
        /// entry, which an agent cannot move) or `claimed` (the agent's `timestamp`).
        #[arg(long, value_enum, default_value = "written")]
        time: TimeBasis,
        /// Only entries of this origin: service, token, local, token:ID (a token id) or local:USER.
        #[arg(long)]
        origin: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        /// Also search the archive segments (entries moved out of the store by
        /// `blackbox retention run`); their matches come first, in chain order.
        #[arg(long)]
        include_archive: bool,
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
    },
    /// Print the latest signed checkpoint of a chain (keep it as a trusted anchor).
    Checkpoint {
        #[command(flatten)]
        dir: DataDirArg,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long)]
        tenant_id: Option<String>,
        /// Sign a fresh checkpoint of the current chain first (with --server: the service signs it;
        /// an admin token).
        #[arg(long)]
        sign_now: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Print an inclusion proof for an entry, or a consistency proof from an old checkpoint.
    Prove {
        #[command(flatten)]
        dir: DataDirArg,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Tenant of the chain (with --server and an admin token).
        #[arg(long)]
        tenant_id: Option<String>,
        /// The entry to prove (its UUIDv7).
        #[arg(
            long,
            required_unless_present_any = ["consistency", "agent_id", "session_id", "trace_id"],
            conflicts_with = "consistency"
        )]
        entry_id: Option<String>,
        /// A log slice instead (docs/FORMAT.md §10): this agent's entries, each with its
        /// inclusion proof against one signed checkpoint.
        #[arg(long, conflicts_with_all = ["entry_id", "consistency"])]
        agent_id: Option<String>,
        /// A log slice of this session's entries.
        #[arg(long, conflicts_with_all = ["entry_id", "consistency"])]
        session_id: Option<String>,
        /// A log slice of this trace's entries (`payload.trace_id`).
        #[arg(long, conflicts_with_all = ["entry_id", "consistency"])]
        trace_id: Option<String>,
        /// With a slice: the earliest claimed time (RFC 3339, or a date: its first instant).
        #[arg(long)]
        start: Option<String>,
        /// With a slice: the latest claimed time (RFC 3339, or a date: its last instant).
        #[arg(long)]
        end: Option<String>,
        /// With a slice: at most this many entries (1–10,000).
        #[arg(long, default_value_t = 1000)]
        limit: usize,
        /// A signed checkpoint file: prove the latest checkpoint extends it.
        #[arg(long)]
        consistency: Option<PathBuf>,
        /// Leave the entry line out of an inclusion proof (prove by hash only).
        #[arg(long, conflicts_with = "format")]
        no_entry: bool,
        /// An entry's inclusion proof as `json` (docs/FORMAT.md §10) or as a C2SP `tlog-proof`
        /// (`.tlog-proof`, read by any C2SP implementation; the entry line is its extra data).
        #[arg(long, value_enum, default_value = "json")]
        format: ProofFormat,
        /// Write the proof here instead of standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Check a proof with nothing but the checkpoint public key.
    VerifyProof {
        /// Checkpoint public key (checkpoint.pub).
        #[arg(long)]
        public_key: PathBuf,
        /// The proof file (JSON from `blackbox prove`).
        proof: PathBuf,
        #[command(flatten)]
        witness: WitnessPolicyArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Write whole chains (entries, sidecars, checkpoints) as JSONL for `verify --log-file`.
    ExportLog {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        tenant_id: Option<String>,
        /// Output file (written atomically).
        #[arg(long)]
        output: PathBuf,
    },
    /// Move a data directory's log between its embedded store and a PostgreSQL database:
    /// `--from DIR --to postgres://…`, or back with `--from postgres://… --to DIR`. Copies
    /// every chain exactly, compares both stores and verifies the destination before the
    /// directory switches over; never writes over a log; run again to resume. Stop the
    /// service first (docs/SCALING.md, "Moving a store").
    Migrate {
        /// Where the log is: the data directory (its embedded store), or the postgres:// URL
        /// of the database a data directory keeps it in.
        #[arg(long, value_name = "DIR|URL")]
        from: String,
        /// Where it goes: a postgres:// URL (an empty database), or the data directory whose
        /// log is in the database given with --from.
        #[arg(long, value_name = "URL|DIR")]
        to: String,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Compliance evidence: SOC 2 CC7.2, ISO 27001 A.8.15 or GDPR Art. 30, as PDF, JSON or CSV
    /// (by the output's extension), with a signed manifest. `export verify MANIFEST` checks one.
    Export(ExportArgs),
    /// Run the audit service: agents write events to it over HTTP, auditors read from it.
    /// With no settings it listens on 127.0.0.1:7700 and keeps its store in ./blackbox-data,
    /// initialising keys on first start. See docs/API.md.
    Serve(ServeArgs),
    /// MCP audit gateway: every tool call an agent makes to an MCP server is decided by the
    /// service before it runs and recorded with its result (docs/MCP.md).
    Mcp {
        #[command(subcommand)]
        cmd: McpCmd,
    },
    /// Witnessing (C2SP tlog-witness): run a witness that cosigns other logs' checkpoints after
    /// checking they are consistent with what it saw before, and make its key (docs/WITNESS.md).
    Witness {
        #[command(subcommand)]
        cmd: WitnessCmd,
    },
    /// Manage the service's API tokens.
    Tokens {
        #[command(subcommand)]
        cmd: TokensCmd,
    },
    /// Manage keys: rotate the HMAC key (optionally forward-secure: a new key every epoch),
    /// show key ids.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
    /// Agents seen by a running service: list, pause, resume (recorded in the chain).
    Agents {
        #[command(subcommand)]
        cmd: AgentsCmd,
    },
    /// Alerts (every anomaly_detected entry) and their triage: list them, acknowledge and
    /// resolve them (recorded in the chain, naming who), on a data directory or with --server.
    Alerts {
        #[command(subcommand)]
        cmd: AlertsCmd,
    },
    /// Anomaly-detection rules: validate a file, or replay a recorded log through it.
    Rules {
        #[command(subcommand)]
        cmd: RulesCmd,
    },
    /// Webhook deliveries to the SIEM: list them, retry dead-lettered ones.
    Webhooks {
        #[command(subcommand)]
        cmd: WebhooksCmd,
    },
    /// Retention: what is hot and archived per tenant, and archiving/expiry runs.
    Retention {
        #[command(subcommand)]
        cmd: RetentionCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum RetentionCmd {
    /// Per tenant: oldest hot and archived entry, and whether each standard's requirement is met.
    Status {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Seal entries older than the hot window into verified archive segments, remove them from
    /// the store, and delete archive segments past their retention (each step recorded in the
    /// chain). Safe to interrupt and run again. While `blackbox serve` holds the data directory,
    /// ask it to run instead: `--server URL --token T` (an admin token).
    #[command(mut_arg("token", |a| a.help(ADMIN_TOKEN_HELP)))]
    Run {
        #[command(flatten)]
        dir: DataDirArg,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only this tenant's chain.
        #[arg(long, conflicts_with = "server")]
        tenant_id: Option<String>,
        /// Show what would be archived and deleted; change nothing.
        #[arg(long, conflicts_with = "server")]
        dry_run: bool,
        /// Take this as the current time (RFC 3339) instead of the clock, e.g. to see what a
        /// later run will do (with --dry-run).
        #[arg(long, value_name = "TIME", conflicts_with = "server")]
        now: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}

/// `blackbox export`'s flags.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub cmd: Option<ExportCmd>,
    #[command(flatten)]
    pub dir: DataDirArg,
    #[command(flatten)]
    pub remote: RemoteArgs,
    /// soc2, iso27001, gdpr or eu-ai-act.
    #[arg(long, required_unless_present = "print_config")]
    pub standard: Option<String>,
    /// The control: CC7.2 (soc2), A.8.15 (iso27001).
    #[arg(long, conflicts_with = "article")]
    pub control: Option<String>,
    /// The article: art30 (gdpr), art12 (eu-ai-act).
    #[arg(long)]
    pub article: Option<String>,
    /// START/END as dates, both included, e.g. 2025-01-01/2025-12-31 (default: the whole log).
    #[arg(long)]
    pub period: Option<String>,
    /// Output file: .pdf, .json or .csv; a signed manifest is written next to it.
    #[arg(long, required_unless_present_any = ["print_config", "bundle"], conflicts_with = "bundle")]
    pub output: Option<PathBuf>,
    /// Write a re-performable evidence bundle into this new directory instead: the report as
    /// PDF, JSON and CSV, the log, a checkpoint signed now, an inclusion proof for every
    /// sampled entry and every alert, and a manifest over all of it (`export reperform`
    /// recomputes every figure from it offline). While the service runs, the proofs are
    /// against its latest checkpoint; with --server (an admin token) the service signs a
    /// checkpoint and makes the bundle.
    #[arg(long, value_name = "DIR")]
    pub bundle: Option<PathBuf>,
    /// The tenant (default: the only tenant of the store).
    #[arg(long)]
    pub tenant_id: Option<String>,
    /// GDPR: count data subjects by category (pseudonymous ids, never shown).
    #[arg(long, default_value = "false", action = clap::ArgAction::Set, value_parser = clap::builder::BoolishValueParser::new())]
    pub include_data_subjects: bool,
    /// Export settings (default: DATA_DIR/export.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Entries in the random sample.
    #[arg(long, default_value_t = 25)]
    pub sample_size: usize,
    /// Seed of the random sample (default: derived from the standard, tenant and period).
    #[arg(long)]
    pub seed: Option<String>,
    /// Print an example settings file and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Subcommand, Debug)]
pub enum ExportCmd {
    /// Recompute every figure of an evidence bundle (`export --bundle DIR`) offline and say
    /// match or mismatch for each: the manifest, the log (verified), each figure, each proof.
    Reperform {
        /// The bundle directory.
        bundle: PathBuf,
        /// The log's public key file (the auditor's own copy; not the bundle's).
        #[arg(long)]
        public_key: PathBuf,
        /// HMAC key file(s), to check every entry's HMAC too (repeatable).
        #[arg(long)]
        key_file: Vec<PathBuf>,
        #[command(flatten)]
        witness: WitnessPolicyArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Check a manifest's signature with the public key alone, then every file it lists.
    Verify {
        /// The manifest (`<output>.manifest`).
        manifest: PathBuf,
        /// The log's public key file (default: DATA_DIR/checkpoint.pub).
        #[arg(long)]
        public_key: Option<PathBuf>,
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}

#[derive(Subcommand, Debug)]
pub enum McpCmd {
    /// Stand in for an MCP server started over stdio: put this command in the MCP client's
    /// configuration in place of the server's, e.g.
    /// `blackbox mcp wrap --agent-id A -- npx -y @modelcontextprotocol/server-filesystem /data`.
    Wrap {
        #[command(flatten)]
        gateway: McpGatewayArgs,
        /// The MCP server's command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<std::ffi::OsString>,
    },
    /// Reverse proxy in front of an MCP server served over Streamable HTTP: clients connect to
    /// http://LISTEN/<the upstream's path>; the gateway's metrics are at /blackbox/metrics.
    Proxy {
        #[command(flatten)]
        gateway: McpGatewayArgs,
        /// The MCP server's URL, e.g. http://127.0.0.1:3001/mcp.
        #[arg(long)]
        upstream: String,
        /// Where clients connect (loopback by default).
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: std::net::SocketAddr,
        /// Largest request body, and largest JSON answer or SSE event the gateway reads
        /// (larger events pass through unread and are recorded as such).
        #[arg(long, default_value_t = 16 << 20)]
        body_limit: usize,
        /// Seconds a session may go unused (nothing in flight) before the gateway ends its
        /// record; a client coming back later gets a new one.
        #[arg(long, default_value_t = 3600, value_parser = clap::value_parser!(u64).range(1..))]
        session_idle_timeout: u64,
    },
}

/// What both MCP gateways take.
#[derive(Args, Debug, Clone)]
pub struct McpGatewayArgs {
    /// The agent whose traffic this is (every entry names it; the client's self-reported
    /// clientInfo is recorded beside it, never instead of it).
    #[arg(long, env = "BLACKBOX_AGENT_ID")]
    pub agent_id: String,
    /// The agent's role, for rules scoped by role.
    #[arg(long, env = "BLACKBOX_AGENT_ROLE")]
    pub agent_role: Option<String>,
    /// URL of the Blackbox service that decides and records the calls (the default way:
    /// docs/MCP.md §1).
    #[arg(long, env = "BLACKBOX_SERVER", required_unless_present = "data_dir")]
    pub server: Option<String>,
    /// Ingest token of the agent's tenant, for --server.
    #[arg(
        long,
        env = "BLACKBOX_TOKEN",
        hide_env_values = true,
        requires = "server"
    )]
    pub token: Option<String>,
    /// Instead of --server: run the audit service inside the gateway on this data directory
    /// (created if needed), on a loopback port of its own, with a token made for this run and
    /// revoked at its end. One writer per directory: not while a `blackbox serve` or another
    /// gateway uses it.
    #[arg(long, conflicts_with = "server")]
    pub data_dir: Option<PathBuf>,
    /// With --data-dir: the tenant the calls are recorded for.
    #[arg(long, default_value = "default", requires = "data_dir")]
    pub tenant_id: String,
    /// With --data-dir: the anomaly-detection rules (as `blackbox serve --rules`).
    #[arg(long, requires = "data_dir")]
    pub rules: Option<PathBuf>,
    /// With --data-dir: when decisions are answered, `durable` or `sequenced` (as `blackbox
    /// serve --decide-answer`; docs/RULES.md).
    #[arg(long, requires = "data_dir")]
    pub decide_answer: Option<String>,
    /// Forward calls the service cannot decide (unreachable, overloaded) instead of refusing
    /// them. Either way what happened is recorded when the service is back.
    #[arg(long)]
    pub fail_open: bool,
    /// How a refused call is answered: a JSON-RPC error (`error`, the default) or a tool result
    /// with isError (`tool-error`) for hosts that show only tool results to the model.
    #[arg(long, value_enum, default_value = "error")]
    pub refusal: McpRefusal,
    /// Where tool pins and unsent records are kept [default: $XDG_STATE_HOME/blackbox/mcp, else
    /// ~/.local/state/blackbox/mcp].
    #[arg(long, env = "BLACKBOX_MCP_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Longest wait for a decision before the call counts as undecided (seconds).
    #[arg(long, default_value_t = 10.0)]
    pub decide_timeout: f64,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum McpRefusal {
    Error,
    ToolError,
}

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// List agents (paused and throttled first).
    List {
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only this tenant's agents (admin tokens see every tenant).
        #[arg(long)]
        tenant_id: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Pause an agent: `/v1/decide` answers `paused` until it is resumed (admin token).
    #[command(mut_arg("token", |a| a.help(ADMIN_TOKEN_HELP)))]
    Pause {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The agent id.
        agent_id: String,
        /// Its tenant (needed with an admin token that has none).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Why (recorded in the chain).
        #[arg(long)]
        reason: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Resume a paused or throttled agent (admin token).
    #[command(mut_arg("token", |a| a.help(ADMIN_TOKEN_HELP)))]
    Resume {
        #[command(flatten)]
        remote: RemoteArgs,
        /// The agent id.
        agent_id: String,
        /// Its tenant (needed with an admin token that has none).
        #[arg(long)]
        tenant_id: Option<String>,
        /// Why (recorded in the chain).
        #[arg(long)]
        reason: Option<String>,
        /// The alert this resume answers (`alerts list --agent-id A`); required when a rule
        /// paused or throttled the agent. Recorded in the agent_resumed entry.
        #[arg(long)]
        alert_id: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}

#[derive(Subcommand, Debug)]
pub enum AlertsCmd {
    /// List alerts, oldest first, with their state (open, acknowledged, resolved).
    List {
        /// Data directory when no --server [default: BLACKBOX_DATA_DIR, else ./blackbox-data].
        #[arg(long, env = "BLACKBOX_DATA_DIR", conflicts_with = "server")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
        /// Only this tenant's alerts (tokens other than admin see their own tenant's).
        #[arg(long)]
        tenant_id: Option<String>,
        /// open, acknowledged or resolved.
        #[arg(long)]
        state: Option<String>,
        /// Only alerts of this rule.
        #[arg(long)]
        rule: Option<String>,
        /// Only alerts about this agent.
        #[arg(long)]
        agent_id: Option<String>,
        /// Fired at or after (RFC 3339, or a date: its first millisecond).
        #[arg(long)]
        since: Option<String>,
        /// Fired at or before (RFC 3339, or a date: its last millisecond).
        #[arg(long)]
        until: Option<String>,
        /// Alerts listed (with --server: per page, at most 1000).
        #[arg(long, default_value_t = 100)]
        limit: u64,
        /// With --server: continue after the page that gave this cursor.
        #[arg(long, requires = "server")]
        cursor: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Acknowledge an open alert (with --server: an admin token; locally: as cli:USER (the OS user)).
    #[command(mut_arg("token", |a| a.help(ADMIN_TOKEN_HELP)))]
    Ack {
        /// The alert id (the entry_id of its anomaly_detected entry).
        alert_id: String,
        /// Your reference (ticket, incident number; one line, up to 200 characters).
        #[arg(long)]
        ticket: Option<String>,
        /// A note; only its SHA-256 is recorded (it may name people: keep it in the ticket).
        #[arg(long)]
        note: Option<String>,
        /// Data directory when no --server [default: BLACKBOX_DATA_DIR, else ./blackbox-data].
        #[arg(long, env = "BLACKBOX_DATA_DIR", conflicts_with = "server")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Resolve an open or acknowledged alert: true_positive, false_positive or accepted_risk.
    #[command(mut_arg("token", |a| a.help(ADMIN_TOKEN_HELP)))]
    Resolve {
        /// The alert id (the entry_id of its anomaly_detected entry).
        alert_id: String,
        /// true_positive, false_positive or accepted_risk.
        #[arg(long)]
        resolution: String,
        /// Your reference (ticket, incident number; one line, up to 200 characters).
        #[arg(long)]
        ticket: Option<String>,
        /// A note; only its SHA-256 is recorded (it may name people: keep it in the ticket).
        #[arg(long)]
        note: Option<String>,
        /// Data directory when no --server [default: BLACKBOX_DATA_DIR, else ./blackbox-data].
        #[arg(long, env = "BLACKBOX_DATA_DIR", conflicts_with = "server")]
        data_dir: Option<PathBuf>,
        #[command(flatten)]
        remote: RemoteArgs,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}

#[derive(Subcommand, Debug)]
pub enum RulesCmd {
    /// Validate a rules file (exit 1 with file:line:column and the reason when invalid).
    Check {
        /// The rules file (YAML).
        file: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Replay a recorded log through the rules and report what would have fired (a backtest),
    /// or measure them on labelled text (--corpus) or on lines of text (--text) as
    /// /v1/decide would decide them.
    Test {
        /// The rules file (YAML).
        file: PathBuf,
        /// A JSONL log (the service's --log-file mirror, or `blackbox export-log`); repeat for
        /// rotated files, oldest first.
        #[arg(long, required_unless_present_any = ["data_dir", "text", "corpus"])]
        log_file: Vec<PathBuf>,
        /// Or replay a data directory's store.
        #[arg(long, conflicts_with_all = ["log_file", "text", "corpus"])]
        data_dir: Option<PathBuf>,
        /// Or decide each line of a text file as the argument of a tool call ("-": stdin).
        #[arg(long, conflicts_with_all = ["log_file", "corpus"])]
        text: Option<PathBuf>,
        /// Or measure on a labelled corpus: a .jsonl file or a directory of them, each line
        /// {"label": "attack"|"benign", "text"|"arguments", "tool"?, "family"|"kind"?, "id"?}
        /// (docs/RULES.md, "Trying rules before they enforce").
        #[arg(long, conflicts_with = "log_file")]
        corpus: Option<PathBuf>,
        /// With --corpus: also apply 12 evasion tricks (zero-width, homoglyphs, base64,
        /// leetspeak, split arguments, Unicode tags, HTML entities, ROT13…) to every attack
        /// refused in plain form, and report each trick's refusal rate.
        #[arg(long, requires = "corpus")]
        obfuscate: bool,
        /// With --corpus: exit 1 unless at least this percentage of attacks is refused.
        #[arg(long, requires = "corpus", value_name = "PCT")]
        require_refused: Option<f64>,
        /// With --corpus: exit 1 if more than this percentage of benign samples is refused.
        #[arg(long, requires = "corpus", value_name = "PCT")]
        max_benign_refused: Option<f64>,
        /// Entry ids listed per rule.
        #[arg(long, default_value_t = 5)]
        examples: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}

#[derive(Subcommand, Debug)]
pub enum WebhooksCmd {
    /// List deliveries (newest first).
    List {
        #[command(flatten)]
        dir: DataDirArg,
        /// pending, delivered or dead.
        #[arg(long)]
        status: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Send a delivery again (by id), or every dead-lettered one (--dead).
    Retry {
        #[command(flatten)]
        dir: DataDirArg,
        /// Delivery id (`webhooks list` shows them).
        #[arg(required_unless_present = "dead")]
        id: Option<i64>,
        /// Retry every dead-lettered delivery.
        #[arg(long, conflicts_with = "id")]
        dead: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}

/// Forward security of the HMAC key (docs/FORMAT.md §17).
#[derive(Args, Debug, Clone, Default)]
pub struct ForwardSecureArgs {
    /// Make the HMAC key generation forward-secure: its key evolves one-way every epoch and the
    /// previous one is erased from disk, so whoever takes the server later cannot forge the
    /// entries of earlier epochs. The initial key is written to
    /// `keys/<gen>.fss-initial.keys`: move it offline to the auditor and delete it from the
    /// server (`verify --key-file` accepts it).
    #[arg(long)]
    pub forward_secure: bool,
    /// Epoch length of a forward-secure key: a number and a unit, s m h d or w (at least 1m;
    /// e.g. 1h, 1d).
    #[arg(
        long,
        requires = "forward_secure",
        default_value = "1d",
        value_name = "DURATION"
    )]
    pub epoch: String,
}

#[derive(Subcommand, Debug)]
#[command(
    after_long_help = "Forward security: `blackbox keys rotate --forward-secure --epoch 1d` (or `blackbox init --forward-secure`) starts a generation whose key evolves one-way every epoch, the previous key erased from disk. Its initial key goes to keys/<gen>.fss-initial.keys: move that file offline to the auditor and delete it from the server. Entries then name their epoch (`k2-e412`); `blackbox verify --key-file <initial file>` checks every epoch, the service's own keyring only the current one and later."
)]
pub enum KeysCmd {
    /// Start a new HMAC key generation; older entries still verify with their key id. With
    /// --forward-secure the new key evolves every epoch (see `blackbox keys --help`).
    Rotate {
        #[command(flatten)]
        dir: DataDirArg,
        #[command(flatten)]
        fss: ForwardSecureArgs,
    },
    /// Show key ids and the public key (never secret material).
    Show {
        #[command(flatten)]
        dir: DataDirArg,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokensCmd {
    /// Create a token; it is printed once, alone on the last line.
    Create {
        #[command(flatten)]
        dir: DataDirArg,
        /// Tenant the token is bound to (required for ingest and read tokens).
        #[arg(long)]
        tenant: Option<String>,
        /// ingest, read, admin, or a comma-separated list.
        #[arg(long)]
        scope: String,
        /// A note saying what the token is for.
        #[arg(long, default_value = "")]
        label: String,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// List tokens (never their secrets).
    List {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Revoke a token by its id; a running service refuses it from its next request on.
    Revoke {
        #[command(flatten)]
        dir: DataDirArg,
        /// The token id (16 hex digits; `tokens list` shows them).
        id: String,
    },
}

/// `blackbox serve`'s flags (each also a `BLACKBOX_…` variable).
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (default 127.0.0.1:7700).
    #[arg(long, env = "BLACKBOX_LISTEN")]
    pub listen: Option<String>,
    /// Data directory (default ./blackbox-data).
    #[arg(long, env = "BLACKBOX_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Settings file (TOML; see `blackbox serve --print-config`).
    #[arg(long, env = "BLACKBOX_CONFIG")]
    pub config: Option<PathBuf>,
    /// Anomaly-detection rules (YAML; reloaded on SIGHUP and when the file changes).
    #[arg(long, env = "BLACKBOX_RULES")]
    pub rules: Option<PathBuf>,
    /// Directory of `k8s-secret/NAME` webhook secrets (default /var/run/secrets/blackbox).
    #[arg(long, env = "BLACKBOX_SECRETS_DIR")]
    pub secrets_dir: Option<PathBuf>,
    /// Also append every committed entry and checkpoint to this JSONL file.
    #[arg(long, env = "BLACKBOX_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Log lines as `text` or `json`.
    #[arg(long, env = "BLACKBOX_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Requests per second per token (0: no limit; default 2000).
    #[arg(long, env = "BLACKBOX_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// When `POST /v1/decide` answers: `durable` (after the record's commit; default) or
    /// `sequenced` (before it: no disk wait, but a crash can lose the record).
    #[arg(long, env = "BLACKBOX_DECIDE_ANSWER")]
    pub decide_answer: Option<String>,
    /// Serve OpenTelemetry (OTLP) on the standard ports too: OTLP/HTTP on 127.0.0.1:4318 and
    /// OTLP/gRPC on 127.0.0.1:4317 (OTLP/HTTP is always served on --listen as well).
    #[arg(long)]
    pub otlp: bool,
    /// An OTLP/HTTP listener (`POST /v1/traces`, `/v1/logs`), e.g. 0.0.0.0:4318, or `off`.
    #[arg(long, env = "BLACKBOX_OTLP_HTTP", value_name = "ADDR")]
    pub otlp_http: Option<String>,
    /// An OTLP/gRPC listener (TraceService, LogsService), e.g. 0.0.0.0:4317, or `off`.
    #[arg(long, env = "BLACKBOX_OTLP_GRPC", value_name = "ADDR")]
    pub otlp_grpc: Option<String>,
    /// The forensic console at /ui: `auto` (default: served when --listen is a loopback
    /// address), `on` or `off`.
    #[arg(long, env = "BLACKBOX_CONSOLE", value_name = "auto|on|off")]
    pub console: Option<String>,
    /// Print an example settings file with every default, and exit.
    #[arg(long)]
    pub print_config: bool,
}

#[derive(Subcommand, Debug)]
pub enum WitnessCmd {
    /// Make a witness key: the secret (mode 0600) to --key-file, the public key to
    /// `<key-file>.pub` (give that to the logs and auditors that rely on this witness).
    Keygen {
        /// The witness's name: a schema-less URL that identifies it (e.g. witness.example.com/w1).
        #[arg(long)]
        name: String,
        /// Where to write the secret key (refuses to overwrite).
        #[arg(long)]
        key_file: PathBuf,
    },
    /// Run a witness: cosign each checkpoint of the logs given whose consistency with the last
    /// one seen for its origin is proven; refuse any other (POST /add-checkpoint).
    Serve {
        /// The witness's secret key (`blackbox witness keygen`).
        #[arg(long, env = "BLACKBOX_WITNESS_KEY")]
        key_file: PathBuf,
        /// A log's checkpoint public key (a file such as a Blackbox data directory's
        /// checkpoint.pub, or the key itself). A key named N covers the origins N and
        /// `N/<tenant>`. Repeat for each log followed.
        #[arg(long = "log-key", required = true, value_name = "FILE|VKEY")]
        log_key: Vec<PathBuf>,
        /// Where the witness keeps what it cosigned (created if missing; one witness per
        /// directory).
        #[arg(
            long,
            env = "BLACKBOX_WITNESS_STATE",
            default_value = "./blackbox-witness"
        )]
        state_dir: PathBuf,
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7380")]
        listen: String,
    },
    /// What a witness has cosigned, per origin (reads its state directory).
    Status {
        #[arg(
            long,
            env = "BLACKBOX_WITNESS_STATE",
            default_value = "./blackbox-witness"
        )]
        state_dir: PathBuf,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
}
