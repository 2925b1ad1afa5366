//! Write batches: one transaction holding the writer lock; appends, heads, checkpoints, nodes,
//! retention.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use blackbox_core::Hash;
use blackbox_store::{
    ArchiveSegment, ChainHead, Erasure, ErasureBatch, NewEntry, RetentionBatch, SegmentState,
    StoreError, StoredAnchor, StoredCheckpoint, SubjectEntry, TenantRef, WriteBatch,
};
use postgres::error::SqlState;

use crate::seal::{Sealer, WriteKey, seal_with};
use crate::{Conn, HEAD_COLUMNS, WRITER_LOCK, invalid, pg, read_head, to_i64, to_u64};

/// What a batch knows about one chain it has touched.
#[derive(Debug)]
struct ChainState {
    chain_id: i64,
    /// Entries stored, including this batch's appends (= seq of the last entry).
    len: u64,
    /// Size of the head as recorded (committed, or set in this batch).
    head_size: u64,
    /// Whether the chain has a recorded head (false for a chain this batch created and has not
    /// yet called `set_head` for).
    has_head: bool,
    /// Whether this batch appended to or created the chain (its head must then be set).
    dirty: bool,
}

/// A [`WriteBatch`] over one PostgreSQL transaction that holds the writer lock
/// ([`WRITER_LOCK`]). An `append` that fails (a duplicate entry id, say) is rolled back to
/// where the call began, so the batch stays as it was; any other failed write leaves the
/// transaction aborted, and the batch refuses everything after it (drop it: that rolls back).
pub(crate) struct PgBatch {
    conn: Conn,
    /// The transaction ended (committed or rolled back).
    ended: bool,
    failed: bool,
    chains: HashMap<String, ChainState>,
    /// The store's sealing state.
    seal: Arc<Mutex<Sealer>>,
    /// Each chain's data key for new sidecars, as read in this batch.
    write_keys: HashMap<i64, WriteKey>,
    /// Chains an erasure touched: sealed again under a new data key at commit, and the epoch
    /// moved forward (see [`crate::seal`]).
    rekey: BTreeSet<i64>,
    /// The posting lists of this batch's appends (written at commit; see [`Postings`]).
    postings: Postings,
}

impl std::fmt::Debug for PgBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgBatch")
            .field("failed", &self.failed)
            .field("chains", &self.chains)
            .finish_non_exhaustive()
    }
}

impl Drop for PgBatch {
    fn drop(&mut self) {
        if !self.ended {
            // Not committed: nothing of it stays. (A connection that cannot even roll back is
            // broken, and the pool drops it.)
            let _ = self.conn.batch_execute("ROLLBACK");
        }
    }
}

