//! Erasure: the subject index, deleting personal sidecars, purging erased bytes.

use super::*;

/// How long [`ErasureStore::purge_erased`] sleeps between checkpoint attempts.
pub(super) const PURGE_RETRY: Duration = Duration::from_millis(50);

impl ErasureStore for SqliteStore {
    fn entries_for_subject(&self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        subject_rows(&self.conn, subject_key)
    }

    fn purge_erased(&mut self, wait: Duration) -> Result<Purge, StoreError> {
        if self.read_only {
            return Err(StoreError::ReadOnly);
        }
        let started = std::time::Instant::now();
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            // (busy, frames in the log, frames checkpointed): busy = 1 when a reader's snapshot
            // or another connection kept the log from being reset.
            let r: Result<(i64, i64, i64), rusqlite::Error> =
                self.conn
                    .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                    });
            let done = match r {
                Ok((0, _, _)) => true,
                Ok(_) => false,
                Err(e)
                    if matches!(
                        e.sqlite_error_code(),
                        Some(
                            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                        )
                    ) =>
                {
                    false
                }
                Err(e) => return Err(e.into()),
            };
            if done {
                return Ok(Purge { attempts });
            }
            if started.elapsed() >= wait {
                return Err(StoreError::PurgeIncomplete {
                    waited_s: started.elapsed().as_secs(),
                });
            }
            std::thread::sleep(PURGE_RETRY);
        }
    }
}

/// The subject index rows of one keyed subject hash.
pub(super) fn subject_rows(
    conn: &Connection,
    key: &[u8; 32],
) -> Result<Vec<SubjectEntry>, StoreError> {
    let mut stmt = conn.prepare_cached(SUBJECT_SQL)?;
    let mut rows = stmt.query([&key[..]])?;
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(SubjectEntry {
            tenant_id: col_text(row, 0, "a chain's tenant id")?,
            seq: col_u64(row, 1, "a subject-index seq")?,
            entry_id: col_id16(row, 2, "a subject-index entry id")?,
        });
    }
    Ok(out)
}

impl ErasureBatch for SqliteBatch<'_> {
    fn subject_entries(&mut self, subject_key: &[u8; 32]) -> Result<Vec<SubjectEntry>, StoreError> {
        self.usable()?;
        subject_rows(&self.tx, subject_key)
    }

    fn erase_personal(
        &mut self,
        tenant: TenantRef<'_>,
        seqs: &[u64],
    ) -> Result<Vec<Erasure>, StoreError> {
        self.usable()?;
        let Some(chain) = self.chain(tenant, false)?.map(|s| s.chain_id) else {
            return Ok(vec![Erasure::NotStored; seqs.len()]);
        };
        let mut out = Vec::with_capacity(seqs.len());
        let mut run_at = self.tx.prepare_cached(RUN_AT_SQL)?;
        let mut stored = self
            .tx
            .prepare_cached("SELECT 1 FROM entries WHERE id = ?1 AND chain_id = ?2 AND seq = ?3")?;
        let mut del_personal = self
            .tx
            .prepare_cached("DELETE FROM personal WHERE id = ?1")?;
        let mut del_index = self
            .tx
            .prepare_cached("DELETE FROM subject_index WHERE chain_id = ?1 AND seq = ?2")?;
        for &seq in seqs {
            let Ok(seq_i) = i64::try_from(seq) else {
                out.push(Erasure::NotStored);
                continue;
            };
            let run = run_at
                .query_row(params![chain, seq_i], |r| Ok(read_run(r)))
                .optional()?
                .transpose()?;
            let id = run.and_then(|r| r.id_of(seq_i));
            let present = match id {
                Some(id) => stored.exists(params![id, chain, seq_i])?,
                None => false,
            };
            let Some(id) = id.filter(|_| present) else {
                out.push(Erasure::NotStored);
                continue;
            };
            let removed = del_personal.execute([id])?;
            del_index.execute(params![chain, seq_i])?;
            out.push(if removed > 0 {
                Erasure::Removed
            } else {
                Erasure::AlreadyAbsent
            });
        }
        Ok(out)
    }

    fn forget_subjects(&mut self, tenant: TenantRef<'_>, seqs: &[u64]) -> Result<(), StoreError> {
        self.usable()?;
        let Some(chain) = self.chain(tenant, false)?.map(|s| s.chain_id) else {
            return Ok(());
        };
        let mut del = self
            .tx
            .prepare_cached("DELETE FROM subject_index WHERE chain_id = ?1 AND seq = ?2")?;
        for &seq in seqs {
            del.execute(params![chain, to_i64(seq, "a seq")?])?;
        }
        Ok(())
    }
}
