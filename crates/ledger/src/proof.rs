//! Building inclusion and consistency proofs from a store.
//!
//! Proofs need hashes of perfect aligned subtrees. Subtrees of height ≥ [`NODE_LEVEL`] are folded
//! from the stored level-8 nodes; smaller ones from at most 256 stored entry hashes.

use blackbox_core::Hash;
use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::merkle::{
    ProveError as MerkleProofError, consistency_proof, inclusion_proof, leaf_hash, node_hash,
};
use std::collections::HashMap;

use blackbox_core::entry::EntryView;
use blackbox_core::proof::{
    CONSISTENCY_TYPE, ConsistencyProof, INCLUSION_TYPE, InclusionProof, LogSlice, SLICE_TYPE,
    SliceEntry, SliceSelection, payload_trace_id,
};
use blackbox_core::verify::origin_tenant;
use blackbox_store::{Query, Store, StoredCheckpoint, StoredEntry};

use crate::error::LedgerError;
use crate::writer::NODE_LEVEL;

fn fold_perfect(mut level: Vec<Hash>) -> Result<Hash, LedgerError> {
    if level.is_empty() || !level.len().is_power_of_two() {
        return Err(LedgerError::Inconsistent(
            "Merkle nodes missing from the store".to_owned(),
        ));
    }
    while level.len() > 1 {
        level = level.chunks(2).map(|p| node_hash(&p[0], &p[1])).collect();
    }
    Ok(level[0])
}

/// The hash of the perfect subtree of `2^level` leaves starting at leaf `start` of `tenant`.
///
/// # Errors
/// Store failures, or [`LedgerError::Inconsistent`] when stored hashes are missing.
pub fn subtree_hash(
    store: &dyn Store,
    tenant: &str,
    start: u64,
    level: u8,
) -> Result<Hash, LedgerError> {
    if level >= NODE_LEVEL {
        let first = start >> NODE_LEVEL;
        let count = 1u64 << (level - NODE_LEVEL);
        let nodes = store.nodes(tenant, NODE_LEVEL, first, first + count - 1)?;
        if nodes.len() as u64 != count {
            return Err(LedgerError::Inconsistent(format!(
                "chain `{tenant}`: stored Merkle nodes are incomplete"
            )));
        }
        fold_perfect(nodes.into_iter().map(|(_, h)| h).collect())
    } else {
        let count = 1u64 << level;
        let hashes = store.entry_hashes(tenant, start + 1, start + count)?;
        if hashes.len() as u64 != count {
            return Err(LedgerError::Inconsistent(format!(
                "chain `{tenant}`: entries {}..{} are missing",
                start + 1,
                start + count
            )));
        }
        fold_perfect(hashes.iter().map(|h| leaf_hash(h.as_bytes())).collect())
    }
}

pub(crate) fn map_proof_err(e: MerkleProofError<LedgerError>) -> LedgerError {
    match e {
        MerkleProofError::Storage(e) => e,
        other => LedgerError::Proof(other.to_string()),
    }
}

/// The latest checkpoint of `tenant`, parsed.
///
/// # Errors
/// [`LedgerError::NotFound`] when the chain has none.
pub fn latest_checkpoint(store: &dyn Store, tenant: &str) -> Result<SignedCheckpoint, LedgerError> {
    parse_stored(&stored_latest(store, tenant)?)
}

/// The latest checkpoint of `tenant` as stored (with its signing time).
fn stored_latest(store: &dyn Store, tenant: &str) -> Result<StoredCheckpoint, LedgerError> {
    store
        .latest_checkpoint(tenant)?
        .ok_or_else(|| LedgerError::NotFound(format!("tenant `{tenant}` has no checkpoint yet")))
}

/// A stored checkpoint's note, parsed.
fn parse_stored(cp: &StoredCheckpoint) -> Result<SignedCheckpoint, LedgerError> {
    SignedCheckpoint::parse(&cp.note)
        .map_err(|e| LedgerError::Inconsistent(format!("stored checkpoint unreadable: {e}")))
}

/// How far back from the newest checkpoint the one a proof rests on is looked for (ms): the
/// witnesses cosign the newest checkpoint within seconds, and a chain signs a heartbeat
/// checkpoint every minute even when idle, so this bounds the rows read.
const PROVING_WINDOW_MS: i64 = 10 * 60 * 1000;

