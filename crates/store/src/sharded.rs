//! One log over several stores: each tenant's chain is kept in the store a [`TenantMap`] names
//! (a tenant → database map), so that write capacity grows with databases.
//!
//! [`ShardedStore`] is a [`Store`] like any other: reads go to the tenant's store, or to every
//! store and are merged in query order (`ts_ms`, tenant, seq); a write batch opens a batch of
//! each store it touches, in the order it touches them, and commits them in the map's order.
//! Per store, a batch is all or nothing as the contract requires; **across stores it is not**:
//! if the commit of one store fails after another's succeeded, what the first committed stays
//! (each chain is in one store, so every chain is either wholly in or wholly out of the batch;
//! an acknowledged write is never lost, an unacknowledged one may be stored). Entry ids are
//! checked against every store before an append (the contract's uniqueness holds across them).
//!
//! A chain found in a store the map does not name for its tenant (the map was changed after
//! entries were written) is an error, never silently read twice or skipped.

use std::collections::{BTreeMap, HashSet, VecDeque};

use blackbox_core::Hash;

use crate::{
    After, ArchiveSegment, BlockVisitor, ChainHead, Erasure, ErasureBatch, ErasureStore, LineBlock,
    LineVisitor, NewEntry, Purge, Query, RetentionBatch, RetentionStore, Store, StoreError,
    StoredAnchor, StoredCheckpoint, StoredEntry, SubjectEntry, TenantRef, WriteBatch,
};

/// Which store keeps each tenant's chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantMap {
    names: Vec<String>,
    tenants: BTreeMap<String, usize>,
    default: Option<usize>,
}

impl TenantMap {
    /// A map over the stores `names` (in this order), tenants to store names, and the store of
    /// tenants not listed (`None`: they are refused).
    ///
    /// # Errors
    /// [`StoreError::Invalid`] for no store, a name given twice, or a tenant (or the default)
    /// naming a store that is not in `names`.
    pub fn new(
        names: Vec<String>,
        tenants: &BTreeMap<String, String>,
        default: Option<&str>,
    ) -> Result<Self, StoreError> {
        if names.is_empty() {
            return Err(invalid("a tenant map needs at least one database"));
        }
        let index = |n: &str, what: &str| {
            names.iter().position(|x| x == n).ok_or_else(|| {
                invalid(format!(
                    "{what} names the database {n:?}, which is not among [databases] ({})",
                    names.join(", ")
                ))
            })
        };
        for (i, n) in names.iter().enumerate() {
            if names[..i].contains(n) {
                return Err(invalid(format!("the database {n:?} is listed twice")));
            }
        }
        let mut map = BTreeMap::new();
        for (t, n) in tenants {
            map.insert(t.clone(), index(n, &format!("tenant {t:?}"))?);
        }
        let default = default.map(|n| index(n, "default_database")).transpose()?;
        Ok(Self {
            names,
            tenants: map,
            default,
        })
    }

    /// The stores' names, in the map's order.
    #[must_use]
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// The index (in [`Self::names`]) of the store that keeps `tenant`'s chain. A service
    /// instance's own chain on database `D`, `_blackbox.D`
    /// ([`blackbox_core::ids::SERVICE_TENANT`]), is kept in `D`.
    #[must_use]
    pub fn shard_of(&self, tenant: &str) -> Option<usize> {
        if let Some(db) = tenant
            .strip_prefix(blackbox_core::ids::SERVICE_TENANT)
            .and_then(|r| r.strip_prefix('.'))
        {
            return self.names.iter().position(|n| n == db);
        }
        self.tenants.get(tenant).copied().or(self.default)
    }

    /// The name of the store that keeps `tenant`'s chain.
    #[must_use]
    pub fn database_of(&self, tenant: &str) -> Option<&str> {
        self.shard_of(tenant).map(|i| self.names[i].as_str())
    }

    fn route(&self, tenant: &str) -> Result<usize, StoreError> {
        self.shard_of(tenant).ok_or_else(|| {
            invalid(format!(
                "tenant {tenant:?} is in no database of the tenant map: add it under [tenants] \
                 (or set default_database)"
            ))
        })
    }
}

fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid { what: what.into() }
}

/// One store of a [`ShardedStore`]: a handle for writing (none when opened read-only) and one
/// for reading beside it (reads while a batch holds the writer).
#[derive(Debug)]
pub struct Shard {
    /// The store batches are opened on.
    pub writer: Option<Box<dyn Store>>,
    /// The same store, for reads.
    pub reader: Box<dyn Store>,
}

/// Several stores as one (see the module docs).
#[derive(Debug)]
pub struct ShardedStore {
    map: TenantMap,
    shards: Vec<Shard>,
}

/// Entries a merged query fetches from each store at a time.
const PAGE: u64 = 512;

impl ShardedStore {
    /// The stores `shards`, one per name of `map`, in its order.
    ///
    /// # Errors
    /// [`StoreError::Invalid`] when the counts differ.
    pub fn new(map: TenantMap, shards: Vec<Shard>) -> Result<Self, StoreError> {
        if shards.len() != map.names.len() {
            return Err(invalid(format!(
                "{} stores for a map of {} databases",
                shards.len(),
                map.names.len()
            )));
        }
        Ok(Self { map, shards })
    }

    /// The tenant map.
    #[must_use]
    pub fn map(&self) -> &TenantMap {
        &self.map
    }

    /// The reading handle of each store, with its name.
    pub fn stores(&self) -> impl Iterator<Item = (&str, &dyn Store)> {
        self.map
            .names
            .iter()
            .map(String::as_str)
            .zip(self.shards.iter().map(|s| s.reader.as_ref()))
    }

    /// The store that keeps `tenant`'s chain (`None`: no store; reads find nothing).
    fn reader(&self, tenant: &str) -> Option<&dyn Store> {
        self.map
            .shard_of(tenant)
            .map(|i| self.shards[i].reader.as_ref())
    }

    /// `check` of every store (whether each supports an extension of the contract).
    fn every(
        &self,
        check: impl Fn(&dyn Store) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.shards
            .iter()
            .try_for_each(|s| check(s.reader.as_ref()))
    }

    /// A chain kept where the map does not put it.
    fn misplaced(&self, tenant: &str, found: usize) -> StoreError {
        StoreError::Corrupt {
            what: format!(
                "tenant {tenant:?} has a chain in the database {:?}, but the tenant map puts it \
                 {}: the map was changed after entries were written; restore the map (a chain \
                 cannot move between databases by editing it)",
                self.map.names[found],
                self.map
                    .database_of(tenant)
                    .map_or_else(|| "in none".to_owned(), |n| format!("in {n:?}"))
            ),
        }
    }
}