impl PgBatch {
    /// Opens the transaction and waits (at most `lock_timeout`) for the writer lock.
    pub(crate) fn begin(
        mut conn: Conn,
        lock_timeout: Duration,
        seal: Arc<Mutex<Sealer>>,
    ) -> Result<Self, StoreError> {
        let ms = lock_timeout.as_millis().clamp(1, i32::MAX as u128);
        let started = conn
            .batch_execute(&format!("BEGIN; SET LOCAL lock_timeout = '{ms}ms'"))
            .and_then(|()| conn.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITER_LOCK]));
        if let Err(e) = started {
            let _ = conn.batch_execute("ROLLBACK");
            return Err(pg(e));
        }
        Ok(Self {
            conn,
            ended: false,
            failed: false,
            chains: HashMap::new(),
            seal,
            write_keys: HashMap::new(),
            rekey: BTreeSet::new(),
            postings: Postings::default(),
        })
    }

    /// Seals every sidecar of `chains` again under a new data key (no erasure: the epoch
    /// stays) and commits: what a schema-3 store kept in clear is sealed this way.
    pub(crate) fn rekey_now(&mut self, chains: &[i64]) -> Result<(), StoreError> {
        self.usable()?;
        let pending = {
            let mut sealer = crate::seal::lock(&self.seal);
            sealer.rekey(&mut *self.conn, chains, false)
        };
        let pending = pending.inspect_err(|_| self.failed = true)?;
        self.ended = true;
        self.conn.batch_execute("COMMIT").map_err(pg)?;
        crate::seal::lock(&self.seal).committed(pending);
        Ok(())
    }

    fn usable(&self) -> Result<(), StoreError> {
        if self.failed || self.ended {
            return Err(invalid(
                "an earlier write of this batch failed; drop the batch (it rolls back) and start again",
            ));
        }
        Ok(())
    }

    /// Runs a write; a failure poisons the batch (the transaction is aborted).
    fn write<T>(
        &mut self,
        f: impl FnOnce(&mut Conn) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        f(&mut self.conn).map_err(|e| {
            self.failed = true;
            pg(e)
        })
    }

    fn chain(&mut self, tenant: &str, create: bool) -> Result<Option<&mut ChainState>, StoreError> {
        if !self.chains.contains_key(tenant) {
            let row = self.write(|c| {
                c.query_opt(
                    "SELECT chain_id, size FROM chains WHERE tenant_id = $1",
                    &[&tenant],
                )
            })?;
            let state = if let Some(r) = row {
                let chain_id: i64 = r.get(0);
                let head_size = to_u64(r.get(1), "a chain size")?;
                // Count what is stored rather than trusting the head.
                let last: Option<i64> = self
                    .write(|c| {
                        c.query_one(
                            "SELECT max(seq) FROM entries WHERE chain_id = $1",
                            &[&chain_id],
                        )
                    })?
                    .get(0);
                let len = match last {
                    Some(l) => to_u64(l, "a seq")?,
                    // A chain whose every entry was archived: its length is its anchor's.
                    None => self
                        .write(|c| {
                            c.query_opt(
                                "SELECT size FROM anchors WHERE chain_id = $1",
                                &[&chain_id],
                            )
                        })?
                        .map_or(Ok(0), |r| to_u64(r.get(0), "an anchor size"))?,
                };
                ChainState {
                    chain_id,
                    len,
                    head_size,
                    has_head: true,
                    dirty: false,
                }
            } else if create {
                let zero32: &[u8] = &[0; 32];
                let zero16: &[u8] = &[0; 16];
                let empty: &[u8] = &[];
                let chain_id: i64 = self
                    .write(|c| {
                        c.query_one(
                            "INSERT INTO chains(tenant_id, size, head_hash, last_entry_id, \
                             merkle_state, last_checkpoint_size, last_checkpoint_ms) \
                             VALUES ($1, 0, $2, $3, $4, 0, 0) RETURNING chain_id",
                            &[&tenant, &zero32, &zero16, &empty],
                        )
                    })?
                    .get(0);
                ChainState {
                    chain_id,
                    len: 0,
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
}

/// Posting kinds (`postings.kind`): which entry field a posting list is for.
pub(crate) const KIND_ALL: i16 = 0;
pub(crate) const KIND_AGENT: i16 = 1;
pub(crate) const KIND_SESSION: i16 = 2;
pub(crate) const KIND_EVENT: i16 = 3;
pub(crate) const KIND_TOOL: i16 = 4;

/// Postings cover time buckets of `2^BUCKET_BITS` ms (about 17.5 minutes): `ts_ms >> BUCKET_BITS`.
pub(crate) const BUCKET_BITS: u32 = 20;

/// One posting row being built: the entries of one (kind, name, bucket, chain) in a batch.
#[derive(Debug)]
struct Posting {
    ts: Vec<i64>,
    seqs: Vec<i64>,
}

/// A batch's posting lists, by (kind, bucket, chain) and then name: one row each at commit.
/// Appends add to them only once their entries are written (a refused call adds nothing).
#[derive(Debug, Default)]
struct Postings(HashMap<(i16, i64, i64), HashMap<String, Posting>>);

impl Postings {
    fn add(&mut self, chain_id: i64, entries: &[NewEntry]) -> Result<(), StoreError> {
        for e in entries {
            let seq = to_i64(e.seq, "a seq")?;
            let bucket = e.ts_ms >> BUCKET_BITS;
            let names = [
                (KIND_ALL, Some("")),
                (KIND_AGENT, Some(e.agent_id.as_str())),
                (KIND_SESSION, Some(e.session_id.as_str())),
                (KIND_EVENT, Some(e.event_type.as_str())),
                (KIND_TOOL, e.tool.as_deref()),
            ];
            for (kind, name) in names {
                let Some(name) = name else { continue };
                let by_name = self.0.entry((kind, bucket, chain_id)).or_default();
                if let Some(p) = by_name.get_mut(name) {
                    p.ts.push(e.ts_ms);
                    p.seqs.push(seq);
                } else {
                    let p = Posting {
                        ts: vec![e.ts_ms],
                        seqs: vec![seq],
                    };
                    by_name.insert(name.to_owned(), p);
                }
            }
        }
        Ok(())
    }

    /// Copies the rows into `postings`.
    fn write(&self, conn: &mut Conn) -> Result<(), postgres::Error> {
        if self.0.is_empty() {
            return Ok(());
        }
        let copy = conn.copy_in(
            "COPY postings(kind, name, bucket, chain_id, first_seq, last_seq, ts, seqs) \
             FROM STDIN BINARY",
        )?;
        let mut w = postgres::binary_copy::BinaryCopyInWriter::new(copy, &POSTING_TYPES);
        for (&(kind, bucket, chain_id), by_name) in &self.0 {
            for (name, p) in by_name {
                // Seqs grow within a batch's appends to one chain.
                let (first, last) = (p.seqs[0], p.seqs[p.seqs.len() - 1]);
                w.write(&[
                    &kind,
                    &name.as_str(),
                    &bucket,
                    &chain_id,
                    &first,
                    &last,
                    &p.ts,
                    &p.seqs,
                ])?;
            }
        }
        w.finish()?;
        Ok(())
    }
}

/// The types of the columns of `postings`, as [`Postings::write`] copies them.
const POSTING_TYPES: [postgres::types::Type; 8] = [
    postgres::types::Type::INT2,
    postgres::types::Type::TEXT,
    postgres::types::Type::INT8,
    postgres::types::Type::INT8,
    postgres::types::Type::INT8,
    postgres::types::Type::INT8,
    postgres::types::Type::INT8_ARRAY,
    postgres::types::Type::INT8_ARRAY,
];

/// The types of the columns [`WriteBatch::append`] copies into `entries`.
const ENTRY_TYPES: [postgres::types::Type; 10] = [
    postgres::types::Type::INT8,
    postgres::types::Type::INT8,
    postgres::types::Type::INT8,
    postgres::types::Type::BYTEA,
    postgres::types::Type::BYTEA,
    postgres::types::Type::TEXT,
    postgres::types::Type::TEXT,
    postgres::types::Type::TEXT,
    postgres::types::Type::TEXT,
    postgres::types::Type::BYTEA,
];

/// The columns of one `append` call.
#[derive(Default)]
struct Columns<'a> {
    seq: Vec<i64>,
    ts: Vec<i64>,
    id: Vec<&'a [u8]>,
    hash: Vec<&'a [u8]>,
    agent: Vec<&'a str>,
    session: Vec<&'a str>,
    event: Vec<&'a str>,
    tool: Vec<Option<&'a str>>,
    line: Vec<&'a [u8]>,
    p_seq: Vec<i64>,
    p_sidecar: Vec<&'a [u8]>,
    s_key: Vec<&'a [u8]>,
    s_seq: Vec<i64>,
    s_id: Vec<&'a [u8]>,
}

impl WriteBatch for PgBatch {
    fn chain_head(&mut self, tenant: TenantRef<'_>) -> Result<Option<ChainHead>, StoreError> {
        self.usable()?;
        match self.chain(tenant, false)? {
            Some(state) if state.has_head => {}
            _ => return Ok(None),
        }
        let row = self.write(|c| {
            c.query_opt(
                &format!("SELECT {HEAD_COLUMNS} FROM chains WHERE tenant_id = $1"),
                &[&tenant],
            )
        })?;
        row.map(|r| read_head(&r)).transpose()
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
        let last = len
            .checked_add(entries.len() as u64)
            .filter(|&l| i64::try_from(l).is_ok())
            .ok_or_else(|| {
                invalid(format!(
                    "an append of {} entries after seq {len} is beyond this store's limits",
                    entries.len()
                ))
            })?;
        let mut c = Columns::default();
        for e in entries {
            let seq = to_i64(e.seq, "a seq")?;
            c.seq.push(seq);
            c.ts.push(e.ts_ms);
            c.id.push(&e.entry_id);
            c.hash.push(&e.entry_hash.0);
            c.agent.push(&e.agent_id);
            c.session.push(&e.session_id);
            c.event.push(&e.event_type);
            c.tool.push(e.tool.as_deref());
            c.line.push(&e.line);
            if let Some(p) = &e.personal {
                c.p_seq.push(seq);
                c.p_sidecar.push(&p.sidecar);
                for k in &p.subject_keys {
                    c.s_key.push(k);
                    c.s_seq.push(seq);
                    c.s_id.push(&e.entry_id);
                }
            }
        }
        let chain_id = match self.chain(tenant, true)? {
            Some(s) => s.chain_id,
            None => return Err(invalid("chain creation failed (internal error)")),
        };
        // Sidecars are stored sealed (crate::seal), under the chain's current data key.
        let mut sealed = Vec::with_capacity(c.p_seq.len());
        let mut generation = 0i32;
        if !c.p_seq.is_empty() {
            if !self.write_keys.contains_key(&chain_id) {
                let wk = {
                    let mut sealer = crate::seal::lock(&self.seal);
                    sealer.write_key(&mut *self.conn, chain_id)
                };
                let wk = wk.inspect_err(|_| self.failed = true)?;
                self.write_keys.insert(chain_id, wk);
            }
            let wk = &self.write_keys[&chain_id];
            generation = wk.generation;
            for (seq, plain) in c.p_seq.iter().zip(&c.p_sidecar) {
                sealed.push(seal_with(wk.key(), chain_id, *seq, generation, plain)?);
            }
        }
        // One savepoint per call: a refused call (a duplicate entry id) leaves the batch as it
        // was before it.
        self.write(|conn| conn.batch_execute("SAVEPOINT append"))?;
        let r = (|| -> Result<(), postgres::Error> {
            // COPY … BINARY: the rows go as they are, without an INSERT's per-row executor work.
            let copy = self.conn.copy_in(
                "COPY entries(chain_id, seq, ts_ms, entry_id, entry_hash, agent_id, session_id, \
                 event_type, tool, line) FROM STDIN BINARY",
            )?;
            let mut w = postgres::binary_copy::BinaryCopyInWriter::new(copy, &ENTRY_TYPES);
            for i in 0..c.seq.len() {
                w.write(&[
                    &chain_id,
                    &c.seq[i],
                    &c.ts[i],
                    &c.id[i],
                    &c.hash[i],
                    &c.agent[i],
                    &c.session[i],
                    &c.event[i],
                    &c.tool[i],
                    &c.line[i],
                ])?;
            }
            w.finish()?;
            if !c.p_seq.is_empty() {
                self.conn.execute(
                    "INSERT INTO personal(chain_id, seq, generation, sidecar) \
                     SELECT $1, s, $4, b FROM unnest($2::bigint[], $3::bytea[]) AS u(s, b)",
                    &[&chain_id, &c.p_seq, &sealed, &generation],
                )?;
            }
            if !c.s_key.is_empty() {
                self.conn.execute(
                    "INSERT INTO subject_index(subject_key, chain_id, seq, entry_id) \
                     SELECT k, $1, s, i FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) \
                     AS u(k, s, i) ON CONFLICT DO NOTHING",
                    &[&chain_id, &c.s_key, &c.s_seq, &c.s_id],
                )?;
            }
            self.conn.batch_execute("RELEASE SAVEPOINT append")
        })();
        if let Err(e) = r {
            let duplicate = e.code() == Some(&SqlState::UNIQUE_VIOLATION)
                && e.as_db_error().and_then(|d| d.constraint()) == Some("entries_entry_id");
            if self
                .conn
                .batch_execute("ROLLBACK TO SAVEPOINT append; RELEASE SAVEPOINT append")
                .is_err()
            {
                self.failed = true;
            }
            if duplicate {
                return Err(invalid(format!(
                    "an entry id of seqs {}..={last} of tenant {tenant:?} is already stored (or repeated in the call); entry ids must be unique",
                    len + 1
                )));
            }
            return Err(pg(e));
        }
        if let Some(state) = self.chains.get_mut(tenant) {
            state.len = last;
            state.dirty = true;
        }
        self.postings.add(chain_id, entries)
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
        let size = to_i64(head.size, "a chain size")?;
        let cp_size = to_i64(head.last_checkpoint_size, "a checkpoint size")?;
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        let chain_id = state.chain_id;
        if size > 0 {
            // The head must describe the last stored entry (unless it was archived).
            let row = self.write(|c| {
                c.query_opt(
                    "SELECT entry_hash, entry_id FROM entries WHERE chain_id = $1 AND seq = $2",
                    &[&chain_id, &size],
                )
            })?;
            if let Some(r) = row {
                let (hash, id): (&[u8], &[u8]) = (r.get(0), r.get(1));
                if hash != head.head_hash.0 || id != head.last_entry_id {
                    return Err(invalid(format!(
                        "the head of tenant {tenant:?} does not match its entry {}: head_hash \
                         and last_entry_id must be that entry's hash and id",
                        head.size
                    )));
                }
            }
        }
        let (hh, le, ms): (&[u8], &[u8], &[u8]) =
            (&head.head_hash.0, &head.last_entry_id, &head.merkle_state);
        self.write(|c| {
            c.execute(
                "UPDATE chains SET size = $2, head_hash = $3, last_entry_id = $4, \
                 merkle_state = $5, last_checkpoint_size = $6, last_checkpoint_ms = $7 \
                 WHERE chain_id = $1",
                &[
                    &chain_id,
                    &size,
                    &hh,
                    &le,
                    &ms,
                    &cp_size,
                    &head.last_checkpoint_ms,
                ],
            )
        })?;
        if let Some(state) = self.chains.get_mut(tenant) {
            state.head_size = head.size;
            state.has_head = true;
            state.dirty = true;
        }
        Ok(())
    }

    fn put_checkpoint(&mut self, cp: &StoredCheckpoint) -> Result<(), StoreError> {
        self.usable()?;
        let size = to_i64(cp.size, "a checkpoint size")?;
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
        self.write(|c| {
            c.execute(
                "INSERT INTO checkpoints(chain_id, size, ts_ms, note) VALUES ($1, $2, $3, $4)",
                &[&chain_id, &size, &cp.ts_ms, &cp.note],
            )
        })?;
        Ok(())
    }

    fn add_signatures(
        &mut self,
        tenant: TenantRef<'_>,
        size: u64,
        note: &str,
    ) -> Result<usize, StoreError> {
        self.usable()?;
        let size_i = to_i64(size, "a checkpoint size")?;
        let no_checkpoint = || {
            invalid(format!(
                "no stored checkpoint of tenant {tenant:?} at size {size} has this note's text; signatures are added only to a checkpoint the log signed"
            ))
        };
        let Some(state) = self.chain(tenant, false)? else {
            return Err(no_checkpoint());
        };
        let chain_id = state.chain_id;
        let rows = self.write(|c| {
            c.query(
                "SELECT checkpoint_id, note FROM checkpoints WHERE chain_id = $1 AND size = $2 \
                 ORDER BY checkpoint_id FOR UPDATE",
                &[&chain_id, &size_i],
            )
        })?;
        for r in rows {
            let id: i64 = r.get(0);
            let stored: String = r.get(1);
            if let Some((merged, added)) = blackbox_store::merge_note_signatures(&stored, note) {
                if added > 0 {
                    self.write(|c| {
                        c.execute(
                            "UPDATE checkpoints SET note = $1 WHERE checkpoint_id = $2",
                            &[&merged, &id],
                        )
                    })?;
                }
                return Ok(added);
            }
        }
        Err(no_checkpoint())
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
        let idx: Vec<i64> = nodes
            .iter()
            .map(|(i, _)| to_i64(*i, "a Merkle node index"))
            .collect::<Result<_, _>>()?;
        let hashes: Vec<&[u8]> = nodes.iter().map(|(_, h)| h.0.as_slice()).collect();
        let level = i16::from(level);
        // Nodes already stored must be the same subtree hashes.
        let differing = self.write(|c| {
            c.query(
                "SELECT u.i FROM unnest($3::bigint[], $4::bytea[]) AS u(i, h) \
                 JOIN merkle_nodes m ON m.chain_id = $1 AND m.level = $2 AND m.idx = u.i \
                 WHERE m.hash <> u.h LIMIT 1",
                &[&chain_id, &level, &idx, &hashes],
            )
        })?;
        if let Some(r) = differing.first() {
            let i: i64 = r.get(0);
            return Err(invalid(format!(
                "Merkle node {level}/{i} of tenant {tenant:?} is already stored with a different hash"
            )));
        }
        self.write(|c| {
            c.execute(
                "INSERT INTO merkle_nodes(chain_id, level, idx, hash) \
                 SELECT $1, $2, i, h FROM unnest($3::bigint[], $4::bytea[]) AS u(i, h) \
                 ON CONFLICT DO NOTHING",
                &[&chain_id, &level, &idx, &hashes],
            )
        })?;
        Ok(())
    }

    fn set_meta(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.usable()?;
        self.write(|c| {
            c.execute(
                "INSERT INTO meta(key, value) VALUES ($1, $2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                &[&key, &value],
            )
        })?;
        Ok(())
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.usable()?;
        for (tenant, state) in &self.chains {
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
        // An erasure's chains get new data keys and every key moves to the next epoch, in
        // this transaction; this store adopts them once it has committed.
        let pending = if self.rekey.is_empty() {
            None
        } else {
            let chains: Vec<i64> = self.rekey.iter().copied().collect();
            let p = {
                let mut sealer = crate::seal::lock(&self.seal);
                sealer.rekey(&mut *self.conn, &chains, true)
            };
            Some(p.inspect_err(|_| self.failed = true)?)
        };
        let postings = std::mem::take(&mut self.postings);
        self.write(|c| postings.write(c))?;
        // COMMIT returns once the server has flushed the transaction's WAL
        // (synchronous_commit = on, set for every connection). If it fails, the transaction
        // is over either way.
        self.ended = true;
        self.conn.batch_execute("COMMIT").map_err(pg)?;
        if let Some(p) = pending {
            crate::seal::lock(&self.seal).committed(p);
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

impl ErasureBatch for PgBatch {
    fn subject_entries(&mut self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        self.usable()?;
        crate::read::subject_rows(&mut *self.conn, subject_key).inspect_err(|_| self.failed = true)
    }

    fn erase_personal(
        &mut self,
        tenant: TenantRef<'_>,
        seqs: &[u64],
    ) -> Result<Vec<Erasure>, StoreError> {
        self.usable()?;
        let Some(chain) = self.chain(tenant, false)?.map(|s| s.chain_id) else {
            return Ok(vec![Erasure::NotStored; seqs.len()]);
        };
        let q: Vec<i64> = seqs
            .iter()
            .map(|&s| to_i64(s, "a seq"))
            .collect::<Result<_, _>>()?;
        let (removed, stored) = self.write(|c| {
            let removed: BTreeSet<i64> = c
                .query(
                    "DELETE FROM personal WHERE chain_id = $1 AND seq = ANY($2) RETURNING seq",
                    &[&chain, &q],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            c.execute(
                "DELETE FROM subject_index WHERE chain_id = $1 AND seq = ANY($2)",
                &[&chain, &q],
            )?;
            let stored: BTreeSet<i64> = c
                .query(
                    "SELECT seq FROM entries WHERE chain_id = $1 AND seq = ANY($2)",
                    &[&chain, &q],
                )?
                .iter()
                .map(|r| r.get(0))
                .collect();
            Ok((removed, stored))
        })?;
        self.rekey.insert(chain);
        Ok(q.iter()
            .map(|s| {
                if removed.contains(s) {
                    Erasure::Removed
                } else if stored.contains(s) {
                    Erasure::AlreadyAbsent
                } else {
                    Erasure::NotStored
                }
            })
            .collect())
    }

    fn forget_subjects(&mut self, tenant: TenantRef<'_>, seqs: &[u64]) -> Result<(), StoreError> {
        self.usable()?;
        let Some(chain) = self.chain(tenant, false)?.map(|s| s.chain_id) else {
            return Ok(());
        };
        let q: Vec<i64> = seqs
            .iter()
            .map(|&s| to_i64(s, "a seq"))
            .collect::<Result<_, _>>()?;
        self.write(|c| {
            c.execute(
                "DELETE FROM subject_index WHERE chain_id = $1 AND seq = ANY($2)",
                &[&chain, &q],
            )
        })?;
        // Their sidecars left this store when they were archived; what the database's files
        // still hold of those rows is under the chain's current data key: it is replaced too.
        self.rekey.insert(chain);
        Ok(())
    }
}

impl RetentionBatch for PgBatch {
    fn archive_prefix(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.usable()?;
        let tenant = anchor.tenant_id.as_str();
        let Some(state) = self.chain(tenant, false)? else {
            return Err(invalid(format!(
                "no chain for tenant {tenant:?} to archive"
            )));
        };
        let (chain, len) = (state.chain_id, state.len);
        let current = self
            .write(|c| c.query_opt("SELECT size FROM anchors WHERE chain_id = $1", &[&chain]))?
            .map_or(Ok(0), |r| to_u64(r.get(0), "an anchor size"))?;
        if anchor.size <= current || anchor.size > len {
            return Err(invalid(format!(
                "tenant {tenant:?}: cannot archive up to entry {} (entries {}..={len} are stored)",
                anchor.size,
                current + 1
            )));
        }
        blackbox_store::check_anchor_tail(anchor)?;
        let size = to_i64(anchor.size, "an anchor size")?;
        let tail = anchor.tail_bytes();
        self.write(|c| {
            c.execute(
                "DELETE FROM personal WHERE chain_id = $1 AND seq <= $2",
                &[&chain, &size],
            )?;
            c.execute(
                "DELETE FROM entries WHERE chain_id = $1 AND seq <= $2",
                &[&chain, &size],
            )?;
            // Posting rows wholly within the prefix; a row that also lists later entries stays
            // (queries skip seqs at or below the anchor).
            c.execute(
                "DELETE FROM postings WHERE chain_id = $1 AND last_seq <= $2",
                &[&chain, &size],
            )?;
            c.execute(
                "DELETE FROM checkpoints WHERE chain_id = $1 AND size < $2",
                &[&chain, &size],
            )?;
            c.execute(
                "INSERT INTO anchors(chain_id, size, record, tail_hashes) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT(chain_id) DO UPDATE SET size = excluded.size, \
                 record = excluded.record, tail_hashes = excluded.tail_hashes",
                &[&chain, &size, &anchor.record, &tail],
            )
        })?;
        Ok(())
    }

    fn start_at_anchor(&mut self, anchor: &StoredAnchor) -> Result<(), StoreError> {
        self.usable()?;
        let tenant = anchor.tenant_id.as_str();
        blackbox_store::check_new_anchor(anchor)?;
        if self.chain(tenant, false)?.is_some() {
            return Err(blackbox_store::anchor_on_existing_chain(tenant));
        }
        let Some(state) = self.chain(tenant, true)? else {
            return Err(invalid("chain creation failed (internal error)"));
        };
        // As if entries 1..=size had been appended and archived: the next append is size + 1.
        state.len = anchor.size;
        let chain = state.chain_id;
        let size = to_i64(anchor.size, "an anchor size")?;
        let tail = anchor.tail_bytes();
        self.write(|c| {
            c.execute(
                "INSERT INTO anchors(chain_id, size, record, tail_hashes) VALUES ($1, $2, $3, $4)",
                &[&chain, &size, &anchor.record, &tail],
            )
        })?;
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
        let st: i16 = match seg.state {
            SegmentState::Live => 0,
            SegmentState::Deleting => 1,
            SegmentState::Deleted => 2,
        };
        let first = to_i64(seg.first_seq, "a segment's first seq")?;
        let last = to_i64(seg.last_seq, "a segment's last seq")?;
        let bytes = to_i64(seg.bytes, "a segment's size")?;
        let sha: &[u8] = seg.sha256.as_bytes();
        self.write(|c| {
            c.execute(
                "INSERT INTO archive_segments(chain_id, first_seq, last_seq, object, sha256, \
                 bytes, first_ts, last_ts, sealed_ms, state, state_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
                 ON CONFLICT(chain_id, first_seq) DO UPDATE SET last_seq = excluded.last_seq, \
                 object = excluded.object, sha256 = excluded.sha256, bytes = excluded.bytes, \
                 first_ts = excluded.first_ts, last_ts = excluded.last_ts, \
                 sealed_ms = excluded.sealed_ms, state = excluded.state, \
                 state_ms = excluded.state_ms",
                &[
                    &chain,
                    &first,
                    &last,
                    &seg.object,
                    &sha,
                    &bytes,
                    &seg.first_ts_ms,
                    &seg.last_ts_ms,
                    &seg.sealed_ms,
                    &st,
                    &seg.state_ms,
                ],
            )
        })?;
        Ok(())
    }
}
