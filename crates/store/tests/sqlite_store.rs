//! Behaviour of the SQLite store against the storage contract.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use blackbox_core::Hash;
use blackbox_store::sqlite::{SCHEMA_VERSION, SqliteStore};
use blackbox_store::{
    ChainHead, Erasure, ErasureStore as _, NewEntry, PersonalRecord, Query, Store, StoreError,
    StoredCheckpoint, StoredEntry,
};

fn tmp() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.db");
    (dir, path)
}

/// A deterministic entry of `tenant` at `seq`.
fn entry(
    tenant: &str,
    seq: u64,
    ts_ms: i64,
    agent: &str,
    session: &str,
    event: &str,
    tool: Option<&str>,
) -> NewEntry {
    let line = format!(
        r#"{{"tenant":"{tenant}","seq":{seq},"ts":{ts_ms},"agent":"{agent}","session":"{session}","type":"{event}","tool":{},"pad":"{}"}}"#,
        tool.map_or("null".to_owned(), |t| format!("\"{t}\"")),
        "x".repeat(usize::try_from(seq % 7).unwrap() * 3)
    )
    .into_bytes();
    let mut entry_id = [0u8; 16];
    entry_id.copy_from_slice(&Hash::digest(format!("{tenant}/{seq}").as_bytes()).0[..16]);
    NewEntry {
        seq,
        entry_id,
        ts_ms,
        agent_id: agent.to_owned(),
        session_id: session.to_owned(),
        event_type: event.to_owned(),
        tool: tool.map(str::to_owned),
        entry_hash: Hash::digest(&line),
        line,
        personal: None,
    }
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
fn append(store: &mut SqliteStore, tenant: &str, entries: &[NewEntry]) {
    let mut b = store.begin().unwrap();
    b.append(tenant, entries).unwrap();
    b.set_head(&head(tenant, entries.last())).unwrap();
    b.commit().unwrap();
}

fn scan_all(store: &SqliteStore, tenant: &str) -> Vec<StoredEntry> {
    let mut out = Vec::new();
    store
        .scan(tenant, 0, u64::MAX, &mut |e| {
            out.push(e);
            Ok(true)
        })
        .unwrap();
    out
}

fn query(store: &SqliteStore, q: &Query) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    store
        .query(q, &mut |e| {
            out.push((e.tenant_id, e.seq));
            Ok(true)
        })
        .unwrap();
    out
}

fn seqs(tenant: &str, seqs: &[u64]) -> Vec<(String, u64)> {
    seqs.iter().map(|&s| (tenant.to_owned(), s)).collect()
}

fn raw(path: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(path).unwrap()
}

#[test]
fn store_is_send() {
    fn is_send<T: Send>() {}
    is_send::<SqliteStore>();
}

#[test]
fn create_open_reopen() {
    let (_dir, path) = tmp();
    {
        let mut store = SqliteStore::create(&path).unwrap();
        assert!(store.chains().unwrap().is_empty());
        let mut b = store.begin().unwrap();
        b.set_meta("log_name", "example.com/log").unwrap();
        b.set_meta("log_name", "example.com/log2").unwrap();
        b.commit().unwrap();
        assert_eq!(
            store.meta("log_name").unwrap().as_deref(),
            Some("example.com/log2")
        );
    }
    assert!(matches!(
        SqliteStore::create(&path),
        Err(StoreError::AlreadyExists { .. })
    ));
    {
        let mut store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.meta("log_name").unwrap().as_deref(),
            Some("example.com/log2")
        );
        assert_eq!(store.meta("missing").unwrap(), None);
        let e = entry("t", 1, 10, "a", "s", "ev", None);
        append(&mut store, "t", std::slice::from_ref(&e));
    }
    let store = SqliteStore::open(&path).unwrap();
    let heads = store.chains().unwrap();
    assert_eq!(heads.len(), 1);
    assert_eq!(heads[0].size, 1);
    let mode: String = raw(&path)
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}

#[test]
fn open_missing_is_not_found() {
    let (_dir, path) = tmp();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::NotFound { .. })
    ));
    assert!(matches!(
        SqliteStore::open_read_only(&path),
        Err(StoreError::NotFound { .. })
    ));
    assert!(!path.exists(), "open must not create the file");
}

#[test]
fn newer_schema_is_refused() {
    let (_dir, path) = tmp();
    drop(SqliteStore::create(&path).unwrap());
    raw(&path).pragma_update(None, "user_version", 99).unwrap();
    for r in [SqliteStore::open(&path), SqliteStore::open_read_only(&path)] {
        match r {
            Err(StoreError::Schema { found, supported }) => {
                assert_eq!(found, 99);
                assert_eq!(supported, SCHEMA_VERSION);
            }
            other => panic!("expected a schema error, got {other:?}"),
        }
    }
}

#[test]
fn other_sqlite_file_is_not_a_store() {
    let (_dir, path) = tmp();
    raw(&path)
        .execute_batch("CREATE TABLE t(x); PRAGMA user_version = 1;")
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::NotAStore { .. })
    ));
    let text = path.with_extension("txt");
    std::fs::write(
        &text,
        "this is not a database, just some text long enough to matter\n".repeat(20),
    )
    .unwrap();
    assert!(matches!(
        SqliteStore::open_read_only(&text),
        Err(StoreError::NotAStore { .. })
    ));
    assert!(matches!(
        SqliteStore::open(&text),
        Err(StoreError::NotAStore { .. })
    ));
}

#[test]
fn append_across_batches_and_tenants() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let a: Vec<_> = (1..=5)
        .map(|s| {
            entry(
                "alpha",
                s,
                100 + i64::try_from(s).unwrap(),
                "ag",
                "s1",
                "ev",
                None,
            )
        })
        .collect();
    let b: Vec<_> = (1..=3)
        .map(|s| entry("beta", s, 50, "ag", "s1", "ev", Some("t")))
        .collect();
    append(&mut store, "beta", &b[..2]);
    append(&mut store, "alpha", &a[..3]);
    // Several appends to two chains in one batch.
    {
        let mut batch = store.begin().unwrap();
        batch.append("alpha", &a[3..4]).unwrap();
        batch.append("beta", &b[2..]).unwrap();
        batch.append("alpha", &a[4..]).unwrap();
        batch.set_head(&head("alpha", a.last())).unwrap();
        batch.set_head(&head("beta", b.last())).unwrap();
        batch.commit().unwrap();
    }
    let heads = store.chains().unwrap();
    assert_eq!(heads, vec![head("alpha", a.last()), head("beta", b.last())]);

    let got = scan_all(&store, "alpha");
    assert_eq!(got.len(), 5);
    for (g, e) in got.iter().zip(&a) {
        assert_eq!(g.tenant_id, "alpha");
        assert_eq!(g.seq, e.seq);
        assert_eq!(g.line, e.line);
        assert_eq!(g.entry_hash, e.entry_hash);
        assert_eq!(g.personal, None);
    }
    // Partial scan and early stop.
    let mut part = Vec::new();
    store
        .scan("alpha", 2, 4, &mut |e| {
            part.push(e.seq);
            Ok(e.seq < 3)
        })
        .unwrap();
    assert_eq!(part, vec![2, 3]);
    assert!(scan_all(&store, "nobody").is_empty());
    assert_eq!(scan_all(&store, "beta").len(), 3);
    // Errors from the callback are passed through.
    let r = store.scan("alpha", 1, 5, &mut |_| {
        Err(StoreError::Invalid {
            what: "stop".into(),
        })
    });
    assert!(matches!(r, Err(StoreError::Invalid { .. })));
}

#[test]
fn chain_head_inside_batch_sees_pending_head() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e1 = entry("t", 1, 1, "a", "s", "ev", None);
    let e2 = entry("t", 2, 2, "a", "s", "ev", None);
    let mut b = store.begin().unwrap();
    assert_eq!(b.chain_head("t").unwrap(), None);
    b.append("t", std::slice::from_ref(&e1)).unwrap();
    // Appended but no head recorded yet.
    assert_eq!(b.chain_head("t").unwrap(), None);
    b.set_head(&head("t", Some(&e1))).unwrap();
    assert_eq!(b.chain_head("t").unwrap(), Some(head("t", Some(&e1))));
    b.append("t", std::slice::from_ref(&e2)).unwrap();
    b.set_head(&head("t", Some(&e2))).unwrap();
    assert_eq!(b.chain_head("t").unwrap(), Some(head("t", Some(&e2))));
    b.commit().unwrap();
    let mut b = store.begin().unwrap();
    assert_eq!(b.chain_head("t").unwrap(), Some(head("t", Some(&e2))));
}

