//! Write batches: one `BEGIN IMMEDIATE` transaction, appends, heads, checkpoints, nodes.

use super::*;

/// What a batch knows about one chain it has touched.
#[derive(Debug)]
pub(super) struct ChainState {
    pub(super) chain_id: i64,
    /// Entries stored, including this batch's appends (= seq of the last entry).
    pub(super) len: u64,
    /// The chain's last run (`None` while the chain is empty).
    pub(super) last_run: Option<Run>,
    /// Size of the head as recorded (committed, or set in this batch).
    pub(super) head_size: u64,
    /// Whether the chain has a recorded head (false for a chain this batch created and has not
    /// yet called `set_head` for).
    pub(super) has_head: bool,
    /// Whether this batch appended to or created the chain (its head must then be set to `len`
    /// before commit).
    pub(super) dirty: bool,
}

/// A [`WriteBatch`] over one SQLite `BEGIN IMMEDIATE` transaction.
///
/// [`WriteBatch::append`] checks a call (seq continuity, limits) before writing anything, and a
/// call that fails because an entry id is already stored is undone (its rows are deleted), so in
/// both cases the batch stays usable and is as it was before the call. A call that fails
/// half-way for any other reason (I/O error, disk full, …) is not undone: the batch is then
/// *poisoned*: every later method, including [`WriteBatch::commit`], fails with
/// [`StoreError::Invalid`], and the caller must drop the batch, which rolls all of it back. The
/// same happens when SQLite has rolled the transaction back by itself after an error. (Appends
/// run without a savepoint per call: its journal of every page the call changes cost ~10% of
/// append time.)
#[derive(Debug)]
pub(super) struct SqliteBatch<'a> {
    pub(super) tx: Transaction<'a>,
    /// The batch's entry lines (written past the committed end; durable before `tx` commits).
    pub(super) lines: SegmentWriter,
    /// The committed end of the lines when the batch began.
    pub(super) start: LinesEnd,
    /// How far the lines were durable on their own when the batch began (what lies between
    /// this and `start` is durable through its copy in `unsynced_lines`).
    pub(super) synced: LinesEnd,
    /// An `append` failed half-way; nothing more may be written or committed.
    pub(super) failed: bool,
    /// The store's committed-name cache.
    pub(super) names: &'a mut HashMap<String, i64>,
    /// Names looked up or added by this batch (moved into `names` on commit).
    pub(super) new_names: HashMap<String, i64>,
    pub(super) chains: HashMap<String, ChainState>,
}

/// Dictionary ids of one entry's strings.
#[derive(Debug, Clone, Copy)]
pub(super) struct NameIds {
    pub(super) agent: i64,
    pub(super) session: i64,
    pub(super) event_type: i64,
    pub(super) tool: Option<i64>,
}

/// One posting row of an `append` call, before its entries have row ids.
pub(super) struct NewPosting {
    pub(super) kind: i64,
    pub(super) name_id: i64,
    pub(super) bucket: i64,
    /// Index in the call of the posting's first (lowest) entry.
    pub(super) first: u32,
    pub(super) n: usize,
    pub(super) data: Vec<u8>,
}

/// `(kind, name id, bucket)` of a posting row.
pub(super) type PostingKey = (i64, i64, i64);

