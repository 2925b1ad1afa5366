//! Moving a log from one store to another (`blackbox migrate`): every chain copied entry by
//! entry through the storage contract, its lines byte for byte, then checked against the
//! source.
//!
//! The copy is resumable: the destination is marked (`meta` key [`MIGRATION_META`]) while it is
//! being filled, and a copy run again continues each chain where the destination's committed
//! head stands, after checking that the destination's last entry is the source's. A
//! destination that holds a log without that mark (a log in use, or one already moved) is
//! refused: nothing is ever written over.
//!
//! What is copied: the log's name and public key, every chain's entries (line, entry hash,
//! index columns read back from the line, personal sidecar and the keyed hashes of its data
//! subjects), the Merkle subtree hashes proofs use, every signed checkpoint and the chain's
//! head. A chain whose first entries were archived starts at its anchor in the destination
//! ([`blackbox_store::RetentionBatch::start_at_anchor`]), with its archive segments' records and
//! the Merkle subtree hashes of the archived part (the archive's objects stay where they are).

use blackbox_core::erasure::subject_index_key;
use blackbox_core::hash::Hash;
use blackbox_core::keys::HmacKey;
use blackbox_core::merkle::{CompactRange, leaf_hash};
use blackbox_store::{ChainHead, NewEntry, PersonalRecord, Store, StoredCheckpoint};
use serde_json::Value;

use crate::error::LedgerError;
use crate::writer::NODE_LEVEL;

/// The `meta` key that marks a destination being filled (value `in progress`), filled and
/// verified but not yet switched to (`verified`), or in use (`done`).
pub const MIGRATION_META: &str = "migration";

/// Entries per destination transaction.
const BATCH: u64 = 5_000;

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied {
    /// The log's name.
    pub log_name: String,
    /// Chains in the source.
    pub chains: usize,
    /// Entries in the source.
    pub entries: u64,
    /// Entries this run wrote (fewer than `entries` when it resumed an interrupted copy).
    pub written: u64,
    /// Whether an interrupted copy was resumed.
    pub resumed: bool,
    /// Checkpoints copied by this run.
    pub checkpoints: usize,
}

fn bad(msg: impl Into<String>) -> LedgerError {
    LedgerError::Inconsistent(msg.into())
}

/// What a destination holds of the log being moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// Nothing: the copy starts.
    Empty,
    /// Part of it, from an interrupted copy: the copy continues.
    Partial,
    /// All of it, copied and verified by a run that was stopped before the directory switched
    /// over: compared and verified again, then switched.
    Copied,
}

/// Whether `dst` may receive `src`'s log: empty (no log), or a copy of the same log that an
/// interrupted `blackbox migrate` left.
///
/// # Errors
/// [`LedgerError::Inconsistent`] naming why the destination is refused; store failures.
pub fn check_destination(
    src: &dyn Store,
    dst: &dyn Store,
    dst_name: &str,
) -> Result<Destination, LedgerError> {
    let name = src
        .meta("log_name")?
        .ok_or_else(|| bad("the source store has no log name: it was never initialised"))?;
    match dst.meta("log_name")? {
        None => {
            if !dst.chains()?.is_empty() {
                return Err(bad(format!(
                    "{dst_name} holds chains but no log name; refusing to write into it"
                )));
            }
            Ok(Destination::Empty)
        }
        Some(other) if other != name => Err(bad(format!(
            "{dst_name} already holds another Blackbox log (`{other}`); refusing to overwrite it: give an empty destination"
        ))),
        Some(_) => match dst.meta(MIGRATION_META)?.as_deref() {
            Some("in progress") => Ok(Destination::Partial),
            Some("verified") => Ok(Destination::Copied),
            Some("done") => Err(bad(format!(
                "{dst_name} already holds a finished copy of the log `{name}`; refusing to write into it again"
            ))),
            _ => Err(bad(format!(
                "{dst_name} already holds the log `{name}` (written there, not by an interrupted `blackbox migrate`); refusing to overwrite it"
            ))),
        },
    }
}

