//! Anomaly detection in the service: the rules in force (shared with the request handlers, which
//! scan raw content before it is hashed), what the writer appends when a rule fires, the replay
//! of recent history on start, and the reload of the rules file.
//!
//! The detector itself ([`blackbox_detect::Detector`]) lives in the writer thread: every event is
//! counted and evaluated there by the ledger's appender ([`blackbox_ledger::appender`]), in
//! commit order, and what fires is appended in the same group commit as the event that fired it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use blackbox_core::entry::EntryView;
use blackbox_core::event::Node;
use blackbox_detect::rules::RuleSet;
use blackbox_detect::{Detector, Features, Observation};
use blackbox_ledger::LedgerError;
use blackbox_store::{Query, Store};
use serde_json::Value;

use crate::ServerError;

/// Event types the detector writes (never fed back into it).
pub use blackbox_detect::record::DETECTION_EVENTS;

/// The rules in force, shared by the handlers (pattern scanning) and the reloader.
#[derive(Debug)]
pub struct Rules {
    current: RwLock<Arc<RuleSet>>,
    /// The rules file, if any.
    pub path: Option<PathBuf>,
}

impl Rules {
    /// Rules from `path` (or none).
    ///
    /// # Errors
    /// The file cannot be read or is invalid (`file:line:column: reason`).
    pub fn load(path: Option<&Path>) -> Result<Self, ServerError> {
        let set = match path {
            None => RuleSet::empty(),
            Some(p) => read_rules(p)?,
        };
        Ok(Self {
            current: RwLock::new(Arc::new(set)),
            path: path.map(Path::to_path_buf),
        })
    }

    /// The rules in force.
    #[must_use]
    pub fn get(&self) -> Arc<RuleSet> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Puts `set` in force for the handlers.
    pub fn set(&self, set: Arc<RuleSet>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = set;
    }
}

/// Reads and checks a rules file.
///
/// # Errors
/// `file:line:column: reason`, or why the file cannot be read.
pub fn read_rules(path: &Path) -> Result<RuleSet, ServerError> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ServerError::Config(format!(
            "cannot read the rules file {}: {e}",
            path.display()
        ))
    })?;
    RuleSet::parse(&text).map_err(|e| ServerError::Config(e.render(&path.display().to_string())))
}

pub use blackbox_ledger::appender::normalize_with_features;

use crate::now_ms;

pub use blackbox_ledger::appender::{Subject, Written};

/// Reads features from a stored entry (history replay and backtests; raw content is gone, so
/// pattern rules see only what the log holds).
#[must_use]
pub fn stored_features(view: &EntryView<'_>, rules: &RuleSet) -> (Features, Option<String>) {
    let mut f = Features::default();
    let mut tool = None;
    if let Ok(Node::Obj(p)) = serde_json::from_str::<Node<'_>>(view.payload.get()) {
        f.fill(&view.event_type, &p, &rules.patterns);
        if let Some((_, Node::Str(t))) = p.iter().find(|(k, _)| k == "tool_name") {
            tool = Some(t.to_string());
        }
    }
    (f, tool)
}

/// Rebuilds the detector's state from the store: counters from the entries of the longest
/// baseline window, suppressions from the alerts of the last day, and pause/throttle state from
/// the chain's `agent_paused` / `agent_resumed` / `agent_throttled` entries. Returns the entries
/// replayed.
///
/// # Errors
/// Store failures.
pub fn replay(store: &dyn Store, det: &mut Detector, now: i64) -> Result<u64, ServerError> {
    let rules = Arc::clone(det.rules());
    let mut n = 0u64;
    let history = rules
        .max_window_ms
        .max(rules.rules.iter().map(|r| r.suppress_ms).max().unwrap_or(0));
    // Counters (and the time-window counts of the current occurrence).
    let q = Query {
        start_ms: Some(now.saturating_sub(history.max(86_400_000))),
        ..Query::default()
    };
    store
        .query(&q, &mut |e| {
            let Ok(view) = EntryView::parse(&e.line) else {
                return Ok(true);
            };
            n += 1;
            match view.event_type.as_ref() {
                // Only the service's own alerts count: anything else of a detection type is an
                // old (version 1) entry or, had it got past the intake, an agent's forgery.
                t if DETECTION_EVENTS.contains(&t) && !view.by_service() => {}
                "anomaly_detected" => {
                    if let Ok(Value::Object(p)) = serde_json::from_str::<Value>(view.payload.get())
                        && let Some(Value::String(rule)) = p.get("rule")
                    {
                        if rule == blackbox_detect::detector::CLOCK_SKEW_RULE {
                            // Restores its suppression (the return value is not needed here).
                            let _ = det.clock_skew_due(
                                &view.tenant_id,
                                &view.agent_id,
                                view.written_ms,
                            );
                        }
                        det.note_alert(
                            rule,
                            &view.tenant_id,
                            &view.agent_id,
                            &view.session_id,
                            view.timestamp_ms,
                        );
                    }
                }
                // Triage entries are people's acts, not the agent's.
                t if DETECTION_EVENTS.contains(&t)
                    || blackbox_core::alert::TRIAGE_EVENT_TYPES.contains(&t) => {}
                _ => {
                    let (f, tool) = stored_features(&view, &rules);
                    let ob = Observation {
                        tenant: &view.tenant_id,
                        agent: &view.agent_id,
                        session: &view.session_id,
                        event_type: &view.event_type,
                        tool: tool.as_deref(),
                        ts_ms: view.timestamp_ms,
                        features: &f,
                    };
                    det.learn(&ob);
                    det.note_entry(
                        &view.tenant_id,
                        &view.agent_id,
                        view.timestamp_ms,
                        view.entry_id,
                    );
                }
            }
            Ok(true)
        })
        .map_err(|e| ServerError::Config(format!("replaying recent history for detection: {e}")))?;
    // Enforcement state: every pause, resume and throttle ever recorded, in chain order.
    let mut controls: Vec<(u64, i64, String, String, String, Value)> = Vec::new();
    for t in ["agent_paused", "agent_resumed", "agent_throttled"] {
        let q = Query {
            event_type: Some(t.to_owned()),
            ..Query::default()
        };
        store
            .query(&q, &mut |e| {
                // Pauses, resumes and throttles written by the service only (never an agent's).
                if let Ok(view) = EntryView::parse(&e.line)
                    && view.by_service()
                {
                    let p =
                        serde_json::from_str::<Value>(view.payload.get()).unwrap_or(Value::Null);
                    controls.push((
                        view.seq,
                        view.written_ms,
                        view.tenant_id.to_string(),
                        view.agent_id.to_string(),
                        t.to_owned(),
                        p,
                    ));
                }
                Ok(true)
            })
            .map_err(|e| ServerError::Config(format!("replaying agent states: {e}")))?;
    }
    // Chain order: per tenant by seq (agents never span tenants).
    controls.sort_by(|a, b| (&a.2, a.0).cmp(&(&b.2, b.0)));
    for (_, ts, tenant, agent, t, p) in controls {
        let by = p.get("by").and_then(Value::as_str).unwrap_or("unknown");
        match t.as_str() {
            "agent_paused" => {
                det.pause(&tenant, &agent, ts, by);
            }
            "agent_resumed" => {
                det.resume(&tenant, &agent);
            }
            _ => {
                let until = p
                    .get("until")
                    .and_then(Value::as_str)
                    .and_then(|u| blackbox_core::entry::parse_timestamp(u).ok())
                    .unwrap_or(ts);
                let rate = p
                    .get("rate_per_minute")
                    .and_then(Value::as_u64)
                    .and_then(|r| u32::try_from(r).ok())
                    .unwrap_or(1);
                if until > now {
                    det.throttle(&tenant, &agent, now, rate, until, by);
                }
            }
        }
    }
    Ok(n)
}

