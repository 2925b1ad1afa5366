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

/// Selects the tenant map at `path` for this process: one of its databases with `--database`;
/// for `serve` and for a token of one tenant, the database they need when that is clear.
fn select_map(path: &std::path::Path, args: &cli::Cli) -> anyhow::Result<()> {
    let map = blackbox_ledger::tenant_map::TenantMapFile::load(path)?;
    let mut database = args.database.clone();
    if database.is_none() {
        match &args.cmd {
            // A tenant's token lives in its tenant's database.
            cli::Cmd::Tokens {
                cmd:
                    cli::TokensCmd::Create {
                        tenant: Some(t), ..
                    },
            } => {
                database = map.map().database_of(t).map(str::to_owned);
            }
            cli::Cmd::Serve(_) if map.databases().len() == 1 => {
                database = Some(map.databases()[0].0.clone());
            }
            cli::Cmd::Serve(_) => anyhow::bail!(
                "--store {}: a service instance serves the tenants of one database of the map; \
                 give --database NAME ({})",
                path.display(),
                map.map().names().join(", ")
            ),
            _ => {}
        }
    }
    blackbox_ledger::datadir::select_map(map, database)?;
    Ok(())
}

fn main() -> ExitCode {
    quiet_on_a_closed_pipe();
    let args = cli::Cli::parse();
    // An empty BLACKBOX_STORE is no store URL: the embedded store, as when it is unset.
    let store = args.store.as_deref().filter(|s| !s.is_empty());
    if let Some(s) = store
        && blackbox_ledger::tenant_map::is_map_path(s)
    {
        if let Err(e) = select_map(std::path::Path::new(s), &args) {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    } else if let Some(s) = store
        && !blackbox_store_pg::is_postgres_url(s)
    {
        eprintln!(
            "error: --store {:?} is not a store URL; give postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE, or a tenant map FILE.toml (without --store, the data directory's embedded store is used)",
            blackbox_store_pg::redact(s)
        );
        return ExitCode::from(2);
    } else if args.database.is_some() {
        eprintln!(
            "error: --database names a database of a tenant map: give the map with --store FILE.toml"
        );
        return ExitCode::from(2);
    } else {
        blackbox_ledger::datadir::select_store(args.store.clone());
    }
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

/// `blackbox … | head` closes the pipe early; Rust ignores SIGPIPE, so the next `println!`
/// panics. The reader has what it wanted: exit quietly with the I/O-error status (2) instead of
/// a panic's backtrace. Every other panic is reported as before.
fn quiet_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.starts_with("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(2);
        }
        default(info);
    }));
}