/// The index columns of an entry, read back from its signed line the way the writer set them
/// (docs/FORMAT.md §2: `timestamp`, `agent_id`, `session_id`, `event_type`, and the tool name
/// of `tool_call` / `tool_result` entries).
fn index_columns(tenant: &str, seq: u64, line: &[u8]) -> Result<Columns, LedgerError> {
    let v = blackbox_core::entry::EntryView::parse(line).map_err(|e| {
        bad(format!(
            "tenant {tenant:?} entry {seq}: the stored line cannot be read: {e}"
        ))
    })?;
    let tool = match &*v.event_type {
        "tool_call" | "tool_result" => serde_json::from_str::<Value>(v.payload.get())
            .ok()
            .and_then(|p| {
                p.get("tool_name")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            }),
        _ => None,
    };
    Ok(Columns {
        id: v.entry_id,
        ts_ms: v.timestamp_ms,
        agent_id: v.agent_id.into_owned(),
        session_id: v.session_id.into_owned(),
        event_type: v.event_type.into_owned(),
        tool,
    })
}

/// What the store indexes an entry by.
struct Columns {
    id: uuid::Uuid,
    ts_ms: i64,
    agent_id: String,
    session_id: String,
    event_type: String,
    tool: Option<String>,
}

/// The keyed hashes of the data subjects a personal sidecar names (its
/// `fields.data_subjects`, ids or `{"id": …}` objects), as the writer indexed them.
fn sidecar_subjects(
    sidecar: &[u8],
    key: Option<&HmacKey>,
    at: &dyn Fn() -> String,
) -> Result<Vec<[u8; 32]>, LedgerError> {
    let v: Value = serde_json::from_slice(sidecar)
        .map_err(|e| bad(format!("{}: the personal sidecar is not JSON: {e}", at())))?;
    let Some(Value::Array(items)) = v.pointer("/fields/data_subjects") else {
        return Ok(Vec::new());
    };
    let key = key.ok_or_else(|| {
        bad(format!(
            "{}: the entry names data subjects but the data directory has no subject-index key",
            at()
        ))
    })?;
    items
        .iter()
        .map(|i| match i {
            Value::String(id) => Ok(id.as_str()),
            Value::Object(o) => o
                .get("id")
                .and_then(Value::as_str)
                .ok_or_else(|| bad(format!("{}: a data subject without an id", at()))),
            _ => Err(bad(format!("{}: a data subject that is not an id", at()))),
        })
        .map(|id| id.map(|id| subject_index_key(key, id)))
        .collect()
}

