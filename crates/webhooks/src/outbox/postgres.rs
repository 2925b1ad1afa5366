//! [`PgOutbox`]: the outbox in the log's PostgreSQL database (tables `webhook_deliveries` and
//! `webhook_high_water`, migration V3 of `blackbox-store-pg`), shared by every service instance
//! on it: an alert committed through one instance is delivered even if that instance dies, and
//! no delivery is claimed by two instances at once (`FOR UPDATE SKIP LOCKED`).
//!
//! The PostgreSQL client blocks on a runtime of its own: every call runs through
//! [`blackbox_store_pg::off_runtime`].

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use blackbox_store_pg::{PgOptions, PgStore, off_runtime};
use tokio::sync::Notify;

use super::{
    AttemptFailure, Delivery, DeliveryCounts, DeliveryInfo, DeliveryStatus, NewDelivery, NextStep,
    Outbox,
};
use crate::retry::Backoff;
use crate::{WebhookError, ms, redact_url};

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The durable outbox of webhook deliveries in a PostgreSQL database.
pub struct PgOutbox {
    store: PgStore,
    wake: Arc<Notify>,
}

impl fmt::Debug for PgOutbox {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PgOutbox")
            .field("database", &self.location())
            .finish_non_exhaustive()
    }
}

const INFO_COLUMNS: &str = "id, webhook_id, url, secret_ref, format, event_type, tenant, seq, \
     entry_id, status, attempts, max_attempts, next_attempt_at_ms, last_status, last_error, \
     last_attempt_at_ms, created_at_ms, delivered_at_ms";

fn info_row(r: &postgres::Row) -> Result<DeliveryInfo, WebhookError> {
    let status_text: String = r.get(9);
    let status = DeliveryStatus::parse(&status_text)?;
    let url: String = r.get(2);
    let next: i64 = r.get(12);
    let attempts: i32 = r.get(10);
    let max_attempts: i32 = r.get(11);
    Ok(DeliveryInfo {
        id: r.get(0),
        webhook_id: r.get(1),
        url: redact_url(&url),
        secret_ref: r.get(3),
        format: r.get(4),
        event_type: r.get(5),
        tenant: r.get(6),
        seq: u64::try_from(r.get::<_, i64>(7)).unwrap_or(0),
        entry_id: r.get(8),
        status,
        attempts: u32::try_from(attempts).unwrap_or(0),
        max_attempts: u32::try_from(max_attempts).unwrap_or(0),
        next_attempt_at_ms: (status == DeliveryStatus::Pending).then_some(next),
        last_status: r
            .get::<_, Option<i32>>(13)
            .and_then(|s| u16::try_from(s).ok()),
        last_error: r.get(14),
        last_attempt_at_ms: r.get(15),
        created_at_ms: r.get(16),
        delivered_at_ms: r.get(17),
    })
}

impl PgOutbox {
    /// Opens the outbox of the database at `url` (its tables created or migrated first).
    ///
    /// # Errors
    /// [`WebhookError::OutboxDatabase`]: the database cannot be reached or migrated.
    pub fn open(url: &str) -> Result<Self, WebhookError> {
        let store = off_runtime(|| {
            PgStore::open(
                url,
                &PgOptions {
                    pool_size: 2,
                    ..PgOptions::default()
                },
            )
        })?;
        Ok(Self {
            store,
            wake: Arc::new(Notify::new()),
        })
    }

    /// Runs `f` with a connection, off the async runtime.
    fn run<T: Send>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> Result<T, WebhookError> + Send,
    ) -> Result<T, WebhookError> {
        off_runtime(|| self.store.with_client(f))
    }
}

fn db(e: postgres::Error) -> WebhookError {
    WebhookError::OutboxDatabase(blackbox_store_pg::pg(e))
}

impl Outbox for PgOutbox {
    fn notifier(&self) -> Arc<Notify> {
        Arc::clone(&self.wake)
    }

    fn location(&self) -> String {
        self.store.target().to_owned()
    }

