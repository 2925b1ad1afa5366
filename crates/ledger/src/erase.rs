//! Erasure of a data subject's personal data (GDPR Art. 17; docs/FORMAT.md §5).
//!
//! One erasure, in one store batch: look the subject up in the subject index (by its keyed
//! hash), delete the personal sidecars of every entry listed, and append to each chain touched a
//! signed erasure marker listing the redacted entries (split into markers of at most
//! [`MAX_PER_MARKER`] entries). The entries, their HMACs, the chain and every checkpoint stay
//! valid: none of them covers the personal values. After the commit the caller purges the
//! erased bytes from the store's files ([`AppendSink::purge_erased`]) and rewrites any JSONL
//! mirror ([`crate::jsonl::scrub_personal`]).
//!
//! The outcome lists every entry the index named, with what happened to it, including entries
//! no longer in the store (archived): those must be erased where they now are.

use std::collections::BTreeMap;

use blackbox_core::entry::NormalizedEvent;
use blackbox_core::erasure::{
    AGENT_ID, EVENT_TYPE, MAX_PER_MARKER, MAX_TEXT_CHARS, MarkerPayload, Redacted, SESSION_ID,
};
use blackbox_core::ids::{AgentId, EventType, SessionId, TenantId};
use blackbox_store::{Erasure, SubjectEntry};

use crate::error::LedgerError;
use crate::writer::{AppendSink, Appended};

/// A checked erasure request.
#[derive(Clone, PartialEq, Eq)]
pub struct ErasureRequest {
    subject_id: String,
    reason: String,
    ticket: String,
    requested_by: String,
}

impl std::fmt::Debug for ErasureRequest {
    // The subject id is personal data: never in logs or debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ErasureRequest")
            .field("subject_id", &"<personal>")
            .field("reason", &self.reason)
            .field("ticket", &self.ticket)
            .field("requested_by", &self.requested_by)
            .finish()
    }
}

/// Why an erasure request was refused (which field, what is wrong).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct RequestError {
    /// The field (`data_subject`, `reason`, `ticket`).
    pub field: &'static str,
    /// What is wrong and how to fix it.
    pub problem: String,
}

fn text(field: &'static str, v: &str, max: usize) -> Result<(), RequestError> {
    let err = |problem: String| Err(RequestError { field, problem });
    if v.trim().is_empty() {
        return err("is required and must not be empty".to_owned());
    }
    if v.chars().count() > max {
        return err(format!("must be at most {max} characters"));
    }
    if v.chars().any(char::is_control) {
        return err("must not contain control characters (line breaks, tabs)".to_owned());
    }
    Ok(())
}

impl ErasureRequest {
    /// Checks a request: the subject id as `data_subjects` ids are (1–256 characters, no
    /// control characters), `reason` and `ticket` non-empty, at most [`MAX_TEXT_CHARS`]
    /// characters, no control characters. `requested_by` is `cli` or `operator:<token id>`.
    ///
    /// # Errors
    /// [`RequestError`] naming the field.
    pub fn new(
        subject_id: &str,
        reason: &str,
        ticket: &str,
        requested_by: &str,
    ) -> Result<Self, RequestError> {
        if subject_id.is_empty()
            || subject_id.len() > 256
            || subject_id.chars().any(char::is_control)
        {
            return Err(RequestError {
                field: "data_subject",
                problem: "must be an id of 1-256 characters without control characters, as sent \
                          in `data_subjects`"
                    .to_owned(),
            });
        }
        text("reason", reason, MAX_TEXT_CHARS)?;
        text("ticket", ticket, MAX_TEXT_CHARS)?;
        Ok(Self {
            subject_id: subject_id.to_owned(),
            reason: reason.to_owned(),
            ticket: ticket.to_owned(),
            requested_by: requested_by.to_owned(),
        })
    }