/// Copies `src`'s log into `dst` (checked with [`check_destination`] first), resuming an
/// interrupted copy. `subject_key` is the data directory's subject-index key (entries that name
/// data subjects are indexed under it). `progress` is called with the entries done so far.
///
/// # Errors
/// A refused destination, a chain that starts at an anchor, a destination that does not
/// continue the source, store failures. What was committed before an error stays and is
/// continued by the next run.
pub fn copy_log(
    src: &dyn Store,
    dst: &mut dyn Store,
    dst_name: &str,
    subject_key: Option<&HmacKey>,
    progress: &dyn Fn(u64),
) -> Result<Copied, LedgerError> {
    let state = check_destination(src, dst, dst_name)?;
    let resumed = state != Destination::Empty;
    let log_name = src.meta("log_name")?.unwrap_or_default();
    let heads = src.chains()?;
    let mut out = Copied {
        log_name: log_name.clone(),
        chains: heads.len(),
        entries: heads.iter().map(|h| h.size).sum(),
        resumed,
        ..Copied::default()
    };
    if !resumed {
        let mut b = dst.begin()?;
        b.set_meta("log_name", &log_name)?;
        if let Some(pk) = src.meta("public_key")? {
            b.set_meta("public_key", &pk)?;
        }
        b.set_meta(MIGRATION_META, "in progress")?;
        b.commit()?;
    }
    if state == Destination::Copied {
        return Ok(out);
    }
    let mut done = 0u64;
    for head in &heads {
        let t = head.tenant_id.as_str();
        let anchor = src.anchor(t)?;
        let at_dst = dst.chains()?.into_iter().find(|c| c.tenant_id == t);
        // A chain not there yet starts at the source's anchor (the archived entries are not
        // copied: the archive's objects hold them).
        let mut start = if at_dst.is_none() {
            anchor.clone()
        } else {
            None
        };
        let from = at_dst
            .as_ref()
            .map_or_else(|| anchor.as_ref().map_or(0, |a| a.size), |c| c.size);
        if from > head.size {
            return Err(bad(format!(
                "tenant {t:?}: {dst_name} holds {from} entries, the source only {}; it is not a copy of this log",
                head.size
            )));
        }
        let mut tree = match &at_dst {
            // Resumed where nothing after the anchor was copied: the anchors must agree.
            Some(c) if anchor.as_ref().is_some_and(|a| from <= a.size) => {
                if dst.anchor(t)? != anchor {
                    return Err(bad(format!(
                        "tenant {t:?}: {dst_name} holds another anchor than the source's; it is not a copy of this log"
                    )));
                }
                CompactRange::from_bytes(&c.merkle_state)
                    .map_err(|e| bad(format!("tenant {t:?}: {dst_name}'s Merkle state: {e}")))?
            }
            Some(c) if from > 0 => {
                let (a, b) = (
                    src.entry_hashes(t, from, from)?,
                    dst.entry_hashes(t, from, from)?,
                );
                if a != b || a.len() != 1 {
                    return Err(bad(format!(
                        "tenant {t:?}: entry {from} in {dst_name} is not the source's; it is not a copy of this log"
                    )));
                }
                CompactRange::from_bytes(&c.merkle_state)
                    .map_err(|e| bad(format!("tenant {t:?}: {dst_name}'s Merkle state: {e}")))?
            }
            _ => match &anchor {
                Some(a) => blackbox_core::anchor::Anchor::parse(&a.record)
                    .map_err(|e| bad(format!("tenant {t:?}: the source's anchor record: {e}")))?
                    .range()
                    .clone(),
                None => CompactRange::new(),
            },
        };
        let have = dst.checkpoints(t)?;
        done += from;
        progress(done);
        let mut next = from + 1;
        while next <= head.size {
            let last = (next + BATCH - 1).min(head.size);
            let mut entries: Vec<NewEntry> = Vec::with_capacity((last - next + 1) as usize);
            let mut nodes: Vec<(u64, Hash)> = Vec::new();
            let mut last_id = [0u8; 16];
            let mut head_hash = Hash::default();
            let mut failure = None;
            src.scan(t, next, last, &mut |e| {
                let at = || format!("tenant {t:?} entry {}", e.seq);
                let r = (|| {
                    let Columns {
                        id,
                        ts_ms,
                        agent_id,
                        session_id,
                        event_type,
                        tool,
                    } = index_columns(t, e.seq, &e.line)?;
                    let personal = match e.personal {
                        Some(sidecar) => Some(PersonalRecord {
                            subject_keys: sidecar_subjects(&sidecar, subject_key, &at)?,
                            sidecar,
                        }),
                        None => None,
                    };
                    tree.push(leaf_hash(e.entry_hash.as_bytes()), |level, idx, h| {
                        if level == NODE_LEVEL {
                            nodes.push((idx, *h));
                        }
                    });
                    last_id = *id.as_bytes();
                    head_hash = e.entry_hash;
                    entries.push(NewEntry {
                        seq: e.seq,
                        entry_id: *id.as_bytes(),
                        ts_ms,
                        agent_id,
                        session_id,
                        event_type,
                        tool,
                        line: e.line,
                        entry_hash: e.entry_hash,
                        personal,
                    });
                    Ok::<(), LedgerError>(())
                })();
                match r {
                    Ok(()) => Ok(true),
                    Err(err) => {
                        failure = Some(err);
                        Ok(false)
                    }
                }
            })?;
            if let Some(e) = failure {
                return Err(e);
            }
            if entries.len() as u64 != last - next + 1
                || entries.first().map(|e| e.seq) != Some(next)
            {
                return Err(bad(format!(
                    "tenant {t:?}: the source gave {} entries for {next}..={last}",
                    entries.len()
                )));
            }
            let finished = last == head.size;
            let new_head = if finished {
                if tree.to_bytes() != head.merkle_state || head_hash != head.head_hash {
                    return Err(bad(format!(
                        "tenant {t:?}: the entries copied do not give the source's head (its stored Merkle state or head hash differs from its entries)"
                    )));
                }
                head.clone()
            } else {
                ChainHead {
                    tenant_id: t.to_owned(),
                    size: last,
                    head_hash,
                    last_entry_id: last_id,
                    merkle_state: tree.to_bytes(),
                    last_checkpoint_size: 0,
                    last_checkpoint_ms: 0,
                }
            };
            let mut b = dst.begin()?;
            if let Some(a) = start.take() {
                start_chain(src, &mut *b, t, &a)?;
            }
            b.append(t, &entries)?;
            if !nodes.is_empty() {
                b.put_nodes(t, NODE_LEVEL, &nodes)?;
            }
            b.set_head(&new_head)?;
            if finished {
                out.checkpoints += put_missing_checkpoints(src, &have, t, &mut *b)?;
            }
            b.commit()?;
            out.written += entries.len() as u64;
            done += entries.len() as u64;
            progress(done);
            next = last + 1;
        }
        if from == head.size {
            // Nothing left to append (an empty chain, or one copied before an interruption):
            // its checkpoints and head may still be missing.
            let mut b = dst.begin()?;
            if let Some(a) = start.take() {
                start_chain(src, &mut *b, t, &a)?;
            }
            let n = put_missing_checkpoints(src, &have, t, &mut *b)?;
            if at_dst.as_ref() != Some(head) {
                if let Some(c) = &at_dst
                    && c.merkle_state != head.merkle_state
                {
                    return Err(bad(format!(
                        "tenant {t:?}: {dst_name}'s Merkle state differs from the source's at the same size"
                    )));
                }
                b.set_head(head)?;
            }
            b.commit()?;
            out.checkpoints += n;
        }
    }
    Ok(out)
}

