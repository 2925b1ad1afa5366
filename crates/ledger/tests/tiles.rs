//! A chain read as C2SP tlog-tiles, checked by an independent implementation: Cloudflare's
//! `tlog_tiles` reads our tiles through its `TileHashReader` (which authenticates every tile
//! against the signed tree hash before using it) and builds inclusion and consistency proofs
//! from them that our verifier accepts; entry bundles hash to the level-0 tiles.

// Test helpers panic on failure by design: that is how a test reports it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use blackbox_core::Hash;
use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::entry::{RedactionPolicy, normalize_event};
use blackbox_core::merkle::{leaf_hash, verify_consistency, verify_inclusion};
use blackbox_core::tiles::{TileKind, TilePath};
use blackbox_ledger::datadir::DataDir;
use blackbox_ledger::open::{init, open_reader, open_writer};
use blackbox_ledger::tiles::read_tile;
use blackbox_store::Store;
use tlog_tiles::{Tile, TileHashReader, TileReader, prove_record, prove_tree};

fn event(i: usize) -> blackbox_core::entry::NormalizedEvent {
    normalize_event(
        serde_json::json!({"tenant_id": "acme", "agent_id": "a", "session_id": "s",
            "event_type": "tool_call", "tool_name": "t", "client_seq": i}),
        &RedactionPolicy::default(),
        &blackbox_core::origin::Origin::Service,
    )
    .unwrap()
}

/// Their tile (Go-style path with the height, 8) as ours (C2SP path).
fn ours(t: &Tile) -> TilePath {
    assert_eq!(t.height(), 8);
    TilePath {
        kind: if t.is_data() {
            TileKind::Entries
        } else {
            TileKind::Hashes { level: t.level() }
        },
        index: t.level_index(),
        width: u16::try_from(t.width()).unwrap(),
    }
}

struct Reader<'a> {
    store: &'a dyn Store,
    size: u64,
}

impl TileReader for Reader<'_> {
    fn height(&self) -> u8 {
        8
    }
    fn read_tiles(&self, tiles: &[Tile]) -> Result<Vec<Vec<u8>>, tlog_tiles::Error> {
        Ok(tiles
            .iter()
            .map(|t| {
                let p = ours(t);
                // The C2SP path round-trips through our parser.
                assert_eq!(TilePath::parse(&p.to_string()).unwrap(), p);
                read_tile(self.store, "acme", &p, self.size).unwrap()
            })
            .collect())
    }
    fn save_tiles(&self, _tiles: &[Tile], _data: &[Vec<u8>]) {}
}

#[test]
fn their_tile_reader_authenticates_our_tiles_and_proves_from_them() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = DataDir::new(tmp.path().join("data"));
    init(&dir, "blackbox/tiles").unwrap();
    std::fs::write(
        dir.config_path(),
        "[checkpoints]\nevery_entries = 1000000\n",
    )
    .unwrap();
    let (mut store, mut writer, _) = open_writer(&dir).unwrap();
    // 70,000 entries: full and partial tiles at levels 0, 1 and 2 (the spec's own example).
    let n = 70_000usize;
    for chunk in 0..7 {
        let events: Vec<_> = (chunk * 10_000..(chunk + 1) * 10_000).map(event).collect();
        writer
            .append(&mut store, &events, 1_776_160_000_000, chunk == 6)
            .unwrap();
    }
    drop(store);
    drop(writer);
    let store = open_reader(&dir).unwrap();
    let cp =
        SignedCheckpoint::parse(&store.latest_checkpoint("acme").unwrap().unwrap().note).unwrap();
    let size = cp.checkpoint.size;
    assert_eq!(size, n as u64);
    let root = cp.checkpoint.root;
    let reader = Reader {
        store: &store,
        size,
    };
    let thr = TileHashReader::new(size, tlog_tiles::Hash(root.0), &reader);
    // Inclusion of records across tile boundaries, built by them from our tiles.
    for index in [0u64, 1, 255, 256, 65_535, 65_536, 69_999] {
        let proof = prove_record(size, index, &thr).unwrap();
        let leaf =
            leaf_hash(store.entry_hashes("acme", index + 1, index + 1).unwrap()[0].as_bytes());
        let hashes: Vec<Hash> = proof.iter().map(|h| Hash(h.0)).collect();
        verify_inclusion(&leaf, index, size, &hashes, &root).unwrap();
    }
    // Consistency from sizes the witnesses might hold.
    for old in [1u64, 256, 4_096, 65_536, 69_000] {
        let old_root = blackbox_core::merkle::root_from_leaf_hashes(
            &store
                .entry_hashes("acme", 1, old)
                .unwrap()
                .iter()
                .map(|h| leaf_hash(h.as_bytes()))
                .collect::<Vec<_>>(),
        );
        let proof = prove_tree(size, old, &thr).unwrap();
        let hashes: Vec<Hash> = proof.iter().map(|h| Hash(h.0)).collect();
        verify_consistency(old, size, &hashes, &old_root, &root).unwrap();
    }
    // Every tile their library says a tree of this size publishes, we serve, at the same path
    // (theirs is Go's `tile/8/…`, C2SP drops the height) and with the width they expect; and
    // the tile they name next for a larger tree is not served yet.
    let published = Tile::new_tiles(8, 0, size);
    assert_eq!(
        published.len(),
        273 + 1 + 1 + 1 + 1,
        "the spec's 70,000-entry example"
    );
    for t in &published {
        let p = ours(t);
        assert_eq!(
            format!("tile/8/{}", &p.to_string()["tile/".len()..]),
            t.path()
        );
        let bytes = read_tile(&store, "acme", &p, size).unwrap();
        assert_eq!(bytes.len(), t.width() as usize * 32, "{}", t.path());
    }
    for t in Tile::new_tiles(8, size, size + 1) {
        assert!(
            read_tile(&store, "acme", &ours(&t), size).is_err(),
            "{}",
            t.path()
        );
    }
    // An entry bundle hashes to its level-0 tile; partial tiles have the spec's widths.
    let bundle = read_tile(
        &store,
        "acme",
        &TilePath::parse("tile/entries/273.p/112").unwrap(),
        size,
    )
    .unwrap();
    let level0 = read_tile(
        &store,
        "acme",
        &TilePath::parse("tile/0/273.p/112").unwrap(),
        size,
    )
    .unwrap();
    assert_eq!(bundle.len(), 112 * 34);
    for (i, rec) in bundle.chunks(34).enumerate() {
        assert_eq!(&rec[..2], &[0, 32]);
        assert_eq!(
            leaf_hash(&rec[2..]).as_bytes(),
            &level0[i * 32..(i + 1) * 32]
        );
    }
    for (path, ok) in [
        ("tile/1/000", true),
        ("tile/1/001.p/17", true),
        ("tile/2/000.p/1", true),
        ("tile/0/273.p/113", false),
        ("tile/1/001.p/18", false),
        ("tile/2/000.p/2", false),
        ("tile/0/274.p/1", false),
    ] {
        let r = read_tile(&store, "acme", &TilePath::parse(path).unwrap(), size);
        assert_eq!(r.is_ok(), ok, "{path}");
    }
}
