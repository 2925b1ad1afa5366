//! A store over two SQLite stores through a tenant map ([`ShardedStore`]) against the storage
//! contract's conformance suite: tenants of every check are split between the two, so entry-id
//! uniqueness, isolation, merged queries and erasure are checked across stores.

// Test helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use blackbox_store::conformance::{self, Backend};
use blackbox_store::segments::lines_dir;
use blackbox_store::sharded::{Shard, ShardedStore, TenantMap};
use blackbox_store::sqlite::SqliteStore;
use blackbox_store::{Store, StoreError};

struct TwoSqlite {
    dir: tempfile::TempDir,
    map: TenantMap,
}

/// Tenants "a", "t1" and the rest in `one`; "b", "t2", "t3" in `two`.
fn split_map() -> TenantMap {
    let tenants: BTreeMap<String, String> =
        [("b", "two"), ("t2", "two"), ("t3", "two"), ("a", "one")]
            .into_iter()
            .map(|(t, d)| (t.to_owned(), d.to_owned()))
            .collect();
    TenantMap::new(vec!["one".into(), "two".into()], &tenants, Some("one")).unwrap()
}

fn fresh() -> TwoSqlite {
    TwoSqlite {
        dir: tempfile::tempdir().unwrap(),
        map: split_map(),
    }
}

fn open_one(path: &Path) -> Result<Shard, StoreError> {
    let writer = if path.exists() {
        SqliteStore::open(path)?
    } else {
        SqliteStore::create(path)?
    };
    Ok(Shard {
        writer: Some(Box::new(writer)),
        reader: Box::new(SqliteStore::open_read_only(path)?),
    })
}

impl Backend for TwoSqlite {
    fn open(&mut self) -> Result<Box<dyn Store>, StoreError> {
        let shards = ["one", "two"]
            .iter()
            .map(|n| open_one(&self.dir.path().join(format!("{n}.db"))))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Box::new(ShardedStore::new(self.map.clone(), shards)?))
    }

    fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        for n in ["one", "two"] {
            let path = self.dir.path().join(format!("{n}.db"));
            for s in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.as_os_str().to_owned();
                p.push(s);
                out.push(PathBuf::from(p));
            }
            if let Ok(d) = std::fs::read_dir(lines_dir(&path)) {
                out.extend(d.filter_map(Result::ok).map(|e| e.path()));
            }
        }
        out
    }
}

#[test]
fn two_stores_behind_a_tenant_map_pass_the_conformance_suite() {
    conformance::run_all(&mut fresh).unwrap();
    for seed in [1, 0xdead_beef] {
        conformance::query_equivalence(&mut fresh(), seed).unwrap();
    }
}

fn one_entry(tenant: &str) -> (blackbox_store::NewEntry, blackbox_store::ChainHead) {
    let line = format!("{{\"tenant\":\"{tenant}\"}}").into_bytes();
    let hash = blackbox_core::Hash::digest(&line);
    let e = blackbox_store::NewEntry {
        seq: 1,
        entry_id: [7; 16],
        ts_ms: 1,
        agent_id: "a".into(),
        session_id: "s".into(),
        event_type: "tool_call".into(),
        tool: None,
        line,
        entry_hash: hash,
        personal: None,
    };
    let head = blackbox_store::ChainHead {
        tenant_id: tenant.into(),
        size: 1,
        head_hash: hash,
        last_entry_id: [7; 16],
        merkle_state: Vec::new(),
        last_checkpoint_size: 0,
        last_checkpoint_ms: 0,
    };
    (e, head)
}

#[test]
fn a_chain_kept_where_the_map_does_not_put_it_is_an_error_and_unmapped_tenants_are_refused() {
    let mut b = fresh();
    {
        let mut s = b.open().unwrap();
        let (e, head) = one_entry("a");
        let mut batch = s.begin().unwrap();
        batch.append("a", &[e]).unwrap();
        batch.set_head(&head).unwrap();
        batch.commit().unwrap();
        assert_eq!(s.chains().unwrap().len(), 1);
    }
    // The map edited afterwards: "a" is put in "two" on paper, its chain is in "one".
    let tenants: BTreeMap<String, String> = [("a".to_owned(), "two".to_owned())].into();
    b.map = TenantMap::new(vec!["one".into(), "two".into()], &tenants, Some("one")).unwrap();
    let s = b.open().unwrap();
    let e = s.chains().unwrap_err().to_string();
    assert!(e.contains("\"a\"") && e.contains("restore the map"), "{e}");
    let e = s
        .query(&blackbox_store::Query::default(), &mut |_| Ok(true))
        .unwrap_err()
        .to_string();
    assert!(e.contains("restore the map"), "{e}");
    drop(s);
    // Without a default, a tenant the map does not list is refused, naming the fix.
    b.map = TenantMap::new(vec!["one".into(), "two".into()], &BTreeMap::new(), None).unwrap();
    let mut s = b.open().unwrap();
    let mut batch = s.begin().unwrap();
    let e = batch.chain_head("nobody").unwrap_err().to_string();
    assert!(e.contains("[tenants]"), "{e}");
    drop(batch);
    // An entry id stored in one database is refused in the other.
    b.map = split_map();
    let mut s = b.open().unwrap();
    let (e, _) = one_entry("b");
    let mut batch = s.begin().unwrap();
    let err = batch.append("b", &[e]).unwrap_err().to_string();
    assert!(err.contains("already stored"), "{err}");
}

#[test]
fn a_map_naming_a_database_it_does_not_list_is_refused() {
    let tenants: BTreeMap<String, String> = [("acme".to_owned(), "eu".to_owned())].into();
    let e = TenantMap::new(vec!["us".into()], &tenants, None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("\"eu\"") && e.contains("us"), "{e}");
    let e = TenantMap::new(vec!["us".into(), "us".into()], &BTreeMap::new(), None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("twice"), "{e}");
    assert!(TenantMap::new(Vec::new(), &BTreeMap::new(), None).is_err());
}