/// Records the state of a copy in the destination (`verified`: compared and verified, the
/// directory not switched yet; `done`: switched over).
///
/// # Errors
/// Store failures.
pub fn mark(dst: &mut dyn Store, state: &str) -> Result<(), LedgerError> {
    let mut b = dst.begin()?;
    b.set_meta(MIGRATION_META, state)?;
    b.commit()?;
    Ok(())
}

/// Starts chain `t` in the destination at the source's anchor `a`: the anchor, the records of
/// the archive segments, and the Merkle subtree hashes of the archived entries (proofs need
/// them).
fn start_chain(
    src: &dyn Store,
    b: &mut dyn blackbox_store::WriteBatch,
    t: &str,
    a: &blackbox_store::StoredAnchor,
) -> Result<(), LedgerError> {
    b.retention()?.start_at_anchor(a)?;
    for seg in src.retention()?.archive_segments(t)? {
        b.retention()?.put_archive_segment(&seg)?;
    }
    let blocks = a.size >> NODE_LEVEL;
    if blocks > 0 {
        let nodes = src.nodes(t, NODE_LEVEL, 0, blocks - 1)?;
        if nodes.len() as u64 != blocks {
            return Err(bad(format!(
                "tenant {t:?}: the source holds {} of the {blocks} Merkle subtree hashes of its archived entries",
                nodes.len()
            )));
        }
        b.put_nodes(t, NODE_LEVEL, &nodes)?;
    }
    Ok(())
}

/// Puts the source's checkpoints of `t` that `have` lacks; returns how many.
fn put_missing_checkpoints(
    src: &dyn Store,
    have: &[StoredCheckpoint],
    t: &str,
    b: &mut dyn blackbox_store::WriteBatch,
) -> Result<usize, LedgerError> {
    let mut n = 0;
    for cp in src.checkpoints(t)? {
        if !have.contains(&cp) {
            b.put_checkpoint(&cp)?;
            n += 1;
        }
    }
    Ok(n)
}

