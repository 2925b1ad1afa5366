//! `blackbox webhooks list|retry`: the webhook outbox (`DATA_DIR/webhooks.db`), on the host. A
//! running service picks changes up at its next poll (within a second).

use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use blackbox_ledger::datadir::DataDir;
use blackbox_webhooks::{DeliveryInfo, DeliveryStatus, OUTBOX_FILE, Outbox, SqliteOutbox};

use crate::Outcome;
use crate::cli::TextOrJson;

fn outbox_path(dir: &DataDir) -> PathBuf {
    dir.root().join(OUTBOX_FILE)
}

/// The outbox, or `None` when the service has not created one yet. The CLI never creates it:
/// a file made by another user (root, say) would lock the service out.
pub(crate) fn open(dir: &DataDir) -> Result<Option<Box<dyn Outbox>>> {
    if !dir.is_data_dir() {
        bail!(
            "{} is not a Blackbox data directory; run `blackbox init` or start `blackbox serve` first",
            dir.root().display()
        );
    }
    match dir.store_location() {
        // In the log's database (shared by the service instances on it).
        blackbox_ledger::datadir::StoreLocation::Postgres { url, .. } => {
            Ok(Some(Box::new(blackbox_webhooks::PgOutbox::open(&url)?)))
        }
        blackbox_ledger::datadir::StoreLocation::Sharded { map, .. } => bail!(
            "each database of the tenant map {} keeps its own webhook outbox: give --database NAME",
            map.path().display()
        ),
        blackbox_ledger::datadir::StoreLocation::Sqlite(_)
            if dir.postgres_marker_path().exists() =>
        {
            bail!(
                "{} keeps its log and its webhook outbox in a PostgreSQL database: give its URL with --store or BLACKBOX_STORE",
                dir.root().display()
            )
        }
        blackbox_ledger::datadir::StoreLocation::Sqlite(_) => {
            let path = outbox_path(dir);
            if !path.exists() {
                return Ok(None);
            }
            Ok(Some(Box::new(SqliteOutbox::open(&path)?)))
        }
    }
}

use blackbox_ledger::clock::now_ms;

fn time(ms: Option<i64>) -> String {
    ms.map_or_else(
        || "-".to_owned(),
        |ms| blackbox_core::entry::format_timestamp(ms).unwrap_or_else(|_| ms.to_string()),
    )
}

/// When something happens or happened to a delivery: its next attempt (pending), its delivery
/// (delivered) or its last attempt (dead).
fn when(d: &DeliveryInfo) -> String {
    match d.status {
        DeliveryStatus::Pending => time(d.next_attempt_at_ms),
        DeliveryStatus::Delivered => time(d.delivered_at_ms),
        DeliveryStatus::Dead => time(d.last_attempt_at_ms),
    }
}

fn last(d: &DeliveryInfo) -> String {
    match (&d.last_error, d.last_status) {
        (Some(e), _) => e.clone(),
        (None, Some(s)) => format!("HTTP {s}"),
        (None, None) => "-".to_owned(),
    }
}

/// Plain-text table: columns padded to their widest cell, the last one not padded.
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let header: Vec<String> = header.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header).chain(rows) {
        let last = row.len().saturating_sub(1);
        for (i, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if i == last {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<w$}  "));
            }
        }
        out.push('\n');
    }
    out
}

/// `blackbox webhooks list [--status pending|delivered|dead] [--limit N] [--format text|json]`:
/// deliveries, newest first (never their body or secret; URLs without user info or query).
pub fn list(
    dir: &DataDir,
    status: Option<&str>,
    limit: usize,
    format: TextOrJson,
) -> Result<Outcome> {
    let status = status
        .map(DeliveryStatus::parse)
        .transpose()
        .map_err(|e| anyhow!("--status: {e}"))?;
    let outbox = open(dir)?;
    let rows = match &outbox {
        Some(o) => o.list(status, limit)?,
        None => Vec::new(),
    };
    match format {
        TextOrJson::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        TextOrJson::Text => {
            if rows.is_empty() {
                match status {
                    Some(s) => println!("No {s} webhook deliveries."),
                    None => println!("No webhook deliveries."),
                }
            } else {
                let cells: Vec<Vec<String>> = rows
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.status.to_string(),
                            format!("{}/{}", d.attempts, d.max_attempts),
                            d.event_type.clone(),
                            d.tenant.clone(),
                            d.seq.to_string(),
                            when(d),
                            d.url.clone(),
                            last(d),
                        ]
                    })
                    .collect();
                print!(
                    "{}",
                    table(
                        &[
                            "ID", "STATUS", "ATTEMPTS", "EVENT", "TENANT", "SEQ", "WHEN", "URL",
                            "LAST",
                        ],
                        &cells
                    )
                );
            }
            if let Some(o) = &outbox {
                let c = o.counts()?;
                println!(
                    "Outbox: {} pending, {} delivered, {} dead. WHEN is the next attempt (pending), \
                     the delivery (delivered) or the last attempt (dead).",
                    c.pending, c.delivered, c.dead
                );
                if c.dead > 0 {
                    println!("`blackbox webhooks retry --dead` sends the dead ones again.");
                }
            }
        }
    }
    Ok(Outcome::Ok)
}

/// `blackbox webhooks retry (ID | --dead)`: makes one delivery (dead or waiting for its backoff)
/// or every dead delivery due now; a dead one starts again with its attempt count reset.
pub fn retry(dir: &DataDir, id: Option<i64>, dead: bool, format: TextOrJson) -> Result<Outcome> {
    let outbox = match (id, dead) {
        (Some(_), true) | (None, false) => {
            bail!("give either a delivery id or --dead; `blackbox webhooks list` shows the ids")
        }
        _ => open(dir)?.ok_or_else(|| {
            anyhow!(
                "no webhook outbox in {} yet: the service has not queued any webhook delivery",
                dir.root().display()
            )
        })?,
    };
    let now = now_ms();
    let (n, what) = match id {
        Some(id) => {
            if outbox.retry(id, now)? == 0 {
                return Err(match outbox.get(id)? {
                    Some(d) if d.status == DeliveryStatus::Delivered => anyhow!(
                        "delivery {id} ({}) was delivered already; nothing to retry",
                        d.webhook_id
                    ),
                    _ => {
                        anyhow!("no delivery with id {id}; `blackbox webhooks list` shows the ids")
                    }
                });
            }
            (
                1,
                format!(
                    "Delivery {id} is due now; a running service sends it within a second, a \
                     stopped one when it starts."
                ),
            )
        }
        None => {
            let n = outbox.retry_dead(now)?;
            (
                n,
                format!(
                    "{n} dead deliveries are due again; a running service sends them within a \
                     second, a stopped one when it starts."
                ),
            )
        }
    };
    match format {
        TextOrJson::Json => println!("{}", serde_json::json!({ "retried": n })),
        TextOrJson::Text => println!("{what}"),
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_every_column_but_the_last() {
        let t = table(
            &["ID", "STATUS", "LAST"],
            &[
                vec!["1".into(), "pending".into(), "HTTP 503".into()],
                vec!["12".into(), "dead".into(), "-".into()],
            ],
        );
        assert_eq!(
            t,
            "ID  STATUS   LAST\n1   pending  HTTP 503\n12  dead     -\n"
        );
    }
}