#[test]
fn empty_chain_via_set_head() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let mut b = store.begin().unwrap();
    b.set_head(&head("t", None)).unwrap();
    b.commit().unwrap();
    assert_eq!(store.chains().unwrap(), vec![head("t", None)]);
    // A head beyond the stored entries is refused.
    let mut b = store.begin().unwrap();
    let mut h = head("t", None);
    h.size = 1;
    assert!(matches!(
        b.set_head(&h),
        Err(StoreError::SeqConflict {
            expected: 0,
            got: 1,
            ..
        })
    ));
}

#[test]
fn seq_conflicts() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e = |s| entry("t", s, 1, "a", "s", "ev", None);
    // A new chain starts at 1.
    {
        let mut b = store.begin().unwrap();
        let r = b.append("t", &[e(2)]);
        assert!(matches!(
            r,
            Err(StoreError::SeqConflict { ref tenant, expected: 1, got: 2 }) if tenant == "t"
        ));
    }
    append(&mut store, "t", &[e(1), e(2)]);
    let mut b = store.begin().unwrap();
    // Duplicate.
    assert!(matches!(
        b.append("t", &[e(2)]),
        Err(StoreError::SeqConflict {
            expected: 3,
            got: 2,
            ..
        })
    ));
    // Gap.
    assert!(matches!(
        b.append("t", &[e(4)]),
        Err(StoreError::SeqConflict {
            expected: 3,
            got: 4,
            ..
        })
    ));
    // Gap inside one call: nothing of the call is written.
    assert!(matches!(
        b.append("t", &[e(3), e(5)]),
        Err(StoreError::SeqConflict {
            expected: 4,
            got: 5,
            ..
        })
    ));
    // The batch is still usable and continues from 3.
    b.append("t", &[e(3)]).unwrap();
    b.append("t", &[e(4)]).unwrap();
    // A head that does not match the stored entries.
    assert!(matches!(
        b.set_head(&head("t", Some(&e(3)))),
        Err(StoreError::SeqConflict {
            expected: 4,
            got: 3,
            ..
        })
    ));
    b.set_head(&head("t", Some(&e(4)))).unwrap();
    b.commit().unwrap();
    let got: Vec<u64> = scan_all(&store, "t").iter().map(|e| e.seq).collect();
    assert_eq!(got, vec![1, 2, 3, 4]);
}

#[test]
fn commit_requires_matching_head() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e = |s| entry("t", s, 1, "a", "s", "ev", None);
    // Never set.
    let mut b = store.begin().unwrap();
    b.append("t", &[e(1)]).unwrap();
    assert!(matches!(b.commit(), Err(StoreError::Invalid { .. })));
    assert!(store.chains().unwrap().is_empty());
    // Set, then more appended.
    let mut b = store.begin().unwrap();
    b.append("t", &[e(1)]).unwrap();
    b.set_head(&head("t", Some(&e(1)))).unwrap();
    b.append("t", &[e(2)]).unwrap();
    assert!(matches!(
        b.commit(),
        Err(StoreError::SeqConflict {
            expected: 2,
            got: 1,
            ..
        })
    ));
    assert!(store.chains().unwrap().is_empty());
    // A head whose hash is not the last entry's.
    let mut b = store.begin().unwrap();
    b.append("t", &[e(1)]).unwrap();
    let mut h = head("t", Some(&e(1)));
    h.head_hash = Hash([9; 32]);
    assert!(matches!(b.set_head(&h), Err(StoreError::Invalid { .. })));
}

#[test]
fn duplicate_entry_id_is_refused_and_call_undone() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e1 = entry("t", 1, 1, "a", "s", "ev", None);
    append(&mut store, "t", std::slice::from_ref(&e1));
    let mut b = store.begin().unwrap();
    let e2 = entry("t", 2, 2, "a", "s", "ev", None);
    let mut e3 = entry("t", 3, 3, "a", "s", "ev", None);
    e3.entry_id = e1.entry_id;
    assert!(matches!(
        b.append("t", &[e2.clone(), e3]),
        Err(StoreError::Invalid { .. })
    ));
    // e2 was rolled back with the failed call.
    b.append("t", std::slice::from_ref(&e2)).unwrap();
    b.set_head(&head("t", Some(&e2))).unwrap();
    b.commit().unwrap();
    assert_eq!(scan_all(&store, "t").len(), 2);
}

#[test]
fn drop_without_commit_rolls_back() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e = |t, s| entry(t, s, 1, "new-agent", "s", "ev", Some("new-tool"));
    append(&mut store, "old", &[e("old", 1)]);
    {
        let mut b = store.begin().unwrap();
        b.append("old", &[e("old", 2)]).unwrap();
        b.set_head(&head("old", Some(&e("old", 2)))).unwrap();
        b.append("new", &[e("new", 1)]).unwrap();
        b.set_head(&head("new", Some(&e("new", 1)))).unwrap();
        b.put_checkpoint(&StoredCheckpoint {
            tenant_id: "new".into(),
            size: 1,
            ts_ms: 5,
            note: "n".into(),
        })
        .unwrap();
        b.put_nodes("new", 0, &[(0, Hash([1; 32]))]).unwrap();
        b.set_meta("k", "v").unwrap();
        // dropped here
    }
    assert_eq!(
        store.chains().unwrap(),
        vec![head("old", Some(&e("old", 1)))]
    );
    assert_eq!(scan_all(&store, "old").len(), 1);
    assert!(scan_all(&store, "new").is_empty());
    assert_eq!(store.meta("k").unwrap(), None);
    assert!(store.checkpoints("new").unwrap().is_empty());
    assert!(store.nodes("new", 0, 0, 10).unwrap().is_empty());
    assert!(store.entry_by_id(&e("new", 1).entry_id).unwrap().is_none());
    let mut b = store.begin().unwrap();
    assert_eq!(b.chain_head("new").unwrap(), None);
    assert_eq!(
        b.chain_head("old").unwrap(),
        Some(head("old", Some(&e("old", 1))))
    );
    // Names added by the rolled-back batch are not used: the same strings work again.
    b.append("new", &[e("new", 1)]).unwrap();
    b.set_head(&head("new", Some(&e("new", 1)))).unwrap();
    b.commit().unwrap();
    let q = Query {
        agent_id: Some("new-agent".into()),
        tool: Some("new-tool".into()),
        ..Query::default()
    };
    assert_eq!(
        query(&store, &q),
        vec![("new".into(), 1), ("old".into(), 1)]
    );
}

/// Two tenants with a spread of agents, sessions, tools and event types.
fn query_fixture(path: &Path) -> SqliteStore {
    let mut store = SqliteStore::create(path).unwrap();
    // (seq, ts, agent, session, event, tool)
    let acme = [
        (1, 100, "a1", "s1", "start", None),
        (2, 110, "a1", "s1", "tool_call", Some("grep")),
        (3, 110, "a2", "s2", "tool_call", Some("bash")),
        (4, 120, "a1", "s1", "tool_call", Some("bash")),
        (5, 130, "a2", "s2", "end", None),
        (6, 130, "a1", "s3", "tool_call", Some("grep")),
    ];
    let bolt = [
        (1, 105, "a1", "s9", "start", None),
        (2, 110, "a1", "s9", "tool_call", Some("bash")),
        (3, 140, "b1", "s9", "tool_call", Some("grep")),
    ];
    for (tenant, rows) in [("acme", &acme[..]), ("bolt", &bolt[..])] {
        let entries: Vec<_> = rows
            .iter()
            .map(|&(s, ts, a, sess, ev, tool)| entry(tenant, s, ts, a, sess, ev, tool))
            .collect();
        append(&mut store, tenant, &entries);
    }
    store
}

