//! The conformance suite: checks that a backend keeps the storage contract (the crate docs).
//!
//! Every backend runs the same checks against itself; a backend is a [`Backend`] that opens
//! (and reopens) one store. The SQLite backend runs them in `crates/store/tests/conformance.rs`;
//! another backend's tests call [`run_all`] (and, where it can spawn a writer process,
//! [`crash_writer`] and [`check_crash_cut_off`]) unchanged. A check panics with what it found,
//! like a test; backend failures where none are allowed are returned as errors.
//!
//! The checks: durability (a committed batch survives reopening, a dropped one leaves
//! nothing), ordering (scans ascend, appends are contiguous, gaps and repeats are refused),
//! a crash cut-off (a batch is all-or-nothing), query equivalence with a full scan (random
//! queries), checkpoints and Merkle nodes round-trip, multi-tenant isolation, and for the
//! extensions: retention (an archived prefix leaves exactly the rest) and erasure (the erased
//! bytes are found nowhere in the store's files afterwards).

use std::collections::BTreeMap;
use std::path::PathBuf;

use blackbox_core::Hash;

use crate::{
    After, ArchiveSegment, ChainHead, Erasure, NewEntry, PersonalRecord, Query, SegmentState,
    Store, StoreError, StoredAnchor, StoredCheckpoint, StoredEntry, TenantRef,
};

/// A backend under test: one store, opened as often as a check needs.
pub trait Backend {
    /// Opens the store for writing (creating it, empty, on the first call). Every call opens the
    /// same store; a check drops the previous handle before reopening (a "restart").
    ///
    /// # Errors
    /// Backend failures.
    fn open(&mut self) -> Result<Box<dyn Store>, StoreError>;

    /// Every file the store keeps bytes in (database, journal or write-ahead log, side files),
    /// read by the erasure check. A backend whose bytes are not in local files returns the
    /// files of its server's data directory.
    fn files(&self) -> Vec<PathBuf>;

    /// Whether the store keeps personal sidecars sealed at rest (see the crate docs): the
    /// erasure check then requires that no sidecar is ever found in clear in [`Self::files`],
    /// and the backend's own tests must show that an erasure leaves no key that opens the
    /// erased sidecars' sealed bytes.
    fn seals_personal(&self) -> bool {
        false
    }
}

/// Runs every check, each on a fresh backend from `fresh`. Extension checks run when the
/// backend answers [`Store::retention`] / [`Store::erasure`].
///
/// # Errors
/// Backend failures where the contract allows none.
pub fn run_all<B: Backend>(fresh: &mut dyn FnMut() -> B) -> Result<(), StoreError> {
    durability(&mut fresh())?;
    dropped_batch_leaves_nothing(&mut fresh())?;
    ordering(&mut fresh())?;
    checkpoints_and_nodes(&mut fresh())?;
    checkpoint_signatures(&mut fresh())?;
    tenant_isolation(&mut fresh())?;
    duplicate_entry_ids(&mut fresh())?;
    query_equivalence(&mut fresh(), 0x5eed)?;
    let mut b = fresh();
    let (retention, erasure) = {
        let s = b.open()?;
        (s.retention().is_ok(), s.erasure().is_ok())
    };
    if retention {
        retention_prefix(&mut b)?;
        start_at_anchor(&mut fresh())?;
    }
    if erasure {
        erasure_leaves_no_bytes(&mut fresh())?;
    }
    Ok(())
}

// ---- building entries ----------------------------------------------------------------------

/// The index columns of a test entry.
#[derive(Debug, Clone)]
struct Cols {
    ts_ms: i64,
    agent: String,
    session: String,
    event: String,
    tool: Option<String>,
}

/// A deterministic entry of `tenant` at `seq` with the index columns `c`.
fn entry(tenant: &str, seq: u64, c: &Cols) -> NewEntry {
    let line = format!(
        r#"{{"tenant":"{tenant}","seq":{seq},"ts":{},"agent":"{}","session":"{}","type":"{}","tool":{:?}}}"#,
        c.ts_ms, c.agent, c.session, c.event, c.tool
    )
    .into_bytes();
    let mut entry_id = [0u8; 16];
    entry_id.copy_from_slice(&Hash::digest(format!("{tenant}/{seq}").as_bytes()).0[..16]);
    NewEntry {
        seq,
        entry_id,
        ts_ms: c.ts_ms,
        agent_id: c.agent.clone(),
        session_id: c.session.clone(),
        event_type: c.event.clone(),
        tool: c.tool.clone(),
        entry_hash: Hash::digest(&line),
        line,
        personal: None,
    }
}

/// A plain entry at `seq` (timestamp grows with the seq).
fn plain(tenant: &str, seq: u64) -> NewEntry {
    entry(
        tenant,
        seq,
        &Cols {
            ts_ms: 1_700_000_000_000 + i64::try_from(seq).unwrap_or(0) * 1000,
            agent: "agent".to_owned(),
            session: "s1".to_owned(),
            event: "tool_call".to_owned(),
            tool: Some("shell".to_owned()),
        },
    )
}

/// Entries `from ..= to` of `tenant`.
fn plains(tenant: &str, from: u64, to: u64) -> Vec<NewEntry> {
    (from..=to).map(|s| plain(tenant, s)).collect()
}

