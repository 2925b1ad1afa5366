//! Read statements (also checked by the query-plan test).

/// The run of a chain holding seq `?2` (or the last run before it).
pub(super) const RUN_AT_SQL: &str = "SELECT first_seq, first_id, count FROM runs \
                          WHERE chain_id = ?1 AND first_seq <= ?2 ORDER BY first_seq DESC LIMIT 1";
/// The runs of a chain starting in `?2 ..= ?3`, in order.
pub(super) const RUNS_FROM_SQL: &str = "SELECT first_seq, first_id, count FROM runs \
                             WHERE chain_id = ?1 AND first_seq BETWEEN ?2 AND ?3 ORDER BY first_seq";
/// The last run of a chain.
pub(super) const LAST_RUN_SQL: &str = "SELECT first_seq, first_id, count FROM runs \
                            WHERE chain_id = ?1 ORDER BY first_seq DESC LIMIT 1";
/// Entries by row-id range (one run), with their sidecars.
pub(super) const ENTRY_RANGE_SQL: &str = "SELECT e.chain_id, e.seq, e.entry_hash, p.sidecar, e.ts_ms, e.seg, e.off, e.len \
                               FROM entries e LEFT JOIN personal p ON p.id = e.id \
                               WHERE e.id BETWEEN ?1 AND ?2 ORDER BY e.id";
/// Where the lines of a row-id range (one run) are, for reading them in bulk.
pub(super) const LINE_RANGE_SQL: &str = "SELECT id, chain_id, seq, seg, off, len FROM entries \
                              WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
/// The personal sidecars of a row-id range, merged with [`LINE_RANGE_SQL`]'s rows (cheaper
/// than a join that looks each entry up in `personal`).
pub(super) const PERSONAL_RANGE_SQL: &str = "SELECT id, sidecar FROM personal \
                                  WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
/// Entry hashes by row-id range (one run).
pub(super) const HASH_RANGE_SQL: &str = "SELECT chain_id, seq, entry_hash FROM entries \
                              WHERE id BETWEEN ?1 AND ?2 ORDER BY id";
/// One entry by row id, with its sidecar.
pub(super) const ENTRY_AT_SQL: &str = "SELECT e.chain_id, e.seq, e.entry_hash, p.sidecar, e.ts_ms, e.seg, e.off, e.len \
                            FROM entries e LEFT JOIN personal p ON p.id = e.id WHERE e.id = ?1";
/// One entry by entry id, with its tenant and sidecar.
pub(super) const ENTRY_BY_ID_SQL: &str = "SELECT c.tenant_id, e.chain_id, e.seq, e.entry_hash, \
                               p.sidecar, e.ts_ms, e.seg, e.off, e.len \
                               FROM entries e JOIN chains c ON c.chain_id = e.chain_id \
                               LEFT JOIN personal p ON p.id = e.id \
                               WHERE e.id_lo = ?1 AND e.id_hi = ?2";
/// The first bucket in `?4 ..= ?5` holding postings of `(chain, kind, name)`.
pub(super) const NEXT_BUCKET_SQL: &str = "SELECT bucket FROM postings \
                               WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                               AND bucket BETWEEN ?4 AND ?5 ORDER BY bucket LIMIT 1";
/// The postings of `(chain, kind, name)` in one bucket.
pub(super) const BUCKET_POSTINGS_SQL: &str = "SELECT bucket, first_id, n, data FROM postings \
                                   WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                                   AND bucket = ?4";
/// How many entries the first posting rows of a filter in a bucket range cover.
pub(super) const PROBE_SQL: &str = "SELECT coalesce(sum(n), 0) FROM (SELECT n FROM postings \
                         WHERE chain_id = ?1 AND kind = ?2 AND name_id = ?3 \
                         AND bucket BETWEEN ?4 AND ?5 LIMIT ?6)";
/// `(tenant, seq, entry id)` of the entries whose sidecar references a data subject.
pub(super) const SUBJECT_SQL: &str = "SELECT c.tenant_id, s.seq, s.entry_id FROM subject_index s \
                           JOIN chains c ON c.chain_id = s.chain_id \
                           WHERE s.subject_key = ?1 ORDER BY c.tenant_id, s.seq";