/// Reads both stores back and compares them: every chain's head, every entry's line and
/// personal sidecar byte for byte, every checkpoint, and the entries indexed under each data
/// subject. Returns the first difference.
///
/// # Errors
/// A description of the first difference; store failures.
pub fn compare(
    src: &dyn Store,
    dst: &dyn Store,
    subject_key: Option<&HmacKey>,
    progress: &dyn Fn(u64),
) -> Result<(), LedgerError> {
    let (a, b) = (src.chains()?, dst.chains()?);
    if a != b {
        let names = |v: &[ChainHead]| {
            v.iter()
                .map(|c| format!("{}:{}", c.tenant_id, c.size))
                .collect::<Vec<_>>()
                .join(", ")
        };
        return Err(bad(format!(
            "the chains differ: source [{}], destination [{}]",
            names(&a),
            names(&b)
        )));
    }
    let mut done = 0u64;
    let mut subjects = std::collections::BTreeSet::new();
    for head in &a {
        let t = head.tenant_id.as_str();
        if src.checkpoints(t)? != dst.checkpoints(t)? {
            return Err(bad(format!("tenant {t:?}: the checkpoints differ")));
        }
        let anchor = src.anchor(t)?;
        if dst.anchor(t)? != anchor {
            return Err(bad(format!("tenant {t:?}: the anchors differ")));
        }
        if let Some(a) = &anchor {
            if src.retention()?.archive_segments(t)? != dst.retention()?.archive_segments(t)? {
                return Err(bad(format!(
                    "tenant {t:?}: the archive segments' records differ"
                )));
            }
            let blocks = a.size >> NODE_LEVEL;
            if blocks > 0
                && src.nodes(t, NODE_LEVEL, 0, blocks - 1)?
                    != dst.nodes(t, NODE_LEVEL, 0, blocks - 1)?
            {
                return Err(bad(format!(
                    "tenant {t:?}: the Merkle subtree hashes of the archived entries differ"
                )));
            }
        }
        let mut next = anchor.as_ref().map_or(1, |a| a.size + 1);
        while next <= head.size {
            let last = (next + BATCH - 1).min(head.size);
            let mut left = Vec::new();
            src.scan(t, next, last, &mut |e| {
                left.push(e);
                Ok(true)
            })?;
            let mut i = 0usize;
            let mut diff = None;
            dst.scan(t, next, last, &mut |e| {
                if left.get(i) != Some(&e) {
                    diff = Some(e.seq);
                    return Ok(false);
                }
                i += 1;
                Ok(true)
            })?;
            if let Some(seq) = diff.or((i != left.len()).then_some(next + i as u64)) {
                return Err(bad(format!(
                    "tenant {t:?}: entry {seq} differs between the source and the destination"
                )));
            }
            for e in &left {
                if let Some(s) = &e.personal {
                    let at = || format!("tenant {t:?} entry {}", e.seq);
                    subjects.extend(sidecar_subjects(s, subject_key, &at)?);
                }
            }
            done += left.len() as u64;
            progress(done);
            next = last + 1;
        }
    }
    // Both backends index data subjects; one without erasure could not be asked.
    if let (false, Ok(se), Ok(de)) = (subjects.is_empty(), src.erasure(), dst.erasure()) {
        for k in subjects {
            if se.entries_for_subject(&k)? != de.entries_for_subject(&k)? {
                return Err(bad(
                    "the entries indexed under a data subject differ between the source and the destination",
                ));
            }
        }
    }
    Ok(())
}

/// Which way a data directory's log moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// From the embedded SQLite file into a PostgreSQL database.
    ToPostgres,
    /// From a PostgreSQL database back into the embedded SQLite file.
    ToEmbedded,
}

/// What [`move_store`] did.
#[derive(Debug)]
pub struct Moved {
    /// The copy.
    pub copied: Copied,
    /// The destination's verification (HMACs with the directory's keyring, links, Merkle
    /// roots, signed checkpoints with its public key).
    pub report: blackbox_core::verify::Report,
    /// Where the store the log left was put aside (the embedded file and its lines), or the
    /// marker of the database it left; nothing is deleted.
    pub kept: std::path::PathBuf,
    /// The destination, as it may be printed (a URL's password hidden).
    pub destination: String,
}