/// The head after `last` (an empty chain's head when `None`).
fn head(tenant: &str, last: Option<&NewEntry>) -> ChainHead {
    ChainHead {
        tenant_id: tenant.to_owned(),
        size: last.map_or(0, |e| e.seq),
        head_hash: last.map_or(Hash([7; 32]), |e| e.entry_hash),
        last_entry_id: last.map_or([0; 16], |e| e.entry_id),
        merkle_state: last.map_or(Vec::new(), |e| e.seq.to_be_bytes().to_vec()),
        last_checkpoint_size: 0,
        last_checkpoint_ms: 0,
    }
}

/// Appends `entries` to `tenant` and sets the head, in one committed batch.
fn append(store: &mut dyn Store, tenant: &str, entries: &[NewEntry]) -> Result<(), StoreError> {
    let mut b = store.begin()?;
    b.append(tenant, entries)?;
    b.set_head(&head(tenant, entries.last()))?;
    b.commit()
}

fn scan_all(store: &dyn Store, tenant: TenantRef<'_>) -> Result<Vec<StoredEntry>, StoreError> {
    let mut out = Vec::new();
    store.scan(tenant, 0, u64::MAX, &mut |e| {
        out.push(e);
        Ok(true)
    })?;
    Ok(out)
}

/// Asserts that `tenant`'s stored chain is exactly `expected` (seq, bytes, hash).
fn assert_chain(
    store: &dyn Store,
    tenant: &str,
    expected: &[NewEntry],
    what: &str,
) -> Result<(), StoreError> {
    let got = scan_all(store, tenant)?;
    assert_eq!(
        got.len(),
        expected.len(),
        "{what}: tenant {tenant} holds {} entries, expected {}",
        got.len(),
        expected.len()
    );
    for (g, e) in got.iter().zip(expected) {
        assert_eq!(
            g.tenant_id, tenant,
            "{what}: scan of {tenant} returned another tenant"
        );
        assert_eq!(g.seq, e.seq, "{what}: scan out of order or with gaps");
        assert_eq!(g.line, e.line, "{what}: line of seq {} changed", e.seq);
        assert_eq!(g.entry_hash, e.entry_hash, "{what}: hash of seq {}", e.seq);
        assert_eq!(g.ts_ms, e.ts_ms, "{what}: timestamp of seq {}", e.seq);
    }
    let mut lines = Vec::new();
    store.scan_lines(tenant, 0, u64::MAX, &mut |seq, line, _| {
        lines.push((seq, line.to_vec()));
        Ok(true)
    })?;
    assert_eq!(
        lines,
        got.into_iter().map(|g| (g.seq, g.line)).collect::<Vec<_>>(),
        "{what}: scan_lines differs from scan"
    );
    Ok(())
}

// ---- the checks ----------------------------------------------------------------------------

/// A committed batch (entries, head, checkpoint, nodes, meta) survives reopening, byte for byte.
///
/// # Errors
/// Backend failures.
pub fn durability(b: &mut dyn Backend) -> Result<(), StoreError> {
    let first = plains("acme", 1, 40);
    let more = plains("acme", 41, 45);
    {
        let mut s = b.open()?;
        append(s.as_mut(), "acme", &first)?;
        let mut batch = s.begin()?;
        batch.append("acme", &more)?;
        batch.set_head(&head("acme", more.last()))?;
        batch.put_checkpoint(&checkpoint("acme", 45, 9))?;
        batch.put_nodes("acme", 8, &[(0, Hash([1; 32]))])?;
        batch.set_meta("log_name", "conformance")?;
        batch.commit()?;
    }
    let s = b.open()?;
    let all: Vec<NewEntry> = first.into_iter().chain(more).collect();
    assert_chain(s.as_ref(), "acme", &all, "after reopening")?;
    assert_eq!(
        s.chains()?,
        vec![head("acme", all.last())],
        "head after reopening"
    );
    assert_eq!(s.checkpoints("acme")?, vec![checkpoint("acme", 45, 9)]);
    assert_eq!(s.nodes("acme", 8, 0, 10)?, vec![(0, Hash([1; 32]))]);
    assert_eq!(s.meta("log_name")?.as_deref(), Some("conformance"));
    let e = &all[17];
    let by_id = s.entry_by_id(&e.entry_id)?;
    assert_eq!(
        by_id.map(|x| (x.tenant_id, x.seq, x.line)),
        Some(("acme".to_owned(), e.seq, e.line.clone()))
    );
    assert_eq!(
        s.entry_hashes("acme", 3, 7)?,
        all[2..7].iter().map(|e| e.entry_hash).collect::<Vec<_>>()
    );
    Ok(())
}

