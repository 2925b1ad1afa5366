//! Anchor records from a store: the signed state of a chain at its head, written at the top of a
//! JSONL file that continues the chain from there (a rotated mirror, an archive segment). See
//! docs/FORMAT.md §8 and [`blackbox_core::anchor`].

use blackbox_core::anchor::Anchor;
use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::ids::TenantId;
use blackbox_core::merkle::{CompactRange, inclusion_proof};
use blackbox_store::{ChainHead, Store, StoredCheckpoint};

use crate::error::LedgerError;
use crate::proof::{map_proof_err, subtree_hash};

/// The anchor of `head`'s chain at its current size, with `checkpoint`, which must be a stored
/// checkpoint of exactly that size. The frontier comes from the head's stored Merkle state, the
/// head's inclusion proof from the stored nodes. The anchor is checked (all but the signature,
/// which the store cannot check without the public key) before it is returned.
///
/// # Errors
/// [`LedgerError::AnchorSize`] when the checkpoint is for another size;
/// [`LedgerError::Inconsistent`] when the checkpoint is for another chain or unreadable, the
/// stored Merkle state does not match the head, or the resulting anchor does not check; store
/// failures.
pub fn anchor_at_head(
    store: &dyn Store,
    head: &ChainHead,
    checkpoint: &StoredCheckpoint,
) -> Result<Anchor, LedgerError> {
    let tenant = &head.tenant_id;
    let inconsistent =
        |what: String| LedgerError::Inconsistent(format!("chain `{tenant}`: {what}"));
    if checkpoint.tenant_id != *tenant {
        return Err(inconsistent(format!(
            "the checkpoint given is for chain `{}`",
            checkpoint.tenant_id
        )));
    }
    let size = head.size;
    if checkpoint.size != size {
        return Err(LedgerError::AnchorSize {
            tenant: tenant.clone(),
            head_size: size,
            checkpoint_size: checkpoint.size,
        });
    }
    let range = CompactRange::from_bytes(&head.merkle_state)
        .map_err(|e| inconsistent(format!("stored Merkle state unreadable: {e}")))?;
    if range.size() != size {
        return Err(inconsistent(format!(
            "the stored Merkle state has {} leaves but the head {size}",
            range.size()
        )));
    }
    build(store, tenant, range, head.head_hash, checkpoint)
}

/// The anchor of `tenant`'s chain at `range`'s size, whose last entry hashes to `head`: the
/// head's inclusion proof from the stored hashes, the checkpoint parsed, the record checked.
fn build(
    store: &dyn Store,
    tenant: &str,
    range: CompactRange,
    head: blackbox_core::Hash,
    checkpoint: &StoredCheckpoint,
) -> Result<Anchor, LedgerError> {
    let inconsistent =
        |what: String| LedgerError::Inconsistent(format!("chain `{tenant}`: {what}"));
    let size = range.size();
    let head_proof = if size == 0 {
        Vec::new()
    } else {
        inclusion_proof(size - 1, size, |start, level| {
            subtree_hash(store, tenant, start, level)
        })
        .map_err(map_proof_err)?
    };
    let cp = SignedCheckpoint::parse(&checkpoint.note)
        .map_err(|e| inconsistent(format!("stored checkpoint unreadable: {e}")))?;
    let tenant_id = TenantId::parse(tenant).map_err(|e| inconsistent(e.to_string()))?;
    let anchor = Anchor::new(tenant_id, range, head, head_proof, cp)
        .map_err(|e| inconsistent(e.to_string()))?;
    anchor
        .check()
        .map_err(|e| inconsistent(format!("the anchor would not verify: {e}")))?;
    Ok(anchor)
}

/// The anchor of `tenant`'s chain at its current head, with the latest stored checkpoint of
/// exactly the head's size.
///
/// # Errors
/// [`LedgerError::NotFound`] when the chain does not exist or has no checkpoint at its head's
/// size (sign one first); the errors of [`anchor_at_head`].
pub fn anchor_now(store: &dyn Store, tenant: &str) -> Result<Anchor, LedgerError> {
    let head = store
        .chains()?
        .into_iter()
        .find(|h| h.tenant_id == tenant)
        .ok_or_else(|| LedgerError::NotFound(format!("no chain for tenant `{tenant}`")))?;
    let cp = store
        .checkpoints(tenant)?
        .into_iter()
        .rev()
        .find(|c| c.size == head.size)
        .ok_or_else(|| {
            LedgerError::NotFound(format!(
                "chain `{tenant}` has no checkpoint of its head's size {}: sign one first",
                head.size
            ))
        })?;
    anchor_at_head(store, &head, &cp)
}

/// An anchor at tree size `size` of `tenant`'s chain (entries `1 ..= size` before it), built
/// from the store's Merkle nodes and entry hashes, with `checkpoint` (which MUST commit to
/// exactly `size`). Used to cut a chain for an archive segment.
///
/// # Errors
/// [`LedgerError::Inconsistent`] when the store lacks the hashes or the checkpoint disagrees.
pub fn anchor_at(
    store: &dyn Store,
    tenant: &str,
    size: u64,
    checkpoint: &StoredCheckpoint,
) -> Result<Anchor, LedgerError> {
    let inconsistent =
        |what: String| LedgerError::Inconsistent(format!("chain `{tenant}`: {what}"));
    if checkpoint.tenant_id != tenant || checkpoint.size != size {
        return Err(inconsistent(format!(
            "the checkpoint given is for chain `{}` at size {}, not size {size}",
            checkpoint.tenant_id, checkpoint.size
        )));
    }
    // The frontier: one perfect subtree per set bit of `size`, largest first.
    let mut frontier = Vec::new();
    let mut start = 0u64;
    for level in (0..64u8).rev() {
        if size & (1u64 << level) != 0 {
            frontier.push(subtree_hash(store, tenant, start, level)?);
            start += 1u64 << level;
        }
    }
    let range = CompactRange::from_frontier(size, frontier)
        .map_err(|e| inconsistent(format!("Merkle frontier at size {size}: {e}")))?;
    let head = if size == 0 {
        blackbox_core::entry::GENESIS_HASH
    } else {
        *store
            .entry_hashes(tenant, size, size)?
            .first()
            .ok_or_else(|| inconsistent(format!("entry {size} is not stored")))?
    };
    build(store, tenant, range, head, checkpoint)
}
