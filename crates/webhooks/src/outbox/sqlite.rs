//! [`SqliteOutbox`]: the outbox in one SQLite file (mode 0600, WAL, `synchronous = FULL`),
//! shared by the service and the CLI.

use std::collections::HashSet;
use std::fmt;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use tokio::sync::Notify;

use super::{
    AttemptFailure, Delivery, DeliveryCounts, DeliveryInfo, DeliveryStatus, NewDelivery, NextStep,
    Outbox,
};
use crate::retry::Backoff;
use crate::{WebhookError, ms, redact_url};

const SCHEMA_VERSION: i64 = 1;
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS deliveries(
    id                 INTEGER PRIMARY KEY,
    webhook_id         TEXT NOT NULL UNIQUE,
    url                TEXT NOT NULL,
    secret_ref         TEXT NOT NULL,
    format             TEXT NOT NULL,
    event_type         TEXT NOT NULL,
    tenant             TEXT NOT NULL,
    seq                INTEGER NOT NULL,
    entry_id           TEXT NOT NULL,
    body               BLOB NOT NULL,
    status             TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts           INTEGER NOT NULL,
    max_attempts       INTEGER NOT NULL,
    timeout_ms         INTEGER NOT NULL,
    next_attempt_at_ms INTEGER NOT NULL,
    last_status        INTEGER,
    last_error         TEXT,
    last_attempt_at_ms INTEGER,
    created_at_ms      INTEGER NOT NULL,
    delivered_at_ms    INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(status, next_attempt_at_ms);
CREATE INDEX IF NOT EXISTS deliveries_entry ON deliveries(tenant, seq);
CREATE TABLE IF NOT EXISTS high_water(
    tenant TEXT PRIMARY KEY NOT NULL,
    seq    INTEGER NOT NULL
);";

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The durable outbox of webhook deliveries (`DATA_DIR/webhooks.db`), shared by the service
/// and the CLI.
pub struct SqliteOutbox {
    conn: Mutex<Connection>,
    path: PathBuf,
    wake: Arc<Notify>,
}

impl fmt::Debug for SqliteOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteOutbox")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

const INFO_COLUMNS: &str = "id, webhook_id, url, secret_ref, format, event_type, tenant, seq, \
     entry_id, status, attempts, max_attempts, next_attempt_at_ms, last_status, last_error, \
     last_attempt_at_ms, created_at_ms, delivered_at_ms";

fn info_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryInfo> {
    let status_text: String = r.get(9)?;
    let status = DeliveryStatus::parse(&status_text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(9, rusqlite::types::Type::Text, Box::new(e))
    })?;
    let url: String = r.get(2)?;
    let next: i64 = r.get(12)?;
    Ok(DeliveryInfo {
        id: r.get(0)?,
        webhook_id: r.get(1)?,
        url: redact_url(&url),
        secret_ref: r.get(3)?,
        format: r.get(4)?,
        event_type: r.get(5)?,
        tenant: r.get(6)?,
        seq: u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
        entry_id: r.get(8)?,
        status,
        attempts: r.get(10)?,
        max_attempts: r.get(11)?,
        next_attempt_at_ms: (status == DeliveryStatus::Pending).then_some(next),
        last_status: r.get(13)?,
        last_error: r.get(14)?,
        last_attempt_at_ms: r.get(15)?,
        created_at_ms: r.get(16)?,
        delivered_at_ms: r.get(17)?,
    })
}

