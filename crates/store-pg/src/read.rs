//! Reads: chains, scans in seq order (streamed), indexed queries, checkpoints, nodes, anchors.

use blackbox_core::Hash;
use blackbox_store::{
    ArchiveSegment, BlockLine, BlockVisitor, ChainHead, LineBlock, Query, SegmentState, StoreError,
    StoredAnchor, StoredCheckpoint, StoredEntry, SubjectEntry, TenantRef,
};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;

use crate::seal::SidecarAt;
use crate::{HEAD_COLUMNS, PgStore, corrupt, pg, read_head, to_hash, to_i64, to_u64};

/// Rows fetched per round trip by streamed reads.
const FETCH: i32 = 5_000;

pub(crate) fn chains(s: &PgStore) -> Result<Vec<ChainHead>, StoreError> {
    let mut c = s.conn()?;
    let rows = c
        .query(
            &format!("SELECT {HEAD_COLUMNS} FROM chains ORDER BY tenant_id"),
            &[],
        )
        .map_err(pg)?;
    rows.iter().map(read_head).collect()
}

pub(crate) fn chain_id(c: &mut postgres::Client, tenant: &str) -> Result<Option<i64>, StoreError> {
    Ok(c.query_opt(
        "SELECT chain_id FROM chains WHERE tenant_id = $1",
        &[&tenant],
    )
    .map_err(pg)?
    .map(|r| r.get(0)))
}

/// A read-only transaction on one snapshot, for reads that take several fetches.
fn snapshot(c: &mut postgres::Client) -> Result<postgres::Transaction<'_>, StoreError> {
    c.build_transaction()
        .read_only(true)
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .map_err(pg)
}