/// Groups one `append` call's entries into posting rows.
pub(super) fn build_postings(entries: &[NewEntry], ids: &[NameIds]) -> Vec<NewPosting> {
    // Group key -> index in `groups`. Consecutive entries often share a key (the same bucket,
    // session, event type), so each kind remembers its last key before asking the map.
    let mut index: HashMap<PostingKey, usize> = HashMap::new();
    let mut groups: Vec<(PostingKey, Vec<(i64, u32)>)> = Vec::new();
    let mut last: [Option<(PostingKey, usize)>; 5] = [None; 5];
    for (i, (e, n)) in (0u32..).zip(entries.iter().zip(ids)) {
        let bucket = e.ts_ms >> BUCKET_BITS;
        let keys = [
            Some((KIND_ALL, 0)),
            Some((KIND_AGENT, n.agent)),
            Some((KIND_SESSION, n.session)),
            Some((KIND_EVENT, n.event_type)),
            n.tool.map(|t| (KIND_TOOL, t)),
        ];
        for (slot, (kind, name)) in last.iter_mut().zip(keys).filter_map(|(s, k)| Some((s, k?))) {
            let key = (kind, name, bucket);
            let g = match *slot {
                Some((k, g)) if k == key => g,
                _ => {
                    let g = *index.entry(key).or_insert_with(|| {
                        groups.push((key, Vec::new()));
                        groups.len() - 1
                    });
                    *slot = Some((key, g));
                    g
                }
            };
            if let Some((_, pairs)) = groups.get_mut(g) {
                pairs.push((e.ts_ms, i));
            }
        }
    }
    let mut out = Vec::with_capacity(groups.len());
    for ((kind, name_id, bucket), mut pairs) in groups {
        // Usually sorted already (entries come in time order), which the sort detects.
        pairs.sort_unstable();
        let first = pairs.iter().map(|&(_, i)| i).min().unwrap_or(0);
        for p in &mut pairs {
            p.1 -= first;
        }
        let mut data = Vec::with_capacity(pairs.len() * 4);
        encode_posting(bucket, &pairs, &mut data);
        out.push(NewPosting {
            kind,
            name_id,
            bucket,
            first,
            n: pairs.len(),
            data,
        });
    }
    out
}

/// Why writing an `append` call's rows failed.
pub(super) enum CallError {
    /// An entry id is already stored (or repeated within the call). The rows the call wrote
    /// before it, from the given row id on (`None`: no rows), must be removed.
    Duplicate(StoreError, Option<i64>),
    /// Anything else: the call may be half-written.
    Other(StoreError),
}

impl From<rusqlite::Error> for CallError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Other(e.into())
    }
}

/// What one `append` call writes, checked and resolved.
pub(super) struct CallRows<'e> {
    pub(super) tenant: &'e str,
    pub(super) chain_id: i64,
    pub(super) first_seq: i64,
    pub(super) entries: &'e [NewEntry],
    /// Where each entry's line goes.
    pub(super) lines: &'e [LineRef],
    pub(super) ids: &'e [NameIds],
    pub(super) postings: &'e [NewPosting],
    /// The chain's last run before the call.
    pub(super) last_run: Option<Run>,
}