impl Store for ShardedStore {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        let mut free = Vec::with_capacity(self.shards.len());
        let mut readers = Vec::with_capacity(self.shards.len());
        for s in &mut self.shards {
            let Some(w) = s.writer.as_mut() else {
                return Err(StoreError::ReadOnly);
            };
            free.push(Some(w.as_mut() as &mut dyn Store));
            readers.push(s.reader.as_ref());
        }
        Ok(Box::new(ShardedBatch {
            map: &self.map,
            free,
            readers,
            open: Vec::new(),
            ids: HashSet::new(),
        }))
    }

    fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut all = Vec::new();
        for (i, s) in self.shards.iter().enumerate() {
            for h in s.reader.chains()? {
                if self.map.shard_of(&h.tenant_id) != Some(i) {
                    return Err(self.misplaced(&h.tenant_id, i));
                }
                all.push(h);
            }
        }
        all.sort_by(|a, b| a.tenant_id.as_bytes().cmp(b.tenant_id.as_bytes()));
        Ok(all)
    }

    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        match self.reader(tenant) {
            Some(s) => s.scan(tenant, from_seq, to_seq, f),
            None => Ok(()),
        }
    }

    fn scan_lines(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut LineVisitor<'_>,
    ) -> Result<(), StoreError> {
        match self.reader(tenant) {
            Some(s) => s.scan_lines(tenant, from_seq, to_seq, f),
            None => Ok(()),
        }
    }

    fn scan_line_blocks(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        block: &mut LineBlock,
        f: &mut BlockVisitor<'_>,
    ) -> Result<(), StoreError> {
        match self.reader(tenant) {
            Some(s) => s.scan_line_blocks(tenant, from_seq, to_seq, block, f),
            None => Ok(()),
        }
    }

    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if let Some(t) = &q.tenant_id {
            return match self.reader(t) {
                Some(s) => s.query(q, f),
                None => Ok(()),
            };
        }
        // Every store's answer in query order, a page at a time, merged.
        struct Cursor {
            buf: VecDeque<StoredEntry>,
            after: Option<After>,
            done: bool,
        }
        let mut cursors: Vec<Cursor> = self
            .shards
            .iter()
            .map(|_| Cursor {
                buf: VecDeque::new(),
                after: q.after.clone(),
                done: false,
            })
            .collect();
        let mut left = q.limit;
        loop {
            if left == Some(0) {
                return Ok(());
            }
            for (i, c) in cursors.iter_mut().enumerate() {
                if !c.buf.is_empty() || c.done {
                    continue;
                }
                let page = Query {
                    after: c.after.clone(),
                    limit: Some(left.map_or(PAGE, |l| l.min(PAGE))),
                    ..q.clone()
                };
                let want = page.limit.unwrap_or(PAGE);
                let mut got = 0u64;
                self.shards[i].reader.query(&page, &mut |e| {
                    got += 1;
                    c.buf.push_back(e);
                    Ok(true)
                })?;
                c.done = got < want;
                if let Some(last) = c.buf.back() {
                    c.after = Some(After {
                        ts_ms: last.ts_ms,
                        tenant_id: last.tenant_id.clone(),
                        seq: last.seq,
                    });
                }
            }
            let next = cursors
                .iter()
                .enumerate()
                .filter_map(|(i, c)| c.buf.front().map(|e| (i, e)))
                .min_by(|(_, a), (_, b)| {
                    (a.ts_ms, a.tenant_id.as_bytes(), a.seq).cmp(&(
                        b.ts_ms,
                        b.tenant_id.as_bytes(),
                        b.seq,
                    ))
                })
                .map(|(i, _)| i);
            let Some(i) = next else {
                return Ok(());
            };
            let Some(e) = cursors[i].buf.pop_front() else {
                return Ok(());
            };
            if self.map.shard_of(&e.tenant_id) != Some(i) {
                return Err(self.misplaced(&e.tenant_id, i));
            }
            left = left.map(|l| l - 1);
            if !f(e)? {
                return Ok(());
            }
        }
    }

    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError> {
        for s in &self.shards {
            if let Some(e) = s.reader.entry_by_id(entry_id)? {
                return Ok(Some(e));
            }
        }
        Ok(None)
    }

    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.entry_hashes(tenant, first_seq, last_seq),
            None => Ok(Vec::new()),
        }
    }

    fn nodes(
        &self,
        tenant: TenantRef<'_>,
        level: u8,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, Hash)>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.nodes(tenant, level, first, last),
            None => Ok(Vec::new()),
        }
    }

    fn checkpoints(&self, tenant: TenantRef<'_>) -> Result<Vec<StoredCheckpoint>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.checkpoints(tenant),
            None => Ok(Vec::new()),
        }
    }

    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.checkpoints_since(tenant, min_size, after_ms),
            None => Ok(Vec::new()),
        }
    }

    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.latest_checkpoint(tenant),
            None => Ok(None),
        }
    }

    /// The first store's value: [`WriteBatch::set_meta`] writes every store.
    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.shards[0].reader.meta(key)
    }

    fn anchor(&self, tenant: TenantRef<'_>) -> Result<Option<StoredAnchor>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.anchor(tenant),
            None => Ok(None),
        }
    }

    fn retention(&self) -> Result<&dyn RetentionStore, StoreError> {
        self.every(|s| s.retention().map(|_| ()))?;
        Ok(self)
    }

    fn retention_mut(&mut self) -> Result<&mut dyn RetentionStore, StoreError> {
        self.every(|s| s.retention().map(|_| ()))?;
        Ok(self)
    }

    fn erasure(&self) -> Result<&dyn ErasureStore, StoreError> {
        self.every(|s| s.erasure().map(|_| ()))?;
        Ok(self)
    }

    fn erasure_mut(&mut self) -> Result<&mut dyn ErasureStore, StoreError> {
        self.every(|s| s.erasure().map(|_| ()))?;
        Ok(self)
    }
}

