//! A log exported as JSONL (docs/FORMAT.md §8) read as a store: what `export reperform`
//! recomputes the figures from, offline, with the same code that computed them from the
//! service's store. Read-only: [`Store::begin`] is refused.
//!
//! A chain may start at an anchor record (its first entries are gone: expired from the
//! archive); an anchor met later in a chain must match the state reached (archive segments
//! followed by the store's export read as one stream, docs/FORMAT.md §8 "Several files").

use std::collections::HashMap;
use std::sync::Arc;

use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::entry::EntryView;
use blackbox_core::hash::Hash;
use blackbox_core::merkle::{CompactRange, leaf_hash};
use blackbox_ledger::jsonl::{
    RecordKind, parse_checkpoint_record, parse_personal_record, record_kind,
};
use blackbox_ledger::writer::NODE_LEVEL;
use blackbox_store::{
    ChainHead, Query, Store, StoreError, StoredAnchor, StoredCheckpoint, StoredEntry, TenantRef,
    WriteBatch,
};

use crate::ExportError;

struct Chain {
    entries: Vec<StoredEntry>,
    checkpoints: Vec<StoredCheckpoint>,
    head: ChainHead,
    /// Where the chain starts when not at its genesis.
    anchor: Option<StoredAnchor>,
    /// Its Merkle nodes at the level the store keeps ([`NODE_LEVEL`]), computed on first use
    /// from the entry hashes: one per complete block of `2^NODE_LEVEL` entries held (`None`
    /// for a block before the chain's anchor).
    nodes: std::sync::OnceLock<Vec<Option<Hash>>>,
}

/// The level-[`NODE_LEVEL`] node of every complete block of entries held.
fn block_nodes(entries: &[StoredEntry]) -> Vec<Option<Hash>> {
    let (Some(first), Some(last)) = (entries.first(), entries.last()) else {
        return Vec::new();
    };
    let width = 1u64 << NODE_LEVEL;
    let blocks = usize::try_from(last.seq / width).unwrap_or(0);
    (0..blocks)
        .map(|b| {
            let lo = b as u64 * width + 1;
            let at = usize::try_from(lo.checked_sub(first.seq)?).ok()?;
            let block = entries.get(at..at + usize::try_from(width).ok()?)?;
            // Entries are held in seq order without gaps; checked all the same.
            if block.first()?.seq != lo || block.last()?.seq != lo + width - 1 {
                return None;
            }
            let leaves: Vec<Hash> = block
                .iter()
                .map(|e| leaf_hash(e.entry_hash.as_bytes()))
                .collect();
            Some(blackbox_core::merkle::root_from_leaf_hashes(&leaves))
        })
        .collect()
}

/// The chains of a JSONL log, in memory.
#[derive(Clone)]
pub struct LogFileStore {
    inner: Arc<Inner>,
}

struct Inner {
    chains: Vec<Chain>,
    by_id: HashMap<[u8; 16], (usize, usize)>,
}

impl std::fmt::Debug for LogFileStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogFileStore")
            .field("chains", &self.inner.chains.len())
            .finish_non_exhaustive()
    }
}

fn bad(line: usize, what: impl std::fmt::Display) -> ExportError {
    ExportError::Usage(format!("the log file, line {line}: {what}"))
}

