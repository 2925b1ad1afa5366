//! Erasure of a data subject (`POST /v1/erasures`), on a batch of its own between groups.

use std::sync::atomic::Ordering;
use std::time::Duration;

use blackbox_ledger::LedgerError;
use blackbox_ledger::writer::AppendSink;
use tokio::sync::oneshot;

use super::queue::follow;
use super::{IngestFailure, Shared};
use crate::mirror::Mirror;

/// What an erasure (`POST /v1/erasures`) did.
#[derive(Debug)]
pub struct EraseReply {
    /// Entries redacted and markers written.
    pub outcome: blackbox_ledger::erase::ErasureOutcome,
    /// Why the write-ahead log could not be purged yet (`None`: purged).
    pub purge_failed: Option<String>,
    /// Mirror files rewritten and the personal records removed from each, or why that failed.
    pub mirror: Result<Vec<(std::path::PathBuf, u64)>, String>,
}

/// How long an erasure waits for readers before reporting the log purge as incomplete.
pub(super) const PURGE_WAIT: Duration = Duration::from_secs(10);

/// Runs one erasure on its own batch: erase and mark, commit, let the mirror catch up (so it
/// holds the marker), purge the write-ahead log, rewrite the mirror files.
pub(super) fn erase_now(
    sink: &mut AppendSink<'_>,
    req: &blackbox_ledger::erase::ErasureRequest,
    reply: oneshot::Sender<Result<EraseReply, IngestFailure>>,
    shared: &Shared,
    mirror: &mut Option<Mirror>,
    shared_store: Option<&dyn blackbox_store::Store>,
) -> Result<(), LedgerError> {
    let now = sink.now_ms();
    // Committed even when nothing was redacted: the look-up opened the batch (and may have
    // cleaned up index rows), and the purge runs between batches.
    let done = blackbox_ledger::erase::erase(sink, req, now).and_then(|o| {
        sink.commit(now, false)?;
        Ok(o)
    });
    let outcome = match done {
        Ok(o) => o,
        Err(e) => {
            // The batch may hold half of the erasure: the caller drops the sink (rolling it
            // back) and restarts it.
            tracing::error!(error = %e, "an erasure failed; nothing of it was committed");
            let _ = reply.send(Err(IngestFailure::Store(e.to_string())));
            return Err(e);
        }
    };
    shared.ready.store(true, Ordering::Relaxed);
    follow(sink, mirror, shared_store);
    let purge_failed = sink.purge_erased(PURGE_WAIT).err().map(|e| {
        tracing::warn!(error = %e, "erased bytes are still in the write-ahead log");
        e.to_string()
    });
    let mirror = match mirror.as_mut() {
        None => Ok(Vec::new()),
        Some(m) => m.scrub(&outcome.archived_entries()).map_err(|e| {
            tracing::error!(error = %e, "the JSONL mirror could not be rewritten after an erasure");
            e.to_string()
        }),
    };
    tracing::info!(
        redacted = outcome.redacted(),
        markers = outcome.markers(),
        "erasure committed"
    );
    let _ = reply.send(Ok(EraseReply {
        outcome,
        purge_failed,
        mirror,
    }));
    Ok(())
}