/// Where an embedded store being built is kept until it is complete.
fn building_path(dir: &crate::datadir::DataDir) -> std::path::PathBuf {
    dir.root().join("blackbox.db.migrating")
}

/// Moves `dir`'s log between its embedded store and the PostgreSQL database at `url`: copies
/// every chain ([`copy_log`], resuming an interrupted copy), reads both stores back and
/// compares them ([`compare`]), verifies the destination with the directory's keys, and only
/// then switches the directory over (the `store.postgres` marker written or put aside; the
/// embedded file renamed into place or put aside). Holds the directory's writer lock
/// throughout, so a `blackbox serve` on it is refused. The source is never modified or deleted.
/// `progress(stage, done, total)` is called as entries are copied, then compared.
///
/// # Errors
/// A directory of the wrong kind, a destination that already holds a log, a source written to
/// during the copy, a destination that does not verify; key and store failures.
pub fn move_store(
    dir: &crate::datadir::DataDir,
    url: &str,
    direction: Direction,
    progress: &(dyn Fn(&str, u64, u64) + Sync),
) -> Result<Moved, LedgerError> {
    use crate::datadir::StoreLocation;
    use std::fs;
    let root = dir.root();
    let embedded = dir.store_path();
    let marker = dir.postgres_marker_path();
    let shown = blackbox_store_pg::redact(url);
    match direction {
        Direction::ToPostgres if !embedded.exists() => {
            return Err(if marker.exists() {
                bad(format!(
                    "{} already keeps its log in a PostgreSQL database; to move it back into the directory use `blackbox migrate --from {shown} --to {}`",
                    root.display(),
                    root.display()
                ))
            } else {
                LedgerError::NotInitialised {
                    dir: root.to_owned(),
                }
            });
        }
        Direction::ToEmbedded if !marker.exists() => {
            return Err(bad(format!(
                "{} does not keep its log in a PostgreSQL database (no store.postgres marker); \
                 the data directory given with --to must be the one whose log is in {shown}",
                root.display()
            )));
        }
        Direction::ToEmbedded if embedded.exists() => {
            return Err(bad(format!(
                "{} already holds an embedded store ({}); refusing to overwrite it",
                root.display(),
                embedded.display()
            )));
        }
        _ => {}
    }
    let _lock = crate::open::lock_writer(dir)?;
    let keys = crate::datadir::load_keyring(&dir.hmac_keys_path())?;
    let verifier = crate::open::public_key(dir)?;
    let subject_key = if dir.subject_key_path().exists() {
        Some(crate::datadir::load_or_create_subject_key(dir)?)
    } else {
        None
    };
    let building = building_path(dir);
    let (src_loc, dst_loc) = match direction {
        Direction::ToPostgres => {
            crate::open::migrate(&dir.clone().with_store(None))?;
            (
                StoreLocation::Sqlite(embedded.clone()),
                StoreLocation::Postgres {
                    url: url.to_owned(),
                    seal_key: dir.seal_key_path(),
                },
            )
        }
        Direction::ToEmbedded => {
            // A switch-over interrupted between its two renames: the lines go back first.
            let (b_lines, e_lines) = (
                blackbox_store::segments::lines_dir(&building),
                blackbox_store::segments::lines_dir(&embedded),
            );
            if building.exists() && !b_lines.exists() && e_lines.exists() && !embedded.exists() {
                fs::rename(&e_lines, &b_lines).map_err(LedgerError::io(&b_lines))?;
            }
            if !building.exists() {
                let tmp = root.join("blackbox.db.migrating.new");
                let _ = fs::remove_file(&tmp);
                let _ = fs::remove_dir_all(blackbox_store::segments::lines_dir(&tmp));
                blackbox_store::sqlite::SqliteStore::create(&tmp)?;
                fs::rename(
                    blackbox_store::segments::lines_dir(&tmp),
                    blackbox_store::segments::lines_dir(&building),
                )
                .map_err(LedgerError::io(&building))?;
                fs::rename(&tmp, &building).map_err(LedgerError::io(&building))?;
            }
            (
                StoreLocation::Postgres {
                    url: url.to_owned(),
                    seal_key: dir.seal_key_path(),
                },
                StoreLocation::Sqlite(building.clone()),
            )
        }
    };
    let src = crate::open::open_location(&src_loc, true)?;
    if let Some(name) = src.meta("log_name")?
        && name != verifier.name()
    {
        return Err(bad(format!(
            "the source holds the log `{name}` but {} is the data directory of `{}`",
            root.display(),
            verifier.name()
        )));
    }
    let mut dst = crate::open::open_location(&dst_loc, false)?;
    let dst_name = match direction {
        Direction::ToPostgres => format!("the database {shown}"),
        Direction::ToEmbedded => format!("the store being built at {}", building.display()),
    };
    let total: u64 = src.chains()?.iter().map(|c| c.size).sum();
    let copied = copy_log(
        src.as_ref(),
        dst.as_mut(),
        &dst_name,
        subject_key.as_ref(),
        &|n| progress("copying", n, total),
    )?;
    compare(src.as_ref(), dst.as_ref(), subject_key.as_ref(), &|n| {
        progress("comparing", n, total)
    })
    .map_err(|e| {
        bad(format!(
            "{e}. If a service wrote to the source during the copy, stop it and run the same command again: the copy continues where it stopped"
        ))
    })?;
    drop(src);
    let report = crate::verify::verify_chains_and_archive(
        dst.as_mut(),
        None,
        Some(&keys),
        Some(verifier),
        &crate::verify::StoreVerifyOptions::default(),
        &|n| progress("verifying", n, total),
    )?;
    if report.ok() {
        mark(dst.as_mut(), "verified")?;
    }
    let stamp = crate::clock::now_ms();
    let kept = if report.ok() {
        match direction {
            Direction::ToPostgres => {
                let aside = root.join(format!("moved-to-postgres-{stamp}"));
                fs::create_dir(&aside).map_err(LedgerError::io(&aside))?;
                // The marker first: from it on the directory is PostgreSQL's, the embedded
                // store a copy kept aside.
                crate::datadir::write_public(&marker, &format!("{shown}\n"))?;
                let lines = blackbox_store::segments::lines_dir(&embedded);
                for p in [embedded.clone(), lines] {
                    if let Some(name) = p.file_name() {
                        fs::rename(&p, aside.join(name)).map_err(LedgerError::io(&p))?;
                    }
                }
                for suffix in ["-wal", "-shm"] {
                    let p = root.join(format!("blackbox.db{suffix}"));
                    if p.exists() {
                        fs::rename(&p, aside.join(format!("blackbox.db{suffix}")))
                            .map_err(LedgerError::io(&p))?;
                    }
                }
                // Last: a run stopped before this finds the copy `verified` and switches again.
                mark(dst.as_mut(), "done")?;
                aside
            }
            Direction::ToEmbedded => {
                mark(dst.as_mut(), "done")?;
                drop(dst);
                let aside = root.join(format!("store.postgres.moved-{stamp}"));
                fs::rename(
                    blackbox_store::segments::lines_dir(&building),
                    blackbox_store::segments::lines_dir(&embedded),
                )
                .map_err(LedgerError::io(&embedded))?;
                fs::rename(&building, &embedded).map_err(LedgerError::io(&embedded))?;
                fs::rename(&marker, &aside).map_err(LedgerError::io(&marker))?;
                aside
            }
        }
    } else {
        match direction {
            Direction::ToPostgres => embedded,
            Direction::ToEmbedded => marker,
        }
    };
    Ok(Moved {
        copied,
        report,
        kept,
        destination: match direction {
            Direction::ToPostgres => shown,
            Direction::ToEmbedded => embedded_display(dir),
        },
    })
}

fn embedded_display(dir: &crate::datadir::DataDir) -> String {
    dir.store_path().display().to_string()
}