impl LogFileStore {
    /// Reads a JSONL log: entry lines, personal records (each before its entry) and checkpoint
    /// records. Entries of a chain must come in seq order from 1.
    ///
    /// # Errors
    /// A record that cannot be read, an anchored chain, or entries out of order (naming the
    /// line).
    pub fn parse(text: &[u8]) -> Result<Self, ExportError> {
        let mut chains: Vec<Chain> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut trees: Vec<CompactRange> = Vec::new();
        let mut by_id = HashMap::new();
        let mut pending: Option<(String, u64, Vec<u8>)> = None;
        let mut chain_of =
            |tenant: &str, chains: &mut Vec<Chain>, trees: &mut Vec<CompactRange>| -> usize {
                if let Some(&i) = index.get(tenant) {
                    return i;
                }
                chains.push(Chain {
                    entries: Vec::new(),
                    checkpoints: Vec::new(),
                    anchor: None,
                    nodes: std::sync::OnceLock::new(),
                    head: ChainHead {
                        tenant_id: tenant.to_owned(),
                        size: 0,
                        head_hash: blackbox_core::entry::GENESIS_HASH,
                        last_entry_id: [0; 16],
                        merkle_state: CompactRange::new().to_bytes(),
                        last_checkpoint_size: 0,
                        last_checkpoint_ms: 0,
                    },
                });
                trees.push(CompactRange::new());
                index.insert(tenant.to_owned(), chains.len() - 1);
                chains.len() - 1
            };
        for (n, line) in text.split(|b| *b == b'\n').enumerate() {
            let n = n + 1;
            if line.is_empty() {
                continue;
            }
            match record_kind(line) {
                RecordKind::Checkpoint => {
                    let note = parse_checkpoint_record(line).map_err(|e| bad(n, e))?;
                    let cp = SignedCheckpoint::parse(&note).map_err(|e| bad(n, e))?;
                    let tenant = cp
                        .checkpoint
                        .origin
                        .rsplit('/')
                        .next()
                        .unwrap_or_default()
                        .to_owned();
                    let ts_ms = cp
                        .checkpoint
                        .extension("timestamp")
                        .and_then(|t| blackbox_core::entry::parse_timestamp(t).ok())
                        .unwrap_or(0);
                    let i = chain_of(&tenant, &mut chains, &mut trees);
                    let c = &mut chains[i];
                    if cp.checkpoint.size >= c.head.last_checkpoint_size {
                        c.head.last_checkpoint_size = cp.checkpoint.size;
                        c.head.last_checkpoint_ms = ts_ms;
                    }
                    c.checkpoints.push(StoredCheckpoint {
                        tenant_id: tenant,
                        size: cp.checkpoint.size,
                        ts_ms,
                        note,
                    });
                }
                RecordKind::Personal => {
                    pending = Some(parse_personal_record(line).map_err(|e| bad(n, e))?);
                }
                RecordKind::Anchor => {
                    let a = blackbox_core::anchor::Anchor::parse(line).map_err(|e| bad(n, e))?;
                    a.check().map_err(|e| bad(n, e))?;
                    let tenant = a.tenant_id().to_string();
                    let i = chain_of(&tenant, &mut chains, &mut trees);
                    let c = &mut chains[i];
                    if c.entries.is_empty() && c.anchor.is_none() {
                        // The chain starts here.
                        trees[i] = a.range().clone();
                        c.head.size = a.size();
                        c.head.head_hash = a.head();
                        c.head.merkle_state = a.range().to_bytes();
                        c.anchor = Some(StoredAnchor {
                            tenant_id: tenant,
                            size: a.size(),
                            record: line.to_vec(),
                            tail_hashes: Vec::new(),
                        });
                    } else if a.size() != c.head.size
                        || a.head() != c.head.head_hash
                        || a.range().to_bytes() != trees[i].to_bytes()
                    {
                        return Err(bad(
                            n,
                            format!(
                                "an anchor at size {} of tenant {tenant} does not match the chain read before it (size {})",
                                a.size(),
                                c.head.size
                            ),
                        ));
                    }
                }
                RecordKind::Entry => {
                    let v = EntryView::parse(line).map_err(|e| bad(n, e))?;
                    let tenant = v.tenant_id.to_string();
                    let i = chain_of(&tenant, &mut chains, &mut trees);
                    let c = &mut chains[i];
                    if v.seq != c.head.size + 1 {
                        return Err(bad(
                            n,
                            format!(
                                "entry seq {} of tenant {tenant} follows seq {}",
                                v.seq, c.head.size
                            ),
                        ));
                    }
                    let personal = match pending.take() {
                        Some((t, seq, side)) if t == tenant && seq == v.seq => Some(side),
                        Some((t, seq, _)) => {
                            return Err(bad(
                                n,
                                format!(
                                    "a personal record for {t} seq {seq} precedes another entry"
                                ),
                            ));
                        }
                        None => None,
                    };
                    let entry_hash = Hash::digest(line);
                    trees[i].push(leaf_hash(entry_hash.as_bytes()), |_, _, _| {});
                    let id = *v.entry_id.as_bytes();
                    if by_id.insert(id, (i, c.entries.len())).is_some() {
                        return Err(bad(
                            n,
                            format!("entry id {} appears twice in the log", v.entry_id),
                        ));
                    }
                    c.head.size = v.seq;
                    c.head.head_hash = entry_hash;
                    c.head.last_entry_id = id;
                    c.head.merkle_state = trees[i].to_bytes();
                    c.entries.push(StoredEntry {
                        tenant_id: tenant,
                        seq: v.seq,
                        ts_ms: v.timestamp_ms,
                        line: line.to_vec(),
                        entry_hash,
                        personal,
                    });
                }
            }
        }
        for c in &mut chains {
            c.checkpoints.sort_by_key(|cp| (cp.size, cp.ts_ms));
        }
        Ok(Self {
            inner: Arc::new(Inner { chains, by_id }),
        })
    }