/// A batch dropped without `commit` leaves nothing, before and after reopening, and the store
/// takes the same writes afterwards.
///
/// # Errors
/// Backend failures.
pub fn dropped_batch_leaves_nothing(b: &mut dyn Backend) -> Result<(), StoreError> {
    let first = plains("acme", 1, 10);
    let lost = plains("acme", 11, 20);
    {
        let mut s = b.open()?;
        append(s.as_mut(), "acme", &first)?;
        {
            let mut batch = s.begin()?;
            batch.append("acme", &lost)?;
            batch.set_head(&head("acme", lost.last()))?;
            batch.put_checkpoint(&checkpoint("acme", 20, 1))?;
            batch.append("other", &plains("other", 1, 3))?;
            batch.set_head(&head("other", Some(&plain("other", 3))))?;
            // Not committed: dropped here.
        }
        assert_chain(s.as_ref(), "acme", &first, "after a dropped batch")?;
        assert_eq!(s.chains()?, vec![head("acme", first.last())]);
        assert!(
            s.checkpoints("acme")?.is_empty(),
            "a dropped checkpoint is visible"
        );
    }
    let mut s = b.open()?;
    assert_chain(
        s.as_ref(),
        "acme",
        &first,
        "after a dropped batch and reopening",
    )?;
    assert_eq!(s.chains()?.len(), 1, "a dropped batch's chain is visible");
    // The same seqs (and entry ids) are free again.
    append(s.as_mut(), "acme", &lost)?;
    let all: Vec<NewEntry> = first.into_iter().chain(lost).collect();
    assert_chain(
        s.as_ref(),
        "acme",
        &all,
        "after appending the dropped seqs again",
    )?;
    Ok(())
}

/// Scans ascend and are bounded as asked; appends continue the chain contiguously; a gap, a
/// repeated seq and a head that does not match the entries are refused.
///
/// # Errors
/// Backend failures.
pub fn ordering(b: &mut dyn Backend) -> Result<(), StoreError> {
    let mut s = b.open()?;
    let mut all = Vec::new();
    // Many small batches and calls: the store must join them into one contiguous chain.
    let mut next = 1u64;
    for batch_no in 0..12u64 {
        let mut batch = s.begin()?;
        for _ in 0..=(batch_no % 3) {
            let es = plains("acme", next, next + batch_no % 5);
            next += batch_no % 5 + 1;
            batch.append("acme", &es)?;
            all.extend(es);
        }
        batch.set_head(&head("acme", all.last()))?;
        batch.commit()?;
    }
    assert_chain(s.as_ref(), "acme", &all, "after many batches")?;
    let mut part = Vec::new();
    s.scan("acme", 5, 9, &mut |e| {
        part.push(e.seq);
        Ok(true)
    })?;
    assert_eq!(part, vec![5, 6, 7, 8, 9], "scan of 5..=9");
    let mut stopped = Vec::new();
    s.scan("acme", 1, u64::MAX, &mut |e| {
        stopped.push(e.seq);
        Ok(e.seq < 3)
    })?;
    assert_eq!(stopped, vec![1, 2, 3], "a scan stops when asked");
    let size = next - 1;
    for bad in [size + 2, size, 1] {
        let mut batch = s.begin()?;
        let r = batch.append("acme", &[plain("acme", bad)]);
        assert!(
            matches!(r, Err(StoreError::SeqConflict { .. })),
            "seq {bad} after size {size} was not refused as a sequence conflict: {r:?}"
        );
    }
    {
        let mut batch = s.begin()?;
        let r = batch.append("acme", &[plain("acme", size + 1), plain("acme", size + 3)]);
        assert!(r.is_err(), "a call with a gap inside was accepted");
    }
    {
        let mut batch = s.begin()?;
        batch.append("acme", &[plain("acme", size + 1)])?;
        let wrong = head("acme", Some(&plain("acme", size + 2)));
        let r = batch.set_head(&wrong).and_then(|()| batch.commit());
        assert!(r.is_err(), "a head past the stored entries was committed");
    }
    {
        let mut batch = s.begin()?;
        batch.append("acme", &[plain("acme", size + 1)])?;
        let r = batch.commit();
        assert!(
            r.is_err(),
            "a batch that appended without setting the head was committed"
        );
    }
    assert_chain(s.as_ref(), "acme", &all, "after refused writes")?;
    Ok(())
}

fn checkpoint(tenant: &str, size: u64, ts_ms: i64) -> StoredCheckpoint {
    StoredCheckpoint {
        tenant_id: tenant.to_owned(),
        size,
        ts_ms,
        note: format!("conformance\n{size}\nroot\n\n— sig {tenant} {ts_ms}\n"),
    }
}

/// Checkpoints and Merkle nodes come back exactly as put, in the documented order.
///
/// # Errors
/// Backend failures.
pub fn checkpoints_and_nodes(b: &mut dyn Backend) -> Result<(), StoreError> {
    let mut s = b.open()?;
    let es = plains("acme", 1, 600);
    append(s.as_mut(), "acme", &es)?;
    let cps = [
        checkpoint("acme", 10, 100),
        checkpoint("acme", 300, 200),
        checkpoint("acme", 300, 250),
        checkpoint("acme", 600, 300),
    ];
    let nodes: Vec<(u64, Hash)> = (0..2u64)
        .map(|i| (i, Hash([u8::try_from(i).unwrap_or(0) + 1; 32])))
        .collect();
    {
        let mut batch = s.begin()?;
        // Out of order on purpose: reads order them.
        for cp in cps.iter().rev() {
            batch.put_checkpoint(cp)?;
        }
        batch.put_nodes("acme", 8, &nodes)?;
        batch.put_nodes("acme", 9, &[(0, Hash([9; 32]))])?;
        batch.commit()?;
    }
    drop(s);
    let s = b.open()?;
    assert_eq!(
        s.checkpoints("acme")?,
        cps.to_vec(),
        "checkpoints, ascending by (size, ts)"
    );
    assert_eq!(s.latest_checkpoint("acme")?, Some(cps[3].clone()));
    assert_eq!(
        s.checkpoints_since("acme", 301, 200)?,
        vec![cps[2].clone(), cps[3].clone()],
        "checkpoints_since(size >= 301 or ts > 200)"
    );
    assert_eq!(s.nodes("acme", 8, 0, 5)?, nodes);
    assert_eq!(s.nodes("acme", 8, 1, 1)?, vec![nodes[1]]);
    assert_eq!(s.nodes("acme", 9, 0, 0)?, vec![(0, Hash([9; 32]))]);
    assert!(s.nodes("acme", 7, 0, 5)?.is_empty());
    assert!(s.checkpoints("nobody")?.is_empty());
    assert_eq!(s.latest_checkpoint("nobody")?, None);
    Ok(())
}

