//! A chain read as a C2SP tlog-tiles log (docs/WITNESS.md, "The log as tiles"): the tiles of
//! Merkle tree hashes and the entry bundles, computed from the store.
//!
//! The log's *entries*, in the tlog-tiles sense, are the 32-byte entry hashes (the records of
//! docs/FORMAT.md §6): a level-0 hash is `SHA-256(0x00 || entry hash)`. An entry bundle is
//! therefore 256 × (0x00 0x20 || entry hash): what a monitor or witness needs to recompute the
//! tree, and nothing of what the entries say (the lines stay behind the API and its tokens).

use blackbox_core::merkle::leaf_hash;
use blackbox_core::tiles::{TileKind, TilePath};
use blackbox_store::Store;

use crate::error::LedgerError;
use crate::proof::subtree_hash;
use crate::writer::NODE_LEVEL;

/// The bytes of `tile` of `tenant`'s chain, whose tree has `size` entries.
///
/// # Errors
/// [`LedgerError::NotFound`] when the tree is not (yet) large enough for the tile, or its
/// entries were archived (`blackbox retention run`: read the archive); store failures.
pub fn read_tile(
    store: &dyn Store,
    tenant: &str,
    tile: &TilePath,
    size: u64,
) -> Result<Vec<u8>, LedgerError> {
    let needs = tile
        .needs_tree_size()
        .ok_or_else(|| LedgerError::NotFound(format!("{tile} is beyond any tree size")))?;
    if needs > size {
        return Err(LedgerError::NotFound(format!(
            "{tile} needs a tree of {needs} entries; this chain has {size}"
        )));
    }
    let width = u64::from(tile.width);
    let first = tile.index * 256;
    let archived = |e: LedgerError| match e {
        LedgerError::Inconsistent(_) => LedgerError::NotFound(format!(
            "{tile} is not available here: its entries were archived (pruned from the store)"
        )),
        other => other,
    };
    match tile.kind {
        TileKind::Entries | TileKind::Hashes { level: 0 } => {
            let hashes = store.entry_hashes(tenant, first + 1, first + width)?;
            if hashes.len() as u64 != width {
                return Err(archived(LedgerError::Inconsistent(String::new())));
            }
            let mut out = Vec::with_capacity(hashes.len() * 34);
            for h in &hashes {
                if tile.kind == TileKind::Entries {
                    out.extend_from_slice(&32u16.to_be_bytes());
                    out.extend_from_slice(h.as_bytes());
                } else {
                    out.extend_from_slice(leaf_hash(h.as_bytes()).as_bytes());
                }
            }
            Ok(out)
        }
        TileKind::Hashes { level: 1 } => {
            let nodes = store.nodes(tenant, NODE_LEVEL, first, first + width - 1)?;
            if nodes.len() as u64 != width {
                return Err(archived(LedgerError::Inconsistent(String::new())));
            }
            Ok(nodes.iter().flat_map(|(_, h)| h.0).collect())
        }
        TileKind::Hashes { level } => {
            let height = level * 8;
            let mut out = Vec::with_capacity(tile.width as usize * 32);
            for i in 0..width {
                let start = (first + i) << height;
                let h = subtree_hash(store, tenant, start, height).map_err(archived)?;
                out.extend_from_slice(h.as_bytes());
            }
            Ok(out)
        }
    }
}
