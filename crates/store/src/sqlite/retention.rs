//! Retention: archiving a chain's prefix, archive segment records, reclaiming space.

use super::*;

impl RetentionStore for SqliteStore {
    fn archive_segments(&self, tenant: TenantRef<'_>) -> Result<Vec<ArchiveSegment>, StoreError> {
        if !self.archive_tables {
            return Ok(Vec::new());
        }
        let Some(chain) = self.chain_id(tenant)? else {
            return Ok(Vec::new());
        };
        let mut stmt = self.conn.prepare_cached(
            "SELECT first_seq, last_seq, object, sha256, bytes, first_ts, last_ts, sealed_ms, \
             state, state_ms FROM archive_segments WHERE chain_id = ?1 ORDER BY first_seq",
        )?;
        let mut rows = stmt.query([chain])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let state = match col_i64(row, 8, "an archive segment's state")? {
                0 => SegmentState::Live,
                1 => SegmentState::Deleting,
                2 => SegmentState::Deleted,
                n => return Err(corrupt(format!("archive segment state {n} is unknown"))),
            };
            out.push(ArchiveSegment {
                tenant_id: tenant.to_owned(),
                first_seq: col_u64(row, 0, "an archive segment's first seq")?,
                last_seq: col_u64(row, 1, "an archive segment's last seq")?,
                object: col_text(row, 2, "an archive segment's object")?,
                sha256: col_hash(row, 3, "an archive segment's digest")?,
                bytes: col_u64(row, 4, "an archive segment's size")?,
                first_ts_ms: col_i64(row, 5, "an archive segment's first timestamp")?,
                last_ts_ms: col_i64(row, 6, "an archive segment's last timestamp")?,
                sealed_ms: col_i64(row, 7, "an archive segment's seal time")?,
                state,
                state_ms: col_i64(row, 9, "an archive segment's state time")?,
            });
        }
        Ok(out)
    }

    fn reclaim_space(&mut self) -> Result<u64, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        // Under the write lock: no batch is writing lines meanwhile.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let end: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'lines_end'", [], |r| {
                r.get(0)
            })
            .optional()?;
        let end = match end {
            None => return Ok(0),
            Some(v) => LinesEnd::parse(&v).ok_or_else(|| {
                corrupt(format!(
                    "the committed end of the entry lines ({v:?}) is unreadable"
                ))
            })?,
        };
        // Segments are filled in order, and every chain's entries after its first stored one
        // are in the same or later segments: nothing below the smallest segment of any chain's
        // first stored entry is referenced.
        let lowest: Option<i64> = tx.query_row(
            "SELECT min(e.seg) FROM (SELECT chain_id, min(first_seq) AS s FROM runs GROUP BY chain_id) f \
             JOIN runs r ON r.chain_id = f.chain_id AND r.first_seq = f.s \
             JOIN entries e ON e.id = r.first_id",
            [],
            |r| r.get(0),
        )?;
        let keep_from = lowest.map_or(i64::from(end.seg), |l| l.min(i64::from(end.seg)));
        drop(tx);
        let dir = lines_dir(&self.path);
        let mut freed = 0u64;
        for item in std::fs::read_dir(&dir)? {
            let item = item?;
            let name = item.file_name();
            let Some(n) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".lines"))
                .and_then(|n| n.parse::<i64>().ok())
            else {
                continue;
            };
            if n < keep_from {
                freed += item.metadata()?.len();
                std::fs::remove_file(item.path())?;
                self.lines.forget(u32::try_from(n).unwrap_or(0));
            }
        }
        if freed > 0 {
            std::fs::File::open(&dir)?.sync_all()?;
        }
        Ok(freed)
    }
}