impl SqliteOutbox {
    /// Opens (creating if needed, mode 0600) the outbox at `path`.
    ///
    /// # Errors
    /// [`WebhookError::OutboxPermissions`] when the file is readable by group or others,
    /// [`WebhookError::OutboxVersion`] for a file of a newer version, SQLite and I/O failures.
    pub fn open(path: &Path) -> Result<Self, WebhookError> {
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
        {
            // An empty file is a new SQLite database; it is created owner-only from the start.
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let mode = std::fs::metadata(path)?.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    return Err(WebhookError::OutboxPermissions {
                        path: path.to_owned(),
                        mode,
                    });
                }
            }
            Err(e) => return Err(e.into()),
        }
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(5))?;
        let _mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        // An acknowledged enqueue must survive a power loss, not only a crash.
        conn.execute_batch("PRAGMA synchronous = FULL")?;
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(WebhookError::OutboxVersion {
                path: path.to_owned(),
                found: version,
                known: SCHEMA_VERSION,
            });
        }
        conn.execute_batch(SCHEMA)?;
        if version < SCHEMA_VERSION {
            conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))?;
        }
        // The write-ahead log holds the same alerts: owner only, like the file.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.as_os_str().to_owned();
            side.push(suffix);
            if Path::new(&side).exists() {
                std::fs::set_permissions(&side, std::fs::Permissions::from_mode(0o600))?;
            }
        }
        Ok(Self {
            conn: Mutex::new(conn),
            path: path.to_owned(),
            wake: Arc::new(Notify::new()),
        })
    }

    /// The file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A poisoned lock only means a panic elsewhere; SQLite keeps the file consistent.
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Outbox for SqliteOutbox {
    fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    fn location(&self) -> String {
        self.path.display().to_string()
    }

    fn insert(
        &self,
        rows: &[NewDelivery],
        high_water: &[(&str, u64)],
        now_ms: i64,
    ) -> Result<usize, WebhookError> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut added = 0;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO deliveries(webhook_id, url, secret_ref, format, event_type, \
                 tenant, seq, entry_id, body, status, attempts, max_attempts, timeout_ms, \
                 next_attempt_at_ms, created_at_ms) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'pending', 0, ?10, ?11, ?12, ?12)",
            )?;
            for r in rows {
                added += insert.execute(params![
                    r.webhook_id,
                    r.url,
                    r.secret_ref,
                    r.format.as_str(),
                    r.event_type,
                    r.tenant,
                    to_i64(r.seq),
                    r.entry_id,
                    r.body,
                    r.max_attempts.max(1),
                    ms(r.timeout),
                    now_ms
                ])?;
            }
            let mut mark = tx.prepare_cached(
                "INSERT INTO high_water(tenant, seq) VALUES (?1, ?2) \
                 ON CONFLICT(tenant) DO UPDATE SET seq = max(seq, excluded.seq)",
            )?;
            for (tenant, seq) in high_water {
                mark.execute(params![tenant, to_i64(*seq)])?;
            }
        }
        tx.commit()?;
        drop(c);
        if added > 0 {
            self.wake.notify_one();
        }
        Ok(added)
    }

    fn high_water_mark(&self, tenant: &str) -> Result<Option<u64>, WebhookError> {
        let seq: Option<i64> = self
            .conn()
            .query_row(
                "SELECT seq FROM high_water WHERE tenant = ?1",
                [tenant],
                |r| r.get(0),
            )
            .optional()?;
        Ok(seq.map(|s| u64::try_from(s).unwrap_or(0)))
    }

    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let c = self.conn();
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM deliveries WHERE status = 'pending' \
             AND next_attempt_at_ms <= ?1 ORDER BY next_attempt_at_ms, id LIMIT ?2"
        ))?;
        let rows = stmt.query_map(params![now_ms, to_i64(limit as u64)], info_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        backoff: &Backoff,
        exclude: &HashSet<i64>,
    ) -> Result<Vec<Delivery>, WebhookError> {
        let mut c = self.conn();
        let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut claimed = Vec::new();
        {
            let mut select = tx.prepare_cached(
                "SELECT id, webhook_id, url, secret_ref, body, attempts, max_attempts, timeout_ms \
                 FROM deliveries WHERE status = 'pending' AND next_attempt_at_ms <= ?1 \
                 ORDER BY next_attempt_at_ms, id LIMIT ?2",
            )?;
            let rows = select.query_map(
                params![now_ms, to_i64((limit + exclude.len()) as u64)],
                |r| {
                    Ok((
                        Delivery {
                            id: r.get(0)?,
                            webhook_id: r.get(1)?,
                            url: r.get(2)?,
                            secret_ref: r.get(3)?,
                            body: r.get(4)?,
                            attempt: 0,
                            max_attempts: r.get(6)?,
                            timeout: Duration::from_millis(
                                u64::try_from(r.get::<_, i64>(7)?).unwrap_or(0),
                            ),
                        },
                        r.get::<_, u32>(5)?,
                    ))
                },
            )?;
            for row in rows {
                let (d, attempts) = row?;
                if !exclude.contains(&d.id) && claimed.len() < limit {
                    claimed.push((d, attempts));
                }
            }
            let mut lease = tx.prepare_cached(
                "UPDATE deliveries SET attempts = ?2, last_attempt_at_ms = ?3, \
                 next_attempt_at_ms = ?4 WHERE id = ?1",
            )?;
            for (d, attempts) in &mut claimed {
                d.attempt = if *attempts < d.max_attempts {
                    *attempts + 1
                } else {
                    *attempts
                };
                let until = now_ms
                    .saturating_add(ms(d.timeout))
                    .saturating_add(ms(backoff.ceiling(d.attempt)));
                lease.execute(params![d.id, d.attempt, now_ms, until])?;
            }
        }
        tx.commit()?;
        Ok(claimed.into_iter().map(|(d, _)| d).collect())
    }

    fn mark_delivered(&self, id: i64, status: u16, now_ms: i64) -> Result<bool, WebhookError> {
        let n = self.conn().execute(
            "UPDATE deliveries SET status = 'delivered', last_status = ?2, last_error = NULL, \
             delivered_at_ms = ?3, next_attempt_at_ms = ?3 WHERE id = ?1 AND status = 'pending'",
            params![id, status, now_ms],
        )?;
        Ok(n == 1)
    }

    fn mark_failed(
        &self,
        id: i64,
        attempt: u32,
        failure: &AttemptFailure,
        next: NextStep,
        now_ms: i64,
    ) -> Result<bool, WebhookError> {
        let (status, at) = match next {
            NextStep::RetryAt(at) => ("pending", at),
            NextStep::Dead => ("dead", now_ms),
        };
        let n = self.conn().execute(
            "UPDATE deliveries SET status = ?3, last_status = ?4, last_error = ?5, \
             next_attempt_at_ms = ?6 WHERE id = ?1 AND status = 'pending' AND attempts = ?2",
            params![id, attempt, status, failure.status, failure.error, at],
        )?;
        Ok(n == 1)
    }

    fn list(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let c = self.conn();
        let limit = to_i64(limit as u64);
        let rows = match status {
            Some(s) => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {INFO_COLUMNS} FROM deliveries WHERE status = ?1 ORDER BY id DESC LIMIT ?2"
                ))?;
                stmt.query_map(params![s.as_str(), limit], info_row)?
                    .collect::<Result<Vec<_>, _>>()?
            }
            None => {
                let mut stmt = c.prepare_cached(&format!(
                    "SELECT {INFO_COLUMNS} FROM deliveries ORDER BY id DESC LIMIT ?1"
                ))?;
                stmt.query_map(params![limit], info_row)?
                    .collect::<Result<Vec<_>, _>>()?
            }
        };
        Ok(rows)
    }

    fn get(&self, id: i64) -> Result<Option<DeliveryInfo>, WebhookError> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {INFO_COLUMNS} FROM deliveries WHERE id = ?1"),
                [id],
                info_row,
            )
            .optional()?)
    }

    fn retry(&self, id: i64, now_ms: i64) -> Result<usize, WebhookError> {
        let n = self.conn().execute(
            "UPDATE deliveries SET attempts = CASE status WHEN 'dead' THEN 0 ELSE attempts END, \
             status = 'pending', next_attempt_at_ms = ?2 \
             WHERE id = ?1 AND status IN ('pending', 'dead')",
            params![id, now_ms],
        )?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n)
    }

    fn retry_dead(&self, now_ms: i64) -> Result<usize, WebhookError> {
        let n = self.conn().execute(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at_ms = ?1 \
             WHERE status = 'dead'",
            params![now_ms],
        )?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(n)
    }

    fn counts(&self) -> Result<DeliveryCounts, WebhookError> {
        let c = self.conn();
        let mut stmt =
            c.prepare_cached("SELECT status, count(*) FROM deliveries GROUP BY status")?;
        let mut out = DeliveryCounts::default();
        for row in stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))? {
            let (status, n) = row?;
            let n = u64::try_from(n).unwrap_or(0);
            match status.as_str() {
                "pending" => out.pending = n,
                "delivered" => out.delivered = n,
                "dead" => out.dead = n,
                _ => {}
            }
        }
        Ok(out)
    }

    fn prune_delivered(&self, before_ms: i64) -> Result<usize, WebhookError> {
        Ok(self.conn().execute(
            "UPDATE deliveries SET body = x'' \
             WHERE status = 'delivered' AND delivered_at_ms < ?1 AND length(body) > 0",
            [before_ms],
        )?)
    }

    fn of_entries(
        &self,
        tenant: &str,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let c = self.conn();
        let mut stmt = c.prepare_cached(&format!(
            "SELECT {INFO_COLUMNS} FROM deliveries WHERE tenant = ?1 AND seq BETWEEN ?2 AND ?3 \
             ORDER BY seq, id"
        ))?;
        let rows = stmt
            .query_map(
                params![tenant, to_i64(first_seq), to_i64(last_seq)],
                info_row,
            )?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
}
