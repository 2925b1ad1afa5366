//! Queries: per-chain posting-list streams merged in query order.

use super::*;

impl SqliteStore {
    /// Whether the row `id` of `tenant` at `ts` comes at or before the cursor `a` (query order
    /// (ts, tenant, seq)). Reads the row's seq only when timestamp and tenant tie, never its line.
    pub(super) fn not_after(
        &self,
        a: &After,
        ts: i64,
        tenant: &str,
        id: i64,
    ) -> Result<bool, StoreError> {
        match (ts.cmp(&a.ts_ms), tenant.cmp(a.tenant_id.as_str())) {
            (std::cmp::Ordering::Less, _) => Ok(true),
            (std::cmp::Ordering::Greater, _) => Ok(false),
            (_, std::cmp::Ordering::Less) => Ok(true),
            (_, std::cmp::Ordering::Greater) => Ok(false),
            (_, std::cmp::Ordering::Equal) => {
                let seq: i64 = self
                    .conn
                    .prepare_cached("SELECT seq FROM entries WHERE id = ?1")?
                    .query_row([id], |r| r.get(0))?;
                Ok(u64::try_from(seq).unwrap_or(0) <= a.seq)
            }
        }
    }

    /// The chain id of `tenant`, if the chain exists.
    pub(super) fn chain_id(&self, tenant: &str) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn
            .prepare_cached("SELECT chain_id FROM chains WHERE tenant_id = ?1")?
            .query_row([tenant], |r| r.get(0))
            .optional()?)
    }

    /// The id of a dictionary name, if stored.
    pub(super) fn lookup_name(&self, name: &str) -> Result<Option<i64>, StoreError> {
        if let Some(&id) = self.names.get(name) {
            return Ok(Some(id));
        }
        Ok(self
            .conn
            .prepare_cached("SELECT name_id FROM names WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?)
    }

    /// The chains a query runs over, ordered by tenant id.
    pub(super) fn query_chains(&self, q: &Query) -> Result<Vec<(i64, String)>, StoreError> {
        if let Some(tenant) = &q.tenant_id {
            return Ok(self
                .chain_id(tenant)?
                .map(|id| vec![(id, tenant.clone())])
                .unwrap_or_default());
        }
        let mut stmt = self
            .conn
            .prepare_cached("SELECT chain_id, tenant_id FROM chains ORDER BY tenant_id")?;
        let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The `(kind, name id)` filters of `q`, in tie-break order (session, agent, tool, event
    /// type). `None` when a filter names a string that is not stored at all (nothing matches).
    pub(super) fn query_filters(&self, q: &Query) -> Result<Option<Vec<(i64, i64)>>, StoreError> {
        let mut filters = Vec::new();
        for (filter, kind) in [
            (&q.session_id, KIND_SESSION),
            (&q.agent_id, KIND_AGENT),
            (&q.tool, KIND_TOOL),
            (&q.event_type, KIND_EVENT),
        ] {
            if let Some(name) = filter {
                let Some(name_id) = self.lookup_name(name)? else {
                    return Ok(None);
                };
                filters.push((kind, name_id));
            }
        }
        Ok(Some(filters))
    }

    /// The stream of `chain`'s entries matching `filters` within `[start, end]`, in (ts_ms, id)
    /// order. It reads the postings of the filter covering the fewest entries (counted over its
    /// first [`DRIVER_PROBE_ROWS`] posting rows): SQLite's planner cannot tell which of two
    /// equality filters is more selective.
    pub(super) fn chain_stream(
        &self,
        chain: i64,
        filters: &[(i64, i64)],
        start: i64,
        end: i64,
    ) -> Result<ChainStream, StoreError> {
        let first_bucket = start >> BUCKET_BITS;
        let last_bucket = end >> BUCKET_BITS;
        let mut others: Vec<(i64, i64)> = filters.to_vec();
        let driver = if others.is_empty() {
            (KIND_ALL, 0)
        } else if others.len() == 1 {
            others.remove(0)
        } else {
            let mut best: Option<(i64, usize)> = None;
            for (i, &(kind, name)) in others.iter().enumerate() {
                let n: i64 = self.conn.prepare_cached(PROBE_SQL)?.query_row(
                    params![
                        chain,
                        kind,
                        name,
                        first_bucket,
                        last_bucket,
                        DRIVER_PROBE_ROWS
                    ],
                    |r| r.get(0),
                )?;
                // Ties go to the earlier filter.
                if best.is_none_or(|(m, _)| n < m) {
                    best = Some((n, i));
                }
            }
            others.remove(best.map_or(0, |(_, i)| i))
        };
        // Entries before an archive anchor are gone; posting rows may still list some of them.
        let min_id: i64 = self
            .conn
            .prepare_cached(
                "SELECT first_id FROM runs WHERE chain_id = ?1 ORDER BY first_seq LIMIT 1",
            )?
            .query_row([chain], |r| r.get(0))
            .optional()?
            .unwrap_or(i64::MAX);
        Ok(ChainStream {
            chain,
            min_id,
            driver,
            others,
            start,
            end,
            next_bucket: Some(first_bucket),
            last_bucket,
            pending: Vec::new(),
            fetched: VecDeque::new(),
        })
    }

    /// The `(ts_ms, id)` pairs of the postings of `(chain, kind, name)` in `bucket`, unsorted.
    pub(super) fn bucket_postings(
        &self,
        chain: i64,
        (kind, name): (i64, i64),
        bucket: i64,
        out: &mut Vec<(i64, i64)>,
    ) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(BUCKET_POSTINGS_SQL)?;
        let mut rows = stmt.query(params![chain, kind, name, bucket])?;
        while let Some(row) = rows.next()? {
            let first_id = col_i64(row, 1, "a posting's first id")?;
            let n = col_u64(row, 2, "a posting's length")?;
            let data = col_blob(row, 3, "a posting's data")?;
            decode_posting(bucket, first_id, n, data, out).ok_or_else(|| {
                corrupt(format!(
                    "the posting list of chain {chain}, kind {kind}, name {name}, bucket \
                     {bucket}, first id {first_id} cannot be decoded"
                ))
            })?;
        }
        Ok(())
    }

    /// The entry at row id `id`, which must belong to chain `chain`.
    pub(super) fn entry_at(
        &self,
        id: i64,
        chain: i64,
        tenant: &str,
    ) -> Result<StoredEntry, StoreError> {
        let mut stmt = self.conn.prepare_cached(ENTRY_AT_SQL)?;
        let mut rows = stmt.query([id])?;
        let Some(row) = rows.next()? else {
            return Err(corrupt(format!(
                "a posting list of tenant {tenant:?} refers to entry row {id}, which does not exist"
            )));
        };
        let stored_chain = col_i64(row, 0, "an entry's chain id")?;
        if stored_chain != chain {
            return Err(corrupt(format!(
                "a posting list of tenant {tenant:?} refers to entry row {id} of another chain"
            )));
        }
        let (mut e, at) = read_entry(row, tenant, 1)?;
        e.line = self.lines.read(at)?;
        Ok(e)
    }

    /// Calls `f` on the row-id ranges holding seqs `from ..= to` of `chain`, in seq order, as
    /// `(first seq, first id, last id)`; stops when `f` returns `false`.
    pub(super) fn for_each_run_range(
        &self,
        chain: i64,
        from: u64,
        to: u64,
        f: &mut dyn FnMut(u64, i64, i64) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let Ok(from) = i64::try_from(from) else {
            return Ok(());
        };
        let to = i64::try_from(to).unwrap_or(i64::MAX);
        // The run holding `from` starts at or before it.
        let start: i64 = self
            .conn
            .prepare_cached(RUN_AT_SQL)?
            .query_row(params![chain, from], |r| r.get(0))
            .optional()?
            .unwrap_or(from);
        let mut stmt = self.conn.prepare_cached(RUNS_FROM_SQL)?;
        let mut rows = stmt.query(params![chain, start, to])?;
        while let Some(row) = rows.next()? {
            let run = read_run(row)?;
            let lo = from.max(run.first_seq);
            let hi = to.min(run.last_seq());
            if lo > hi {
                continue;
            }
            let first_id = run.first_id + (lo - run.first_seq);
            let last_id = run.first_id + (hi - run.first_seq);
            if !f(lo.unsigned_abs(), first_id, last_id)? {
                break;
            }
        }
        Ok(())
    }
}

/// One chain's matching entries in (ts_ms, id) order, read bucket by bucket.
#[derive(Debug)]
pub(super) struct ChainStream {
    pub(super) chain: i64,
    /// Row id of the chain's first stored entry: lower ids were archived.
    pub(super) min_id: i64,
    /// The `(kind, name id)` whose postings are read.
    pub(super) driver: (i64, i64),
    /// Further filters, checked against their postings of the same bucket.
    pub(super) others: Vec<(i64, i64)>,
    pub(super) start: i64,
    pub(super) end: i64,
    /// The lowest bucket not read yet (`None` when done).
    pub(super) next_bucket: Option<i64>,
    pub(super) last_bucket: i64,
    /// The rest of the current bucket, in descending order (the next entry is last).
    pub(super) pending: Vec<(i64, i64)>,
    /// Entries read ahead (with their row ids): the next ones [`Self::next`] returns.
    pub(super) fetched: VecDeque<(i64, StoredEntry)>,
}

impl ChainStream {
    /// The entry at row id `id`, which [`Self::next`] just returned. The matches after it
    /// with consecutive row ids (typically a whole `append` call when a query has no filters
    /// but time) are read with it, in one range scan; at most `most` entries.
    pub(super) fn entry(
        &mut self,
        store: &SqliteStore,
        id: i64,
        tenant: &str,
        most: u64,
    ) -> Result<StoredEntry, StoreError> {
        match self.fetched.pop_front() {
            Some((fetched_id, entry)) if fetched_id == id => return Ok(entry),
            Some(_) => self.fetched.clear(),
            None => {}
        }
        let most = usize::try_from(most.min(READ_AHEAD)).unwrap_or(1);
        let mut last = id;
        for &(_, next) in self.pending.iter().rev().take(most.saturating_sub(1)) {
            if Some(next) != last.checked_add(1) {
                break;
            }
            last = next;
        }
        if last == id {
            return store.entry_at(id, self.chain, tenant);
        }
        let mut stmt = store.conn.prepare_cached(ENTRY_RANGE_SQL)?;
        let mut rows = stmt.query(params![id, last])?;
        let mut at = id;
        let mut batch = Vec::new();
        while let Some(row) = rows.next()? {
            if col_i64(row, 0, "an entry's chain id")? != self.chain {
                return Err(corrupt(format!(
                    "a posting list of tenant {tenant:?} refers to entry row {at} of another \
                     chain"
                )));
            }
            batch.push(read_entry(row, tenant, 1)?);
            at += 1;
        }
        fill_lines(&store.lines, &mut batch)?;
        self.fetched
            .extend((id..).zip(batch.into_iter().map(|(e, _)| e)));
        match self.fetched.pop_front() {
            Some((first, entry)) if first == id && at == last + 1 => Ok(entry),
            _ => Err(corrupt(format!(
                "a posting list of tenant {tenant:?} refers to entry rows {id}..={last}, which \
                 are not all stored"
            ))),
        }
    }

    /// The next `(ts_ms, id)`.
    pub(super) fn next(&mut self, store: &SqliteStore) -> Result<Option<(i64, i64)>, StoreError> {
        loop {
            if let Some(next) = self.pending.pop() {
                return Ok(Some(next));
            }
            let Some(from) = self.next_bucket else {
                return Ok(None);
            };
            let (kind, name) = self.driver;
            let bucket: Option<i64> = store
                .conn
                .prepare_cached(NEXT_BUCKET_SQL)?
                .query_row(
                    params![self.chain, kind, name, from, self.last_bucket],
                    |r| r.get(0),
                )
                .optional()?;
            let Some(bucket) = bucket else {
                self.next_bucket = None;
                return Ok(None);
            };
            self.next_bucket = bucket.checked_add(1).filter(|&b| b <= self.last_bucket);
            let mut rows = std::mem::take(&mut self.pending);
            store.bucket_postings(self.chain, self.driver, bucket, &mut rows)?;
            let (start, end, min_id) = (self.start, self.end, self.min_id);
            rows.retain(|&(ts, id)| start <= ts && ts <= end && id >= min_id);
            let mut other = Vec::new();
            for &filter in &self.others {
                if rows.is_empty() {
                    break;
                }
                other.clear();
                store.bucket_postings(self.chain, filter, bucket, &mut other)?;
                let ids: HashSet<i64> = other.iter().map(|&(_, id)| id).collect();
                rows.retain(|(_, id)| ids.contains(id));
            }
            rows.sort_unstable_by(|a, b| b.cmp(a));
            self.pending = rows;
        }
    }
}
