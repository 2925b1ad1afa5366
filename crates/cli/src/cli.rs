//! Command-line arguments. Names follow the product description (the seed).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(name = "blackbox", version, about = "Tamper-evident audit log for AI agents", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Args, Debug, Clone)]
pub struct DataDirArg {
    /// Data directory holding the store and keys.
    #[arg(long, env = "BLACKBOX_DATA_DIR", default_value = "./blackbox-data")]
    pub data_dir: PathBuf,
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum TextOrJson {
    Text,
    Json,
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
    /// Verify a store or an exported JSONL log: HMACs, chain links, checkpoints.
    Verify {
        /// Data directory when no --log-file [default: BLACKBOX_DATA_DIR, else ./blackbox-data].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Verify this exported JSONL log instead of the store.
        #[arg(long, conflicts_with = "data_dir")]
        log_file: Option<PathBuf>,
        /// HMAC keyring file (secret) to check every entry's HMAC.
        #[arg(long)]
        key_file: Option<PathBuf>,
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
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Search the audit trail (indexed filters; output streams).
    Query {
        #[command(flatten)]
        dir: DataDirArg,
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
        /// Earliest entry time (RFC 3339, or a date YYYY-MM-DD meaning its start, UTC).
        #[arg(long)]
        start: Option<String>,
        /// Latest entry time, inclusive (RFC 3339, or a date meaning its end, UTC).
        #[arg(long)]
        end: Option<String>,
        #[arg(long)]
        limit: Option<u64>,
        #[arg(long, value_enum, default_value = "table")]
        format: QueryFormat,
    },
    /// Print the latest signed checkpoint of a chain (keep it as a trusted anchor).
    Checkpoint {
        #[command(flatten)]
        dir: DataDirArg,
        #[arg(long)]
        tenant_id: Option<String>,
        /// Sign a fresh checkpoint of the current chain first.
        #[arg(long)]
        sign_now: bool,
        #[arg(long, value_enum, default_value = "text")]
        format: TextOrJson,
    },
    /// Print an inclusion proof for an entry, or a consistency proof from an old checkpoint.
    Prove {
        #[command(flatten)]
        dir: DataDirArg,
        /// The entry to prove (its UUIDv7).
        #[arg(
            long,
            required_unless_present = "consistency",
            conflicts_with = "consistency"
        )]
        entry_id: Option<String>,
        /// A signed checkpoint file: prove the latest checkpoint extends it.
        #[arg(long)]
        consistency: Option<PathBuf>,
        /// Leave the entry line out of an inclusion proof (prove by hash only).
        #[arg(long)]
        no_entry: bool,
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
    /// Manage keys.
    Keys {
        #[command(subcommand)]
        cmd: KeysCmd,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// Start a new HMAC key generation; older entries still verify with their key id.
    Rotate {
        #[command(flatten)]
        dir: DataDirArg,
    },
    /// Show key ids and the public key (never secret material).
    Show {
        #[command(flatten)]
        dir: DataDirArg,
    },
}
