//! The storage layer alone, PostgreSQL beside SQLite in the same run: durable appends in
//! batches (one transaction and one commit per batch, as the service's group commit), a full
//! scan, and an indexed query, through the storage contract only. What the service adds on top
//! (normalising, detection, signing) is the same for both backends.
//!
//!     cargo run --release -p blackbox-store-pg --example store_bench -- [ENTRIES] [BATCH]
//!
//! PostgreSQL: `BLACKBOX_TEST_PG` (default postgres://postgres@127.0.0.1:5432/postgres); a
//! scratch database is created and dropped. SQLite: a temporary directory.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::Instant;

use blackbox_core::Hash;
use blackbox_store::{ChainHead, NewEntry, Query, Store};
use blackbox_store_pg::{PgOptions, PgStore};

fn entry(seq: u64) -> NewEntry {
    // About the size of a real entry line (docs/FORMAT.md): ~560 bytes of JSON.
    let line = format!(
        "{{\"v\":1,\"seq\":{seq},\"entry_id\":\"0193{seq:028x}\",\"ts\":\"2026-12-06T05:00:00.000Z\",\
         \"tenant_id\":\"acme\",\"agent_id\":\"agent-{}\",\"session_id\":\"s-{}\",\
         \"event_type\":\"tool_call\",\"tool\":\"tool-{}\",\"payload\":{{\"args_sha256\":\
         \"{:064x}\",\"decision\":\"allow\",\"duration_ms\":12}},\"prev_hash\":\"{:064x}\",\
         \"hmac\":\"{:064x}\",\"key_id\":\"k1\"}}",
        seq % 50,
        seq / 20,
        seq % 12,
        seq.wrapping_mul(0x9e37_79b9_7f4a_7c15),
        seq.wrapping_mul(31),
        seq.wrapping_mul(17)
    );
    let mut id = [0u8; 16];
    id[..8].copy_from_slice(&0x0193_0000_0000_0000u64.to_be_bytes());
    id[8..].copy_from_slice(&seq.to_be_bytes());
    NewEntry {
        seq,
        entry_id: id,
        ts_ms: 1_765_000_000_000 + i64::try_from(seq).unwrap(),
        agent_id: format!("agent-{}", seq % 50),
        session_id: format!("s-{}", seq / 20),
        event_type: "tool_call".into(),
        tool: Some(format!("tool-{}", seq % 12)),
        entry_hash: Hash([u8::try_from(seq % 251).unwrap(); 32]),
        line: line.into_bytes(),
        personal: None,
    }
}

fn run(name: &str, store: &mut dyn Store, entries: u64, batch: u64) {
    let t = Instant::now();
    let mut seq = 0;
    while seq < entries {
        let es: Vec<NewEntry> = (seq + 1..=(seq + batch).min(entries)).map(entry).collect();
        let last = es.last().unwrap();
        let head = ChainHead {
            tenant_id: "acme".into(),
            size: last.seq,
            head_hash: last.entry_hash,
            last_entry_id: last.entry_id,
            merkle_state: vec![0; 64],
            last_checkpoint_size: 0,
            last_checkpoint_ms: 0,
        };
        let mut b = store.begin().unwrap();
        b.append("acme", &es).unwrap();
        b.set_head(&head).unwrap();
        b.commit().unwrap();
        seq = last.seq;
    }
    let append = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let mut n = 0u64;
    let mut bytes = 0usize;
    store
        .scan_lines("acme", 1, u64::MAX, &mut |_, l, _| {
            n += 1;
            bytes += l.len();
            Ok(true)
        })
        .unwrap();
    let scan = t.elapsed().as_secs_f64();
    assert_eq!(n, entries);
    let t = Instant::now();
    let mut hits = 0u64;
    store
        .query(
            &Query {
                agent_id: Some("agent-7".into()),
                ..Query::default()
            },
            &mut |_| {
                hits += 1;
                Ok(true)
            },
        )
        .unwrap();
    let query = t.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let (e, h) = (entries as f64, hits as f64);
    println!(
        "{name:<10} append {:>9.0} entries/s ({batch} per commit)  scan {:>9.0} entries/s  \
         query by agent {:>9.0} rows/s ({hits} rows)  line bytes {}",
        e / append,
        e / scan,
        h / query,
        bytes / usize::try_from(entries).unwrap()
    );
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("ENTRIES and BATCH are numbers"))
        .collect();
    let entries = args.first().copied().unwrap_or(200_000);
    let batch = args.get(1).copied().unwrap_or(512);
    let admin = std::env::var("BLACKBOX_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
    let db = format!("bb_bench_{}", std::process::id());
    let mut c = postgres::Client::connect(&admin, postgres::NoTls).expect("a PostgreSQL server");
    c.batch_execute(&format!("CREATE DATABASE {db}")).unwrap();
    let url = format!("{}/{db}", &admin[..admin.rfind('/').unwrap()]);
    println!("{entries} entries, {batch} per batch");
    {
        let dir = tempfile::tempdir().unwrap();
        let mut s = blackbox_store::sqlite::SqliteStore::create(dir.path().join("l.db")).unwrap();
        run("sqlite", &mut s, entries, batch);
    }
    {
        let mut s = PgStore::open(&url, &PgOptions::default()).unwrap();
        run("postgres", &mut s, entries, batch);
    }
    c.batch_execute(&format!("DROP DATABASE {db} WITH (FORCE)"))
        .unwrap();
}