#[test]
fn query_filters_order_and_limit() {
    let (_dir, path) = tmp();
    let store = query_fixture(&path);
    let acme = |s: &[u64]| seqs("acme", s);
    let bolt = |s: &[u64]| seqs("bolt", s);
    let cat = |a: Vec<(String, u64)>, b: Vec<(String, u64)>| -> Vec<(String, u64)> {
        let mut v = a;
        v.extend(b);
        v
    };
    let q = |f: fn(&mut Query)| {
        let mut q = Query::default();
        f(&mut q);
        query(&store, &q)
    };

    // Everything: by (ts, tenant, seq). ts 110 appears in both tenants; acme comes first.
    assert_eq!(
        q(|_| {}),
        vec![
            ("acme".into(), 1),
            ("bolt".into(), 1),
            ("acme".into(), 2),
            ("acme".into(), 3),
            ("bolt".into(), 2),
            ("acme".into(), 4),
            ("acme".into(), 5),
            ("acme".into(), 6),
            ("bolt".into(), 3),
        ]
    );
    assert_eq!(
        q(|q| q.tenant_id = Some("acme".into())),
        acme(&[1, 2, 3, 4, 5, 6])
    );
    assert_eq!(q(|q| q.tenant_id = Some("zzz".into())), vec![]);
    assert_eq!(
        q(|q| q.agent_id = Some("a1".into())),
        vec![
            ("acme".into(), 1),
            ("bolt".into(), 1),
            ("acme".into(), 2),
            ("bolt".into(), 2),
            ("acme".into(), 4),
            ("acme".into(), 6),
        ]
    );
    assert_eq!(q(|q| q.session_id = Some("s2".into())), acme(&[3, 5]));
    assert_eq!(
        q(|q| q.tool = Some("grep".into())),
        cat(acme(&[2, 6]), bolt(&[3]))
    );
    assert_eq!(q(|q| q.event_type = Some("end".into())), acme(&[5]));
    assert_eq!(q(|q| q.agent_id = Some("unknown".into())), vec![]);
    // Time bounds are inclusive.
    assert_eq!(
        q(|q| {
            q.start_ms = Some(110);
            q.end_ms = Some(120);
        }),
        vec![
            ("acme".into(), 2),
            ("acme".into(), 3),
            ("bolt".into(), 2),
            ("acme".into(), 4),
        ]
    );
    assert_eq!(q(|q| q.start_ms = Some(131)), bolt(&[3]));
    assert_eq!(q(|q| q.end_ms = Some(100)), acme(&[1]));
    assert_eq!(
        q(|q| {
            q.start_ms = Some(120);
            q.end_ms = Some(110);
        }),
        vec![]
    );
    // Combinations.
    assert_eq!(
        q(|q| {
            q.tenant_id = Some("acme".into());
            q.agent_id = Some("a1".into());
            q.tool = Some("bash".into());
        }),
        acme(&[4])
    );
    assert_eq!(
        q(|q| {
            q.agent_id = Some("a1".into());
            q.event_type = Some("tool_call".into());
            q.start_ms = Some(111);
        }),
        acme(&[4, 6])
    );
    assert_eq!(
        q(|q| {
            q.tenant_id = Some("bolt".into());
            q.session_id = Some("s9".into());
            q.tool = Some("grep".into());
            q.event_type = Some("tool_call".into());
            q.agent_id = Some("b1".into());
            q.start_ms = Some(140);
            q.end_ms = Some(140);
        }),
        bolt(&[3])
    );
    assert_eq!(
        q(|q| {
            q.session_id = Some("s1".into());
            q.tool = Some("grep".into());
        }),
        acme(&[2])
    );
    // Limit, over one chain and over the merge of several.
    assert_eq!(
        q(|q| {
            q.tenant_id = Some("acme".into());
            q.limit = Some(2);
        }),
        acme(&[1, 2])
    );
    assert_eq!(
        q(|q| {
            q.tool = Some("bash".into());
            q.limit = Some(2);
        }),
        cat(acme(&[3]), bolt(&[2]))
    );
    assert_eq!(q(|q| q.limit = Some(0)), vec![]);
    assert_eq!(q(|q| q.limit = Some(100)).len(), 9);

    // The callback can stop early, and the rows carry the stored bytes.
    let mut got = Vec::new();
    store
        .query(&Query::default(), &mut |e| {
            got.push(e);
            Ok(got.len() < 3)
        })
        .unwrap();
    assert_eq!(got.len(), 3);
    let expected = entry("bolt", 1, 105, "a1", "s9", "start", None);
    assert_eq!(got[1].line, expected.line);
    assert_eq!(got[1].entry_hash, expected.entry_hash);
}

#[test]
fn entry_by_id_finds_any_chain() {
    let (_dir, path) = tmp();
    let store = query_fixture(&path);
    let e = entry("bolt", 2, 110, "a1", "s9", "tool_call", Some("bash"));
    let got = store.entry_by_id(&e.entry_id).unwrap().unwrap();
    assert_eq!(got.tenant_id, "bolt");
    assert_eq!(got.seq, 2);
    assert_eq!(got.line, e.line);
    assert_eq!(got.entry_hash, e.entry_hash);
    assert_eq!(store.entry_by_id(&[0xAB; 16]).unwrap(), None);
}

#[test]
fn entry_hashes_and_nodes() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let entries: Vec<_> = (1..=20)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    {
        let mut b = store.begin().unwrap();
        b.append("t", &entries).unwrap();
        let level1: Vec<_> = (0..10)
            .map(|i| (i, Hash([u8::try_from(i).unwrap(); 32])))
            .collect();
        b.put_nodes("t", 1, &level1).unwrap();
        b.put_nodes("t", 2, &[(0, Hash([40; 32])), (4, Hash([44; 32]))])
            .unwrap();
        // The same node again is fine; a different hash for it is not.
        b.put_nodes("t", 2, &[(0, Hash([40; 32]))]).unwrap();
        assert!(matches!(
            b.put_nodes("t", 2, &[(0, Hash([41; 32]))]),
            Err(StoreError::Invalid { .. })
        ));
        b.set_head(&head("t", entries.last())).unwrap();
        b.commit().unwrap();
    }
    let want: Vec<Hash> = entries[4..=9].iter().map(|e| e.entry_hash).collect();
    assert_eq!(store.entry_hashes("t", 5, 10).unwrap(), want);
    assert_eq!(store.entry_hashes("t", 19, 30).unwrap().len(), 2);
    assert!(store.entry_hashes("t", 10, 5).unwrap().is_empty());
    assert!(store.entry_hashes("x", 1, 5).unwrap().is_empty());

    let n = store.nodes("t", 1, 3, 5).unwrap();
    assert_eq!(
        n,
        vec![(3, Hash([3; 32])), (4, Hash([4; 32])), (5, Hash([5; 32]))]
    );
    assert_eq!(
        store.nodes("t", 2, 0, u64::MAX).unwrap(),
        vec![(0, Hash([40; 32])), (4, Hash([44; 32]))]
    );
    assert!(store.nodes("t", 3, 0, 100).unwrap().is_empty());
    assert!(store.nodes("x", 1, 0, 100).unwrap().is_empty());
}

#[test]
fn checkpoints_ordering_and_latest() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let entries: Vec<_> = (1..=10)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    let cp = |size, ts_ms, note: &str| StoredCheckpoint {
        tenant_id: "t".into(),
        size,
        ts_ms,
        note: note.into(),
    };
    assert_eq!(store.latest_checkpoint("t").unwrap(), None);
    {
        let mut b = store.begin().unwrap();
        b.append("t", &entries).unwrap();
        b.set_head(&head("t", entries.last())).unwrap();
        b.put_checkpoint(&cp(10, 300, "c")).unwrap();
        b.put_checkpoint(&cp(5, 200, "b")).unwrap();
        b.put_checkpoint(&cp(5, 100, "a")).unwrap();
        // Re-signed at the same size later.
        b.put_checkpoint(&cp(10, 400, "d")).unwrap();
        assert!(matches!(
            b.put_checkpoint(&cp(11, 500, "beyond")),
            Err(StoreError::Invalid { .. })
        ));
        b.commit().unwrap();
    }
    let notes: Vec<String> = store
        .checkpoints("t")
        .unwrap()
        .into_iter()
        .map(|c| c.note)
        .collect();
    assert_eq!(notes, vec!["a", "b", "c", "d"]);
    assert_eq!(
        store.latest_checkpoint("t").unwrap(),
        Some(cp(10, 400, "d"))
    );
    assert!(store.checkpoints("x").unwrap().is_empty());
    assert_eq!(store.latest_checkpoint("x").unwrap(), None);
}

/// A stand-in for the keyed subject hash (the store never computes it).
fn sk(id: &str) -> [u8; 32] {
    Hash::digest(id.as_bytes()).0
}

/// `(tenant, seq)` of the entries the subject index lists for `id`.
fn subj(store: &SqliteStore, id: &str) -> Vec<(String, u64)> {
    store
        .entries_for_subject(&sk(id))
        .unwrap()
        .into_iter()
        .map(|e| (e.tenant_id, e.seq))
        .collect()
}

/// Erases sidecars in a batch of their own.
fn erase(store: &mut SqliteStore, tenant: &str, seqs: &[u64]) -> Vec<Erasure> {
    let mut b = store.begin().unwrap();
    let out = b.erasure().unwrap().erase_personal(tenant, seqs).unwrap();
    b.commit().unwrap();
    out
}