/// Writes one `append` call: entries (with consecutive row ids), sidecars, postings and the run.
/// Returns the chain's new last run.
pub(super) fn write_call(conn: &Connection, call: &CallRows<'_>) -> Result<Run, CallError> {
    let CallRows {
        tenant,
        chain_id,
        first_seq,
        entries,
        lines,
        ids,
        postings,
        last_run,
    } = *call;
    let mut insert = conn.prepare_cached(
        "INSERT INTO entries(chain_id, seq, ts_ms, id_hi, id_lo, entry_hash, agent, session, \
         event_type, tool, seg, off, len) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    )?;
    let mut insert_personal =
        conn.prepare_cached("INSERT INTO personal(id, sidecar) VALUES (?1, ?2)")?;
    let mut insert_subject = conn.prepare_cached(
        "INSERT OR IGNORE INTO subject_index(subject_key, chain_id, seq, entry_id) \
         VALUES (?1, ?2, ?3, ?4)",
    )?;
    let mut first_id: Option<i64> = None;
    for (((seq, e), n), at) in (first_seq..).zip(entries).zip(ids).zip(lines) {
        let (hi, lo) = id_halves(&e.entry_id);
        // The row id is left to SQLite: max + 1, an append at the right edge of the table.
        let res = insert.execute(params![
            chain_id,
            seq,
            e.ts_ms,
            hi,
            lo,
            e.entry_hash.0,
            n.agent,
            n.session,
            n.event_type,
            n.tool,
            at.seg,
            i64::try_from(at.off).unwrap_or(i64::MAX),
            at.len,
        ]);
        if let Err(err) = res {
            if err.sqlite_extended_error_code() == Some(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE) {
                return Err(CallError::Duplicate(
                    invalid(format!(
                        "entry id {} (seq {} of tenant {tenant:?}) is already stored; entry ids \
                         must be unique",
                        hex16(&e.entry_id),
                        e.seq
                    )),
                    first_id,
                ));
            }
            return Err(err.into());
        }
        let id = conn.last_insert_rowid();
        // Runs and postings rely on one call's entries having consecutive row ids.
        let first = *first_id.get_or_insert(id);
        if id != first + (seq - first_seq) {
            return Err(CallError::Other(invalid(format!(
                "entry row ids are not consecutive ({id} after {}); the entries table is full",
                first + (seq - first_seq) - 1
            ))));
        }
        if let Some(p) = &e.personal {
            insert_personal.execute(params![id, p.sidecar])?;
            for key in &p.subject_keys {
                insert_subject.execute(params![&key[..], chain_id, seq, &e.entry_id[..]])?;
            }
        }
    }
    let first_id = first_id.unwrap_or_default();
    let mut insert_posting = conn.prepare_cached(
        "INSERT INTO postings(chain_id, kind, name_id, bucket, first_id, n, data) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for p in postings {
        insert_posting.execute(params![
            chain_id,
            p.kind,
            p.name_id,
            p.bucket,
            first_id + i64::from(p.first),
            i64::try_from(p.n).unwrap_or(i64::MAX),
            p.data,
        ])?;
    }
    let count = i64::try_from(entries.len()).unwrap_or(i64::MAX);
    match last_run {
        // The call continues the chain's last run: extend it.
        Some(r) if r.last_seq() + 1 == first_seq && r.last_id() + 1 == first_id => {
            let run = Run {
                count: r.count + count,
                ..r
            };
            conn.prepare_cached(
                "UPDATE runs SET count = ?3 WHERE chain_id = ?1 AND first_seq = ?2",
            )?
            .execute(params![chain_id, run.first_seq, run.count])?;
            Ok(run)
        }
        _ => {
            let run = Run {
                first_seq,
                first_id,
                count,
            };
            conn.prepare_cached(
                "INSERT INTO runs(chain_id, first_seq, first_id, count) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![chain_id, run.first_seq, run.first_id, run.count])?;
            Ok(run)
        }
    }
}

/// Removes the entries (and their sidecars) from row id `first_id` on: the rows a failed
/// `append` call wrote before it failed (they are the last rows of the table).
pub(super) fn undo_entries(conn: &Connection, first_id: i64) -> Result<(), rusqlite::Error> {
    conn.prepare_cached(
        "DELETE FROM subject_index WHERE (chain_id, seq) IN \
         (SELECT chain_id, seq FROM entries WHERE id >= ?1)",
    )?
    .execute([first_id])?;
    conn.prepare_cached("DELETE FROM personal WHERE id >= ?1")?
        .execute([first_id])?;
    conn.prepare_cached("DELETE FROM entries WHERE id >= ?1")?
        .execute([first_id])?;
    Ok(())
}

impl SqliteBatch<'_> {
    /// Fails if an earlier `append` of this batch failed half-way (see [`SqliteBatch`]) or the
    /// transaction is gone.
    pub(super) fn usable(&self) -> Result<(), StoreError> {
        // SQLite rolls a transaction back by itself after some errors (disk full, I/O); later
        // statements would then each commit on their own.
        if self.failed || self.tx.is_autocommit() {
            return Err(invalid(
                "an earlier write of this batch failed half-way; drop the batch (nothing of it \
                 is committed) and start a new one",
            ));
        }
        Ok(())
    }

    /// The state of `tenant`'s chain; with `create`, a missing chain is created (without a head).
    pub(super) fn chain(
        &mut self,
        tenant: &str,
        create: bool,
    ) -> Result<Option<&mut ChainState>, StoreError> {
        if !self.chains.contains_key(tenant) {
            let row: Option<(i64, i64)> = self
                .tx
                .prepare_cached("SELECT chain_id, size FROM chains WHERE tenant_id = ?1")?
                .query_row([tenant], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()?;
            let state = if let Some((chain_id, size)) = row {
                let head_size = u64::try_from(size).map_err(|_| {
                    corrupt(format!("the chain of tenant {tenant:?} has size {size}"))
                })?;
                // Count what is stored rather than trusting the head: the last run, checked
                // against the entry it ends with.
                let last_run = self
                    .tx
                    .prepare_cached(LAST_RUN_SQL)?
                    .query_row([chain_id], |r| Ok(read_run(r)))
                    .optional()?
                    .transpose()?;
                if let Some(run) = last_run {
                    let stored: Option<(i64, i64)> = self
                        .tx
                        .prepare_cached("SELECT chain_id, seq FROM entries WHERE id = ?1")?
                        .query_row([run.last_id()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()?;
                    if stored != Some((chain_id, run.last_seq())) {
                        return Err(corrupt(format!(
                            "the last entry of tenant {tenant:?} ({}) is not stored where the \
                             chain's runs say",
                            run.last_seq()
                        )));
                    }
                }
                // A chain whose every entry was archived has no runs: its length is its anchor's.
                let archived: u64 = if last_run.is_none() {
                    self.tx
                        .prepare_cached("SELECT size FROM anchors WHERE chain_id = ?1")?
                        .query_row([chain_id], |r| r.get::<_, i64>(0))
                        .optional()?
                        .map_or(0, i64::unsigned_abs)
                } else {
                    0
                };
                ChainState {
                    chain_id,
                    len: last_run.map_or(archived, |r| r.last_seq().unsigned_abs()),
                    last_run,
                    head_size,
                    has_head: true,
                    dirty: false,
                }
            } else if create {
                let chain_id: i64 = self
                    .tx
                    .prepare_cached(
                        "INSERT INTO chains(tenant_id, size, head_hash, last_entry_id, \
                         merkle_state, last_checkpoint_size, last_checkpoint_ms) \
                         VALUES (?1, 0, zeroblob(32), zeroblob(16), x'', 0, 0) \
                         RETURNING chain_id",
                    )?
                    .query_row([tenant], |r| r.get(0))?;
                ChainState {
                    chain_id,
                    len: 0,
                    last_run: None,
                    head_size: 0,
                    has_head: false,
                    dirty: true,
                }
            } else {
                return Ok(None);
            };
            self.chains.insert(tenant.to_owned(), state);
        }
        Ok(self.chains.get_mut(tenant))
    }

    /// The dictionary id of `name`, adding it if needed.
    pub(super) fn name_id(&mut self, name: &str) -> Result<i64, StoreError> {
        if let Some(&id) = self.names.get(name).or_else(|| self.new_names.get(name)) {
            return Ok(id);
        }
        let found: Option<i64> = self
            .tx
            .prepare_cached("SELECT name_id FROM names WHERE name = ?1")?
            .query_row([name], |r| r.get(0))
            .optional()?;
        let id = match found {
            Some(id) => id,
            None => self
                .tx
                .prepare_cached("INSERT INTO names(name) VALUES (?1) RETURNING name_id")?
                .query_row([name], |r| r.get(0))?,
        };
        self.new_names.insert(name.to_owned(), id);
        Ok(id)
    }
}

impl WriteBatch for SqliteBatch<'_> {
    fn chain_head(&mut self, tenant: TenantRef<'_>) -> Result<Option<ChainHead>, StoreError> {
        self.usable()?;
        match self.chain(tenant, false)? {
            Some(state) if state.has_head => {}
            _ => return Ok(None),
        }
        let mut stmt = self.tx.prepare_cached(&format!(
            "SELECT {HEAD_COLUMNS} FROM chains WHERE tenant_id = ?1"
        ))?;
        let mut rows = stmt.query([tenant])?;
        match rows.next()? {
            Some(row) => Ok(Some(read_head(row)?)),
            None => Ok(None),
        }
    }

    fn append(&mut self, tenant: TenantRef<'_>, entries: &[NewEntry]) -> Result<(), StoreError> {
        self.usable()?;
        if entries.is_empty() {
            return Ok(());
        }
        // Check the whole call before writing anything.
        let len = self.chain(tenant, false)?.map_or(0, |s| s.len);
        for (expected, e) in (len + 1..).zip(entries) {
            if e.seq != expected {
                return Err(StoreError::SeqConflict {
                    tenant: tenant.to_owned(),
                    expected,
                    got: e.seq,
                });
            }
        }
        let first_seq = to_i64(len + 1, "seq")?;
        let fits = i64::try_from(entries.len())
            .ok()
            .filter(|&n| n <= i64::from(u32::MAX))
            .and_then(|n| first_seq.checked_add(n));
        if fits.is_none() {
            return Err(invalid(format!(
                "an append of {} entries from seq {first_seq} is beyond this store's limits",
                entries.len()
            )));
        }
        // Consecutive entries often repeat a string (the same session or event type): compare
        // with the previous entry's before hashing.
        let mut ids: Vec<NameIds> = Vec::with_capacity(entries.len());
        let mut prev: Option<(&NewEntry, NameIds)> = None;
        for e in entries {
            let agent = match prev {
                Some((p, n)) if p.agent_id == e.agent_id => n.agent,
                _ => self.name_id(&e.agent_id)?,
            };
            let session = match prev {
                Some((p, n)) if p.session_id == e.session_id => n.session,
                _ => self.name_id(&e.session_id)?,
            };
            let event_type = match prev {
                Some((p, n)) if p.event_type == e.event_type => n.event_type,
                _ => self.name_id(&e.event_type)?,
            };
            let tool = match (e.tool.as_deref(), prev) {
                (None, _) => None,
                (Some(t), Some((p, n))) if p.tool.as_deref() == Some(t) => n.tool,
                (Some(t), _) => Some(self.name_id(t)?),
            };
            let n = NameIds {
                agent,
                session,
                event_type,
                tool,
            };
            ids.push(n);
            prev = Some((e, n));
        }
        let postings = build_postings(entries, &ids);
        let (chain_id, last_run) = match self.chain(tenant, true)? {
            Some(state) => (state.chain_id, state.last_run),
            None => return Err(invalid("chain creation failed (internal error)")),
        };

        // No savepoint (its journal of every page the call changes cost ~10% of an append): a
        // duplicate entry id is undone by deleting the call's rows, and any other failure
        // half-way poisons the batch.
        let lines = self.lines.plan(entries.iter().map(|e| e.line.len()))?;
        let call = CallRows {
            tenant,
            chain_id,
            first_seq,
            entries,
            lines: &lines,
            ids: &ids,
            postings: &postings,
            last_run,
        };
        let run = match write_call(&self.tx, &call) {
            Ok(run) => run,
            Err(CallError::Duplicate(err, written)) => {
                if written.is_some_and(|first| undo_entries(&self.tx, first).is_err()) {
                    self.failed = true;
                }
                return Err(err);
            }
            Err(CallError::Other(err)) => {
                self.failed = true;
                return Err(err);
            }
        };
        // The rows are in; now the lines they point at (made durable at commit).
        if let Err(err) = self.lines.write(entries.iter().map(|e| e.line.as_slice())) {
            self.failed = true;
            return Err(err);
        }
        if let Some(state) = self.chains.get_mut(tenant) {
            state.len += entries.len() as u64;
            state.last_run = Some(run);
            state.dirty = true;
        }
        Ok(())
    }

    fn set_head(&mut self, head: &ChainHead) -> Result<(), StoreError> {
        self.usable()?;
        let tenant = head.tenant_id.as_str();
        let len = self.chain(tenant, false)?.map_or(0, |s| s.len);
        if head.size != len {
            return Err(StoreError::SeqConflict {
                tenant: tenant.to_owned(),
                expected: len,
                got: head.size,
            });
        }
        let size = to_i64(head.size, "chain size")?;
        let cp_size = to_i64(head.last_checkpoint_size, "checkpoint size")?;
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        let chain_id = state.chain_id;
        if let Some(run) = state.last_run {
            // The head must describe the last stored entry.
            let (hash, hi, lo): (Vec<u8>, i64, i64) = self
                .tx
                .prepare_cached("SELECT entry_hash, id_hi, id_lo FROM entries WHERE id = ?1")?
                .query_row([run.last_id()], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            if hash != head.head_hash.0 || (hi, lo) != id_halves(&head.last_entry_id) {
                return Err(invalid(format!(
                    "the head of tenant {tenant:?} does not match its entry {}: head_hash and \
                     last_entry_id must be that entry's hash and id",
                    head.size
                )));
            }
        }
        self.tx
            .prepare_cached(
                "UPDATE chains SET size = ?2, head_hash = ?3, last_entry_id = ?4, \
                 merkle_state = ?5, last_checkpoint_size = ?6, last_checkpoint_ms = ?7 \
                 WHERE chain_id = ?1",
            )?
            .execute(params![
                chain_id,
                size,
                head.head_hash.0,
                head.last_entry_id,
                head.merkle_state,
                cp_size,
                head.last_checkpoint_ms,
            ])?;
        if let Some(state) = self.chains.get_mut(tenant) {
            state.head_size = head.size;
            state.has_head = true;
            state.dirty = true;
        }
        Ok(())
    }

    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.usable()?;
        let size = to_i64(cp.size, "checkpoint size")?;
        let Some(state) = self.chain(&cp.tenant_id, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        if cp.size > state.len {
            return Err(invalid(format!(
                "checkpoint of tenant {:?} at size {} is beyond the {} stored entries",
                cp.tenant_id, cp.size, state.len
            )));
        }
        let chain_id = state.chain_id;
        self.tx
            .prepare_cached(
                "INSERT INTO checkpoints(chain_id, size, ts_ms, note) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![chain_id, size, cp.ts_ms, cp.note])?;
        Ok(())
    }

    fn add_signatures(
        &mut self,
        tenant: TenantRef<'_>,
        size: u64,
        note: &str,
    ) -> Result<usize, StoreError> {
        self.usable()?;
        let size_i = to_i64(size, "checkpoint size")?;
        let Some(state) = self.chain(tenant, false)? else {
            return Err(no_checkpoint(tenant, size));
        };
        let chain_id = state.chain_id;
        let rows: Vec<(i64, String)> = self
            .tx
            .prepare_cached(
                "SELECT checkpoint_id, note FROM checkpoints WHERE chain_id = ?1 AND size = ?2 \
                 ORDER BY checkpoint_id",
            )?
            .query_map(params![chain_id, size_i], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (id, stored) in rows {
            if let Some((merged, added)) = crate::merge_note_signatures(&stored, note) {
                if added > 0 {
                    self.tx
                        .prepare_cached(
                            "UPDATE checkpoints SET note = ?1 WHERE checkpoint_id = ?2",
                        )?
                        .execute(params![merged, id])?;
                }
                return Ok(added);
            }
        }
        Err(no_checkpoint(tenant, size))
    }

    fn put_nodes(
        &mut self,
        tenant: TenantRef<'_>,
        level: u8,
        nodes: &[(u64, Hash)],
    ) -> Result<(), StoreError> {
        self.usable()?;
        if nodes.is_empty() {
            return Ok(());
        }
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        let chain_id = state.chain_id;
        let mut insert = self.tx.prepare_cached(
            "INSERT INTO merkle_nodes(chain_id, level, idx, hash) VALUES (?1, ?2, ?3, ?4) \
             ON CONFLICT DO NOTHING",
        )?;
        let mut existing = self.tx.prepare_cached(
            "SELECT hash FROM merkle_nodes WHERE chain_id = ?1 AND level = ?2 AND idx = ?3",
        )?;
        for (idx, hash) in nodes {
            let i = to_i64(*idx, "Merkle node index")?;
            if insert.execute(params![chain_id, level, i, hash.0])? == 0 {
                // Already stored: it must be the same subtree hash.
                let stored: Vec<u8> =
                    existing.query_row(params![chain_id, level, i], |r| r.get(0))?;
                if stored != hash.0 {
                    return Err(invalid(format!(
                        "Merkle node {level}/{idx} of tenant {tenant:?} is already stored with \
                         a different hash"
                    )));
                }
            }
        }
        Ok(())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.usable()?;
        self.tx
            .prepare_cached(
                "INSERT INTO meta(key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([key, value])?;
        Ok(())
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.usable()?;
        let this = *self;
        for (tenant, state) in &this.chains {
            if !state.dirty {
                continue;
            }
            if !state.has_head {
                return Err(invalid(format!(
                    "the batch wrote to tenant {tenant:?} but never set its head; call set_head \
                     before commit"
                )));
            }
            if state.head_size != state.len {
                return Err(StoreError::SeqConflict {
                    tenant: tenant.clone(),
                    expected: state.len,
                    got: state.head_size,
                });
            }
        }
        let SqliteBatch {
            tx,
            mut lines,
            start,
            mut synced,
            names,
            new_names,
            ..
        } = this;
        // The lines are durable before the rows that point at them are committed: a small
        // batch's through their copy in the transaction (one fsync, the transaction's, instead
        // of two), a large one's by an fsync of the segment files first, which makes every
        // earlier copy needless (segments.rs, "Crash safety").
        if lines.is_dirty() {
            let tail = lines.unsynced_tail().filter(|&(seg, off, bytes)| {
                seg == synced.seg
                    && off >= synced.len
                    && bytes.len() <= UNSYNCED_BATCH_BYTES
                    && (off - synced.len) + bytes.len() as u64 <= UNSYNCED_MAX_BYTES
            });
            let end = match tail {
                Some((seg, off, bytes)) => {
                    tx.prepare_cached(
                        "INSERT INTO unsynced_lines(seg, off, data) VALUES (?1, ?2, ?3)",
                    )?
                    .execute(params![
                        seg,
                        to_i64(off, "a line offset")?,
                        bytes
                    ])?;
                    lines.write_unsynced()?
                }
                None => {
                    let end = lines.sync()?;
                    if synced != start {
                        tx.prepare_cached("DELETE FROM unsynced_lines")?
                            .execute([])?;
                    }
                    synced = end;
                    end
                }
            };
            tx.prepare_cached(
                "INSERT INTO meta(key, value) VALUES ('lines_end', ?1), ('lines_synced', ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
            )?
            .execute([end.to_meta(), synced.to_meta()])?;
        }
        tx.commit()?;
        lines.committed();
        if names.len() + new_names.len() > NAME_CACHE_LIMIT {
            names.clear();
        }
        names.extend(new_names);
        Ok(())
    }

    fn retention(&mut self) -> Result<&mut dyn RetentionBatch, StoreError> {
        Ok(self)
    }

    fn erasure(&mut self) -> Result<&mut dyn ErasureBatch, StoreError> {
        Ok(self)
    }
}

pub(super) fn hex16(b: &[u8; 16]) -> String {
    use std::fmt::Write as _;
    b.iter().fold(String::with_capacity(32), |mut s, x| {
        let _ = write!(s, "{x:02x}");
        s
    })
}

/// No stored checkpoint of `tenant` at `size` has the text of the note to add signatures to.
fn no_checkpoint(tenant: &str, size: u64) -> StoreError {
    invalid(format!(
        "no stored checkpoint of tenant {tenant:?} at size {size} has this note's text; signatures are added only to a checkpoint the log signed"
    ))
}