/// Streams the rows of `sql` (whose columns are those [`entry`] reads) to `f` through a cursor
/// in one read-only transaction (one snapshot), [`FETCH`] rows per round trip.
fn stream(
    s: &PgStore,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
    f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let mut c = s.conn()?;
    let mut tx = snapshot(&mut c)?;
    let portal = tx.bind(sql, params).map_err(pg)?;
    loop {
        let rows = tx.query_portal(&portal, FETCH).map_err(pg)?;
        let n = rows.len();
        for r in &rows {
            if !f(entry(s, &mut tx, r, true)?)? {
                return Ok(());
            }
        }
        if n < usize::try_from(FETCH).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

/// `from_seq ..= to_seq` as the columns' integers (seqs start at 1); `None` when empty.
fn seq_bounds(from_seq: u64, to_seq: u64) -> Result<Option<(i64, i64)>, StoreError> {
    let from = from_seq.max(1);
    if from > to_seq {
        return Ok(None);
    }
    Ok(Some((
        to_i64(from, "a seq")?,
        i64::try_from(to_seq).unwrap_or(i64::MAX),
    )))
}

/// A chain's lines `from_seq ..= to_seq` a fetch at a time, straight into `block` (no
/// allocation per entry): what verification reads.
pub(crate) fn scan_line_blocks(
    s: &PgStore,
    tenant: TenantRef<'_>,
    from_seq: u64,
    to_seq: u64,
    block: &mut LineBlock,
    f: &mut BlockVisitor<'_>,
) -> Result<(), StoreError> {
    let Some((from, to)) = seq_bounds(from_seq, to_seq)? else {
        return Ok(());
    };
    let mut c = s.conn()?;
    let mut tx = snapshot(&mut c)?;
    let portal = tx
        .bind(
            "SELECT e.seq, e.line, p.sidecar, e.chain_id, p.generation FROM entries e \
             JOIN chains c ON c.chain_id = e.chain_id \
             LEFT JOIN personal p ON p.chain_id = e.chain_id AND p.seq = e.seq \
             WHERE c.tenant_id = $1 AND e.seq BETWEEN $2 AND $3 ORDER BY e.seq",
            &[&tenant, &from, &to],
        )
        .map_err(pg)?;
    loop {
        let rows = tx.query_portal(&portal, FETCH).map_err(pg)?;
        block.lines.clear();
        for r in &rows {
            let line: &[u8] = r.get(1);
            let a = block.end;
            let b = a + line.len();
            if block.buf.len() < b {
                block.buf.resize(b, 0);
            }
            block.buf[a..b].copy_from_slice(line);
            block.end = b;
            let seq: i64 = r.get(0);
            let personal = match r.get::<_, Option<&[u8]>>(2) {
                None => None,
                Some(p) => {
                    let start = block.side.len();
                    let at = SidecarAt {
                        chain: r.get(3),
                        seq,
                        generation: r.get(4),
                    };
                    s.sealer()
                        .open_sidecar(&mut tx, at, p, true, &mut block.side)?;
                    Some(start..block.side.len())
                }
            };
            block.lines.push(BlockLine {
                seq: to_u64(seq, "an entry seq")?,
                line: a..b,
                personal,
            });
        }
        if !block.lines.is_empty() && !f(block)? {
            return Ok(());
        }
        if rows.len() < usize::try_from(FETCH).unwrap_or(usize::MAX) {
            return Ok(());
        }
    }
}

/// Columns: tenant_id, seq, line, entry_hash, sidecar, chain_id, sidecar generation, ts_ms.
const ENTRY_COLUMNS: &str =
    "c.tenant_id, e.seq, e.line, e.entry_hash, p.sidecar, e.chain_id, p.generation, e.ts_ms";

/// An entry from a row of [`ENTRY_COLUMNS`], its sidecar opened with keys read through `c`
/// (`snapshot`: `c` is the read's own transaction).
fn entry(
    s: &PgStore,
    c: &mut impl postgres::GenericClient,
    r: &postgres::Row,
    snapshot: bool,
) -> Result<StoredEntry, StoreError> {
    let seq: i64 = r.get(1);
    let personal = match r.get::<_, Option<&[u8]>>(4) {
        None => None,
        Some(p) => {
            let mut out = Vec::with_capacity(p.len());
            let at = SidecarAt {
                chain: r.get(5),
                seq,
                generation: r.get(6),
            };
            s.sealer().open_sidecar(c, at, p, snapshot, &mut out)?;
            Some(out)
        }
    };
    Ok(StoredEntry {
        tenant_id: r.get(0),
        seq: to_u64(seq, "an entry seq")?,
        ts_ms: r.get(7),
        line: r.get(2),
        entry_hash: to_hash(r.get::<_, &[u8]>(3), "an entry hash")?,
        personal,
    })
}

/// The subject-index rows of one keyed subject hash, ordered by (tenant, seq).
pub(crate) fn subject_rows(
    c: &mut impl postgres::GenericClient,
    key: &[u8; 32],
) -> Result<Vec<SubjectEntry>, StoreError> {
    let key: &[u8] = key;
    c.query(
        "SELECT c.tenant_id, s.seq, s.entry_id FROM subject_index s \
         JOIN chains c ON c.chain_id = s.chain_id WHERE s.subject_key = $1 \
         ORDER BY c.tenant_id, s.seq",
        &[&key],
    )
    .map_err(pg)?
    .iter()
    .map(|r| {
        Ok(SubjectEntry {
            tenant_id: r.get(0),
            seq: to_u64(r.get(1), "a subject-index seq")?,
            entry_id: <[u8; 16]>::try_from(r.get::<_, &[u8]>(2))
                .map_err(|_| corrupt("a subject-index entry id is not 16 bytes"))?,
        })
    })
    .collect()
}

pub(crate) fn scan(
    s: &PgStore,
    tenant: TenantRef<'_>,
    from_seq: u64,
    to_seq: u64,
    f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    let Some((from, to)) = seq_bounds(from_seq, to_seq)? else {
        return Ok(());
    };
    stream(
        s,
        &format!(
            "SELECT {ENTRY_COLUMNS} FROM entries e JOIN chains c ON c.chain_id = e.chain_id \
             LEFT JOIN personal p ON p.chain_id = e.chain_id AND p.seq = e.seq \
             WHERE c.tenant_id = $1 AND e.seq BETWEEN $2 AND $3 ORDER BY e.seq"
        ),
        &[&tenant, &from, &to],
        f,
    )
}

pub(crate) fn query(
    s: &PgStore,
    q: &Query,
    f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    if q.limit == Some(0) {
        return Ok(());
    }
    let mut wh: Vec<String> = Vec::new();
    let mut params: Vec<Box<dyn ToSql + Sync>> = Vec::new();
    let p = |v: Box<dyn ToSql + Sync>, params: &mut Vec<Box<dyn ToSql + Sync>>| {
        params.push(v);
        format!("${}", params.len())
    };
    if let Some(t) = &q.tenant_id {
        let n = p(Box::new(t.clone()), &mut params);
        wh.push(format!("c.tenant_id = {n}"));
    }
    for (col, v) in [
        ("e.agent_id", &q.agent_id),
        ("e.session_id", &q.session_id),
        ("e.tool", &q.tool),
        ("e.event_type", &q.event_type),
    ] {
        if let Some(v) = v {
            let n = p(Box::new(v.clone()), &mut params);
            wh.push(format!("{col} = {n}"));
        }
    }
    if let Some(t) = q.start_ms {
        let n = p(Box::new(t), &mut params);
        wh.push(format!("e.ts_ms >= {n}"));
    }
    if let Some(t) = q.end_ms {
        let n = p(Box::new(t), &mut params);
        wh.push(format!("e.ts_ms <= {n}"));
    }
    if let Some(a) = &q.after {
        let ts = p(Box::new(a.ts_ms), &mut params);
        let tenant = p(Box::new(a.tenant_id.clone()), &mut params);
        let seq = p(Box::new(to_i64(a.seq, "a seq")?), &mut params);
        // Written out rather than as a row comparison: the planner then keeps using the
        // ts_ms index for the first column. `COLLATE "C"`: byte order, as the other stores.
        wh.push(format!(
            "(e.ts_ms > {ts} OR (e.ts_ms = {ts} AND (c.tenant_id COLLATE \"C\" > {tenant} \
             OR (c.tenant_id = {tenant} AND e.seq > {seq}))))"
        ));
    }
    let mut sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM entries e JOIN chains c ON c.chain_id = e.chain_id \
         LEFT JOIN personal p ON p.chain_id = e.chain_id AND p.seq = e.seq"
    );
    if !wh.is_empty() {
        sql.push_str(" WHERE ");
        sql.push_str(&wh.join(" AND "));
    }
    sql.push_str(" ORDER BY e.ts_ms, c.tenant_id COLLATE \"C\", e.seq");
    if let Some(l) = q.limit {
        sql.push_str(&format!(" LIMIT {}", l.min(i64::MAX as u64)));
    }
    let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(AsRef::as_ref).collect();
    stream(s, &sql, &refs, f)
}

pub(crate) fn entry_by_id(
    s: &PgStore,
    entry_id: &[u8; 16],
) -> Result<Option<StoredEntry>, StoreError> {
    let mut c = s.conn()?;
    let id: &[u8] = entry_id;
    let row = c
        .query_opt(
            &format!(
                "SELECT {ENTRY_COLUMNS} FROM entries e JOIN chains c ON c.chain_id = e.chain_id \
             LEFT JOIN personal p ON p.chain_id = e.chain_id AND p.seq = e.seq \
             WHERE e.entry_id = $1"
            ),
            &[&id],
        )
        .map_err(pg)?;
    row.map(|r| entry(s, &mut *c, &r, false)).transpose()
}

pub(crate) fn entry_hashes(
    s: &PgStore,
    tenant: TenantRef<'_>,
    first_seq: u64,
    last_seq: u64,
) -> Result<Vec<Hash>, StoreError> {
    if first_seq > last_seq {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    let mut first_seq = first_seq.max(1);
    if let Some(anchor) = anchor(s, tenant)?
        && first_seq <= anchor.size
    {
        // Archived entries: only the last incomplete block's hashes are kept (the anchor's).
        match anchor.kept_hashes(first_seq, last_seq) {
            Some(kept) => out.extend(kept),
            None => return Ok(Vec::new()),
        }
        first_seq = anchor.size + 1;
        if first_seq > last_seq {
            return Ok(out);
        }
    }
    let mut c = s.conn()?;
    let Some(chain) = chain_id(&mut c, tenant)? else {
        return Ok(Vec::new());
    };
    let (a, b) = (
        to_i64(first_seq, "a seq")?,
        i64::try_from(last_seq).unwrap_or(i64::MAX),
    );
    let mut it = c
        .query_raw(
            "SELECT entry_hash FROM entries WHERE chain_id = $1 AND seq BETWEEN $2 AND $3 \
             ORDER BY seq",
            [&chain as &(dyn ToSql + Sync), &a, &b],
        )
        .map_err(pg)?;
    while let Some(r) = it.next().map_err(pg)? {
        out.push(to_hash(r.get::<_, &[u8]>(0), "an entry hash")?);
    }
    Ok(out)
}

pub(crate) fn nodes(
    s: &PgStore,
    tenant: TenantRef<'_>,
    level: u8,
    first: u64,
    last: u64,
) -> Result<Vec<(u64, Hash)>, StoreError> {
    if first > last {
        return Ok(Vec::new());
    }
    let mut c = s.conn()?;
    let Some(chain) = chain_id(&mut c, tenant)? else {
        return Ok(Vec::new());
    };
    let (a, b) = (
        to_i64(first, "a node index")?,
        i64::try_from(last).unwrap_or(i64::MAX),
    );
    let rows = c
        .query(
            "SELECT idx, hash FROM merkle_nodes WHERE chain_id = $1 AND level = $2 \
             AND idx BETWEEN $3 AND $4 ORDER BY idx",
            &[&chain, &i16::from(level), &a, &b],
        )
        .map_err(pg)?;
    rows.iter()
        .map(|r| {
            Ok((
                to_u64(r.get(0), "a node index")?,
                to_hash(r.get::<_, &[u8]>(1), "a Merkle node")?,
            ))
        })
        .collect()
}

fn checkpoint(tenant: &str, r: &postgres::Row) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tenant_id: tenant.to_owned(),
        size: to_u64(r.get(0), "a checkpoint size")?,
        ts_ms: r.get(1),
        note: r.get(2),
    })
}