/// Signature lines added to a stored checkpoint (witness cosignatures) extend exactly that
/// checkpoint's note, keep what was there, are not added twice, roll back with their batch, and
/// a note whose text no stored checkpoint has is refused with nothing changed.
///
/// # Errors
/// Backend failures.
pub fn checkpoint_signatures(b: &mut dyn Backend) -> Result<(), StoreError> {
    let mut s = b.open()?;
    append(s.as_mut(), "acme", &plains("acme", 1, 20))?;
    let a = checkpoint("acme", 20, 100);
    let other = StoredCheckpoint {
        note: "conformance\n20\nother root\n\n— sig acme 150\n".into(),
        ts_ms: 150,
        ..a.clone()
    };
    {
        let mut batch = s.begin()?;
        batch.put_checkpoint(&checkpoint("acme", 10, 50))?;
        batch.put_checkpoint(&a)?;
        batch.put_checkpoint(&other)?;
        batch.commit()?;
    }
    let body = "conformance\n20\nroot\n\n";
    let cosigned = format!("{body}— witness-1 AAAA\n— witness-2 BBBB\n");
    {
        let mut batch = s.begin()?;
        let added = batch.add_signatures("acme", 20, &cosigned)?;
        assert_eq!(added, 2, "two new signature lines");
        // Dropped: nothing of it stays.
    }
    assert_eq!(
        s.checkpoints("acme")?[1],
        a,
        "a dropped batch adds no signature"
    );
    {
        let mut batch = s.begin()?;
        assert_eq!(batch.add_signatures("acme", 20, &cosigned)?, 2);
        batch.commit()?;
    }
    drop(s);
    let mut s = b.open()?;
    let expect = format!("{}— witness-1 AAAA\n— witness-2 BBBB\n", a.note);
    let cps = s.checkpoints("acme")?;
    assert_eq!(cps.len(), 3);
    assert_eq!(cps[1].note, expect, "the lines follow the stored ones");
    assert_eq!(
        cps[2], other,
        "the other checkpoint of that size is untouched"
    );
    assert_eq!(cps[0], checkpoint("acme", 10, 50));
    {
        let mut batch = s.begin()?;
        // Again, plus one more line: only the new one is added.
        let more = format!("{body}— witness-2 BBBB\n— witness-3 CCCC\n");
        assert_eq!(batch.add_signatures("acme", 20, &more)?, 1);
        // Another text, an unknown size, an unknown chain: refused.
        for (tenant, size, note) in [
            (
                "acme",
                20,
                "conformance\n20\nforged\n\n— witness-1 AAAA\n".to_owned(),
            ),
            ("acme", 19, cosigned.clone()),
            ("nobody", 20, cosigned.clone()),
        ] {
            match batch.add_signatures(tenant, size, &note) {
                Err(StoreError::Invalid { .. }) => {}
                other => panic!("add_signatures({tenant}, {size}) must be refused: {other:?}"),
            }
        }
        batch.commit()?;
    }
    let cps = s.checkpoints("acme")?;
    assert_eq!(cps[1].note, format!("{expect}— witness-3 CCCC\n"));
    assert_eq!(s.latest_checkpoint("acme")?.map(|c| c.size), Some(20));
    assert_eq!(s.chains()?.len(), 1);
    assert_chain(
        s.as_ref(),
        "acme",
        &plains("acme", 1, 20),
        "after adding signatures",
    )?;
    Ok(())
}