    /// The data-subject id (personal data: do not log it).
    #[must_use]
    pub fn subject_id(&self) -> &str {
        &self.subject_id
    }
}

/// What happened to one entry the subject index listed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryFate {
    /// Its sidecar was deleted and a marker lists it.
    Redacted,
    /// Its sidecar was already gone (an earlier erasure of another subject it named).
    AlreadyErased,
    /// Not in the store (archived): still to be erased where it is now.
    NotInStore,
    /// Dry run: it would be redacted.
    WouldRedact,
}

impl EntryFate {
    /// Stable machine name.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Redacted => "redacted",
            Self::AlreadyErased => "already_erased",
            Self::NotInStore => "not_in_store",
            Self::WouldRedact => "would_redact",
        }
    }
}

/// One entry the subject index listed: the hook for archive rewrites.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasedEntry {
    /// Chain.
    pub tenant_id: String,
    /// Sequence number.
    pub seq: u64,
    /// Entry id.
    pub entry_id: uuid::Uuid,
    /// What happened.
    pub fate: EntryFate,
}

/// What an erasure did in one chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainErasure {
    /// Chain.
    pub tenant_id: String,
    /// Entries whose sidecar was deleted (or would be, in a dry run).
    pub redacted: u64,
    /// Entries already erased before.
    pub already_erased: u64,
    /// Entries not in the store.
    pub not_in_store: u64,
    /// The markers appended (none in a dry run or when nothing was redacted).
    pub markers: Vec<Appended>,
}

/// What an erasure did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ErasureOutcome {
    /// Per chain, by tenant.
    pub chains: Vec<ChainErasure>,
    /// Every entry listed, by (tenant, seq).
    pub entries: Vec<ErasedEntry>,
    /// Whether nothing was changed (`--dry-run`).
    pub dry_run: bool,
}

impl ErasureOutcome {
    /// Entries redacted (or that would be) in all chains.
    #[must_use]
    pub fn redacted(&self) -> u64 {
        self.chains.iter().map(|c| c.redacted).sum()
    }

    /// Markers appended in all chains.
    #[must_use]
    pub fn markers(&self) -> usize {
        self.chains.iter().map(|c| c.markers.len()).sum()
    }

    /// `(tenant, seq)` of every entry redacted: the personal records to drop from mirrors.
    #[must_use]
    pub fn redacted_entries(&self) -> Vec<(String, u64)> {
        self.entries
            .iter()
            .filter(|e| matches!(e.fate, EntryFate::Redacted | EntryFate::NotInStore))
            .map(|e| (e.tenant_id.clone(), e.seq))
            .collect()
    }

    /// `(tenant, seq)` of the entries listed that are no longer in the store (archived): their
    /// archive segments are rewritten after the erasure commits.
    #[must_use]
    pub fn archived_entries(&self) -> std::collections::BTreeSet<(String, u64)> {
        self.entries
            .iter()
            .filter(|e| e.fate == EntryFate::NotInStore)
            .map(|e| (e.tenant_id.clone(), e.seq))
            .collect()
    }

    /// A dry-run outcome from the subject index's rows.
    #[must_use]
    pub fn planned(rows: &[SubjectEntry]) -> Self {
        let mut chains: BTreeMap<String, ChainErasure> = BTreeMap::new();
        let mut entries = Vec::with_capacity(rows.len());
        for r in rows {
            chain_entry(&mut chains, &r.tenant_id).redacted += 1;
            entries.push(ErasedEntry {
                tenant_id: r.tenant_id.clone(),
                seq: r.seq,
                entry_id: uuid::Uuid::from_bytes(r.entry_id),
                fate: EntryFate::WouldRedact,
            });
        }
        Self {
            chains: chains.into_values().collect(),
            entries,
            dry_run: true,
        }
    }
}