    fn insert(
        &self,
        rows: &[NewDelivery],
        high_water: &[(&str, u64)],
        now_ms: i64,
    ) -> Result<usize, WebhookError> {
        let added = self.run(|c| {
            let mut tx = c.transaction().map_err(db)?;
            let mut added = 0;
            for r in rows {
                added += tx
                    .execute(
                        "INSERT INTO webhook_deliveries(webhook_id, url, secret_ref, format, \
                         event_type, tenant, seq, entry_id, body, status, attempts, max_attempts, \
                         timeout_ms, next_attempt_at_ms, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'pending', 0, $10, $11, $12, $12) \
                         ON CONFLICT (webhook_id) DO NOTHING",
                        &[
                            &r.webhook_id,
                            &r.url,
                            &r.secret_ref,
                            &r.format.as_str(),
                            &r.event_type,
                            &r.tenant,
                            &to_i64(r.seq),
                            &r.entry_id,
                            &r.body,
                            &i32::try_from(r.max_attempts.max(1)).unwrap_or(i32::MAX),
                            &ms(r.timeout),
                            &now_ms,
                        ],
                    )
                    .map_err(db)?;
            }
            for (tenant, seq) in high_water {
                tx.execute(
                    "INSERT INTO webhook_high_water(tenant, seq) VALUES ($1, $2) \
                     ON CONFLICT (tenant) DO UPDATE SET seq = greatest(webhook_high_water.seq, excluded.seq)",
                    &[tenant, &to_i64(*seq)],
                )
                .map_err(db)?;
            }
            tx.commit().map_err(db)?;
            Ok(usize::try_from(added).unwrap_or(usize::MAX))
        })?;
        if added > 0 {
            self.wake.notify_one();
        }
        Ok(added)
    }

    fn high_water_mark(&self, tenant: &str) -> Result<Option<u64>, WebhookError> {
        self.run(|c| {
            let row = c
                .query_opt(
                    "SELECT seq FROM webhook_high_water WHERE tenant = $1",
                    &[&tenant],
                )
                .map_err(db)?;
            Ok(row.map(|r| u64::try_from(r.get::<_, i64>(0)).unwrap_or(0)))
        })
    }

    fn due(&self, now_ms: i64, limit: usize) -> Result<Vec<DeliveryInfo>, WebhookError> {
        self.run(|c| {
            c.query(
                &format!(
                    "SELECT {INFO_COLUMNS} FROM webhook_deliveries WHERE status = 'pending' \
                     AND next_attempt_at_ms <= $1 ORDER BY next_attempt_at_ms, id LIMIT $2"
                ),
                &[&now_ms, &to_i64(limit as u64)],
            )
            .map_err(db)?
            .iter()
            .map(info_row)
            .collect()
        })
    }

    fn claim_due(
        &self,
        now_ms: i64,
        limit: usize,
        backoff: &Backoff,
        exclude: &HashSet<i64>,
    ) -> Result<Vec<Delivery>, WebhookError> {
        let exclude: Vec<i64> = exclude.iter().copied().collect();
        self.run(|c| {
            let mut tx = c.transaction().map_err(db)?;
            // Rows another instance is claiming are skipped, not waited for.
            let rows = tx
                .query(
                    "SELECT id, webhook_id, url, secret_ref, body, attempts, max_attempts, timeout_ms \
                     FROM webhook_deliveries WHERE status = 'pending' AND next_attempt_at_ms <= $1 \
                     AND NOT (id = ANY($3)) ORDER BY next_attempt_at_ms, id LIMIT $2 \
                     FOR UPDATE SKIP LOCKED",
                    &[&now_ms, &to_i64(limit as u64), &exclude],
                )
                .map_err(db)?;
            let mut claimed = Vec::with_capacity(rows.len());
            for r in rows {
                let attempts = u32::try_from(r.get::<_, i32>(5)).unwrap_or(0);
                let max_attempts = u32::try_from(r.get::<_, i32>(6)).unwrap_or(1);
                let mut d = Delivery {
                    id: r.get(0),
                    webhook_id: r.get(1),
                    url: r.get(2),
                    secret_ref: r.get(3),
                    body: r.get(4),
                    attempt: 0,
                    max_attempts,
                    timeout: Duration::from_millis(
                        u64::try_from(r.get::<_, i64>(7)).unwrap_or(0),
                    ),
                };
                d.attempt = if attempts < d.max_attempts {
                    attempts + 1
                } else {
                    attempts
                };
                let until = now_ms
                    .saturating_add(ms(d.timeout))
                    .saturating_add(ms(backoff.ceiling(d.attempt)));
                tx.execute(
                    "UPDATE webhook_deliveries SET attempts = $2, last_attempt_at_ms = $3, \
                     next_attempt_at_ms = $4 WHERE id = $1",
                    &[
                        &d.id,
                        &i32::try_from(d.attempt).unwrap_or(i32::MAX),
                        &now_ms,
                        &until,
                    ],
                )
                .map_err(db)?;
                claimed.push(d);
            }
            tx.commit().map_err(db)?;
            Ok(claimed)
        })
    }