/// Chains of different tenants with the same seqs never mix: scans, heads, hashes, nodes,
/// checkpoints and tenant-filtered queries stay within their tenant.
///
/// # Errors
/// Backend failures.
pub fn tenant_isolation(b: &mut dyn Backend) -> Result<(), StoreError> {
    let mut s = b.open()?;
    let a = plains("a", 1, 30);
    let bb = plains("b", 1, 20);
    {
        let mut batch = s.begin()?;
        batch.append("a", &a[..10])?;
        batch.append("b", &bb[..10])?;
        batch.append("a", &a[10..])?;
        batch.append("b", &bb[10..])?;
        batch.set_head(&head("a", a.last()))?;
        batch.set_head(&head("b", bb.last()))?;
        batch.put_checkpoint(&checkpoint("a", 30, 1))?;
        batch.put_nodes("b", 8, &[(0, Hash([2; 32]))])?;
        batch.commit()?;
    }
    assert_chain(s.as_ref(), "a", &a, "tenant a")?;
    assert_chain(s.as_ref(), "b", &bb, "tenant b")?;
    assert_eq!(s.chains()?, vec![head("a", a.last()), head("b", bb.last())]);
    assert_eq!(
        s.entry_hashes("b", 1, 20)?,
        bb.iter().map(|e| e.entry_hash).collect::<Vec<_>>()
    );
    assert!(s.checkpoints("b")?.is_empty(), "a's checkpoint seen in b");
    assert!(s.nodes("a", 8, 0, 0)?.is_empty(), "b's nodes seen in a");
    let mut n = 0;
    s.query(
        &Query {
            tenant_id: Some("b".to_owned()),
            ..Query::default()
        },
        &mut |e| {
            assert_eq!(
                e.tenant_id, "b",
                "a tenant-filtered query returned another tenant"
            );
            n += 1;
            Ok(true)
        },
    )?;
    assert_eq!(n, 20);
    Ok(())
}

/// An entry id already stored (in any chain), or repeated within one call, is refused; the
/// refused call leaves nothing, and the store takes the next write.
///
/// # Errors
/// Backend failures.
pub fn duplicate_entry_ids(b: &mut dyn Backend) -> Result<(), StoreError> {
    let mut s = b.open()?;
    let a = plains("a", 1, 5);
    append(s.as_mut(), "a", &a)?;
    // Another chain, an id of chain a.
    let mut twin = plain("b", 1);
    twin.entry_id = a[2].entry_id;
    {
        let mut batch = s.begin()?;
        let r = batch.append("b", std::slice::from_ref(&twin));
        assert!(
            r.is_err(),
            "an entry id stored in another chain was accepted"
        );
    }
    // The same id twice in one call.
    let mut pair = plains("a", 6, 7);
    pair[1].entry_id = pair[0].entry_id;
    {
        let mut batch = s.begin()?;
        let r = batch.append("a", &pair);
        assert!(
            r.is_err(),
            "an entry id repeated within a call was accepted"
        );
    }
    assert_chain(s.as_ref(), "a", &a, "after refused duplicates")?;
    assert!(
        s.chains()?.iter().all(|h| h.tenant_id == "a"),
        "a refused append created a chain"
    );
    // The store takes the next write, and the ids are found where they belong.
    let next = plains("a", 6, 7);
    append(s.as_mut(), "a", &next)?;
    let found = s.entry_by_id(&a[2].entry_id)?.map(|e| (e.tenant_id, e.seq));
    assert_eq!(found, Some(("a".to_owned(), 3)));
    Ok(())
}

/// A small deterministic generator (xorshift64*), so a failure is reproducible from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    fn pick<'a>(&mut self, of: &'a [&'a str]) -> &'a str {
        let i = usize::try_from(self.below(of.len() as u64)).unwrap_or(0);
        of.get(i).copied().unwrap_or("")
    }
}

const AGENTS: &[&str] = &["alpha", "beta", "gamma"];
const SESSIONS: &[&str] = &["s1", "s2", "s3", "s4"];
const EVENTS: &[&str] = &["tool_call", "message", "decision"];
const TOOLS: &[&str] = &["shell", "http", "sql"];
const TENANTS: &[&str] = &["t1", "t2", "t3"];

