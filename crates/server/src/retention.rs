//! The retention schedule inside `blackbox serve`: every `[retention] run_every_hours`, archive
//! and expire as `blackbox retention run` does, committing each step through the writer thread
//! (so the service's chain state stays the only writer's).

use std::time::Duration;

use blackbox_archive::run::{Committer, RunOptions, Staged};
use blackbox_archive::settings::RetentionConfig;
use blackbox_archive::{Archive, ArchiveError};
use blackbox_core::keys::Keyring;
use blackbox_ledger::error::LedgerError;
use blackbox_store::Store;

use crate::AppState;
use crate::ingest::{Control, Ingest};

/// Commits through the writer thread; reads through a connection of its own.
struct Service {
    store: Box<dyn Store>,
    ingest: Ingest,
    rt: tokio::runtime::Handle,
}

impl Committer for Service {
    fn store(&mut self) -> &mut dyn Store {
        self.store.as_mut()
    }

    fn commit(&mut self, staged: Staged, _now_ms: i64) -> Result<(), ArchiveError> {
        self.rt
            .block_on(self.ingest.control(Control::Retention(Box::new(staged))))
            .map(|_| ())
            .map_err(|e| ArchiveError::Ledger(LedgerError::Inconsistent(e.message)))
    }
}

use crate::now_ms;

/// What a retention step on a blocking thread needs: the settings, the archive, the keyring
/// (read now: a forward-secure key may have evolved) and a committer through the writer thread.
fn open(
    state: &AppState,
    rt: tokio::runtime::Handle,
) -> Result<(RetentionConfig, Archive, Keyring, Service), String> {
    let dir = &state.dir;
    let config = RetentionConfig::load(&dir.config_path()).map_err(|e| e.to_string())?;
    let archive = Archive::open(&config.archive_url, dir.root()).map_err(|e| e.to_string())?;
    let store = blackbox_ledger::open::open_store(dir).map_err(|e| e.to_string())?;
    let keys =
        blackbox_ledger::datadir::load_keyring(&dir.hmac_keys_path()).map_err(|e| e.to_string())?;
    let c = Service {
        store,
        ingest: state.ingest.clone(),
        rt,
    };
    Ok((config, archive, keys, c))
}

/// After an erasure: rewrites the archive segments holding erased entries (on a blocking
/// thread).
///
/// # Errors
/// What failed, in words (the markers are committed; the next erasure of the subject finishes).
pub fn erase_archived(
    state: &AppState,
    rt: tokio::runtime::Handle,
    entries: &std::collections::BTreeSet<(String, u64)>,
) -> Result<Vec<blackbox_archive::erase::Rewritten>, String> {
    let (_, archive, keys, mut c) = open(state, rt)?;
    blackbox_archive::erase::erase(
        &archive,
        &mut c,
        entries,
        &RunOptions {
            now_ms: now_ms(),
            tenant: None,
            dry_run: false,
            keys: Some(&keys),
            verifier: &state.verifier,
        },
    )
    .map_err(|e| e.to_string())
}

/// One run, on a blocking thread, answering what it did.
///
/// # Errors
/// What failed, in words.
pub fn run_report(
    state: &AppState,
    rt: tokio::runtime::Handle,
) -> Result<serde_json::Value, String> {
    let report = run_once(state, rt)?;
    Ok(serde_json::json!({ "report": report }))
}

fn run_once(
    state: &AppState,
    rt: tokio::runtime::Handle,
) -> Result<blackbox_archive::run::RunReport, String> {
    let (config, archive, keys, mut c) = open(state, rt)?;
    let report = blackbox_archive::run::run(
        &archive,
        &config,
        &mut c,
        &RunOptions {
            now_ms: now_ms(),
            tenant: None,
            dry_run: false,
            keys: Some(&keys),
            verifier: &state.verifier,
        },
    )
    .map_err(|e| e.to_string())?;
    Ok(report)
}

/// Runs retention every `every` (the first run one minute after start), until aborted.
pub async fn schedule(state: AppState, every: Duration) {
    let mut next = Duration::from_secs(60).min(every);
    loop {
        tokio::time::sleep(next).await;
        next = every;
        let st = state.clone();
        let rt = tokio::runtime::Handle::current();
        let done = tokio::task::spawn_blocking(move || run_once(&st, rt)).await;
        match done {
            Ok(Ok(r)) => tracing::info!(
                archived = r.archived.len(),
                deleted = r.deleted.len(),
                freed_bytes = r.reclaimed_bytes,
                "retention run finished"
            ),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "retention run stopped; what it finished is committed, the next run goes on")
            }
            Err(e) => tracing::warn!(error = %e, "retention run failed"),
        }
    }
}

/// The schedule's period, if retention runs inside the service.
#[must_use]
pub fn period(state: &AppState) -> Option<Duration> {
    let config = RetentionConfig::load(&state.dir.config_path()).ok()?;
    let hours = config.run_every_hours;
    (hours > 0).then(|| Duration::from_secs(hours.saturating_mul(3600)))
}