    fn chain(&self, tenant: &str) -> Option<&Chain> {
        self.inner
            .chains
            .iter()
            .find(|c| c.head.tenant_id == tenant)
    }
}

impl Store for LogFileStore {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        Err(StoreError::Unsupported {
            operation: "writing to an exported log file",
        })
    }

    fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut heads: Vec<ChainHead> = self.inner.chains.iter().map(|c| c.head.clone()).collect();
        heads.sort_by(|a, b| a.tenant_id.cmp(&b.tenant_id));
        Ok(heads)
    }

    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Some(c) = self.chain(tenant) else {
            return Ok(());
        };
        let first = c.entries.first().map_or(1, |e| e.seq);
        for e in c
            .entries
            .iter()
            .skip(usize::try_from(from_seq.saturating_sub(first)).unwrap_or(usize::MAX))
        {
            if e.seq > to_seq || !f(e.clone())? {
                break;
            }
        }
        Ok(())
    }

    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let mut hits: Vec<&StoredEntry> = Vec::new();
        for c in &self.inner.chains {
            if q.tenant_id.as_ref().is_some_and(|t| *t != c.head.tenant_id) {
                continue;
            }
            for e in &c.entries {
                let Ok(v) = EntryView::parse(&e.line) else {
                    continue;
                };
                let keep = q.agent_id.as_ref().is_none_or(|a| *a == *v.agent_id)
                    && q.session_id.as_ref().is_none_or(|s| *s == *v.session_id)
                    && q.event_type.as_ref().is_none_or(|t| *t == *v.event_type)
                    && q.start_ms.is_none_or(|s| e.ts_ms >= s)
                    && q.end_ms.is_none_or(|s| e.ts_ms <= s)
                    && q.tool.as_ref().is_none_or(|t| {
                        serde_json::from_str::<serde_json::Value>(v.payload.get())
                            .ok()
                            .and_then(|p| {
                                p.get("tool_name")
                                    .and_then(|x| x.as_str().map(str::to_owned))
                            })
                            .is_some_and(|x| x == *t)
                    })
                    && q.after.as_ref().is_none_or(|a| {
                        (e.ts_ms, e.tenant_id.as_str(), e.seq)
                            > (a.ts_ms, a.tenant_id.as_str(), a.seq)
                    });
                if keep {
                    hits.push(e);
                }
            }
        }
        hits.sort_by(|a, b| (a.ts_ms, &a.tenant_id, a.seq).cmp(&(b.ts_ms, &b.tenant_id, b.seq)));
        let limit = q
            .limit
            .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
        for e in hits.into_iter().take(limit) {
            if !f(e.clone())? {
                break;
            }
        }
        Ok(())
    }

    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError> {
        Ok(self
            .inner
            .by_id
            .get(entry_id)
            .and_then(|&(c, i)| self.inner.chains.get(c)?.entries.get(i).cloned()))
    }

    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let mut out = Vec::new();
        self.scan(tenant, first_seq, last_seq, &mut |e| {
            out.push(e.entry_hash);
            Ok(true)
        })?;
        Ok(out)
    }

    fn nodes(
        &self,
        tenant: TenantRef<'_>,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        // A log file keeps no Merkle nodes: those of the level proofs read are computed once
        // from the entry hashes (a bundle proves many entries of one large log).
        let Some(c) = self.chain(tenant) else {
            return Ok(Vec::new());
        };
        if level != NODE_LEVEL || first > last {
            return Ok(Vec::new());
        }
        let all = c.nodes.get_or_init(|| block_nodes(&c.entries));
        Ok((first..=last)
            .map_while(|i| {
                let h = (*all.get(usize::try_from(i).ok()?)?)?;
                Some((i, h))
            })
            .collect())
    }

    fn checkpoints(&self, tenant: TenantRef<'_>) -> Result<Vec<StoredCheckpoint>, StoreError> {
        Ok(self
            .chain(tenant)
            .map(|c| c.checkpoints.clone())
            .unwrap_or_default())
    }

    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        Ok(self
            .checkpoints(tenant)?
            .into_iter()
            // The contract's "or" (a follower's catch-up: larger, or newer).
            .filter(|c| c.size >= min_size || c.ts_ms > after_ms)
            .collect())
    }

    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        Ok(self
            .checkpoints(tenant)?
            .into_iter()
            .max_by_key(|c| (c.ts_ms, c.size)))
    }

    fn meta(&self, _key: &str) -> Result<Option<String>, StoreError> {
        Ok(None)
    }

    fn anchor(&self, tenant: TenantRef<'_>) -> Result<Option<StoredAnchor>, StoreError> {
        Ok(self.chain(tenant).and_then(|c| c.anchor.clone()))
    }
}
