//! `blackbox`: the command-line tool. Argument parsing and wiring only; the work is done by
//! `blackbox-ledger` and `blackbox-core`.
//!
//! Exit codes: 0 ok, 1 a check failed (TAMPERED, invalid proof), 2 usage or I/O error.

use std::process::ExitCode;

use clap::Parser as _;

// Normalising events allocates many small JSON values on several threads; glibc malloc spent a
// quarter of append's time in its own bookkeeping (see docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod cli;
mod cmd;
mod output;

/// Outcome of a command that ran to completion.
#[derive(Debug)]
pub enum Outcome {
    /// Everything checked out.
    Ok,
    /// A check failed (exit 1).
    CheckFailed,
}

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    // An empty BLACKBOX_STORE is no store URL: the embedded store, as when it is unset.
    if let Some(s) = args.store.as_deref().filter(|s| !s.is_empty())
        && !blackbox_store_pg::is_postgres_url(s)
    {
        eprintln!(
            "error: --store {:?} is not a store URL; give postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (without --store, the data directory's embedded store is used)",
            blackbox_store_pg::redact(s)
        );
        return ExitCode::from(2);
    }
    blackbox_ledger::datadir::select_store(args.store.clone());
    match cmd::run(args) {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::CheckFailed) => ExitCode::from(1),
        Err(e) => {
            // anyhow's alternate format prints the whole cause chain on one line.
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