    fn mark_delivered(&self, id: i64, status: u16, now_ms: i64) -> Result<bool, WebhookError> {
        self.run(|c| {
            let n = c
                .execute(
                    "UPDATE webhook_deliveries SET status = 'delivered', last_status = $2, \
                     last_error = NULL, delivered_at_ms = $3, next_attempt_at_ms = $3 \
                     WHERE id = $1 AND status = 'pending'",
                    &[&id, &i32::from(status), &now_ms],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
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
        let last_status = failure.status.map(i32::from);
        self.run(|c| {
            let n = c
                .execute(
                    "UPDATE webhook_deliveries SET status = $3, last_status = $4, last_error = $5, \
                     next_attempt_at_ms = $6 WHERE id = $1 AND status = 'pending' AND attempts = $2",
                    &[
                        &id,
                        &i32::try_from(attempt).unwrap_or(i32::MAX),
                        &status,
                        &last_status,
                        &failure.error,
                        &at,
                    ],
                )
                .map_err(db)?;
            Ok(n == 1)
        })
    }

    fn list(
        &self,
        status: Option<DeliveryStatus>,
        limit: usize,
    ) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let limit = to_i64(limit as u64);
        self.run(|c| {
            let rows = match status {
                Some(s) => c.query(
                    &format!(
                        "SELECT {INFO_COLUMNS} FROM webhook_deliveries WHERE status = $1 \
                         ORDER BY id DESC LIMIT $2"
                    ),
                    &[&s.as_str(), &limit],
                ),
                None => c.query(
                    &format!(
                        "SELECT {INFO_COLUMNS} FROM webhook_deliveries ORDER BY id DESC LIMIT $1"
                    ),
                    &[&limit],
                ),
            }
            .map_err(db)?;
            rows.iter().map(info_row).collect()
        })
    }

    fn get(&self, id: i64) -> Result<Option<DeliveryInfo>, WebhookError> {
        self.run(|c| {
            c.query_opt(
                &format!("SELECT {INFO_COLUMNS} FROM webhook_deliveries WHERE id = $1"),
                &[&id],
            )
            .map_err(db)?
            .as_ref()
            .map(info_row)
            .transpose()
        })
    }

    fn of_entries(
        &self,
        tenant: &str,
        first_seq: u64,
        last_seq: u64,
    ) -> Result<Vec<DeliveryInfo>, WebhookError> {
        let (a, b) = (to_i64(first_seq), to_i64(last_seq));
        self.run(|c| {
            c.query(
                &format!(
                    "SELECT {INFO_COLUMNS} FROM webhook_deliveries \
                     WHERE tenant = $1 AND seq BETWEEN $2 AND $3 ORDER BY seq, id"
                ),
                &[&tenant, &a, &b],
            )
            .map_err(db)?
            .iter()
            .map(info_row)
            .collect()
        })
    }

    fn retry(&self, id: i64, now_ms: i64) -> Result<usize, WebhookError> {
        let n = self.run(|c| {
            c.execute(
                "UPDATE webhook_deliveries SET \
                 attempts = CASE status WHEN 'dead' THEN 0 ELSE attempts END, \
                 status = 'pending', next_attempt_at_ms = $2 \
                 WHERE id = $1 AND status IN ('pending', 'dead')",
                &[&id, &now_ms],
            )
            .map_err(db)
        })?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn retry_dead(&self, now_ms: i64) -> Result<usize, WebhookError> {
        let n = self.run(|c| {
            c.execute(
                "UPDATE webhook_deliveries SET status = 'pending', attempts = 0, \
                 next_attempt_at_ms = $1 WHERE status = 'dead'",
                &[&now_ms],
            )
            .map_err(db)
        })?;
        if n > 0 {
            self.wake.notify_one();
        }
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }

    fn counts(&self) -> Result<DeliveryCounts, WebhookError> {
        self.run(|c| {
            let mut out = DeliveryCounts::default();
            for r in c
                .query(
                    "SELECT status, count(*) FROM webhook_deliveries GROUP BY status",
                    &[],
                )
                .map_err(db)?
            {
                let status: String = r.get(0);
                let n = u64::try_from(r.get::<_, i64>(1)).unwrap_or(0);
                match status.as_str() {
                    "pending" => out.pending = n,
                    "delivered" => out.delivered = n,
                    "dead" => out.dead = n,
                    _ => {}
                }
            }
            Ok(out)
        })
    }

    fn prune_delivered(&self, before_ms: i64) -> Result<usize, WebhookError> {
        self.run(|c| {
            c.execute(
                "UPDATE webhook_deliveries SET body = ''::bytea \
                 WHERE status = 'delivered' AND delivered_at_ms < $1 AND length(body) > 0",
                &[&before_ms],
            )
            .map_err(db)
        })
        .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
    }
}
