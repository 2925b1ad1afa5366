//! The service's wiring of [`blackbox_webhooks`]: the targets of the rules in force, the
//! outbox in the data directory, and the hand-over of committed alert entries to it (as they
//! are committed, and on start for those a crash may have left out).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, RwLock};

use blackbox_core::entry::EntryView;
use blackbox_detect::rules::RuleSet;
use blackbox_store::{Query, Store};
use blackbox_webhooks::{
    AlertEntry, Outbox, PayloadFormat, SecretRef, SqliteOutbox, WebhookStats, WebhookTarget,
};

use crate::ServerError;
use crate::detection::Written;
use crate::now_ms;

/// The webhook side of detection: the outbox, the targets in force and delivery statistics.
#[derive(Debug)]
pub struct Webhooks {
    /// The durable outbox (`DATA_DIR/webhooks.db`).
    pub outbox: Arc<dyn Outbox>,
    targets: RwLock<Arc<Vec<WebhookTarget>>>,
    /// Delivery statistics (exported in `/metrics`).
    pub stats: Arc<WebhookStats>,
}

/// The webhook targets of a rule set.
///
/// # Errors
/// A target that cannot be used (its secret reference, its URL).
pub fn targets_of(set: &RuleSet) -> Result<Vec<WebhookTarget>, ServerError> {
    set.webhooks
        .iter()
        .map(|w| {
            let invalid = |source| ServerError::Webhook {
                url: w.url.clone(),
                source,
            };
            let secret_ref = SecretRef::parse(&w.hmac_secret_ref).map_err(invalid)?;
            let t = WebhookTarget {
                url: w.url.clone(),
                events: w.events.clone(),
                secret_ref,
                format: match w.format {
                    blackbox_detect::rules::WebhookFormat::Json => PayloadFormat::Json,
                    blackbox_detect::rules::WebhookFormat::Ocsf => PayloadFormat::Ocsf,
                },
                max_attempts: w.max_attempts,
                timeout: std::time::Duration::from_millis(w.timeout_ms),
            };
            t.validate().map_err(invalid)?;
            Ok(t)
        })
        .collect()
}

impl Webhooks {
    /// Opens the outbox of the data directory `dir` with the targets of `set`: in its log's
    /// PostgreSQL database when that is where its entries are (shared by every instance on
    /// it), else `DIR/webhooks.db`.
    ///
    /// # Errors
    /// The outbox cannot be opened, or a target is invalid.
    pub fn open(
        dir: &blackbox_ledger::datadir::DataDir,
        set: &RuleSet,
    ) -> Result<Self, ServerError> {
        let targets = targets_of(set)?;
        let outbox: Arc<dyn Outbox> = match dir.store_location() {
            blackbox_ledger::datadir::StoreLocation::Postgres { url, .. } => {
                Arc::new(blackbox_webhooks::PgOutbox::open(&url)?)
            }
            blackbox_ledger::datadir::StoreLocation::Sharded { map, .. } => {
                return Err(ServerError::Config(format!(
                    "each database of the tenant map {} keeps its own webhook outbox and service \
                     instances: give --database NAME",
                    map.path().display()
                )));
            }
            blackbox_ledger::datadir::StoreLocation::Sqlite(_) => Arc::new(SqliteOutbox::open(
                &dir.root().join(blackbox_webhooks::OUTBOX_FILE),
            )?),
        };
        Ok(Self {
            outbox,
            targets: RwLock::new(Arc::new(targets)),
            stats: Arc::new(WebhookStats::default()),
        })
    }