fn chain_entry<'m>(
    chains: &'m mut BTreeMap<String, ChainErasure>,
    tenant: &str,
) -> &'m mut ChainErasure {
    chains
        .entry(tenant.to_owned())
        .or_insert_with(|| ChainErasure {
            tenant_id: tenant.to_owned(),
            redacted: 0,
            already_erased: 0,
            not_in_store: 0,
            markers: Vec::new(),
        })
}

/// Whether the store no longer holds the sidecar of `tenant`'s entry `seq` although the entry is
/// there: the test [`crate::jsonl::scrub_personal`] applies to mirror files.
///
/// # Errors
/// Store failures.
pub fn sidecar_erased(
    store: &dyn blackbox_store::Store,
    tenant: &str,
    seq: u64,
) -> Result<bool, LedgerError> {
    let mut erased = false;
    store.scan(tenant, seq, seq, &mut |e| {
        erased = e.personal.is_none();
        Ok(false)
    })?;
    Ok(erased)
}

/// The outcome as JSON (`blackbox erase --format json`, `POST /v1/erasures`): counts, markers and
/// entry ids, never the subject id or an erased value.
#[must_use]
pub fn outcome_json(o: &ErasureOutcome) -> serde_json::Value {
    let chains: Vec<serde_json::Value> = o
        .chains
        .iter()
        .map(|c| {
            let markers: Vec<serde_json::Value> = c
                .markers
                .iter()
                .map(|m| serde_json::json!({"seq": m.seq, "entry_id": m.entry_id.hyphenated().to_string()}))
                .collect();
            serde_json::json!({
                "tenant_id": c.tenant_id, "redacted": c.redacted, "already_erased": c.already_erased,
                "not_in_store": c.not_in_store, "markers": markers,
            })
        })
        .collect();
    let entries: Vec<serde_json::Value> = o
        .entries
        .iter()
        .map(|e| serde_json::json!({"tenant_id": e.tenant_id, "seq": e.seq, "entry_id": e.entry_id.hyphenated().to_string(), "fate": e.fate.as_str()}))
        .collect();
    serde_json::json!({
        "dry_run": o.dry_run,
        "found": !o.entries.is_empty(),
        "redacted": o.redacted(),
        "markers": o.markers(),
        "chains": chains,
        "entries": entries,
    })
}

/// Erases `req`'s data subject in the sink's current batch: deletes the sidecars and appends the
/// markers. Nothing is durable until the caller commits the sink; then it purges
/// ([`AppendSink::purge_erased`]) and scrubs mirrors.
///
/// # Errors
/// Store and signing failures (the caller must then drop the batch, which rolls it back).
pub fn erase(
    sink: &mut AppendSink<'_>,
    req: &ErasureRequest,
    now_ms: i64,
) -> Result<ErasureOutcome, LedgerError> {
    let key = sink.writer().subject_index_key(&req.subject_id)?;
    let rows = sink.subject_entries(key)?;
    let mut by_chain: BTreeMap<String, Vec<SubjectEntry>> = BTreeMap::new();
    for r in rows {
        by_chain.entry(r.tenant_id.clone()).or_default().push(r);
    }
    let mut out = ErasureOutcome::default();
    let mut chains: BTreeMap<String, ChainErasure> = BTreeMap::new();
    for (tenant, mut rows) in by_chain {
        rows.sort_by_key(|r| r.seq);
        rows.dedup_by_key(|r| r.seq);
        let seqs: Vec<u64> = rows.iter().map(|r| r.seq).collect();
        let fates = sink.erase_personal(&tenant, seqs)?;
        let mut redacted = Vec::new();
        let c = chain_entry(&mut chains, &tenant);
        for (r, fate) in rows.iter().zip(fates) {
            let entry_id = uuid::Uuid::from_bytes(r.entry_id);
            let fate = match fate {
                Erasure::Removed => {
                    c.redacted += 1;
                    redacted.push(Redacted {
                        entry_id: entry_id.hyphenated().to_string(),
                        seq: r.seq,
                    });
                    EntryFate::Redacted
                }
                Erasure::AlreadyAbsent => {
                    c.already_erased += 1;
                    EntryFate::AlreadyErased
                }
                // Erasure is non-exhaustive; anything else left the store's sidecar alone: the
                // entry is archived. The marker lists it too; the archive segment holding it is
                // rewritten after this batch commits (`blackbox_archive::erase`), and until then
                // `verify --include-archive` reports the erasure as incomplete.
                _ => {
                    c.not_in_store += 1;
                    redacted.push(Redacted {
                        entry_id: entry_id.hyphenated().to_string(),
                        seq: r.seq,
                    });
                    EntryFate::NotInStore
                }
            };
            out.entries.push(ErasedEntry {
                tenant_id: tenant.clone(),
                seq: r.seq,
                entry_id,
                fate,
            });
        }
        let parts = u32::try_from(redacted.len().div_ceil(MAX_PER_MARKER)).map_err(|_| {
            LedgerError::Inconsistent("an erasure of more than 2^32 markers".to_owned())
        })?;
        for (part, chunk) in (1..).zip(redacted.chunks(MAX_PER_MARKER)) {
            let payload = MarkerPayload {
                count: chunk.len() as u64,
                part,
                parts,
                reason: req.reason.clone(),
                redacted: chunk.to_vec(),
                requested_by: req.requested_by.clone(),
                ticket: req.ticket.clone(),
            };
            let ev = marker_event(&tenant, &payload)?;
            let appended = sink.add(&ev, now_ms)?;
            chain_entry(&mut chains, &tenant).markers.push(appended);
        }
    }
    out.chains = chains.into_values().collect();
    Ok(out)
}