/// An event the service builds itself turned out invalid (a bug, not bad input).
pub(crate) fn core_err(e: blackbox_core::Error) -> LedgerError {
    LedgerError::Event { line: 0, source: e }
}

// ---- webhooks -------------------------------------------------------------------------------------

use crate::webhooks::{AlertEntry, Outbox, PayloadFormat, SecretRef, WebhookStats, WebhookTarget};

/// The webhook side of detection: the outbox, the targets in force and delivery statistics.
#[derive(Debug)]
pub struct Webhooks {
    /// The durable outbox (`DATA_DIR/webhooks.db`).
    pub outbox: Arc<Outbox>,
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
            let secret_ref = SecretRef::parse(&w.hmac_secret_ref)
                .map_err(|e| ServerError::Config(format!("webhook {}: {e}", w.url)))?;
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
            t.validate()
                .map_err(|e| ServerError::Config(format!("webhook {}: {e}", w.url)))?;
            Ok(t)
        })
        .collect()
}

impl Webhooks {
    /// Opens the outbox in `dir` with the targets of `set`.
    ///
    /// # Errors
    /// The outbox cannot be opened, or a target is invalid.
    pub fn open(dir: &Path, set: &RuleSet) -> Result<Self, ServerError> {
        let targets = targets_of(set)?;
        let outbox = Outbox::open(&dir.join(crate::webhooks::OUTBOX_FILE))
            .map_err(|e| ServerError::Config(format!("webhook outbox: {e}")))?;
        Ok(Self {
            outbox: Arc::new(outbox),
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
            if let Err(e) = crate::webhooks::resolve_secret(&t.secret_ref, k8s_dir) {
                tracing::warn!(
                    url = %crate::webhooks::redact_url(&t.url),
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

    /// Reads committed entries and puts them in the outbox (idempotent).
    fn enqueue_seqs(
        &self,
        store: &dyn Store,
        items: &[(String, u64)],
    ) -> Result<usize, ServerError> {
        let mut entries = Vec::with_capacity(items.len());
        for (tenant, seq) in items {
            store
                .scan_lines(tenant, *seq, *seq, &mut |_, line, _| {
                    // Webhooks carry the service's own entries only.
                    if let Ok(v) = EntryView::parse(line)
                        && v.by_service()
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
                })
                .map_err(|e| ServerError::Config(format!("reading alerts for webhooks: {e}")))?;
        }
        let targets = self.targets();
        self.outbox
            .enqueue(&targets, &entries, now_ms())
            .map_err(|e| ServerError::Config(format!("webhook outbox: {e}")))
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
        for head in store
            .chains()
            .map_err(|e| ServerError::Config(e.to_string()))?
        {
            let hwm = self
                .outbox
                .high_water_mark(&head.tenant_id)
                .map_err(|e| ServerError::Config(format!("webhook outbox: {e}")))?;
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
                store
                    .query(&q, &mut |e| {
                        if e.seq > hwm {
                            items.push((e.tenant_id.clone(), e.seq));
                        }
                        Ok(true)
                    })
                    .map_err(|e| ServerError::Config(e.to_string()))?;
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