#[test]
fn personal_sidecars_and_erasure() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let mut entries: Vec<_> = (1..=4)
        .map(|s| entry("t", s, 10, "a", "s", "ev", None))
        .collect();
    let sidecar = |s: u64| format!(r#"{{"salt":"x{s}","fields":{{"email":"u{s}@example.com"}}}}"#);
    entries[0].personal = Some(PersonalRecord {
        sidecar: sidecar(1).into_bytes(),
        subject_keys: vec![sk("subj-1"), sk("subj-2"), sk("subj-1")],
    });
    entries[2].personal = Some(PersonalRecord {
        sidecar: sidecar(3).into_bytes(),
        subject_keys: vec![sk("subj-1")],
    });
    append(&mut store, "t", &entries);
    let other = {
        let mut e = entry("u", 1, 10, "a", "s", "ev", None);
        e.personal = Some(PersonalRecord {
            sidecar: sidecar(9).into_bytes(),
            subject_keys: vec![sk("subj-1")],
        });
        e
    };
    append(&mut store, "u", std::slice::from_ref(&other));

    let got = scan_all(&store, "t");
    assert_eq!(got[0].personal.as_deref(), Some(sidecar(1).as_bytes()));
    assert_eq!(got[1].personal, None);
    assert_eq!(got[2].personal.as_deref(), Some(sidecar(3).as_bytes()));
    let mut via_query = Vec::new();
    store
        .query(
            &Query {
                tenant_id: Some("t".into()),
                ..Query::default()
            },
            &mut |e| {
                via_query.push(e.personal);
                Ok(true)
            },
        )
        .unwrap();
    assert_eq!(via_query[0].as_deref(), Some(sidecar(1).as_bytes()));
    assert_eq!(
        store
            .entry_by_id(&entries[2].entry_id)
            .unwrap()
            .unwrap()
            .personal
            .as_deref(),
        Some(sidecar(3).as_bytes())
    );

    assert_eq!(
        subj(&store, "subj-1"),
        vec![("t".into(), 1), ("t".into(), 3), ("u".into(), 1)]
    );
    assert_eq!(subj(&store, "subj-2"), vec![("t".into(), 1)]);
    assert!(subj(&store, "nobody").is_empty());

    assert_eq!(
        erase(&mut store, "t", &[1, 2, 99]),
        vec![Erasure::Removed, Erasure::AlreadyAbsent, Erasure::NotStored]
    );
    assert_eq!(erase(&mut store, "nobody", &[1]), vec![Erasure::NotStored]);
    // Erasing again finds nothing left to remove.
    assert_eq!(erase(&mut store, "t", &[1]), vec![Erasure::AlreadyAbsent]);
    let got = scan_all(&store, "t");
    assert_eq!(got[0].personal, None);
    assert_eq!(got[2].personal.as_deref(), Some(sidecar(3).as_bytes()));
    // The entry itself is untouched.
    assert_eq!(got[0].line, entries[0].line);
    assert_eq!(
        subj(&store, "subj-1"),
        vec![("t".into(), 3), ("u".into(), 1)]
    );
    assert!(subj(&store, "subj-2").is_empty());
    // And stays gone after reopening.
    drop(store);
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(scan_all(&store, "t")[0].personal, None);
}

#[test]
fn read_only_store() {
    let (_dir, path) = tmp();
    drop(query_fixture(&path));
    let mut ro = SqliteStore::open_read_only(&path).unwrap();
    assert!(ro.is_read_only());
    assert!(matches!(ro.begin(), Err(StoreError::ReadOnly)));
    assert!(matches!(
        ro.purge_erased(std::time::Duration::ZERO),
        Err(StoreError::ReadOnly)
    ));
    assert_eq!(ro.chains().unwrap().len(), 2);
    assert_eq!(query(&ro, &Query::default()).len(), 9);
}

#[test]
fn readers_do_not_see_uncommitted_batches() {
    let (_dir, path) = tmp();
    let mut writer = SqliteStore::create(&path).unwrap();
    let reader = SqliteStore::open_read_only(&path).unwrap();
    let e1 = entry("t", 1, 1, "a", "s", "ev", None);
    let mut b = writer.begin().unwrap();
    b.append("t", std::slice::from_ref(&e1)).unwrap();
    b.set_head(&head("t", Some(&e1))).unwrap();
    assert!(reader.chains().unwrap().is_empty());
    assert!(scan_all(&reader, "t").is_empty());
    b.commit().unwrap();
    assert_eq!(reader.chains().unwrap().len(), 1);
    assert_eq!(scan_all(&reader, "t").len(), 1);
}

#[test]
fn second_writer_gets_busy() {
    let (_dir, path) = tmp();
    let mut first = SqliteStore::create(&path).unwrap();
    let mut second = SqliteStore::open(&path).unwrap();
    second.set_busy_timeout(Duration::from_millis(50)).unwrap();
    let batch = first.begin().unwrap();
    let started = Instant::now();
    assert!(matches!(second.begin(), Err(StoreError::Busy)));
    assert!(started.elapsed() >= Duration::from_millis(40));
    drop(batch);
    second.begin().unwrap().commit().unwrap();
}

#[test]
fn big_batch_of_100k() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let n = 100_000u64;
    let entries: Vec<_> = (1..=n)
        .map(|s| {
            let agent = format!("agent-{}", s % 17);
            let session = format!("session-{}", s / 100);
            let tool = (s % 2 == 0).then(|| format!("tool-{}", s % 5));
            entry(
                "big",
                s,
                1_700_000_000_000 + i64::try_from(s / 3).unwrap(),
                &agent,
                &session,
                "tool_call",
                tool.as_deref(),
            )
        })
        .collect();
    append(&mut store, "big", &entries);
    assert_eq!(store.chains().unwrap()[0].size, n);
    let mut count = 0u64;
    store
        .scan("big", 1, n, &mut |e| {
            count += 1;
            assert_eq!(e.seq, count);
            Ok(true)
        })
        .unwrap();
    assert_eq!(count, n);
    let q = Query {
        session_id: Some("session-500".into()),
        ..Query::default()
    };
    assert_eq!(
        query(&store, &q),
        seqs("big", &(50_000..50_100).collect::<Vec<_>>())
    );
    let last = store
        .entry_by_id(&entries[99_999].entry_id)
        .unwrap()
        .unwrap();
    assert_eq!(last.seq, n);
}

#[test]
fn store_can_be_used_from_inside_a_query_callback() {
    let (_dir, path) = tmp();
    let store = query_fixture(&path);
    let mut outer = 0;
    store
        .query(&Query::default(), &mut |e| {
            outer += 1;
            let again = store.entry_by_id(&entry_id_of(&e)).unwrap();
            assert_eq!(again.map(|a| a.line), Some(e.line));
            assert_eq!(query(&store, &Query::default()).len(), 9);
            Ok(true)
        })
        .unwrap();
    assert_eq!(outer, 9);
}

/// The entry id the fixtures give `e` (see [`entry`]).
fn entry_id_of(e: &StoredEntry) -> [u8; 16] {
    let mut id = [0u8; 16];
    id.copy_from_slice(&Hash::digest(format!("{}/{}", e.tenant_id, e.seq).as_bytes()).0[..16]);
    id
}

#[test]
fn head_update_without_append() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e1 = entry("t", 1, 1, "a", "s", "ev", None);
    append(&mut store, "t", std::slice::from_ref(&e1));
    let mut h = head("t", Some(&e1));
    h.last_checkpoint_size = 1;
    h.last_checkpoint_ms = 1234;
    let mut b = store.begin().unwrap();
    b.put_checkpoint(&StoredCheckpoint {
        tenant_id: "t".into(),
        size: 1,
        ts_ms: 1234,
        note: "note".into(),
    })
    .unwrap();
    b.set_head(&h).unwrap();
    b.commit().unwrap();
    assert_eq!(store.chains().unwrap(), vec![h]);
    assert!(format!("{store:?}").contains("SqliteStore"));
}

/// Deterministic pseudo-random numbers (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[usize::try_from(self.below(items.len() as u64)).unwrap()]
    }
}

/// An entry as the reference model sees it: (tenant, seq, ts, agent, session, event, tool).
type Model = (String, u64, i64, String, String, String, Option<String>);