/// The marker entry's event (built directly: normalisation refuses the reserved event type).
fn marker_event(tenant: &str, payload: &MarkerPayload) -> Result<NormalizedEvent, LedgerError> {
    let bad = |e: blackbox_core::FieldError| LedgerError::Inconsistent(e.to_string());
    let value = serde_json::to_value(payload)
        .map_err(|e| LedgerError::Inconsistent(format!("erasure marker payload: {e}")))?;
    Ok(NormalizedEvent {
        tenant_id: Some(TenantId::parse(tenant).map_err(bad)?),
        agent_id: AgentId::parse(AGENT_ID).map_err(bad)?,
        session_id: SessionId::parse(SESSION_ID).map_err(bad)?,
        event_type: EventType::parse(EVENT_TYPE).map_err(bad)?,
        timestamp_ms: None,
        client_seq: None,
        payload_jcs: blackbox_core::entry::canonical_json(&value)
            .map_err(|e| LedgerError::Inconsistent(e.to_string()))?,
        tool: None,
        personal: None,
        subject_ids: Vec::new(),
        origin: Some(blackbox_core::origin::Origin::Service),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_checked_field_by_field() {
        assert!(ErasureRequest::new("ds_1", "GDPR", "T-1", "cli").is_ok());
        let field = |r: Result<ErasureRequest, RequestError>| r.unwrap_err().field;
        assert_eq!(
            field(ErasureRequest::new("", "r", "t", "cli")),
            "data_subject"
        );
        assert_eq!(field(ErasureRequest::new("ds", " ", "t", "cli")), "reason");
        assert_eq!(field(ErasureRequest::new("ds", "r", "", "cli")), "ticket");
        let long = "x".repeat(MAX_TEXT_CHARS + 1);
        assert_eq!(
            field(ErasureRequest::new("ds", &long, "t", "cli")),
            "reason"
        );
        assert_eq!(
            field(ErasureRequest::new("ds", "r", "a\nb", "cli")),
            "ticket"
        );
    }

    #[test]
    fn debug_output_never_shows_the_subject() {
        let r = ErasureRequest::new("ds_secret_123", "r", "t", "cli").unwrap();
        assert!(!format!("{r:?}").contains("ds_secret_123"));
    }
}