    /// The targets in force.
    #[must_use]
    pub fn targets(&self) -> Arc<Vec<WebhookTarget>> {
        Arc::clone(
            &self
                .targets
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Says in the log, once, which webhook secrets cannot be read now (deliveries wait and
    /// retry until they can: a Kubernetes secret may be mounted later).
    pub fn check_secrets(&self, k8s_dir: &Path) {
        for t in self.targets().iter() {
            if let Err(e) = blackbox_webhooks::resolve_secret(&t.secret_ref, k8s_dir) {
                tracing::warn!(
                    url = %blackbox_webhooks::redact_url(&t.url),
                    error = %e,
                    "a webhook secret cannot be read; its deliveries are kept and retried until it can"
                );
            }
        }
    }

    /// Puts new targets in force.
    pub fn set_targets(&self, t: Vec<WebhookTarget>) {
        *self
            .targets
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(t);
    }

    fn wanted(&self) -> BTreeSet<String> {
        self.targets()
            .iter()
            .flat_map(|t| t.events.iter().cloned())
            .collect()
    }

    /// Reads committed entries and puts them in the outbox (idempotent). A shadow rule's
    /// record (`anomaly_detected` with `action: log_only`) is not delivered: trying a rule
    /// must not page anyone.
    fn enqueue_seqs(
        &self,
        store: &dyn Store,
        items: &[(String, u64)],
    ) -> Result<usize, ServerError> {
        let mut entries = Vec::with_capacity(items.len());
        for (tenant, seq) in items {
            store.scan_lines(tenant, *seq, *seq, &mut |_, line, _| {
                // Webhooks carry the service's own entries only.
                if let Ok(v) = EntryView::parse(line)
                    && v.by_service()
                    && !shadow_alert(&v)
                {
                    entries.push(AlertEntry {
                        tenant: tenant.clone(),
                        seq: *seq,
                        entry_id: v.entry_id.to_string(),
                        event_type: v.event_type.to_string(),
                        timestamp: v.timestamp.to_string(),
                        entry_json: String::from_utf8_lossy(line).into_owned(),
                    });
                }
                Ok(true)
            })?;
        }
        let targets = self.targets();
        self.outbox
            .enqueue(&targets, &entries, now_ms())
            .map_err(ServerError::from)
    }

    /// After a restart: puts in the outbox every wanted entry committed after each chain's
    /// high-water mark (alerts committed just before a crash); a chain never seen before starts
    /// at its head.
    ///
    /// # Errors
    /// Store or outbox failures.
    pub fn catch_up(&self, store: &dyn Store) -> Result<usize, ServerError> {
        let wanted = self.wanted();
        let mut items: Vec<(String, u64)> = Vec::new();
        for head in store.chains()? {
            let hwm = self.outbox.high_water_mark(&head.tenant_id)?;
            let Some(hwm) = hwm else {
                // Start at the head: the entry itself raises the mark (it is not delivered
                // unless wanted, and then it was committed just now).
                if head.size > 0 {
                    items.push((head.tenant_id.clone(), head.size - 1));
                }
                continue;
            };
            for t in &wanted {
                let q = Query {
                    tenant_id: Some(head.tenant_id.clone()),
                    event_type: Some(t.clone()),
                    ..Query::default()
                };
                store.query(&q, &mut |e| {
                    if e.seq > hwm {
                        items.push((e.tenant_id.clone(), e.seq));
                    }
                    Ok(true)
                })?;
            }
        }
        if items.is_empty() {
            return Ok(0);
        }
        self.enqueue_seqs(store, &items)
    }
}

/// Feeds the outbox with the detector's entries as they are committed.
pub async fn feed_webhooks(
    hooks: Arc<Webhooks>,
    readers: Arc<crate::readers::ReaderPool>,
    mut rx: tokio::sync::mpsc::UnboundedReceiver<Vec<Written>>,
) {
    while let Some(batch) = rx.recv().await {
        let wanted = hooks.wanted();
        let items: Vec<(String, u64)> = batch
            .into_iter()
            .filter(|w| wanted.contains(w.event_type))
            .map(|w| (w.tenant, w.seq))
            .collect();
        if items.is_empty() {
            continue;
        }
        let h = Arc::clone(&hooks);
        let r = Arc::clone(&readers);
        let done = tokio::task::spawn_blocking(move || {
            let reader = r.get()?;
            h.enqueue_seqs(&*reader, &items)
        })
        .await;
        match done {
            Ok(Ok(_)) => {}
            // The chain has the entries: the next start's catch-up enqueues them.
            Ok(Err(e)) => {
                tracing::error!(error = %e, "alerts could not be put in the webhook outbox; they are enqueued at the next start")
            }
            Err(e) => tracing::error!(error = %e, "the webhook feeder failed"),
        }
    }
}

/// Whether `v` is a shadow rule's record (`anomaly_detected`, `action: log_only`).
fn shadow_alert(v: &EntryView<'_>) -> bool {
    v.event_type == "anomaly_detected"
        && serde_json::from_str::<serde_json::Value>(v.payload.get())
            .is_ok_and(|p| blackbox_core::alert::is_shadow(&p))
}