impl RetentionBatch for SqliteBatch<'_> {
    fn archive_prefix(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.usable()?;
        let tenant = anchor.tenant_id.as_str();
        let Some(state) = self.chain(tenant, false)? else {
            return Err(invalid(format!(
                "no chain for tenant {tenant:?} to archive"
            )));
        };
        let (chain, len) = (state.chain_id, state.len);
        let current: u64 = self
            .tx
            .prepare_cached("SELECT size FROM anchors WHERE chain_id = ?1")?
            .query_row([chain], |r| r.get::<_, i64>(0))
            .optional()?
            .map_or(0, i64::unsigned_abs);
        if anchor.size <= current || anchor.size > len {
            return Err(invalid(format!(
                "tenant {tenant:?}: cannot archive up to entry {} (entries {}..={len} are stored)",
                anchor.size,
                current + 1
            )));
        }
        crate::check_anchor_tail(anchor)?;
        let size = to_i64(anchor.size, "an anchor size")?;
        // Runs wholly before the anchor go; the run holding it is cut.
        let runs: Vec<Run> = {
            let mut stmt = self.tx.prepare_cached(
                "SELECT first_seq, first_id, count FROM runs \
                 WHERE chain_id = ?1 AND first_seq <= ?2 ORDER BY first_seq",
            )?;
            let mut rows = stmt.query(params![chain, size])?;
            let mut v = Vec::new();
            while let Some(row) = rows.next()? {
                v.push(read_run(row)?);
            }
            v
        };
        let mut boundary_id: Option<i64> = None;
        for run in runs {
            let cut = run.last_seq().min(size);
            let last_id = run.first_id + (cut - run.first_seq);
            for sql in [
                "DELETE FROM personal WHERE id BETWEEN ?1 AND ?2",
                "DELETE FROM entries WHERE id BETWEEN ?1 AND ?2",
            ] {
                self.tx
                    .prepare_cached(sql)?
                    .execute(params![run.first_id, last_id])?;
            }
            self.tx
                .prepare_cached("DELETE FROM runs WHERE chain_id = ?1 AND first_seq = ?2")?
                .execute(params![chain, run.first_seq])?;
            if cut < run.last_seq() {
                let k = cut - run.first_seq + 1;
                self.tx
                    .prepare_cached(
                        "INSERT INTO runs(chain_id, first_seq, first_id, count) \
                         VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![chain, size + 1, run.first_id + k, run.count - k])?;
            }
            boundary_id = Some(last_id + 1);
        }
        // Posting rows whose every entry is gone are deleted; a row that also lists kept
        // entries stays (queries skip ids below the chain's first stored one).
        if let Some(boundary) = boundary_id {
            let mut doomed = Vec::new();
            {
                let mut stmt = self.tx.prepare_cached(
                    "SELECT kind, name_id, bucket, first_id, n, data FROM postings \
                     WHERE chain_id = ?1 AND first_id < ?2",
                )?;
                let mut rows = stmt.query(params![chain, boundary])?;
                let mut pairs = Vec::new();
                while let Some(row) = rows.next()? {
                    let bucket = col_i64(row, 2, "a posting's bucket")?;
                    let first_id = col_i64(row, 3, "a posting's first id")?;
                    let n = col_u64(row, 4, "a posting's length")?;
                    pairs.clear();
                    decode_posting(
                        bucket,
                        first_id,
                        n,
                        col_blob(row, 5, "a posting's data")?,
                        &mut pairs,
                    )
                    .ok_or_else(|| corrupt("a posting list cannot be decoded"))?;
                    if pairs.iter().all(|&(_, id)| id < boundary) {
                        doomed.push((
                            col_i64(row, 0, "a posting's kind")?,
                            col_i64(row, 1, "a posting's name")?,
                            bucket,
                            first_id,
                        ));
                    }
                }
            }
            let mut del = self.tx.prepare_cached(
                "DELETE FROM postings WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                 AND bucket = ?4 AND first_id = ?5",
            )?;
            for (kind, name, bucket, first_id) in doomed {
                del.execute(params![chain, kind, name, bucket, first_id])?;
            }
        }
        self.tx
            .prepare_cached("DELETE FROM checkpoints WHERE chain_id = ?1 AND size < ?2")?
            .execute(params![chain, size])?;
        let tail = anchor.tail_bytes();
        self.tx
            .prepare_cached(
                "INSERT INTO anchors(chain_id, size, record, tail_hashes) VALUES (?1, ?2, ?3, ?4) \
                 ON CONFLICT(chain_id) DO UPDATE SET size = excluded.size, \
                 record = excluded.record, tail_hashes = excluded.tail_hashes",
            )?
            .execute(params![chain, size, anchor.record, tail])?;
        // The chain's last run may have been cut or removed: appends in this batch extend the
        // run as it now is.
        let last_run = self
            .tx
            .prepare_cached(LAST_RUN_SQL)?
            .query_row([chain], |r| Ok(read_run(r)))
            .optional()?
            .transpose()?;
        if let Some(st) = self.chains.get_mut(tenant) {
            st.last_run = last_run;
        }
        Ok(())
    }

    fn start_at_anchor(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.usable()?;
        let tenant = anchor.tenant_id.as_str();
        crate::check_new_anchor(anchor)?;
        if self.chain(tenant, false)?.is_some() {
            return Err(crate::anchor_on_existing_chain(tenant));
        }
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        let chain = state.chain_id;
        // As if entries 1..=size had been appended and archived: the next append is size + 1.
        state.len = anchor.size;
        let size = to_i64(anchor.size, "an anchor size")?;
        let tail = anchor.tail_bytes();
        self.tx
            .prepare_cached(
                "INSERT INTO anchors(chain_id, size, record, tail_hashes) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![chain, size, anchor.record, tail])?;
        Ok(())
    }

    fn put_archive_segment(&mut self, seg: &ArchiveSegment) -> Result<(), StoreError> {
        self.usable()?;
        let Some(state) = self.chain(&seg.tenant_id, false)? else {
            return Err(invalid(format!(
                "no chain for tenant {:?} to record an archive segment of",
                seg.tenant_id
            )));
        };
        let chain = state.chain_id;
        let st = match seg.state {
            SegmentState::Live => 0,
            SegmentState::Deleting => 1,
            SegmentState::Deleted => 2,
        };
        self.tx
            .prepare_cached(
                "INSERT OR REPLACE INTO archive_segments(chain_id, first_seq, last_seq, object, \
                 sha256, bytes, first_ts, last_ts, sealed_ms, state, state_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )?
            .execute(params![
                chain,
                to_i64(seg.first_seq, "a segment's first seq")?,
                to_i64(seg.last_seq, "a segment's last seq")?,
                seg.object,
                seg.sha256.as_bytes().as_slice(),
                to_i64(seg.bytes, "a segment's size")?,
                seg.first_ts_ms,
                seg.last_ts_ms,
                seg.sealed_ms,
                st,
                seg.state_ms
            ])?;
        Ok(())
    }
}