pub(crate) fn checkpoints(
    s: &PgStore,
    tenant: TenantRef<'_>,
    since: Option<(u64, i64)>,
) -> Result<Vec<StoredCheckpoint>, StoreError> {
    let mut c = s.conn()?;
    let Some(chain) = chain_id(&mut c, tenant)? else {
        return Ok(Vec::new());
    };
    let rows = match since {
        None => c.query(
            "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = $1 \
             ORDER BY size, ts_ms, checkpoint_id",
            &[&chain],
        ),
        Some((min_size, after_ms)) => c.query(
            "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = $1 \
             AND (size >= $2 OR ts_ms > $3) ORDER BY size, ts_ms, checkpoint_id",
            &[
                &chain,
                &i64::try_from(min_size).unwrap_or(i64::MAX),
                &after_ms,
            ],
        ),
    }
    .map_err(pg)?;
    rows.iter().map(|r| checkpoint(tenant, r)).collect()
}

pub(crate) fn latest_checkpoint(
    s: &PgStore,
    tenant: TenantRef<'_>,
) -> Result<Option<StoredCheckpoint>, StoreError> {
    let mut c = s.conn()?;
    let Some(chain) = chain_id(&mut c, tenant)? else {
        return Ok(None);
    };
    c.query_opt(
        "SELECT size, ts_ms, note FROM checkpoints WHERE chain_id = $1 \
         ORDER BY ts_ms DESC, size DESC, checkpoint_id DESC LIMIT 1",
        &[&chain],
    )
    .map_err(pg)?
    .map(|r| checkpoint(tenant, &r))
    .transpose()
}