/// Random queries (filters, time ranges, limits, cursors) return exactly what filtering a full
/// scan returns, in (`ts_ms`, tenant, seq) order. `seed` picks the data and the queries.
///
/// # Errors
/// Backend failures.
pub fn query_equivalence(b: &mut dyn Backend, seed: u64) -> Result<(), StoreError> {
    let mut rng = Rng(seed | 1);
    let mut s = b.open()?;
    let mut cols: BTreeMap<(String, u64), Cols> = BTreeMap::new();
    let mut sizes: BTreeMap<&str, u64> = BTreeMap::new();
    let base = 1_700_000_000_000i64;
    // Timestamps spread over hours (several index buckets), not monotonic within a chain.
    for _ in 0..25 {
        let mut batch = s.begin()?;
        for &t in TENANTS {
            let n = rng.below(40);
            if n == 0 {
                continue;
            }
            let size = sizes.entry(t).or_insert(0);
            let mut es = Vec::new();
            for _ in 0..n {
                *size += 1;
                let c = Cols {
                    ts_ms: base + i64::try_from(rng.below(6 * 3_600_000)).unwrap_or(0),
                    agent: rng.pick(AGENTS).to_owned(),
                    session: rng.pick(SESSIONS).to_owned(),
                    event: rng.pick(EVENTS).to_owned(),
                    tool: (rng.below(3) > 0).then(|| rng.pick(TOOLS).to_owned()),
                };
                es.push(entry(t, *size, &c));
                cols.insert((t.to_owned(), *size), c);
            }
            batch.append(t, &es)?;
            batch.set_head(&head(t, es.last()))?;
        }
        batch.commit()?;
    }
    for round in 0..300 {
        let mut q = Query::default();
        let opt = |rng: &mut Rng, of: &[&str]| (rng.below(3) == 0).then(|| rng.pick(of).to_owned());
        q.tenant_id = opt(&mut rng, TENANTS);
        q.agent_id = opt(&mut rng, AGENTS);
        q.session_id = opt(&mut rng, SESSIONS);
        q.event_type = opt(&mut rng, EVENTS);
        q.tool = opt(&mut rng, TOOLS);
        if rng.below(2) == 0 {
            q.start_ms = Some(base + i64::try_from(rng.below(6 * 3_600_000)).unwrap_or(0));
        }
        if rng.below(2) == 0 {
            q.end_ms = Some(base + i64::try_from(rng.below(6 * 3_600_000)).unwrap_or(0));
        }
        let mut expected: Vec<(i64, String, u64)> = cols
            .iter()
            .filter(|((t, _), c)| {
                q.tenant_id.as_ref().is_none_or(|x| x == t)
                    && q.agent_id.as_ref().is_none_or(|x| *x == c.agent)
                    && q.session_id.as_ref().is_none_or(|x| *x == c.session)
                    && q.event_type.as_ref().is_none_or(|x| *x == c.event)
                    && q.tool.as_ref().is_none_or(|x| Some(x) == c.tool.as_ref())
                    && q.start_ms.is_none_or(|x| c.ts_ms >= x)
                    && q.end_ms.is_none_or(|x| c.ts_ms <= x)
            })
            .map(|((t, seq), c)| (c.ts_ms, t.clone(), *seq))
            .collect();
        expected.sort();
        if !expected.is_empty() && rng.below(3) == 0 {
            let i = usize::try_from(rng.below(expected.len() as u64)).unwrap_or(0);
            let (ts_ms, tenant_id, seq) = expected[i].clone();
            q.after = Some(After {
                ts_ms,
                tenant_id,
                seq,
            });
            expected.drain(..=i);
        }
        if rng.below(3) == 0 {
            let limit = rng.below(20);
            q.limit = Some(limit);
            expected.truncate(usize::try_from(limit).unwrap_or(usize::MAX));
        }
        let mut got = Vec::new();
        s.query(&q, &mut |e| {
            let c = &cols[&(e.tenant_id.clone(), e.seq)];
            got.push((c.ts_ms, e.tenant_id, e.seq));
            Ok(true)
        })?;
        assert_eq!(got, expected, "query {round} (seed {seed:#x}) {q:?}");
    }
    Ok(())
}

/// Retention: archiving a prefix removes exactly the entries up to the anchor (scans and
/// queries start after it), keeps the head and the nodes, and segment records come back as put.
///
/// # Errors
/// Backend failures.
pub fn retention_prefix(b: &mut dyn Backend) -> Result<(), StoreError> {
    let es = plains("acme", 1, 300);
    let other = plains("other", 1, 10);
    let anchor = StoredAnchor {
        tenant_id: "acme".to_owned(),
        size: 260,
        record: br#"{"anchor":260}"#.to_vec(),
        tail_hashes: es[256..260].iter().map(|e| e.entry_hash).collect(),
    };
    let segment = ArchiveSegment {
        tenant_id: "acme".to_owned(),
        first_seq: 1,
        last_seq: 260,
        object: "acme/000001-000260.jsonl.zst".to_owned(),
        sha256: Hash([5; 32]),
        bytes: 1234,
        first_ts_ms: es[0].ts_ms,
        last_ts_ms: es[259].ts_ms,
        sealed_ms: 42,
        state: SegmentState::Live,
        state_ms: 42,
    };
    {
        let mut s = b.open()?;
        append(s.as_mut(), "acme", &es)?;
        append(s.as_mut(), "other", &other)?;
        let mut batch = s.begin()?;
        batch.put_nodes("acme", 8, &[(0, Hash([3; 32]))])?;
        batch.put_checkpoint(&checkpoint("acme", 100, 1))?;
        batch.put_checkpoint(&checkpoint("acme", 300, 2))?;
        batch.commit()?;
        let mut batch = s.begin()?;
        batch.retention()?.archive_prefix(&anchor)?;
        batch.retention()?.put_archive_segment(&segment)?;
        batch.commit()?;
        s.retention_mut()?.reclaim_space()?;
    }
    let s = b.open()?;
    assert_chain(s.as_ref(), "acme", &es[260..], "after archiving 1..=260")?;
    assert_chain(
        s.as_ref(),
        "other",
        &other,
        "another tenant after archiving",
    )?;
    assert_eq!(s.anchor("acme")?, Some(anchor));
    assert_eq!(s.anchor("other")?, None);
    assert_eq!(
        s.entry_hashes("acme", 257, 265)?,
        es[256..265]
            .iter()
            .map(|e| e.entry_hash)
            .collect::<Vec<_>>(),
        "the hashes of the archived entries of the last incomplete block (the anchor's tail), \
         then the stored ones"
    );
    assert!(
        s.entry_hashes("acme", 200, 265)?.is_empty(),
        "a range from an archived entry whose hash is not kept"
    );
    assert_eq!(s.chains()?[0], head("acme", es.last()), "the head stays");
    assert_eq!(
        s.nodes("acme", 8, 0, 0)?,
        vec![(0, Hash([3; 32]))],
        "nodes stay"
    );
    assert_eq!(s.retention()?.archive_segments("acme")?, vec![segment]);
    assert!(s.retention()?.archive_segments("other")?.is_empty());
    let mut first = None;
    s.query(
        &Query {
            tenant_id: Some("acme".to_owned()),
            ..Query::default()
        },
        &mut |e| {
            first = Some(e.seq);
            Ok(false)
        },
    )?;
    assert_eq!(
        first,
        Some(261),
        "a query after archiving starts after the anchor"
    );
    Ok(())
}