/// The checkpoint an inclusion proof for entry `seq` of `tenant` rests on: among the checkpoints
/// that cover it signed in the ten minutes before the newest, the one with the most signature
/// lines (witnesses' cosignatures, docs/WITNESS.md), the newest of those; without cosignatures,
/// the latest checkpoint. A proof against a cosigned checkpoint can be checked offline against a
/// witness policy.
///
/// # Errors
/// [`LedgerError::NotFound`] when no checkpoint exists; store failures.
pub fn proving_checkpoint(
    store: &dyn Store,
    tenant: &str,
    seq: u64,
) -> Result<SignedCheckpoint, LedgerError> {
    let newest = stored_latest(store, tenant)?;
    let latest = parse_stored(&newest)?;
    if latest.checkpoint.size < seq {
        return Ok(latest);
    }
    // No size reaches u64::MAX: this reads the checkpoints signed after the window's start.
    let recent = store.checkpoints_since(
        tenant,
        u64::MAX,
        newest.ts_ms.saturating_sub(PROVING_WINDOW_MS),
    )?;
    let best = recent
        .iter()
        .rev()
        .filter(|c| c.size >= seq)
        .filter_map(|c| SignedCheckpoint::parse(&c.note).ok())
        .fold(None::<SignedCheckpoint>, |best, c| match best {
            Some(b) if b.note.signatures.len() >= c.note.signatures.len() => Some(b),
            _ => Some(c),
        });
    Ok(match best {
        Some(b) if b.note.signatures.len() > latest.note.signatures.len() => b,
        _ => latest,
    })
}

/// An inclusion proof for `entry` against [`proving_checkpoint`]: the latest checkpoint that
/// covers it, or a newer-cosigned one.
///
/// # Errors
/// [`LedgerError::NotFound`] when no checkpoint covers the entry yet; store failures.
pub fn prove_inclusion(
    store: &dyn Store,
    entry: &StoredEntry,
    include_entry: bool,
) -> Result<InclusionProof, LedgerError> {
    let cp = proving_checkpoint(store, &entry.tenant_id, entry.seq)?;
    prove_inclusion_at(store, entry, &cp, include_entry)
}

/// An inclusion proof for `entry` against the checkpoint `cp` of its chain.
///
/// # Errors
/// [`LedgerError::NotFound`] when the checkpoint does not cover the entry; store failures.
pub fn prove_inclusion_at(
    store: &dyn Store,
    entry: &StoredEntry,
    cp: &SignedCheckpoint,
    include_entry: bool,
) -> Result<InclusionProof, LedgerError> {
    let size = cp.checkpoint.size;
    if entry.seq > size {
        return Err(LedgerError::NotFound(format!(
            "entry {} is newer than the latest checkpoint (size {size}); run `blackbox checkpoint` to sign one",
            entry.seq
        )));
    }
    let hashes = inclusion_proof(entry.seq - 1, size, |start, level| {
        subtree_hash(store, &entry.tenant_id, start, level)
    })
    .map_err(map_proof_err)?;
    let view = blackbox_core::entry::EntryView::parse(&entry.line)
        .map_err(|e| LedgerError::Inconsistent(e.to_string()))?;
    Ok(InclusionProof {
        kind: INCLUSION_TYPE.to_owned(),
        tenant_id: entry.tenant_id.clone(),
        entry_id: view.entry_id.to_string(),
        seq: entry.seq,
        entry_hash: Hash::digest(&entry.line).to_prefixed(),
        entry: if include_entry {
            Some(String::from_utf8_lossy(&entry.line).into_owned())
        } else {
            None
        },
        tree_size: size,
        hashes: hashes.iter().map(Hash::to_base64).collect(),
        checkpoint: cp.note_text(),
    })
}

/// A consistency proof from the trusted `old` checkpoint to the latest one of its chain.
///
/// # Errors
/// [`LedgerError::Proof`] when the old checkpoint is unreadable or larger than the log.
pub fn prove_consistency(
    store: &dyn Store,
    old_text: &str,
) -> Result<ConsistencyProof, LedgerError> {
    let old = SignedCheckpoint::parse(old_text)
        .map_err(|e| LedgerError::Proof(format!("the old checkpoint cannot be read: {e}")))?;
    let tenant = origin_tenant(&old.checkpoint.origin).to_owned();
    let new = latest_checkpoint(store, &tenant)?;
    prove_between(store, old, new)
}

/// A consistency proof between two stored checkpoints of `tenant`'s chain, at `from_size` and
/// `to_size` (the latest checkpoint when `None`).
///
/// # Errors
/// [`LedgerError::NotFound`] when no checkpoint of that size is stored; proof failures.
pub fn prove_sizes(
    store: &dyn Store,
    tenant: &str,
    from_size: u64,
    to_size: Option<u64>,
) -> Result<ConsistencyProof, LedgerError> {
    let at = |size: u64| -> Result<SignedCheckpoint, LedgerError> {
        let cp = store
            .checkpoints(tenant)?
            .into_iter()
            .rev()
            .find(|c| c.size == size)
            .ok_or_else(|| {
                LedgerError::NotFound(format!(
                    "tenant `{tenant}` has no signed checkpoint at tree size {size}"
                ))
            })?;
        parse_stored(&cp)
    };
    let old = at(from_size)?;
    let new = match to_size {
        Some(s) => at(s)?,
        None => latest_checkpoint(store, tenant)?,
    };
    prove_between(store, old, new)
}

