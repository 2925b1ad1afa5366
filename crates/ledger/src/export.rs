//! `export-log`: whole chains as JSONL that `verify --log-file` accepts.

use std::io::Write;

use blackbox_store::Store;

use crate::error::LedgerError;
use crate::jsonl::{checkpoint_record, personal_record};

/// Counts of what an export wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportCounts {
    /// Chains written.
    pub chains: u64,
    /// Entry lines written.
    pub entries: u64,
    /// Checkpoint records written.
    pub checkpoints: u64,
}

/// Writes every chain (or `tenant`'s) to `out`: for each chain, its entries in order, each
/// preceded by its personal record if it has one, and each checkpoint right after the entry that
/// completes its tree.
///
/// # Errors
/// Store and I/O failures; [`LedgerError::NotFound`] for an unknown tenant.
pub fn export_log(
    store: &dyn Store,
    tenant: Option<&str>,
    out: &mut dyn Write,
) -> Result<ExportCounts, LedgerError> {
    let io = |e: std::io::Error| LedgerError::Io {
        path: "<output>".into(),
        source: e,
    };
    let mut counts = ExportCounts::default();
    let chains = store.chains()?;
    if let Some(t) = tenant
        && !chains.iter().any(|c| c.tenant_id == t)
    {
        return Err(LedgerError::NotFound(format!("no chain for tenant `{t}`")));
    }
    for head in chains
        .iter()
        .filter(|c| tenant.is_none_or(|t| t == c.tenant_id))
    {
        counts.chains += 1;
        // A chain whose first entries were archived starts at its store anchor (FORMAT.md §8).
        if let Some(a) = store.anchor(&head.tenant_id)? {
            out.write_all(&a.record).map_err(io)?;
            out.write_all(b"\n").map_err(io)?;
        }
        let cps = store.checkpoints(&head.tenant_id)?;
        let mut cps = cps.into_iter().peekable();
        while let Some(cp) = cps.next_if(|c| c.size == 0) {
            writeln!(out, "{}", checkpoint_record(&cp.note)).map_err(io)?;
            counts.checkpoints += 1;
        }
        let mut err = None;
        store.scan(&head.tenant_id, 1, u64::MAX, &mut |e| {
            let mut write = || -> std::io::Result<()> {
                if let Some(sc) = &e.personal {
                    out.write_all(&personal_record(&e.tenant_id, e.seq, sc))?;
                    out.write_all(b"\n")?;
                }
                out.write_all(&e.line)?;
                out.write_all(b"\n")?;
                counts.entries += 1;
                while let Some(cp) = cps.next_if(|c| c.size <= e.seq) {
                    writeln!(out, "{}", checkpoint_record(&cp.note))?;
                    counts.checkpoints += 1;
                }
                Ok(())
            };
            match write() {
                Ok(()) => Ok(true),
                Err(e) => {
                    err = Some(e);
                    Ok(false)
                }
            }
        })?;
        if let Some(e) = err {
            return Err(io(e));
        }
        // Checkpoints beyond the entries present (a truncated store) are still exported, so the
        // verifier of the file sees the truncation too.
        for cp in cps {
            writeln!(out, "{}", checkpoint_record(&cp.note)).map_err(io)?;
            counts.checkpoints += 1;
        }
    }
    Ok(counts)
}