/// A chain moved from another store starts at its anchor: it reads as the other store's did
/// after archiving (anchor, segments, nodes, entries after the anchor), its next append is the
/// one after what it holds, and a chain that exists cannot start at an anchor.
///
/// # Errors
/// Backend failures.
pub fn start_at_anchor(b: &mut dyn Backend) -> Result<(), StoreError> {
    let es = plains("acme", 1, 310);
    let anchor = StoredAnchor {
        tenant_id: "acme".to_owned(),
        size: 300,
        record: br#"{"anchor":300}"#.to_vec(),
        tail_hashes: es[256..300].iter().map(|e| e.entry_hash).collect(),
    };
    let segment = ArchiveSegment {
        tenant_id: "acme".to_owned(),
        first_seq: 1,
        last_seq: 300,
        object: "acme/000001-000300.jsonl.zst".to_owned(),
        sha256: Hash([6; 32]),
        bytes: 4321,
        first_ts_ms: es[0].ts_ms,
        last_ts_ms: es[299].ts_ms,
        sealed_ms: 7,
        state: SegmentState::Live,
        state_ms: 7,
    };
    {
        let mut s = b.open()?;
        let mut batch = s.begin()?;
        let bad = StoredAnchor {
            tail_hashes: Vec::new(),
            ..anchor.clone()
        };
        assert!(
            batch.retention()?.start_at_anchor(&bad).is_err(),
            "an anchor without its tail hashes was taken"
        );
        drop(batch);
        let mut batch = s.begin()?;
        batch.retention()?.start_at_anchor(&anchor)?;
        batch.retention()?.put_archive_segment(&segment)?;
        batch.put_nodes("acme", 8, &[(0, Hash([4; 32]))])?;
        assert_eq!(
            batch.append("acme", &es[..1]).err().map(|e| e.to_string()),
            Some(
                StoreError::SeqConflict {
                    tenant: "acme".to_owned(),
                    expected: 301,
                    got: 1,
                }
                .to_string()
            ),
            "the first append after an anchor is the entry after it"
        );
        batch.append("acme", &es[300..305])?;
        batch.set_head(&head("acme", Some(&es[304])))?;
        batch.commit()?;
    }
    let mut s = b.open()?;
    append(s.as_mut(), "acme", &es[305..])?;
    assert_chain(
        s.as_ref(),
        "acme",
        &es[300..],
        "a chain started at an anchor",
    )?;
    assert_eq!(s.anchor("acme")?, Some(anchor.clone()));
    assert_eq!(s.retention()?.archive_segments("acme")?, vec![segment]);
    assert_eq!(s.nodes("acme", 8, 0, 0)?, vec![(0, Hash([4; 32]))]);
    assert_eq!(s.chains()?[0], head("acme", es.last()));
    let mut batch = s.begin()?;
    assert!(
        batch.retention()?.start_at_anchor(&anchor).is_err(),
        "a chain that exists started again at an anchor"
    );
    Ok(())
}