pub(crate) fn anchor(
    s: &PgStore,
    tenant: TenantRef<'_>,
) -> Result<Option<StoredAnchor>, StoreError> {
    let mut c = s.conn()?;
    let Some(chain) = chain_id(&mut c, tenant)? else {
        return Ok(None);
    };
    let Some(r) = c
        .query_opt(
            "SELECT size, record, tail_hashes FROM anchors WHERE chain_id = $1",
            &[&chain],
        )
        .map_err(pg)?
    else {
        return Ok(None);
    };
    let tail: &[u8] = r.get(2);
    if !tail.len().is_multiple_of(32) {
        return Err(corrupt(format!(
            "the anchor of {tenant:?} has {} bytes of tail hashes, not a multiple of 32",
            tail.len()
        )));
    }
    Ok(Some(StoredAnchor {
        tenant_id: tenant.to_owned(),
        size: to_u64(r.get(0), "an anchor size")?,
        record: r.get(1),
        tail_hashes: tail
            .chunks_exact(32)
            .map(|h| to_hash(h, "an anchor tail hash"))
            .collect::<Result<_, _>>()?,
    }))
}

pub(crate) fn archive_segments(
    s: &PgStore,
    tenant: TenantRef<'_>,
) -> Result<Vec<ArchiveSegment>, StoreError> {
    let mut c = s.conn()?;
    let Some(chain) = chain_id(&mut c, tenant)? else {
        return Ok(Vec::new());
    };
    let rows = c
        .query(
            "SELECT first_seq, last_seq, object, sha256, bytes, first_ts, last_ts, sealed_ms, \
             state, state_ms FROM archive_segments WHERE chain_id = $1 ORDER BY first_seq",
            &[&chain],
        )
        .map_err(pg)?;
    rows.iter()
        .map(|r| {
            let state = match r.get::<_, i16>(8) {
                0 => SegmentState::Live,
                1 => SegmentState::Deleting,
                2 => SegmentState::Deleted,
                n => return Err(corrupt(format!("archive segment state {n} is unknown"))),
            };
            Ok(ArchiveSegment {
                tenant_id: tenant.to_owned(),
                first_seq: to_u64(r.get(0), "an archive segment's first seq")?,
                last_seq: to_u64(r.get(1), "an archive segment's last seq")?,
                object: r.get(2),
                sha256: to_hash(r.get::<_, &[u8]>(3), "an archive segment's digest")?,
                bytes: to_u64(r.get(4), "an archive segment's size")?,
                first_ts_ms: r.get(5),
                last_ts_ms: r.get(6),
                sealed_ms: r.get(7),
                state,
                state_ms: r.get(9),
            })
        })
        .collect()
}