impl RetentionStore for ShardedStore {
    fn archive_segments(&self, tenant: TenantRef<'_>) -> Result<Vec<ArchiveSegment>, StoreError> {
        match self.reader(tenant) {
            Some(s) => s.retention()?.archive_segments(tenant),
            None => Ok(Vec::new()),
        }
    }

    fn reclaim_space(&mut self) -> Result<u64, StoreError> {
        let mut n = 0;
        for s in &mut self.shards {
            let w = s.writer.as_mut().ok_or(StoreError::ReadOnly)?;
            n += w.retention_mut()?.reclaim_space()?;
        }
        Ok(n)
    }
}

/// Subject-index rows of several stores in (tenant, seq) order.
fn sorted(mut rows: Vec<SubjectEntry>) -> Vec<SubjectEntry> {
    rows.sort_by(|a, b| (a.tenant_id.as_bytes(), a.seq).cmp(&(b.tenant_id.as_bytes(), b.seq)));
    rows
}

impl ErasureStore for ShardedStore {
    fn entries_for_subject(&self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        let mut all = Vec::new();
        for s in &self.shards {
            all.extend(s.reader.erasure()?.entries_for_subject(subject_key)?);
        }
        Ok(sorted(all))
    }

    fn purge_erased(&mut self, wait: std::time::Duration) -> Result<Purge, StoreError> {
        let mut attempts = 0;
        for s in &mut self.shards {
            let w = s.writer.as_mut().ok_or(StoreError::ReadOnly)?;
            attempts += w.erasure_mut()?.purge_erased(wait)?.attempts;
        }
        Ok(Purge { attempts })
    }
}

/// A batch of a [`ShardedStore`]: one batch per store it touches.
struct ShardedBatch<'a> {
    map: &'a TenantMap,
    /// The writers not yet opened.
    free: Vec<Option<&'a mut dyn Store>>,
    readers: Vec<&'a dyn Store>,
    /// The batches opened, with their store's index, in the order they were opened.
    open: Vec<(usize, Box<dyn WriteBatch + 'a>)>,
    /// Entry ids appended in this batch (to any store).
    ids: HashSet<[u8; 16]>,
}

impl<'a> ShardedBatch<'a> {
    fn sub(&mut self, i: usize) -> Result<&mut (dyn WriteBatch + 'a), StoreError> {
        let at = match self.open.iter().position(|(j, _)| *j == i) {
            Some(at) => at,
            None => {
                let store = self.free[i].take().ok_or_else(|| {
                    invalid("a database's batch could not be opened (internal error)")
                })?;
                self.open.push((i, store.begin()?));
                self.open.len() - 1
            }
        };
        Ok(self.open[at].1.as_mut())
    }

    fn for_tenant(&mut self, tenant: &str) -> Result<&mut (dyn WriteBatch + 'a), StoreError> {
        let i = self.map.route(tenant)?;
        self.sub(i)
    }

    fn all(&mut self) -> Result<(), StoreError> {
        for i in 0..self.free.len() {
            self.sub(i)?;
        }
        Ok(())
    }
}

