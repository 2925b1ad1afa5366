//! Encoding helpers and row decoding shared by reads and writes.

use super::*;

/// The two halves of an entry id as stored (`id_hi`, `id_lo`).
pub(super) fn id_halves(id: &[u8; 16]) -> (i64, i64) {
    let mut hi = [0u8; 8];
    let mut lo = [0u8; 8];
    hi.copy_from_slice(&id[..8]);
    lo.copy_from_slice(&id[8..]);
    (i64::from_be_bytes(hi), i64::from_be_bytes(lo))
}

pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub(super) fn get_varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f).checked_shl(shift)?;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

/// Encodes `(ts_ms, offset)` pairs, sorted by (ts_ms, offset) and all in `bucket`, as a posting
/// list whose ids are `first_id + offset`.
pub(super) fn encode_posting(bucket: i64, pairs: &[(i64, u32)], out: &mut Vec<u8>) {
    let mut prev = bucket << BUCKET_BITS;
    for &(ts, off) in pairs {
        put_varint(out, (ts - prev).unsigned_abs());
        put_varint(out, u64::from(off));
        prev = ts;
    }
}

/// Decodes a posting list of `n` pairs into `out` as `(ts_ms, id)`. `None` if it is malformed.
pub(super) fn decode_posting(
    bucket: i64,
    first_id: i64,
    n: u64,
    data: &[u8],
    out: &mut Vec<(i64, i64)>,
) -> Option<()> {
    if !(i64::MIN >> BUCKET_BITS..=i64::MAX >> BUCKET_BITS).contains(&bucket) {
        return None;
    }
    let start = bucket << BUCKET_BITS;
    let end = start | ((1 << BUCKET_BITS) - 1);
    let mut ts = start;
    let mut pos = 0;
    out.reserve(usize::try_from(n).ok()?.min(data.len()));
    for _ in 0..n {
        ts = ts.checked_add(i64::try_from(get_varint(data, &mut pos)?).ok()?)?;
        let id = first_id.checked_add(i64::try_from(get_varint(data, &mut pos)?).ok()?)?;
        if ts > end {
            return None;
        }
        out.push((ts, id));
    }
    (pos == data.len()).then_some(())
}

pub(super) fn corrupt(what: impl Into<String>) -> StoreError {
    StoreError::Corrupt { what: what.into() }
}

pub(super) fn invalid(what: impl Into<String>) -> StoreError {
    StoreError::Invalid { what: what.into() }
}

pub(super) fn to_i64(v: u64, what: &str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| invalid(format!("{what} {v} is larger than the store can hold")))
}

/// What a column holds, for error messages: a fixed text, or a closure that formats one only
/// when reading the column fails (rows are read by the million; their messages almost never).
pub(super) trait Describe {
    fn describe(self) -> String;
}

impl Describe for &str {
    fn describe(self) -> String {
        self.to_owned()
    }
}

impl<F: FnOnce() -> String> Describe for F {
    fn describe(self) -> String {
        self()
    }
}

pub(super) fn col_i64(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<i64, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Integer(v) => Ok(v),
        _ => Err(corrupt(format!("{} is not an integer", what.describe()))),
    }
}

pub(super) fn col_u64(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<u64, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Integer(v) => {
            u64::try_from(v).map_err(|_| corrupt(format!("{} is negative ({v})", what.describe())))
        }
        _ => Err(corrupt(format!("{} is not an integer", what.describe()))),
    }
}

pub(super) fn col_blob<'r>(
    row: &'r Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<&'r [u8], StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Blob(b) => Ok(b),
        _ => Err(corrupt(format!("{} is not a blob", what.describe()))),
    }
}

pub(super) fn col_opt_blob(
    row: &Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<Option<Vec<u8>>, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Null => Ok(None),
        ValueRef::Blob(b) => Ok(Some(b.to_vec())),
        _ => Err(corrupt(format!("{} is not a blob", what.describe()))),
    }
}

pub(super) fn col_text(
    row: &Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<String, StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Text(t) => String::from_utf8(t.to_vec())
            .map_err(|_| corrupt(format!("{} is not valid UTF-8", what.describe()))),
        _ => Err(corrupt(format!("{} is not text", what.describe()))),
    }
}