/// The RFC 6962 consistency proof of `tenant`'s chain from `old` leaves to `new` (empty when
/// `old` is 0 or equals `new`), as a witness expects it (C2SP tlog-witness).
///
/// # Errors
/// [`LedgerError::Proof`] when `old > new` or `new` exceeds the chain; store failures.
pub fn consistency_hashes(
    store: &dyn Store,
    tenant: &str,
    old: u64,
    new: u64,
) -> Result<Vec<Hash>, LedgerError> {
    if old > new {
        return Err(LedgerError::Proof(format!(
            "no consistency proof from {old} entries to fewer ({new})"
        )));
    }
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    consistency_proof(old, new, |start, level| {
        subtree_hash(store, tenant, start, level)
    })
    .map_err(map_proof_err)
}

fn prove_between(
    store: &dyn Store,
    old: SignedCheckpoint,
    new: SignedCheckpoint,
) -> Result<ConsistencyProof, LedgerError> {
    let tenant = origin_tenant(&old.checkpoint.origin).to_owned();
    let (old_size, new_size) = (old.checkpoint.size, new.checkpoint.size);
    if old_size > new_size {
        return Err(LedgerError::Proof(format!(
            "the old checkpoint commits to {old_size} entries but the latest has only {new_size}: the log was truncated or the checkpoint is from another log"
        )));
    }
    let hashes = consistency_hashes(store, &tenant, old_size, new_size)?;
    Ok(ConsistencyProof {
        kind: CONSISTENCY_TYPE.to_owned(),
        tenant_id: tenant,
        old_size,
        new_size,
        old_checkpoint: old.note_text(),
        new_checkpoint: new.note_text(),
        hashes: hashes.iter().map(Hash::to_base64).collect(),
    })
}

/// A log slice of `tenant`'s chain (docs/FORMAT.md §10): the entries `selection` names, in
/// query order, at most `limit`, each with its inclusion proof against the latest checkpoint.
/// Entries newer than the checkpoint are counted in `not_covered` (up to where the slice
/// stopped), not proven. Subtree hashes shared by the entries' audit paths are computed once.
///
/// # Errors
/// [`LedgerError::NotFound`] when the chain has no checkpoint; [`LedgerError::Proof`] when a
/// bound of the selection is not a timestamp; store failures.
pub fn prove_slice(
    store: &dyn Store,
    tenant: &str,
    selection: &SliceSelection,
    limit: usize,
) -> Result<LogSlice, LedgerError> {
    let cp = latest_checkpoint(store, tenant)?;
    let size = cp.checkpoint.size;
    let bound = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|s| {
                blackbox_core::entry::parse_time_bound(s, false)
                    .map_err(|e| LedgerError::Proof(format!("{name}={s:?}: {e}")))
            })
            .transpose()
    };
    let q = Query {
        tenant_id: Some(tenant.to_owned()),
        agent_id: selection.agent_id.clone(),
        session_id: selection.session_id.clone(),
        start_ms: bound("start", &selection.start)?,
        end_ms: bound("end", &selection.end)?,
        ..Query::default()
    };
    let mut rows: Vec<StoredEntry> = Vec::new();
    let mut not_covered = 0u64;
    let mut complete = true;
    store.query(&q, &mut |e| {
        if let Some(t) = &selection.trace_id {
            let same = EntryView::parse(&e.line)
                .ok()
                .and_then(|v| payload_trace_id(&v))
                .is_some_and(|id| id == *t);
            if !same {
                return Ok(true);
            }
        }
        if e.seq > size {
            not_covered += 1;
            return Ok(true);
        }
        if rows.len() == limit {
            complete = false;
            return Ok(false);
        }
        rows.push(e);
        Ok(true)
    })?;
    let mut memo: HashMap<(u64, u8), Hash> = HashMap::new();
    let mut entries = Vec::with_capacity(rows.len());
    for e in rows {
        let hashes = inclusion_proof(e.seq - 1, size, |start, level| {
            if let Some(h) = memo.get(&(start, level)) {
                return Ok(*h);
            }
            let h = subtree_hash(store, tenant, start, level)?;
            memo.insert((start, level), h);
            Ok(h)
        })
        .map_err(map_proof_err)?;
        let view =
            EntryView::parse(&e.line).map_err(|err| LedgerError::Inconsistent(err.to_string()))?;
        entries.push(SliceEntry {
            seq: e.seq,
            entry_id: view.entry_id.to_string(),
            entry_hash: Hash::digest(&e.line).to_prefixed(),
            entry: String::from_utf8_lossy(&e.line).into_owned(),
            hashes: hashes.iter().map(Hash::to_base64).collect(),
        });
    }
    Ok(LogSlice {
        kind: SLICE_TYPE.to_owned(),
        tenant_id: tenant.to_owned(),
        tree_size: size,
        checkpoint: cp.note_text(),
        selection: selection.clone(),
        entries,
        complete,
        not_covered,
    })
}