/// Erasure: after the erasing batch commits and `purge_erased` returns, the sidecar's bytes are
/// found nowhere in the store's files, the entry keeps its line, the subject index forgets it,
/// and other entries' sidecars stay.
///
/// # Errors
/// Backend failures.
pub fn erasure_leaves_no_bytes(b: &mut dyn Backend) -> Result<(), StoreError> {
    let secret = b"conformance-secret-7f3a9c1e-personal";
    let kept = b"conformance-kept-b81d2e44-personal";
    let key = Hash::digest(b"subject").0;
    let mut es = plains("acme", 1, 50);
    for (i, e) in es.iter_mut().enumerate() {
        let (bytes, keys) = match i {
            9 | 30 => (secret.as_slice(), vec![key]),
            20 => (kept.as_slice(), vec![Hash::digest(b"someone else").0]),
            _ => continue,
        };
        e.personal = Some(PersonalRecord {
            sidecar: [
                br#"{"salt":"00","fields":{"name":""#.as_slice(),
                bytes,
                br#""}}"#,
            ]
            .concat(),
            subject_keys: keys,
        });
    }
    let mut s = b.open()?;
    append(s.as_mut(), "acme", &es)?;
    let listed: Vec<u64> = s
        .erasure()?
        .entries_for_subject(&key)?
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(listed, vec![10, 31], "the subject index");
    let sealed = b.seals_personal();
    if sealed {
        let (clear, kept_clear) = grep(b, secret, kept);
        assert!(
            clear.is_empty() && !kept_clear,
            "a backend that seals sidecars holds one in clear, in {clear:?}"
        );
        assert!(
            grep(b, &es[9].line, &es[9].line).1,
            "the backend's files do not hold a stored line: the grep proves nothing"
        );
    } else {
        assert!(
            !grep(b, secret, kept).0.is_empty(),
            "the backend's files do not hold a stored sidecar: the grep proves nothing"
        );
    }
    {
        let mut batch = s.begin()?;
        let rows = batch.erasure()?.subject_entries(&key)?;
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        let out = batch.erasure()?.erase_personal("acme", &seqs)?;
        assert_eq!(out, vec![Erasure::Removed, Erasure::Removed]);
        // The marker entry commits with the erasure.
        batch.append("acme", &[plain("acme", 51)])?;
        batch.set_head(&head("acme", Some(&plain("acme", 51))))?;
        batch.commit()?;
    }
    s.erasure_mut()?
        .purge_erased(std::time::Duration::from_secs(10))?;
    let after = scan_all(s.as_ref(), "acme")?;
    assert_eq!(after.len(), 51);
    assert_eq!(after[9].line, es[9].line, "the erased entry keeps its line");
    assert_eq!(after[9].personal, None);
    assert_eq!(after[30].personal, None);
    assert!(
        after[20].personal.is_some(),
        "another subject's sidecar was erased"
    );
    assert!(
        s.erasure()?.entries_for_subject(&key)?.is_empty(),
        "the subject index kept the rows"
    );
    let mut again = s.begin()?;
    assert_eq!(
        again.erasure()?.erase_personal("acme", &[10, 999])?,
        vec![Erasure::AlreadyAbsent, Erasure::NotStored]
    );
    drop(again);
    // Read while the store is open: closing it may tidy its files (SQLite checkpoints and
    // removes its write-ahead log on the last close), which would hide a missing purge.
    let (erased, kept_found) = grep(b, secret, kept);
    assert!(erased.is_empty(), "erased bytes remain in {erased:?}");
    assert!(
        kept_found != sealed,
        "the backend's files do not hold the kept sidecar (the grep proves nothing), or a \
         sealing backend holds it in clear"
    );
    drop(s);
    let (erased, _) = grep(b, secret, kept);
    assert!(
        erased.is_empty(),
        "erased bytes remain after closing, in {erased:?}"
    );
    Ok(())
}

/// The backend's files holding `needle`, and whether any holds `witness`.
fn grep(b: &dyn Backend, needle: &[u8], witness: &[u8]) -> (Vec<PathBuf>, bool) {
    let mut found = Vec::new();
    let mut witnessed = false;
    for f in b.files() {
        let Ok(bytes) = std::fs::read(&f) else {
            continue;
        };
        if bytes.windows(needle.len()).any(|w| w == needle) {
            found.push(f);
        }
        witnessed |= bytes.windows(witness.len()).any(|w| w == witness);
    }
    (found, witnessed)
}

// ---- crash cut-off -------------------------------------------------------------------------

/// Entries per batch written by [`crash_writer`].
pub const CRASH_BATCH: u64 = 7;

/// The writer of the crash check: appends batches of [`CRASH_BATCH`] entries (each with a
/// checkpoint at its end) to two chains until killed, calling `on_commit` with the number of
/// batches committed after each commit. Run it in a child process and kill that
/// (`SIGKILL`) at any moment; then [`check_crash_cut_off`] reopens the store.
///
/// # Errors
/// Backend failures.
pub fn crash_writer(
    b: &mut dyn Backend,
    batches: u64,
    on_commit: &mut dyn FnMut(u64),
) -> Result<(), StoreError> {
    let mut s = b.open()?;
    for n in 0..batches {
        let mut batch = s.begin()?;
        for t in ["a", "b"] {
            let es = plains(t, n * CRASH_BATCH + 1, (n + 1) * CRASH_BATCH);
            batch.append(t, &es)?;
            batch.set_head(&head(t, es.last()))?;
            batch.put_checkpoint(&checkpoint(
                t,
                (n + 1) * CRASH_BATCH,
                i64::try_from(n).unwrap_or(0),
            ))?;
        }
        batch.commit()?;
        on_commit(n + 1);
    }
    Ok(())
}

/// After [`crash_writer`] was killed: every batch is there whole or not at all (both chains the
/// same size, a multiple of [`CRASH_BATCH`], with its checkpoint), at least `committed` batches
/// are there (the writer saw them commit), and the store takes the next batch.
///
/// # Errors
/// Backend failures.
pub fn check_crash_cut_off(b: &mut dyn Backend, committed: u64) -> Result<u64, StoreError> {
    let mut s = b.open()?;
    let heads = s.chains()?;
    let size = heads.first().map_or(0, |h| h.size);
    for h in &heads {
        assert_eq!(
            h.size, size,
            "the two chains of one batch differ in size: {heads:?}"
        );
        assert_eq!(h.size % CRASH_BATCH, 0, "a partial batch is visible: {h:?}");
        assert_chain(
            s.as_ref(),
            &h.tenant_id,
            &plains(&h.tenant_id, 1, h.size),
            "after the crash",
        )?;
        assert_eq!(
            s.latest_checkpoint(&h.tenant_id)?.map(|c| c.size),
            Some(h.size),
            "the batch's checkpoint"
        );
    }
    let batches = size / CRASH_BATCH;
    assert!(
        batches >= committed,
        "{committed} batches were committed, {batches} survived"
    );
    for t in ["a", "b"] {
        append(s.as_mut(), t, &plains(t, size + 1, size + 1))?;
    }
    Ok(batches)
}