pub(super) fn col_fixed<const N: usize>(
    row: &Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<[u8; N], StoreError> {
    match row.get_ref(idx)? {
        ValueRef::Blob(b) => <[u8; N]>::try_from(b).map_err(|_| {
            corrupt(format!(
                "{} is {} bytes long, not {N}",
                what.describe(),
                b.len()
            ))
        }),
        _ => Err(corrupt(format!("{} is not a blob", what.describe()))),
    }
}

pub(super) fn col_hash(row: &Row<'_>, idx: usize, what: impl Describe) -> Result<Hash, StoreError> {
    col_fixed(row, idx, what).map(Hash)
}

pub(super) fn col_id16(
    row: &Row<'_>,
    idx: usize,
    what: impl Describe,
) -> Result<[u8; 16], StoreError> {
    col_fixed(row, idx, what)
}

pub(super) const HEAD_COLUMNS: &str = "tenant_id, size, head_hash, last_entry_id, merkle_state, \
                            last_checkpoint_size, last_checkpoint_ms";

pub(super) fn read_head(row: &Row<'_>) -> Result<ChainHead, StoreError> {
    let tenant_id = col_text(row, 0, "a chain's tenant id")?;
    let what = |c: &str| format!("column {c} of the chain of tenant {tenant_id:?}");
    Ok(ChainHead {
        size: col_u64(row, 1, || what("size"))?,
        head_hash: col_hash(row, 2, || what("head_hash"))?,
        last_entry_id: col_id16(row, 3, || what("last_entry_id"))?,
        merkle_state: col_blob(row, 4, || what("merkle_state"))?.to_vec(),
        last_checkpoint_size: col_u64(row, 5, || what("last_checkpoint_size"))?,
        last_checkpoint_ms: col_i64(row, 6, || what("last_checkpoint_ms"))?,
        tenant_id,
    })
}

/// Reads `(seq, entry_hash, sidecar, ts_ms, seg, off, len)` starting at column `first`: the
/// entry without its line, and where the line is.
pub(super) fn read_entry(
    row: &Row<'_>,
    tenant: &str,
    first: usize,
) -> Result<(StoredEntry, LineRef), StoreError> {
    let seq = col_u64(row, first, || {
        format!("the seq of an entry of tenant {tenant:?}")
    })?;
    let what = |c: &str| format!("{c} of entry {seq} of tenant {tenant:?}");
    let at = read_line_ref(row, first + 4, seq, tenant)?;
    Ok((
        StoredEntry {
            tenant_id: tenant.to_owned(),
            seq,
            ts_ms: col_i64(row, first + 3, || what("the timestamp"))?,
            entry_hash: col_hash(row, first + 1, || what("the entry hash"))?,
            line: Vec::new(),
            personal: col_opt_blob(row, first + 2, || what("the personal sidecar"))?,
        },
        at,
    ))
}

/// Where entry `seq`'s line is: the segment, offset and length columns from `first` on.
pub(super) fn read_line_ref(
    row: &Row<'_>,
    first: usize,
    seq: u64,
    tenant: &str,
) -> Result<LineRef, StoreError> {
    let what = |c: &str| format!("{c} of entry {seq} of tenant {tenant:?}");
    LineRef::from_columns(
        col_i64(row, first, || what("the line's segment"))?,
        col_i64(row, first + 1, || what("the line's offset"))?,
        col_i64(row, first + 2, || what("the line's length"))?,
    )
    .ok_or_else(|| corrupt(format!("{} is out of range", what("the line's place"))))
}

/// Fills in the lines of entries read with [`read_entry`].
pub(super) fn fill_lines(
    lines: &SegmentReader,
    batch: &mut [(StoredEntry, LineRef)],
) -> Result<(), StoreError> {
    let refs: Vec<LineRef> = batch.iter().map(|(_, r)| *r).collect();
    for ((e, _), line) in batch.iter_mut().zip(lines.read_many(&refs)?) {
        e.line = line;
    }
    Ok(())
}

/// The personal rows of a row-id range, read alongside its entries in id order.
pub(super) struct PersonalMerge<'s> {
    pub(super) rows: rusqlite::Rows<'s>,
    /// The next personal row not yet matched: its id and sidecar.
    pub(super) next: Option<(i64, Vec<u8>)>,
    pub(super) done: bool,
    pub(super) tenant: &'s str,
}

