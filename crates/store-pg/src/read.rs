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

pub(crate) fn chain_id(
    c: &mut impl postgres::GenericClient,
    tenant: &str,
) -> Result<Option<i64>, StoreError> {
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

/// Keys a query's first step hands to its second per round trip.
const KEYS_PER_FETCH: i32 = 2_000;

/// Widest window of time buckets one query step covers.
const MAX_WINDOW_BUCKETS: i64 = 4_096;

/// Posting rows summed per filter when choosing which filter drives a query.
const DRIVER_PROBE_ROWS: i64 = 64;

/// A query in two steps, both in one read-only snapshot:
///
/// 1. The keys: the posting lists of the most selective filter (kind 0, every entry, without
///    filters) are unnested for a window of time buckets, kept when within the time range and
///    after the cursor, when the other filters' posting lists of the same buckets also list
///    them and when not archived (at or below the chain's anchor); sorted in query order
///    (`ts_ms`, tenant, `seq`) and cut at the rows still wanted. Buckets split time, so
///    windows taken in bucket order give the whole result in query order; a window starts at
///    the next bucket that has postings and doubles in width while it yields too little.
/// 2. The entries of those keys, fetched by primary key in that order, [`KEYS_PER_FETCH`] at a
///    time.
pub(crate) fn query(
    s: &PgStore,
    q: &Query,
    f: &mut dyn FnMut(StoredEntry) -> Result<bool, StoreError>,
) -> Result<(), StoreError> {
    use crate::batch::{BUCKET_BITS, KIND_AGENT, KIND_ALL, KIND_EVENT, KIND_SESSION, KIND_TOOL};
    if q.limit == Some(0) {
        return Ok(());
    }
    let mut c = s.conn()?;
    let mut tx = snapshot(&mut c)?;
    let chain: Option<i64> = match &q.tenant_id {
        None => None,
        Some(t) => match chain_id(&mut tx, t)? {
            Some(id) => Some(id),
            None => return Ok(()),
        },
    };
    // The time range, narrowed by the cursor; empty ranges end here.
    let lo = match (&q.after, q.start_ms) {
        (Some(a), Some(st)) => Some(a.ts_ms.max(st)),
        (Some(a), None) => Some(a.ts_ms),
        (None, st) => st,
    };
    if let (Some(lo), Some(hi)) = (lo, q.end_ms)
        && lo > hi
    {
        return Ok(());
    }
    let first_bucket = lo.map_or(i64::MIN, |t| t >> BUCKET_BITS);
    let last_bucket = q.end_ms.map_or(i64::MAX, |t| t >> BUCKET_BITS);
    let filters: Vec<(i16, &str)> = [
        (KIND_AGENT, &q.agent_id),
        (KIND_SESSION, &q.session_id),
        (KIND_TOOL, &q.tool),
        (KIND_EVENT, &q.event_type),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
    .collect();
    // The driver: the filter listing the fewest entries in its first posting rows.
    let (driver, others) = if filters.is_empty() {
        ((KIND_ALL, ""), Vec::new())
    } else {
        let mut best = (i64::MAX, 0);
        for (i, (kind, name)) in filters.iter().enumerate() {
            let n: i64 = tx
                .query_one(
                    "SELECT coalesce(sum(cardinality(seqs)), 0)::bigint FROM (SELECT seqs \
                     FROM postings WHERE kind = $1 AND name = $2 AND bucket BETWEEN $3 AND $4 \
                     ORDER BY bucket LIMIT $5) p",
                    &[kind, name, &first_bucket, &last_bucket, &DRIVER_PROBE_ROWS],
                )
                .map_err(pg)?
                .get(0);
            if n < best.0 {
                best = (n, i);
            }
        }
        let mut others = filters.clone();
        let driver = others.remove(best.1);
        (driver, others)
    };

    // Step 1's statement: $1 kind, $2 name, $3 and $4 the window's buckets, then the rest.
    let mut params: Vec<Box<dyn ToSql + Sync>> = vec![
        Box::new(driver.0),
        Box::new(driver.1.to_owned()),
        Box::new(0i64),
        Box::new(0i64),
    ];
    let p = |v: Box<dyn ToSql + Sync>, params: &mut Vec<Box<dyn ToSql + Sync>>| {
        params.push(v);
        format!("${}", params.len())
    };
    let mut wh: Vec<String> = vec![
        "p.kind = $1".into(),
        "p.name = $2".into(),
        "p.bucket BETWEEN $3 AND $4".into(),
        "u.seq > coalesce(a.size, 0)".into(),
    ];
    if let Some(id) = chain {
        let n = p(Box::new(id), &mut params);
        wh.push(format!("p.chain_id = {n}"));
    }
    if let Some(t) = q.start_ms {
        let n = p(Box::new(t), &mut params);
        wh.push(format!("u.ts >= {n}"));
    }
    if let Some(t) = q.end_ms {
        let n = p(Box::new(t), &mut params);
        wh.push(format!("u.ts <= {n}"));
    }
    if let Some(a) = &q.after {
        let ts = p(Box::new(a.ts_ms), &mut params);
        let tenant = p(Box::new(a.tenant_id.clone()), &mut params);
        let seq = p(Box::new(to_i64(a.seq, "a seq")?), &mut params);
        wh.push(format!(
            "(u.ts > {ts} OR (u.ts = {ts} AND (c.tenant_id COLLATE \"C\" > {tenant} \
             OR (c.tenant_id = {tenant} AND u.seq > {seq}))))"
        ));
    }
    for (kind, name) in &others {
        let k = p(Box::new(*kind), &mut params);
        let n = p(Box::new((*name).to_owned()), &mut params);
        wh.push(format!(
            "(p.chain_id, u.seq) IN (SELECT o.chain_id, x.seq FROM postings o \
             CROSS JOIN LATERAL unnest(o.seqs) AS x(seq) WHERE o.kind = {k} AND o.name = {n} \
             AND o.bucket BETWEEN $3 AND $4)"
        ));
    }
    let limit_param = p(Box::new(0i64), &mut params);
    let keys_sql = format!(
        "SELECT p.chain_id, u.seq FROM postings p \
         CROSS JOIN LATERAL unnest(p.ts, p.seqs) AS u(ts, seq) \
         JOIN chains c ON c.chain_id = p.chain_id \
         LEFT JOIN anchors a ON a.chain_id = p.chain_id \
         WHERE {} ORDER BY u.ts, c.tenant_id COLLATE \"C\", u.seq LIMIT {limit_param}",
        wh.join(" AND ")
    );
    let next_sql = if chain.is_some() {
        "SELECT min(bucket) FROM postings WHERE kind = $1 AND name = $2 \
         AND bucket BETWEEN $3 AND $4 AND chain_id = $5"
    } else {
        "SELECT min(bucket) FROM postings WHERE kind = $1 AND name = $2 \
         AND bucket BETWEEN $3 AND $4"
    };
    let entries_sql = format!(
        "SELECT {ENTRY_COLUMNS} FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY \
         AS k(chain_id, seq, o) JOIN entries e ON e.chain_id = k.chain_id AND e.seq = k.seq \
         JOIN chains c ON c.chain_id = e.chain_id \
         LEFT JOIN personal p ON p.chain_id = e.chain_id AND p.seq = e.seq ORDER BY k.o"
    );

    let mut remaining = q.limit.map_or(i64::MAX, |l| l.min(i64::MAX as u64) as i64);
    let mut from = first_bucket;
    let mut width: i64 = 1;
    loop {
        let next: Option<i64> = {
            let mut np: Vec<&(dyn ToSql + Sync)> = vec![&driver.0, &driver.1, &from, &last_bucket];
            if let Some(id) = &chain {
                np.push(id);
            }
            tx.query_one(next_sql, &np).map_err(pg)?.get(0)
        };
        let Some(start) = next else {
            return Ok(());
        };
        let end = start.saturating_add(width - 1).min(last_bucket);
        params[2] = Box::new(start);
        params[3] = Box::new(end);
        let last = params.len() - 1;
        params[last] = Box::new(remaining);
        let refs: Vec<&(dyn ToSql + Sync)> = params.iter().map(AsRef::as_ref).collect();
        let portal = tx.bind(keys_sql.as_str(), &refs).map_err(pg)?;
        let mut got: i64 = 0;
        loop {
            let rows = tx.query_portal(&portal, KEYS_PER_FETCH).map_err(pg)?;
            let n = rows.len();
            if n > 0 {
                let chains: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
                let seqs: Vec<i64> = rows.iter().map(|r| r.get(1)).collect();
                let found = tx
                    .query(entries_sql.as_str(), &[&chains, &seqs])
                    .map_err(pg)?;
                if found.len() != n {
                    return Err(corrupt(format!(
                        "the posting lists name {n} entries of which {} are stored; the \
                         postings table does not match the entries table",
                        found.len()
                    )));
                }
                for r in &found {
                    if !f(entry(s, &mut tx, r, true)?)? {
                        return Ok(());
                    }
                }
                got += n as i64;
            }
            if n < usize::try_from(KEYS_PER_FETCH).unwrap_or(usize::MAX) {
                break;
            }
        }
        remaining -= got;
        if remaining <= 0 || end >= last_bucket {
            return Ok(());
        }
        from = end + 1;
        if got < 1_000 {
            width = (width * 2).min(MAX_WINDOW_BUCKETS);
        }
    }
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
    let Some(chain) = chain_id(&mut *c, tenant)? else {
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
    let Some(chain) = chain_id(&mut *c, tenant)? else {
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
    let Some(chain) = chain_id(&mut *c, tenant)? else {
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
    let Some(chain) = chain_id(&mut *c, tenant)? else {
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
    let Some(chain) = chain_id(&mut *c, tenant)? else {
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
    let Some(chain) = chain_id(&mut *c, tenant)? else {
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