impl WriteBatch for ShardedBatch<'_> {
    fn chain_head(&mut self, tenant: TenantRef<'_>) -> Result<Option<ChainHead>, StoreError> {
        self.for_tenant(tenant)?.chain_head(tenant)
    }

    fn append(&mut self, tenant: TenantRef<'_>, entries: &[NewEntry]) -> Result<(), StoreError> {
        let i = self.map.route(tenant)?;
        // Entry ids are unique in the whole log: the tenant's store checks its own; the others
        // are asked here (committed), and this batch's other appends remembered.
        for e in entries {
            let taken = self.ids.contains(&e.entry_id)
                || self
                    .readers
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .try_fold(false, |found, (_, r)| {
                        Ok::<_, StoreError>(found || r.entry_by_id(&e.entry_id)?.is_some())
                    })?;
            if taken {
                return Err(invalid(format!(
                    "entry {} of tenant {tenant:?}: its entry id is already stored (in another \
                     database of the map); entry ids must be unique",
                    e.seq
                )));
            }
        }
        self.sub(i)?.append(tenant, entries)?;
        self.ids.extend(entries.iter().map(|e| e.entry_id));
        Ok(())
    }

    fn set_head(&mut self, head: &ChainHead) -> Result<(), StoreError> {
        self.for_tenant(&head.tenant_id)?.set_head(head)
    }

    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.for_tenant(&cp.tenant_id)?.put_checkpoint(cp)
    }

    fn put_nodes(
        &mut self,
        tenant: TenantRef<'_>,
        level: u8,
        nodes: &[(u64, Hash)],
    ) -> Result<(), StoreError> {
        self.for_tenant(tenant)?.put_nodes(tenant, level, nodes)
    }

    fn add_signatures(
        &mut self,
        tenant: TenantRef<'_>,
        size: u64,
        note: &str,
    ) -> Result<usize, StoreError> {
        self.for_tenant(tenant)?.add_signatures(tenant, size, note)
    }

    /// Written to every store (each database then says which log it belongs to).
    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.all()?;
        for (_, b) in &mut self.open {
            b.set_meta(key, value)?;
        }
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let names = &self.map.names;
        let mut open = self.open;
        open.sort_by_key(|(i, _)| *i);
        let mut done: Vec<&str> = Vec::new();
        for (i, b) in open {
            if let Err(e) = b.commit() {
                if done.is_empty() {
                    return Err(e);
                }
                return Err(StoreError::Backend {
                    backend: "tenant map",
                    message: format!(
                        "the batch committed in {} but not in {:?}: {e}; the chains kept there \
                         are as before the batch",
                        done.join(", "),
                        names[i]
                    ),
                });
            }
            done.push(&names[i]);
        }
        Ok(())
    }

    fn retention(&mut self) -> Result<&mut dyn RetentionBatch, StoreError> {
        Ok(self)
    }

    fn erasure(&mut self) -> Result<&mut dyn ErasureBatch, StoreError> {
        Ok(self)
    }
}

impl RetentionBatch for ShardedBatch<'_> {
    fn archive_prefix(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.for_tenant(&anchor.tenant_id)?
            .retention()?
            .archive_prefix(anchor)
    }

    fn start_at_anchor(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.for_tenant(&anchor.tenant_id)?
            .retention()?
            .start_at_anchor(anchor)
    }

    fn put_archive_segment(&mut self, segment: &ArchiveSegment) -> Result<(), StoreError> {
        self.for_tenant(&segment.tenant_id)?
            .retention()?
            .put_archive_segment(segment)
    }
}

impl ErasureBatch for ShardedBatch<'_> {
    fn subject_entries(&mut self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        self.all()?;
        let mut all = Vec::new();
        for (_, b) in &mut self.open {
            all.extend(b.erasure()?.subject_entries(subject_key)?);
        }
        Ok(sorted(all))
    }

    fn erase_personal(
        &mut self,
        tenant: TenantRef<'_>,
        seqs: &[u64],
    ) -> Result<Vec<Erasure>, StoreError> {
        match self.map.shard_of(tenant) {
            Some(i) => self.sub(i)?.erasure()?.erase_personal(tenant, seqs),
            None => Ok(vec![Erasure::NotStored; seqs.len()]),
        }
    }

    fn forget_subjects(&mut self, tenant: TenantRef<'_>, seqs: &[u64]) -> Result<(), StoreError> {
        match self.map.shard_of(tenant) {
            Some(i) => self.sub(i)?.erasure()?.forget_subjects(tenant, seqs),
            None => Ok(()),
        }
    }
}