impl<'s> PersonalMerge<'s> {
    pub(super) fn new(rows: rusqlite::Rows<'s>, tenant: &'s str) -> Self {
        Self {
            rows,
            next: None,
            done: false,
            tenant,
        }
    }

    /// The sidecar of entry row `id` (seq `seq`), appended to `side`; rows are asked for in
    /// ascending id order. A personal row whose id has no entry row is passed over, as the
    /// join it replaces would.
    pub(super) fn take(
        &mut self,
        id: i64,
        seq: u64,
        side: &mut Vec<u8>,
    ) -> Result<Option<std::ops::Range<usize>>, StoreError> {
        loop {
            if self.next.is_none() && !self.done {
                match self.rows.next()? {
                    Some(row) => {
                        let pid = col_i64(row, 0, "a personal row's id")?;
                        let sidecar = col_blob(row, 1, || {
                            format!(
                                "the personal sidecar of entry {seq} of tenant {:?}",
                                self.tenant
                            )
                        })?;
                        self.next = Some((pid, sidecar.to_vec()));
                    }
                    None => self.done = true,
                }
            }
            match &self.next {
                Some((pid, _)) if *pid < id => self.next = None,
                Some((pid, sidecar)) if *pid == id => {
                    let a = side.len();
                    side.extend_from_slice(sidecar);
                    self.next = None;
                    return Ok(Some(a..side.len()));
                }
                _ => return Ok(None),
            }
        }
    }
}

pub(super) fn misplaced(
    expected_seq: u64,
    tenant: &str,
    stored_chain: i64,
    seq: u64,
) -> StoreError {
    corrupt(format!(
        "entry {expected_seq} of tenant {tenant:?} is not stored where the chain's runs say \
         (found chain {stored_chain}, seq {seq})"
    ))
}

/// Checks that the entry read from a run's row-id range is the one the run maps there.
pub(super) fn check_run_entry(
    row: &Row<'_>,
    chain: i64,
    expected_seq: u64,
    tenant: &str,
) -> Result<(), StoreError> {
    let stored_chain = col_i64(row, 0, "an entry's chain id")?;
    let seq = col_u64(row, 1, "an entry's seq")?;
    if stored_chain != chain || seq != expected_seq {
        return Err(misplaced(expected_seq, tenant, stored_chain, seq));
    }
    Ok(())
}

pub(super) fn read_checkpoint(row: &Row<'_>, tenant: &str) -> Result<StoredCheckpoint, StoreError> {
    Ok(StoredCheckpoint {
        tenant_id: tenant.to_owned(),
        size: col_u64(row, 0, "a checkpoint size")?,
        ts_ms: col_i64(row, 1, "a checkpoint time")?,
        note: col_text(row, 2, "a checkpoint note")?,
    })
}

/// Consecutive entries of one chain stored under consecutive row ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Run {
    pub(super) first_seq: i64,
    pub(super) first_id: i64,
    pub(super) count: i64,
}

impl Run {
    pub(super) const fn last_seq(&self) -> i64 {
        self.first_seq + self.count - 1
    }

    pub(super) const fn last_id(&self) -> i64 {
        self.first_id + self.count - 1
    }

    /// The row id of `seq`, if the run holds it.
    pub(super) fn id_of(&self, seq: i64) -> Option<i64> {
        (self.first_seq..=self.last_seq())
            .contains(&seq)
            .then(|| self.first_id + (seq - self.first_seq))
    }
}

pub(super) fn read_run(row: &Row<'_>) -> Result<Run, StoreError> {
    let run = Run {
        first_seq: col_i64(row, 0, "a run's first seq")?,
        first_id: col_i64(row, 1, "a run's first id")?,
        count: col_i64(row, 2, "a run's length")?,
    };
    if run.first_seq < 1
        || run.count < 1
        || run.first_seq.checked_add(run.count).is_none()
        || run.first_id.checked_add(run.count).is_none()
    {
        return Err(corrupt(format!("a run is out of range ({run:?})")));
    }
    Ok(run)
}

/// Merge order of query rows: `(ts_ms, rank of the tenant, row id)`. Within a chain the row id
/// grows with the seq, so this is the contract's (`ts_ms`, `tenant_id`, `seq`) order.
pub(super) type MergeKey = (i64, usize, i64);
