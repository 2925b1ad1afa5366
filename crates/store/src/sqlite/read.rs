//! The core contract's reads (and `begin`) for [`SqliteStore`].

use super::*;

impl Store for SqliteStore {
    fn begin(&mut self) -> Result<Box<dyn WriteBatch + '_>, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Read under the write lock: no other writer can move the end now.
        let (mut end, mut synced) = (None, None);
        {
            let mut stmt = tx.prepare_cached(
                "SELECT key, value FROM meta WHERE key IN ('lines_end', 'lines_synced')",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let key: String = row.get(0)?;
                let v: String = row.get(1)?;
                let at = LinesEnd::parse(&v).ok_or_else(|| {
                    corrupt(format!("the entry lines' {key} ({v:?}) is unreadable"))
                })?;
                if key == "lines_end" {
                    end = Some(at);
                } else {
                    synced = Some(at);
                }
            }
        }
        let end = end.unwrap_or(LinesEnd::START);
        // A store last written by a version that synced every batch's lines has no
        // `lines_synced`: everything committed is durable.
        let synced = synced.unwrap_or(end);
        let lines = SegmentWriter::begin(&lines_dir(&self.path), end, self.segment_limit)?;
        Ok(Box::new(SqliteBatch {
            tx,
            lines,
            start: end,
            synced,
            failed: false,
            names: &mut self.names,
            new_names: HashMap::new(),
            chains: HashMap::new(),
        }))
    }

    fn chains(&self) -> Result<Vec<ChainHead>, StoreError> {
        let mut stmt = self.conn.prepare_cached(&format!(
            "SELECT {HEAD_COLUMNS} FROM chains ORDER BY tenant_id"
        ))?;
        let mut rows = stmt.query([])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_head(row)?);
        }
        Ok(out)
    }

    fn scan(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let from = from_seq.max(1);
        if from > to_seq {
            return Ok(());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(());
        };
        self.for_each_run_range(chain, from, to_seq, &mut |first_seq, lo, hi| {
            let mut stmt = self.conn.prepare_cached(ENTRY_RANGE_SQL)?;
            let mut rows = stmt.query(params![lo, hi])?;
            let mut seq = first_seq;
            // Rows are read a block at a time, so that neighbouring lines are read together.
            let mut batch = Vec::with_capacity(SCAN_BLOCK);
            let mut more = true;
            while more {
                batch.clear();
                while batch.len() < SCAN_BLOCK {
                    let Some(row) = rows.next()? else {
                        more = false;
                        break;
                    };
                    check_run_entry(row, chain, seq, tenant)?;
                    batch.push(read_entry(row, tenant, 1)?);
                    seq += 1;
                }
                fill_lines(&self.lines, &mut batch)?;
                for (e, _) in batch.drain(..) {
                    if !f(e)? {
                        return Ok(false);
                    }
                }
            }
            Ok(true)
        })
    }

    fn scan_line_blocks(
        &self,
        tenant: TenantRef<'_>,
        from_seq: u64,
        to_seq: u64,
        block: &mut crate::LineBlock,
        f: &mut crate::BlockVisitor<'_>,
    ) -> Result<(), StoreError> {
        let from = from_seq.max(1);
        if from > to_seq {
            return Ok(());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(());
        };
        let mut refs: Vec<LineRef> = Vec::with_capacity(SCAN_BLOCK);
        self.for_each_run_range(chain, from, to_seq, &mut |first_seq, lo, hi| {
            let mut stmt = self.conn.prepare_cached(LINE_RANGE_SQL)?;
            let mut rows = stmt.query(params![lo, hi])?;
            let mut pstmt = self.conn.prepare_cached(PERSONAL_RANGE_SQL)?;
            let mut personal = PersonalMerge::new(pstmt.query(params![lo, hi])?, tenant);
            let mut seq = first_seq;
            let mut more = true;
            while more {
                block.lines.clear();
                refs.clear();
                while refs.len() < SCAN_BLOCK {
                    let Some(row) = rows.next()? else {
                        more = false;
                        break;
                    };
                    let id = col_i64(row, 0, "an entry's row id")?;
                    let stored_chain = col_i64(row, 1, "an entry's chain id")?;
                    let stored_seq = col_u64(row, 2, "an entry's seq")?;
                    if stored_chain != chain || stored_seq != seq {
                        return Err(misplaced(seq, tenant, stored_chain, stored_seq));
                    }
                    refs.push(read_line_ref(row, 3, seq, tenant)?);
                    block.lines.push(crate::BlockLine {
                        seq,
                        line: 0..0,
                        personal: personal.take(id, seq, &mut block.side)?,
                    });
                    seq += 1;
                }
                if refs.is_empty() {
                    break;
                }
                let ranges = self
                    .lines
                    .read_into(&refs, &mut block.buf, &mut block.end)?;
                for (l, r) in block.lines.iter_mut().zip(ranges) {
                    l.line = r;
                }
                if !f(block)? {
                    return Ok(false);
                }
            }
            Ok(true)
        })
    }

    fn query(
        &self,
        q: &Query,
        f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        if q.limit == Some(0) {
            return Ok(());
        }
        let mut start = q.start_ms.unwrap_or(i64::MIN);
        if let Some(a) = &q.after {
            start = start.max(a.ts_ms);
        }
        let end = q.end_ms.unwrap_or(i64::MAX);
        if start > end {
            return Ok(());
        }
        // One read transaction makes all the statements below read the same snapshot (unless
        // the caller is already inside one, e.g. querying from a callback). Declared first, it
        // ends after them.
        let _snapshot = if self.conn.is_autocommit() {
            Some(self.conn.unchecked_transaction()?)
        } else {
            None
        };
        let chains = self.query_chains(q)?;
        if chains.is_empty() {
            return Ok(());
        }
        let Some(filters) = self.query_filters(q)? else {
            return Ok(());
        };
        let mut remaining = q.limit.unwrap_or(u64::MAX);

        // Each chain's matches come in (ts_ms, id) order; merge them by (ts_ms, tenant, id),
        // holding one pending match per chain.
        let mut streams = Vec::with_capacity(chains.len());
        let mut heap = BinaryHeap::with_capacity(chains.len());
        for (rank, (chain, _)) in chains.iter().enumerate() {
            let mut stream = self.chain_stream(*chain, &filters, start, end)?;
            if let Some((ts, id)) = stream.next(self)? {
                heap.push(Reverse::<MergeKey>((ts, rank, id)));
            }
            streams.push(stream);
        }
        while let Some(Reverse((ts, rank, id))) = heap.pop() {
            let (Some(stream), Some((chain, tenant))) = (streams.get_mut(rank), chains.get(rank))
            else {
                return Err(invalid("query merge lost its place (internal error)"));
            };
            debug_assert_eq!(stream.chain, *chain);
            if let Some(a) = &q.after
                && self.not_after(a, ts, tenant, id)?
            {
                if let Some(next) = stream.next(self)? {
                    heap.push(Reverse((next.0, rank, next.1)));
                }
                continue;
            }
            let entry = stream.entry(self, id, tenant, remaining)?;
            remaining -= 1;
            if !f(entry)? || remaining == 0 {
                break;
            }
            if let Some((ts, id)) = stream.next(self)? {
                heap.push(Reverse((ts, rank, id)));
            }
        }
        Ok(())
    }

    fn entry_by_id(&self, entry_id: &[u8; 16]) -> Result<Option<StoredEntry>, StoreError> {
        let (hi, lo) = id_halves(entry_id);
        let mut stmt = self.conn.prepare_cached(ENTRY_BY_ID_SQL)?;
        let mut rows = stmt.query(params![lo, hi])?;
        match rows.next()? {
            Some(row) => {
                let tenant = col_text(row, 0, "a chain's tenant id")?;
                let (mut e, at) = read_entry(row, &tenant, 2)?;
                e.line = self.lines.read(at)?;
                Ok(Some(e))
            }
            None => Ok(None),
        }
    }

    fn entry_hashes(
        &self,
        tenant: TenantRef<'_>,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<Hash>, StoreError> {
        let from = first_seq.max(1);
        if from > last_seq {
            return Ok(Vec::new());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(
            usize::try_from(last_seq - from + 1)
                .unwrap_or(0)
                .min(1 << 20),
        );
        let mut from = from;
        if let Some(anchor) = self.anchor(tenant)?
            && from <= anchor.size
        {
            // Archived entries: only the last incomplete block's hashes are kept.
            match anchor.kept_hashes(from, last_seq) {
                Some(kept) => out.extend(kept),
                None => return Ok(Vec::new()),
            }
            from = anchor.size + 1;
            if from > last_seq {
                return Ok(out);
            }
        }
        self.for_each_run_range(chain, from, last_seq, &mut |first_seq, lo, hi| {
            let mut stmt = self.conn.prepare_cached(HASH_RANGE_SQL)?;
            let mut rows = stmt.query(params![lo, hi])?;
            let mut seq = first_seq;
            while let Some(row) = rows.next()? {
                check_run_entry(row, chain, seq, tenant)?;
                out.push(col_hash(row, 2, || {
                    format!("the entry hash of entry {seq} of tenant {tenant:?}")
                })?);
                seq += 1;
            }
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
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let (Ok(first), last) = (
            i64::try_from(first),
            i64::try_from(last).unwrap_or(i64::MAX),
        ) else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT idx, hash FROM merkle_nodes \
             WHERE chain_id = ?1 AND level = ?2 AND idx BETWEEN ?3 AND ?4 ORDER BY idx",
        )?;
        let mut rows = stmt.query(params![chain, level, first, last])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let idx = col_u64(row, 0, "a Merkle node index")?;
            let hash = col_hash(row, 1, || {
                format!("Merkle node {level}/{idx} of tenant {tenant:?}")
            })?;
            out.push((idx, hash));
        }
        Ok(out)
    }

    fn checkpoints(&self, tenant: TenantRef<'_>) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = ?1 \
             ORDER BY size, ts_ms, checkpoint_id",
        )?;
        let mut rows = stmt.query([chain])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_checkpoint(row, tenant)?);
        }
        Ok(out)
    }

    fn checkpoints_since(
        &self,
        tenant: TenantRef<'_>,
        min_size: u64,
        after_ms: i64,
    ) -> Result<Vec<StoredCheckpoint>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let min = i64::try_from(min_size).unwrap_or(i64::MAX);
        // Two index searches (by size, by time), merged: a follower asks after every commit.
        let mut stmt = self.conn.prepare_cached(
            "SELECT size, ts_ms, note, checkpoint_id FROM checkpoints \
             WHERE chain_id = ?1 AND size >= ?2 \
             UNION SELECT size, ts_ms, note, checkpoint_id FROM checkpoints \
             WHERE chain_id = ?1 AND ts_ms > ?3 \
             ORDER BY 1, 2, 4",
        )?;
        let mut rows = stmt.query(params![chain, min, after_ms])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            out.push(read_checkpoint(row, tenant)?);
        }
        Ok(out)
    }

    fn latest_checkpoint(
        &self,
        tenant: TenantRef<'_>,
    ) -> Result<Option<StoredCheckpoint>, StoreError> {
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(None);
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = ?1 \
             ORDER BY ts_ms DESC, size DESC, checkpoint_id DESC LIMIT 1",
        )?;
        let mut rows = stmt.query([chain])?;
        match rows.next()? {
            Some(row) => Ok(Some(read_checkpoint(row, tenant)?)),
            None => Ok(None),
        }
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?;
        let mut rows = stmt.query([key])?;
        match rows.next()? {
            Some(row) => Ok(Some(col_text(row, 0, || format!("meta value {key:?}"))?)),
            None => Ok(None),
        }
    }

    fn anchor(&self, tenant: TenantRef<'_>) -> Result<Option<StoredAnchor>, StoreError> {
        if !self.archive_tables {
            return Ok(None);
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(None);
        };
        let mut stmt = self
            .conn
            .prepare_cached("SELECT size, record, tail_hashes FROM anchors WHERE chain_id = ?1")?;
        let mut rows = stmt.query([chain])?;
        let Some(row) = rows.next()? else {
            return Ok(None);
        };
        let size = col_u64(row, 0, "an anchor's size")?;
        let record = col_blob(row, 1, "an anchor record")?.to_vec();
        let tail = col_blob(row, 2, "an anchor's tail hashes")?;
        if tail.len() % 32 != 0 || (tail.len() / 32) as u64 != size % 256 {
            return Err(corrupt(format!(
                "the anchor of tenant {tenant:?} at size {size} holds {} bytes of tail hashes",
                tail.len()
            )));
        }
        let tail_hashes = tail
            .chunks_exact(32)
            .map(|c| {
                let mut h = [0u8; 32];
                h.copy_from_slice(c);
                Hash(h)
            })
            .collect();
        Ok(Some(StoredAnchor {
            tenant_id: tenant.to_owned(),
            size,
            record,
            tail_hashes,
        }))
    }

    fn retention(&self) -> Result<&dyn RetentionStore, StoreError> {
        Ok(self)
    }

    fn retention_mut(&mut self) -> Result<&mut dyn RetentionStore, StoreError> {
        Ok(self)
    }

    fn erasure(&self) -> Result<&dyn ErasureStore, StoreError> {
        Ok(self)
    }

    fn erasure_mut(&mut self) -> Result<&mut dyn ErasureStore, StoreError> {
        Ok(self)
    }
}