#[test]
fn queries_match_a_reference_model() {
    // Timestamps spread over many 17.5-minute posting buckets, out of order within chains,
    // repeated, negative and extreme; entries appended in calls of varying size, interleaved
    // between tenants, over several batches and a reopen.
    let (_dir, path) = tmp();
    let tenants = ["acme", "bolt", "core"];
    let agents = ["a1", "a2", "a3", "a4"];
    let sessions = ["s1", "s2", "s3", "s4", "s5", "s6"];
    let events = ["llm_request", "tool_call", "decision"];
    let tools = ["bash", "grep", "sql"];
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let mut model: Vec<Model> = Vec::new();
    let mut sizes = [0u64; 3];
    let mut last: [Option<NewEntry>; 3] = [None, None, None];
    for round in 0..4 {
        let mut store = if round == 0 {
            SqliteStore::create(&path).unwrap()
        } else {
            SqliteStore::open(&path).unwrap()
        };
        let mut b = store.begin().unwrap();
        for _ in 0..12 {
            let t = usize::try_from(rng.below(3)).unwrap();
            let n = [1, 2, 7, 40][usize::try_from(rng.below(4)).unwrap()];
            let entries: Vec<_> = (0..n)
                .map(|_| {
                    sizes[t] += 1;
                    let ts = match rng.below(20) {
                        0 => i64::MIN + i64::try_from(rng.below(3)).unwrap(),
                        1 => i64::MAX - i64::try_from(rng.below(3)).unwrap(),
                        2 => -i64::try_from(rng.below(5_000_000)).unwrap(),
                        _ => 1_776_124_800_000 + i64::try_from(rng.below(4 * 3_600_000)).unwrap(),
                    };
                    let event = rng.pick(&events);
                    let tool = (event == "tool_call").then(|| rng.pick(&tools));
                    let e = entry(
                        tenants[t],
                        sizes[t],
                        ts,
                        rng.pick(&agents),
                        rng.pick(&sessions),
                        event,
                        tool,
                    );
                    model.push((
                        tenants[t].to_owned(),
                        e.seq,
                        ts,
                        e.agent_id.clone(),
                        e.session_id.clone(),
                        e.event_type.clone(),
                        e.tool.clone(),
                    ));
                    e
                })
                .collect();
            b.append(tenants[t], &entries).unwrap();
            last[t] = entries.last().cloned();
        }
        for (t, e) in last.iter().enumerate() {
            if let Some(e) = e {
                b.set_head(&head(tenants[t], Some(e))).unwrap();
            }
        }
        b.commit().unwrap();
    }
    let store = SqliteStore::open_read_only(&path).unwrap();
    let mut sorted = model.clone();
    sorted.sort_by(|a, b| (a.2, &a.0, a.1).cmp(&(b.2, &b.0, b.1)));
    let expect = |q: &Query| -> Vec<(String, u64)> {
        let mut out: Vec<(String, u64)> = sorted
            .iter()
            .filter(|m| q.tenant_id.as_ref().is_none_or(|t| *t == m.0))
            .filter(|m| q.agent_id.as_ref().is_none_or(|v| *v == m.3))
            .filter(|m| q.session_id.as_ref().is_none_or(|v| *v == m.4))
            .filter(|m| q.event_type.as_ref().is_none_or(|v| *v == m.5))
            .filter(|m| q.tool.is_none() || q.tool == m.6)
            .filter(|m| q.start_ms.is_none_or(|s| m.2 >= s))
            .filter(|m| q.end_ms.is_none_or(|e| m.2 <= e))
            .map(|m| (m.0.clone(), m.1))
            .collect();
        if let Some(l) = q.limit {
            out.truncate(usize::try_from(l).unwrap());
        }
        out
    };
    let some =
        |rng: &mut Rng, items: &[&str]| (rng.below(3) == 0).then(|| rng.pick(items).to_owned());
    let mut nonempty = 0;
    for i in 0..400 {
        let (start_ms, end_ms) = match rng.below(4) {
            0 => (None, None),
            1 => {
                let s = 1_776_124_800_000 + i64::try_from(rng.below(4 * 3_600_000)).unwrap();
                (
                    Some(s),
                    Some(s + i64::try_from(rng.below(3_600_000)).unwrap()),
                )
            }
            2 => (Some(i64::MIN), Some(0)),
            _ => (Some(1_776_124_800_000 + 3_600_000), None),
        };
        let q = Query {
            tenant_id: some(&mut rng, &tenants),
            agent_id: some(&mut rng, &agents),
            session_id: some(&mut rng, &sessions),
            tool: some(&mut rng, &tools),
            event_type: some(&mut rng, &events),
            start_ms,
            end_ms,
            limit: (rng.below(3) == 0).then(|| rng.below(20)),
            after: None,
        };
        let want = expect(&q);
        nonempty += usize::from(!want.is_empty());
        assert_eq!(query(&store, &q), want, "query {i}: {q:?}");
    }
    assert!(nonempty > 150, "too few queries with results: {nonempty}");
    // Every entry is where a scan expects it.
    for t in tenants {
        let got: Vec<u64> = scan_all(&store, t).iter().map(|e| e.seq).collect();
        let want: Vec<u64> = model.iter().filter(|m| m.0 == t).map(|m| m.1).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn seqs_map_to_rows_across_interleaved_calls() {
    let (_dir, path) = tmp();
    let e = |t: &str, s: u64| {
        let mut e = entry(t, s, i64::try_from(s).unwrap(), "a", "s", "ev", None);
        if s.is_multiple_of(5) {
            e.personal = Some(PersonalRecord {
                sidecar: format!("{{\"salt\":\"{t}{s}\"}}").into_bytes(),
                subject_keys: vec![sk(&format!("subj-{}", s % 2))],
            });
        }
        e
    };
    // Calls of 3 entries alternate between two tenants, in three batches (reopening the store
    // between them): each call is its own run. The two calls of "solo" in a batch follow each
    // other and share a run.
    let mut next = [1u64; 3];
    for round in 0..3 {
        let mut store = if round == 0 {
            SqliteStore::create(&path).unwrap()
        } else {
            SqliteStore::open(&path).unwrap()
        };
        let mut b = store.begin().unwrap();
        for call in 0..6 {
            let t = ["x", "y"][call % 2];
            let i = call % 2;
            let entries: Vec<_> = (next[i]..next[i] + 3).map(|s| e(t, s)).collect();
            next[i] += 3;
            b.append(t, &entries).unwrap();
            b.set_head(&head(t, entries.last())).unwrap();
        }
        let solo: Vec<_> = (next[2]..next[2] + 4).map(|s| e("solo", s)).collect();
        next[2] += 4;
        b.append("solo", &solo[..1]).unwrap();
        b.append("solo", &solo[1..]).unwrap();
        b.set_head(&head("solo", solo.last())).unwrap();
        b.commit().unwrap();
    }
    let runs = |chain: &str| -> i64 {
        raw(&path)
            .query_row(
                "SELECT count(*) FROM runs JOIN chains USING (chain_id) WHERE tenant_id = ?1",
                [chain],
                |r| r.get(0),
            )
            .unwrap()
    };
    assert_eq!(runs("x"), 9);
    assert_eq!(runs("solo"), 3);

    let mut store = SqliteStore::open(&path).unwrap();
    for t in ["x", "y", "solo"] {
        let n = store
            .chains()
            .unwrap()
            .iter()
            .find(|h| h.tenant_id == t)
            .unwrap()
            .size;
        assert_eq!(n, if t == "solo" { 12 } else { 27 });
        // Every range, across run boundaries.
        for from in 0..=n + 1 {
            for to in [from, from + 1, from + 4, n, n + 3] {
                let mut got = Vec::new();
                store
                    .scan(t, from, to, &mut |x| {
                        got.push((x.seq, x.line, x.personal));
                        Ok(true)
                    })
                    .unwrap();
                let want: Vec<_> = (from.max(1)..=to.min(n))
                    .map(|s| {
                        let x = e(t, s);
                        (s, x.line, x.personal.map(|p| p.sidecar))
                    })
                    .collect();
                assert_eq!(got, want, "{t} {from}..={to}");
                let hashes = store.entry_hashes(t, from, to).unwrap();
                let want: Vec<_> = (from.max(1)..=to.min(n))
                    .map(|s| e(t, s).entry_hash)
                    .collect();
                assert_eq!(hashes, want, "{t} {from}..={to}");
            }
        }
    }
    // Sidecars by subject, and erasure by seq, in whichever run the entries are.
    let subj0: Vec<(String, u64)> = ["solo", "x", "y"]
        .iter()
        .flat_map(|t| {
            let n = if *t == "solo" { 12 } else { 27 };
            (1..=n)
                .filter(|s| s % 10 == 0)
                .map(|s| ((*t).to_owned(), s))
        })
        .collect();
    assert_eq!(subj(&store, "subj-0"), subj0);
    erase(&mut store, "x", &[5, 10, 25, 26, 1000]);
    let got: Vec<_> = scan_all(&store, "x")
        .into_iter()
        .filter(|x| x.personal.is_some())
        .map(|x| x.seq)
        .collect();
    assert_eq!(got, vec![15, 20]);
    assert_eq!(
        subj(&store, "subj-0"),
        seqs("solo", &[10])
            .into_iter()
            .chain(seqs("x", &[20]))
            .chain(seqs("y", &[10, 20]))
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_duplicate_entry_id_undoes_the_whole_call() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let e = |t: &str, s: u64| {
        let mut e = entry(t, s, 1, "a", "s", "ev", Some("t"));
        e.personal = Some(PersonalRecord {
            sidecar: b"{}".to_vec(),
            subject_keys: vec![sk(&format!("subj-{t}-{s}"))],
        });
        e
    };
    append(&mut store, "u", &[e("u", 1)]);
    let mut b = store.begin().unwrap();
    let mut calls: Vec<NewEntry> = (1..=5).map(|s| e("t", s)).collect();
    // An entry id of another chain, and then one repeated within the call.
    calls[3].entry_id = e("u", 1).entry_id;
    assert!(matches!(
        b.append("t", &calls),
        Err(StoreError::Invalid { .. })
    ));
    calls[3].entry_id = calls[1].entry_id;
    assert!(matches!(
        b.append("t", &calls),
        Err(StoreError::Invalid { .. })
    ));
    // The batch is as it was: the first three entries can be appended again.
    b.append("t", &calls[..3]).unwrap();
    b.set_head(&head("t", Some(&calls[2]))).unwrap();
    b.commit().unwrap();
    assert_eq!(scan_all(&store, "t").len(), 3);
    assert!(subj(&store, "subj-t-4").is_empty());
    assert_eq!(subj(&store, "subj-t-3"), seqs("t", &[3]));
    let q = Query {
        tool: Some("t".into()),
        ..Query::default()
    };
    assert_eq!(
        query(&store, &q),
        vec![
            ("t".into(), 1),
            ("t".into(), 2),
            ("t".into(), 3),
            ("u".into(), 1)
        ]
    );
}

/// Where entry `seq` of a single-tenant store is: (segment file, offset, length).
fn line_place(path: &Path, seq: u64) -> (PathBuf, u64, usize) {
    let (seg, off, len): (i64, i64, i64) = raw(path)
        .query_row(
            "SELECT seg, off, len FROM entries WHERE seq = ?1",
            [i64::try_from(seq).unwrap()],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let file = path.with_extension("lines").join(format!("{seg:08}.lines"));
    (
        file,
        u64::try_from(off).unwrap(),
        usize::try_from(len).unwrap(),
    )
}

/// Writes `len` bytes `X` over a stored line in its segment file, as someone editing the file
/// would; returns them.
fn forge_line(file: &Path, off: u64, len: usize) -> Vec<u8> {
    let forged = vec![b'X'; len];
    std::os::unix::fs::FileExt::write_all_at(
        &std::fs::File::options().write(true).open(file).unwrap(),
        &forged,
        off,
    )
    .unwrap();
    forged
}

#[test]
fn a_stored_line_can_be_changed_in_its_segment_file() {
    // How the CLI's tampering tests edit a stored line: in place, in the segment file.
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let entries: Vec<_> = (1..=6)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    append(&mut store, "t", &entries[..2]);
    append(&mut store, "t", &entries[2..]);
    // A single tenant's entries are one run of row ids 1..=6.
    let run: (i64, i64, i64) = raw(&path)
        .query_row("SELECT first_seq, first_id, count FROM runs", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .unwrap();
    assert_eq!(run, (1, 1, 6));
    let (file, off, len) = line_place(&path, 5);
    let bytes = std::fs::read(&file).unwrap();
    let at = usize::try_from(off).unwrap();
    assert_eq!(&bytes[at..at + len], entries[4].line.as_slice());
    // Lines are plain JSONL: each followed by a newline.
    assert_eq!(bytes[at + len], b'\n');
    let forged = forge_line(&file, off, len);
    assert_eq!(scan_all(&store, "t")[4].line, forged);
}

fn segment_files(path: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(path.with_extension("lines"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn lines_span_segment_files_and_read_back_across_them() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    // Tiny segments: a new file every append call or so.
    store.set_segment_limit(300);
    let entries: Vec<_> = (1..=40u64)
        .map(|s| {
            entry(
                if s % 2 == 0 { "a" } else { "b" },
                s.div_ceil(2),
                i64::try_from(s).unwrap(),
                "ag",
                "se",
                "ev",
                Some("tool"),
            )
        })
        .collect();
    for chunk in entries.chunks(5) {
        let mut b = store.begin().unwrap();
        for e in chunk {
            let tenant = if e.line.starts_with(br#"{"tenant":"a""#) {
                "a"
            } else {
                "b"
            };
            b.append(tenant, std::slice::from_ref(e)).unwrap();
            b.set_head(&head(tenant, Some(e))).unwrap();
        }
        b.commit().unwrap();
    }
    assert!(segment_files(&path).len() > 3, "{:?}", segment_files(&path));
    let reopened = SqliteStore::open_read_only(&path).unwrap();
    for (tenant, want) in [("a", &entries[1..]), ("b", &entries[..])] {
        let got = scan_all(&reopened, tenant);
        let want: Vec<&NewEntry> = want.iter().step_by(2).collect();
        assert_eq!(got.len(), 20);
        for (g, w) in got.iter().zip(&want) {
            assert_eq!(g.line, w.line);
        }
    }
    for e in &entries {
        assert_eq!(
            reopened.entry_by_id(&e.entry_id).unwrap().unwrap().line,
            e.line
        );
    } // scan_lines hands out the same bytes as scan, across segment boundaries.
    for tenant in ["a", "b"] {
        let mut lines = Vec::new();
        reopened
            .scan_lines(tenant, 1, u64::MAX, &mut |seq, line, personal| {
                lines.push((seq, line.to_vec(), personal.map(<[u8]>::to_vec)));
                Ok(true)
            })
            .unwrap();
        let scanned: Vec<_> = scan_all(&reopened, tenant)
            .into_iter()
            .map(|e| (e.seq, e.line, e.personal))
            .collect();
        assert_eq!(lines, scanned);
    }

    let q = Query {
        tool: Some("tool".into()),
        ..Query::default()
    };
    assert_eq!(query(&reopened, &q).len(), 40);
}

#[test]
fn lines_of_a_batch_that_does_not_commit_are_cut_off() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    store.set_segment_limit(200);
    let entries: Vec<_> = (1..=12)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    append(&mut store, "t", &entries[..2]);
    let files = segment_files(&path);
    let (file, _, _) = line_place(&path, 2);
    let committed = std::fs::metadata(&file).unwrap().len();
    // A batch that writes lines over several new segments, then is dropped.
    {
        let mut b = store.begin().unwrap();
        for e in &entries[2..] {
            b.append("t", std::slice::from_ref(e)).unwrap();
        }
    }
    assert_eq!(segment_files(&path), files);
    assert_eq!(std::fs::metadata(&file).unwrap().len(), committed);
    // A writer that died before committing left bytes past the end and a later segment: the
    // next batch cuts them off, and the chain continues where it was.
    std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap()
        .write_all(b"garbage from a dead writer")
        .unwrap();
    std::fs::write(path.with_extension("lines").join("00000099.lines"), b"junk").unwrap();
    append(&mut store, "t", &entries[2..4]);
    assert!(!segment_files(&path).contains(&"00000099.lines".to_owned()));
    let got = scan_all(&store, "t");
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&entries) {
        assert_eq!(g.line, w.line);
    }
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(!text.contains("garbage"), "{text}");
}

#[test]
fn a_missing_segment_file_is_reported_as_corruption() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let entries: Vec<_> = (1..=3)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    append(&mut store, "t", &entries);
    let (file, _, _) = line_place(&path, 1);
    std::fs::remove_file(&file).unwrap();
    let fresh = SqliteStore::open_read_only(&path).unwrap();
    let err = fresh.scan("t", 1, 3, &mut |_| Ok(true)).unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(err.to_string().contains("missing"), "{err}");
    // A writer refuses to continue a chain whose lines are gone.
    let mut w = SqliteStore::open(&path).unwrap();
    assert!(matches!(
        w.begin().map(|_| ()),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn pages_after_a_cursor_concatenate_to_the_whole_answer() {
    // Two tenants, many entries sharing timestamps: a cursor at (ts, tenant, seq) continues
    // exactly after its row, wherever ties fall.
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    for tenant in ["a", "b"] {
        let entries: Vec<_> = (1..=60)
            .map(|s| {
                entry(
                    tenant,
                    s,
                    i64::try_from(s / 7).unwrap(),
                    "ag",
                    "se",
                    "ev",
                    None,
                )
            })
            .collect();
        append(&mut store, tenant, &entries);
    }
    let all = query(&store, &Query::default());
    assert_eq!(all.len(), 120);
    for page in [1u64, 4, 7, 13] {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let mut rows: Vec<StoredEntry> = Vec::new();
            store
                .query(
                    &Query {
                        limit: Some(page),
                        after: after.clone(),
                        ..Query::default()
                    },
                    &mut |e| {
                        rows.push(e);
                        Ok(true)
                    },
                )
                .unwrap();
            let Some(last) = rows.last() else { break };
            // The test entries' timestamps are seq / 7 (see above).
            after = Some(blackbox_store::After {
                ts_ms: i64::try_from(last.seq / 7).unwrap(),
                tenant_id: last.tenant_id.clone(),
                seq: last.seq,
            });
            got.extend(rows.into_iter().map(|e| (e.tenant_id, e.seq)));
        }
        assert_eq!(got, all, "page size {page}");
    }
}

/// Every byte of every file of a store (database, `-wal`, `-shm`, entry-line segments).
fn store_bytes(path: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = path.parent().unwrap();
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.clone(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn erased_sidecars_leave_no_bytes_in_any_file() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let secret = "ds_4f1c9a7e2b5d8c3a1f6e9b0d2c4a7e5f";
    let entries: Vec<NewEntry> = (1..=50)
        .map(|s| {
            let mut e = entry("t", s, 10, "a", "s", "ev", None);
            e.personal = Some(PersonalRecord {
                sidecar: format!(
                    r#"{{"fields":{{"data_subjects":["{secret}-{s}"]}},"salt":"00"}}"#
                )
                .into_bytes(),
                subject_keys: vec![sk(secret)],
            });
            e
        })
        .collect();
    append(&mut store, "t", &entries);
    // A reader holding no snapshot does not stop the purge; the data is in the WAL now.
    assert!(
        store_bytes(&path)
            .iter()
            .any(|(_, b)| contains(b, secret.as_bytes()))
    );
    let seqs: Vec<u64> = subj(&store, secret).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs.len(), 50);
    let outcome = erase(&mut store, "t", &seqs);
    assert!(outcome.iter().all(|o| *o == Erasure::Removed));
    store.purge_erased(Duration::from_secs(5)).unwrap();
    for (p, bytes) in store_bytes(&path) {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} still holds the erased id",
            p.display()
        );
    }
    assert!(subj(&store, secret).is_empty());
    // The entries themselves are intact.
    let got = scan_all(&store, "t");
    assert_eq!(got.len(), 50);
    assert!(got.iter().all(|e| e.personal.is_none()));
}

#[test]
fn purge_waits_for_readers_and_says_so_when_they_stay() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    append(&mut store, "t", &[entry("t", 1, 10, "a", "s", "ev", None)]);
    // A reader in the middle of a read transaction holds a snapshot of the log.
    let reader = raw(&path);
    reader
        .execute_batch("BEGIN; SELECT count(*) FROM entries;")
        .unwrap();
    append(&mut store, "t", &[entry("t", 2, 10, "a", "s", "ev", None)]);
    let err = store.purge_erased(Duration::from_millis(200)).unwrap_err();
    assert!(matches!(err, StoreError::PurgeIncomplete { .. }), "{err}");
    assert!(err.to_string().contains("readers"));
    reader.execute_batch("COMMIT;").unwrap();
    assert!(store.purge_erased(Duration::from_secs(5)).unwrap().attempts >= 1);
    let wal = std::fs::metadata(format!("{}-wal", path.display())).map_or(0, |m| m.len());
    assert_eq!(wal, 0, "the write-ahead log is truncated");
}

#[test]
fn a_version_2_store_is_migrated_to_keyed_subject_hashes() {
    let (_dir, path) = tmp();
    let secret = "ds_0a1b2c3d4e5f60718293a4b5c6d7e8f9";
    {
        let mut store = SqliteStore::create(&path).unwrap();
        let mut e = entry("t", 1, 10, "a", "s", "ev", None);
        e.personal = Some(PersonalRecord {
            sidecar: b"{}".to_vec(),
            subject_keys: vec![],
        });
        append(
            &mut store,
            "t",
            &[e, entry("t", 2, 10, "a", "s", "ev", None)],
        );
    }
    // Turn it into a version 2 store: clear-text ids in `personal_subjects`.
    raw(&path)
        .execute_batch(&format!(
            "DROP TABLE subject_index;
             CREATE TABLE personal_subjects(
                 id INTEGER NOT NULL REFERENCES personal(id), subject_id TEXT NOT NULL,
                 PRIMARY KEY(id, subject_id)) WITHOUT ROWID;
             CREATE INDEX personal_subjects_subject ON personal_subjects(subject_id);
             INSERT INTO personal_subjects VALUES (1, '{secret}');
             PRAGMA user_version = 2;"
        ))
        .unwrap();
    assert!(matches!(
        SqliteStore::open(&path),
        Err(StoreError::Schema { found: 2, .. })
    ));
    assert!(SqliteStore::migrate(&path, &sk).unwrap());
    assert!(
        !SqliteStore::migrate(&path, &sk).unwrap(),
        "already current"
    );
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(subj(&store, secret), seqs("t", &[1]));
    for (p, bytes) in store_bytes(&path) {
        assert!(
            !contains(&bytes, secret.as_bytes()),
            "{} still holds the clear-text id",
            p.display()
        );
    }
}

#[test]
fn batches_past_the_early_flush_threshold_commit_whole_and_roll_back_whole() {
    // 45 MB per batch: segment files are flushed in the background every 32 MiB while the batch
    // is written, across a segment change (20 MB segments); commit and rollback are unchanged.
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    store.set_segment_limit(20 << 20);
    let big = |seq: u64| {
        let mut e = entry("t", seq, 1, "a", "s", "ev", None);
        e.line = format!("{{\"seq\":{seq},\"pad\":\"{}\"}}", "y".repeat(64 << 10)).into_bytes();
        e.entry_hash = Hash::digest(&e.line);
        e
    };
    let first: Vec<NewEntry> = (1..=700).map(big).collect();
    append(&mut store, "t", &first);
    {
        let mut b = store.begin().unwrap();
        let more: Vec<NewEntry> = (701..=1400).map(big).collect();
        b.append("t", &more).unwrap();
        b.set_head(&head("t", more.last())).unwrap();
        // dropped: rolled back
    }
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    let got = scan_all(&store, "t");
    assert_eq!(got.len(), 700);
    for (g, want) in got.iter().zip(&first) {
        assert_eq!((g.seq, &g.line), (want.seq, &want.line));
    }
}

/// `scan_line_blocks` hands out what `scan` does (lines and personal sidecars, merged in by
/// row id), over interleaved chains in many runs and blocks: with buffers kept across blocks,
/// with buffers full of stale bytes written over, and when the visitor stops early.
#[test]
fn line_blocks_match_scan_with_sidecars_and_reused_buffers() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    store.set_segment_limit(4096);
    let sidecar = |t: &str, s: u64| format!(r#"{{"salt":"{t}{s}","fields":{{"n":{s}}}}}"#);
    // 3,000 entries per chain (several 1,024-entry blocks), in batches that interleave the two
    // chains' runs; every third entry of "a" and every fifth of "b" has a sidecar.
    for batch in 0..30u64 {
        let mut b = store.begin().unwrap();
        for tenant in ["a", "b"] {
            let entries: Vec<NewEntry> = (batch * 100 + 1..=batch * 100 + 100)
                .map(|s| {
                    let mut e = entry(tenant, s, 10, "ag", "se", "ev", None);
                    if (tenant == "a" && s % 3 == 0) || (tenant == "b" && s % 5 == 0) {
                        e.personal = Some(PersonalRecord {
                            sidecar: sidecar(tenant, s).into_bytes(),
                            subject_keys: Vec::new(),
                        });
                    }
                    e
                })
                .collect();
            b.append(tenant, &entries).unwrap();
            b.set_head(&head(tenant, entries.last())).unwrap();
        }
        b.commit().unwrap();
    }
    let store = SqliteStore::open_read_only(&path).unwrap();
    for tenant in ["a", "b"] {
        let want: Vec<(u64, Vec<u8>, Option<Vec<u8>>)> = scan_all(&store, tenant)
            .into_iter()
            .map(|e| (e.seq, e.line, e.personal))
            .collect();
        assert_eq!(want.len(), 3000);
        assert_eq!(
            want.iter().filter(|w| w.2.is_some()).count(),
            if tenant == "a" { 1000 } else { 600 }
        );
        let collect = |b: &blackbox_store::LineBlock, got: &mut Vec<_>| {
            for l in &b.lines {
                got.push((
                    l.seq,
                    b.buf[l.line.clone()].to_vec(),
                    l.personal.clone().map(|r| b.side[r].to_vec()),
                ));
            }
        };
        // Buffers kept across blocks: every block lands after the previous one.
        let mut block = blackbox_store::LineBlock::default();
        let mut got = Vec::new();
        let mut blocks = 0;
        store
            .scan_line_blocks(tenant, 1, u64::MAX, &mut block, &mut |b| {
                blocks += 1;
                collect(b, &mut got);
                Ok(true)
            })
            .unwrap();
        assert!(blocks >= 3, "{blocks} blocks");
        assert_eq!(got, want);
        // `end` is just past the last line.
        assert_eq!(block.end, block.lines.last().unwrap().line.end);
        // Buffers started again after each block, over stale bytes.
        let mut block = blackbox_store::LineBlock {
            buf: vec![0xff; 1 << 20],
            ..blackbox_store::LineBlock::default()
        };
        let mut got = Vec::new();
        store
            .scan_line_blocks(tenant, 1, u64::MAX, &mut block, &mut |b| {
                collect(b, &mut got);
                b.end = 0;
                b.side.clear();
                Ok(true)
            })
            .unwrap();
        assert_eq!(got, want);
        // A sub-range, stopped after its first block.
        let mut got = Vec::new();
        store
            .scan_line_blocks(
                tenant,
                1500,
                2999,
                &mut blackbox_store::LineBlock::default(),
                &mut |b| {
                    collect(b, &mut got);
                    Ok(false)
                },
            )
            .unwrap();
        assert!(!got.is_empty() && got.len() < 1500, "{}", got.len());
        assert_eq!(got[..], want[1499..1499 + got.len()]);
    }
}

/// The entry-id index's SQL as stored.
fn entry_id_index(path: &Path) -> String {
    raw(path)
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = 'entries_entry_id'",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn entry_id_index_is_high_half_first_and_old_stores_are_rebuilt_on_open() {
    let (_dir, path) = tmp();
    let entries: Vec<NewEntry> = (1..=50)
        .map(|s| {
            entry(
                "acme",
                s,
                1000 + i64::try_from(s).unwrap(),
                "a",
                "s",
                "e",
                None,
            )
        })
        .collect();
    {
        let mut store = SqliteStore::create(&path).unwrap();
        append(&mut store, "acme", &entries);
    }
    assert!(entry_id_index(&path).ends_with("ON entries(id_hi, id_lo)"));

    // A store made before the change: the same index, low half first.
    raw(&path)
        .execute_batch(
            "DROP INDEX entries_entry_id;
             CREATE UNIQUE INDEX entries_entry_id ON entries(id_lo, id_hi);",
        )
        .unwrap();
    // Read-only opens neither rebuild nor need to.
    {
        let store = SqliteStore::open_read_only(&path).unwrap();
        let found = store.entry_by_id(&entries[20].entry_id).unwrap().unwrap();
        assert_eq!(found.seq, 21);
    }
    assert!(entry_id_index(&path).ends_with("ON entries(id_lo, id_hi)"));

    let mut store = SqliteStore::open(&path).unwrap();
    assert!(entry_id_index(&path).ends_with("ON entries(id_hi, id_lo)"));
    for e in &entries {
        assert_eq!(store.entry_by_id(&e.entry_id).unwrap().unwrap().seq, e.seq);
    }
    // Still unique: the same entry id again (in another chain) is refused.
    let mut dup = entry("globex", 1, 5000, "a", "s", "e", None);
    dup.entry_id = entries[3].entry_id;
    let mut b = store.begin().unwrap();
    assert!(b.append("globex", &[dup]).is_err());
}

/// `meta`'s `lines_end` and `lines_synced` as "<segment> <length>".
fn lines_meta(path: &Path) -> (String, String) {
    let get = |k: &str| -> String {
        raw(path)
            .query_row("SELECT value FROM meta WHERE key = ?1", [k], |r| r.get(0))
            .unwrap()
    };
    (get("lines_end"), get("lines_synced"))
}

fn unsynced_copies(path: &Path) -> Vec<(i64, i64, u64)> {
    let c = raw(path);
    let mut stmt = c
        .prepare("SELECT seg, off, length(data) FROM unsynced_lines ORDER BY seg, off")
        .unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            u64::try_from(r.get::<_, i64>(2)?).unwrap(),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// An entry whose line is `pad` bytes longer than [`entry`]'s.
fn big_entry(tenant: &str, seq: u64, pad: usize) -> NewEntry {
    let mut e = entry(tenant, seq, 1, "a", "s", "ev", None);
    let mut line = e.line[..e.line.len() - 1].to_vec();
    line.extend_from_slice(format!(",\"big\":\"{}\"}}", "y".repeat(pad)).as_bytes());
    e.entry_hash = Hash::digest(&line);
    e.line = line;
    e
}

#[test]
fn small_batches_keep_a_copy_of_their_lines_and_a_machine_crash_loses_none() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    let entries: Vec<_> = (1..=8)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    // The first batch creates the segment file: fsynced (with its directory), no copy.
    append(&mut store, "t", &entries[..2]);
    let (end, synced) = lines_meta(&path);
    assert_eq!(end, synced);
    assert!(unsynced_copies(&path).is_empty());
    // Small batches: one fsync each (the transaction's), their lines copied into it.
    for e in &entries[2..] {
        append(&mut store, "t", std::slice::from_ref(e));
    }
    let copies = unsynced_copies(&path);
    assert_eq!(copies.len(), 6, "{copies:?}");
    let (end, synced) = lines_meta(&path);
    let synced_len: u64 = synced.split(' ').nth(1).unwrap().parse().unwrap();
    let end_len: u64 = end.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(
        copies.iter().map(|c| c.2).sum::<u64>(),
        end_len - synced_len
    );
    assert_eq!(copies[0].1, i64::try_from(synced_len).unwrap());
    drop(store);

    // The machine stops before the kernel wrote the last lines: the file ends where it was last
    // fsynced, or holds zeros past it (blocks allocated, never written).
    let (file, _, _) = line_place(&path, 1);
    for lost in ["cut", "zeros"] {
        let f = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
        f.set_len(synced_len).unwrap();
        if lost == "zeros" {
            f.set_len(end_len).unwrap();
        }
        drop(f);
        // Even a read-only open puts the committed lines back, then every read finds them.
        let reader = SqliteStore::open_read_only(&path).unwrap();
        let got = scan_all(&reader, "t");
        assert_eq!(got.len(), 8, "{lost}");
        for (g, w) in got.iter().zip(&entries) {
            assert_eq!(g.line, w.line, "{lost}");
        }
        assert_eq!(std::fs::metadata(&file).unwrap().len(), end_len, "{lost}");
    }

    // A line changed in place after it was written is no loss: the copy never writes over it,
    // so verification sees the change.
    let (file, off, len) = line_place(&path, 7);
    let forged = forge_line(&file, off, len);
    let mut store = SqliteStore::open(&path).unwrap();
    assert_eq!(scan_all(&store, "t")[6].line, forged);

    // A writer continues after the restored lines; a large batch fsyncs the segment file and
    // drops every copy.
    let big: Vec<_> = (9..=10).map(|s| big_entry("t", s, 40_000)).collect();
    append(&mut store, "t", &big);
    assert!(unsynced_copies(&path).is_empty());
    let (end, synced) = lines_meta(&path);
    assert_eq!(end, synced);
    let got = scan_all(&store, "t");
    assert_eq!(got.len(), 10);
    assert_eq!(got[9].line, big[1].line);
}

#[test]
fn lines_kept_only_through_copies_are_bounded() {
    let (_dir, path) = tmp();
    let mut store = SqliteStore::create(&path).unwrap();
    append(&mut store, "t", &[entry("t", 1, 1, "a", "s", "ev", None)]);
    // 60 KB lines, each batch small enough for a copy; after 1 MiB of copies a batch fsyncs.
    let mut most = 0u64;
    let mut emptied = false;
    for seq in 2..=40 {
        append(&mut store, "t", &[big_entry("t", seq, 60_000)]);
        let kept: u64 = unsynced_copies(&path).iter().map(|c| c.2).sum();
        most = most.max(kept);
        emptied |= seq > 2 && kept == 0;
    }
    assert!(most <= 1 << 20, "{most}");
    assert!(most > 900_000, "{most}");
    assert!(emptied);
    assert_eq!(scan_all(&store, "t").len(), 40);
}

#[test]
fn a_store_from_before_the_copies_opens_and_keeps_its_lines() {
    // A store last written by a version that fsynced every batch's lines: no `unsynced_lines`
    // table, no `lines_synced`.
    let (_dir, path) = tmp();
    let entries: Vec<_> = (1..=4)
        .map(|s| entry("t", s, 1, "a", "s", "ev", None))
        .collect();
    {
        let mut store = SqliteStore::create(&path).unwrap();
        append(&mut store, "t", &entries[..2]);
    }
    let end_before: String = {
        let c = raw(&path);
        c.execute_batch("DROP TABLE unsynced_lines; DELETE FROM meta WHERE key = 'lines_synced';")
            .unwrap();
        c.query_row("SELECT value FROM meta WHERE key = 'lines_end'", [], |r| {
            r.get(0)
        })
        .unwrap()
    };
    // Read-only: nothing to create, nothing to restore.
    let reader = SqliteStore::open_read_only(&path).unwrap();
    assert_eq!(scan_all(&reader, "t").len(), 2);
    drop(reader);
    // A writer creates the table; what was committed before counts as fsynced, so the first
    // copy starts at the old end.
    let mut store = SqliteStore::open(&path).unwrap();
    append(&mut store, "t", &entries[2..3]);
    append(&mut store, "t", &entries[3..]);
    let (_, synced) = lines_meta(&path);
    assert_eq!(synced, end_before);
    let copies = unsynced_copies(&path);
    assert_eq!(copies.len(), 2);
    let old_len: i64 = end_before.split(' ').nth(1).unwrap().parse().unwrap();
    assert_eq!(copies[0].1, old_len);
    let got = scan_all(&store, "t");
    assert_eq!(got.len(), 4);
    for (g, w) in got.iter().zip(&entries) {
        assert_eq!(g.line, w.line);
    }
}
