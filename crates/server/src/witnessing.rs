//! Witnessing inside `blackbox serve` (docs/WITNESS.md): every chain's newest checkpoint is
//! submitted, with a consistency proof from the size each witness last cosigned, to the
//! witnesses of `[witnessing]` (C2SP tlog-witness); their cosignatures, checked against their
//! keys, are added to the stored checkpoint through the writer thread.
//!
//! Asynchronous to the commit: ingest never waits for a witness. A witness that cannot be
//! reached is retried with backoff. A witness that *refuses* (403, 404, 409 about a size or root
//! it cannot agree with, 422), answers an invalid cosignature, or whose state went backwards,
//! raises the built-in `witness_refused` alert in the service's chain, at most once an hour per
//! witness, chain and reason: a refusal is evidence that someone was shown another history.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use blackbox_core::checkpoint::SignedCheckpoint;
use blackbox_core::cosignature::add_signatures;
use blackbox_core::witness::AddCheckpoint;
use blackbox_ledger::config::Witnessing as WitnessingConfig;
use blackbox_store::StoredCheckpoint;
use blackbox_witness::client::{SubmitError, Witness, add_checkpoint};
use futures_util::StreamExt as _;
use serde_json::json;

use crate::AppState;
use crate::ingest::Control;

/// The rule name of the built-in alert.
pub const RULE: &str = "witness_refused";
/// How often the chains' newest checkpoints are looked at.
const TICK: Duration = Duration::from_secs(1);
/// One alert per witness, chain and reason in this long at most.
const ALERT_EVERY: Duration = Duration::from_secs(3600);
/// First retry pause after a failure (doubling up to `[witnessing] retry_max_seconds`).
const FIRST_RETRY: Duration = Duration::from_secs(1);
/// Submissions in flight at once (over every witness and chain).
const CONCURRENT: usize = 32;

/// Where witnessing stands, per witness (answered as `GET /v1/witnesses`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Standing {
    /// The witness's name (its key name).
    pub name: String,
    /// Its submission URL.
    pub url: String,
    /// Its public key.
    pub key: String,
    /// Per chain: the largest checkpoint size it has cosigned (as stored here).
    pub cosigned: BTreeMap<String, u64>,
    /// When it last cosigned (ms since the epoch).
    pub last_cosigned_ms: Option<i64>,
    /// The last failure or refusal, in words.
    pub last_error: Option<String>,
    /// When (ms since the epoch).
    pub last_error_ms: Option<i64>,
    /// Chains this witness is no longer asked for, and why (its state went backwards).
    pub suspended: BTreeMap<String, String>,
}

/// The service's witnesses, their policy and status.
#[derive(Debug)]
pub struct Witnessing {
    /// `[witnessing]`.
    pub config: WitnessingConfig,
    witnesses: Vec<Witness>,
    status: Mutex<Vec<Standing>>,
}

impl Witnessing {
    /// From the settings.
    #[must_use]
    pub fn new(config: WitnessingConfig) -> Self {
        let witnesses: Vec<Witness> = config
            .witnesses
            .iter()
            .map(|w| Witness {
                url: w.url.clone(),
                key: w.key.clone(),
            })
            .collect();
        let status = witnesses
            .iter()
            .map(|w| Standing {
                name: w.name().to_owned(),
                url: blackbox_webhooks::redact_url(&w.url),
                key: w.key.to_vkey(),
                cosigned: BTreeMap::new(),
                last_cosigned_ms: None,
                last_error: None,
                last_error_ms: None,
                suspended: BTreeMap::new(),
            })
            .collect();
        Self {
            config,
            witnesses,
            status: Mutex::new(status),
        }
    }

    /// Whether any witness is configured.
    #[must_use]
    pub fn enabled(&self) -> bool {
        !self.witnesses.is_empty()
    }

    /// A copy of the status.
    #[must_use]
    pub fn status(&self) -> Vec<Standing> {
        self.status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn update(&self, i: usize, f: impl FnOnce(&mut Standing)) {
        let mut s = self
            .status
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(st) = s.get_mut(i) {
            f(st);
        }
    }
}

/// What the loop knows of one witness and chain.
#[derive(Debug, Default)]
struct Track {
    /// The size the witness holds for this origin, when known (from a stored cosignature or its
    /// 409 answer).
    size: Option<u64>,
    /// The largest size it ever cosigned for us (to see its state go backwards).
    max_cosigned: u64,
    /// The checkpoint text it cosigned last (so it is not sent again; a heartbeat checkpoint of
    /// the same size and a newer timestamp is).
    done: Option<blackbox_core::Hash>,
    /// Do not try again before this.
    next_try: Option<Instant>,
    /// Failures in a row.
    failures: u32,
    /// Why this witness is no longer asked for this chain.
    suspended: Option<String>,
}

/// The largest size of `cps` (ascending) whose note carries a valid cosignature by `w`.
fn cosigned_size(cps: &[StoredCheckpoint], w: &Witness) -> Option<u64> {
    cps.iter().rev().find_map(|c| {
        let sc = SignedCheckpoint::parse(&c.note).ok()?;
        sc.note
            .signatures
            .iter()
            .filter(|s| w.key.matches(s))
            .any(|s| w.key.verify(&sc.note.text, s).is_ok())
            .then_some(c.size)
    })
}

/// Runs until the service stops (the task is aborted).
pub async fn run(state: AppState) {
    let w = Arc::clone(&state.witnessing);
    if !w.enabled() {
        return;
    }
    let http = match blackbox_webhooks::dispatch::http_client() {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = %e, "witnessing cannot start: no HTTP client");
            return;
        }
    };
    let mut tracks: HashMap<(usize, String), Track> = HashMap::new();
    let mut alerted: HashMap<(usize, String, &'static str), Instant> = HashMap::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let latest = match read_latest(&state).await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "witnessing: the checkpoints cannot be read");
                continue;
            }
        };
        // What to submit: per chain, to each witness that has not cosigned its newest checkpoint
        // and is due (not backing off, not suspended).
        let mut newest: HashMap<String, (u64, SignedCheckpoint, blackbox_core::Hash)> =
            HashMap::new();
        let mut jobs = Vec::new();
        for (tenant, cp) in latest {
            let Ok(signed) = SignedCheckpoint::parse(&cp.note) else {
                continue;
            };
            let text_hash = blackbox_core::Hash::digest(signed.note.text.as_bytes());
            for (i, witness) in w.witnesses.iter().enumerate() {
                let key = (i, tenant.clone());
                if !tracks.contains_key(&key) {
                    let stored = cosigned(&state, &tenant, witness).await;
                    if let Some(s) = stored {
                        w.update(i, |st| {
                            st.cosigned.insert(tenant.clone(), s);
                        });
                    }
                    let t = Track {
                        size: stored,
                        max_cosigned: stored.unwrap_or(0),
                        ..Track::default()
                    };
                    tracks.insert(key.clone(), t);
                }
                let Some(track) = tracks.get_mut(&key) else {
                    continue;
                };
                // Already cosigned (stored): nothing to ask.
                if signed
                    .note
                    .signatures
                    .iter()
                    .any(|s| witness.key.matches(s))
                {
                    track.done = Some(text_hash);
                }
                if track.suspended.is_some()
                    || track.done == Some(text_hash)
                    || track.next_try.is_some_and(|t| Instant::now() < t)
                {
                    continue;
                }
                if let Some(track) = tracks.remove(&key) {
                    jobs.push((i, tenant.clone(), track));
                }
            }
            newest.insert(tenant, (cp.size, signed, text_hash));
        }
        if jobs.is_empty() {
            continue;
        }
        // Submitted concurrently: a slow or silent witness holds up neither the others nor
        // the other chains.
        let results: Vec<_> =
            futures_util::stream::iter(jobs.into_iter().map(|(i, tenant, mut track)| {
                let (state, http, w, newest) = (&state, &http, &w, &newest);
                async move {
                    let outcome = match newest.get(&tenant) {
                        Some((_, signed, _)) => {
                            submit(state, http, &w.witnesses[i], &tenant, signed, &mut track).await
                        }
                        None => Err(AlertReason::Local("no checkpoint".into())),
                    };
                    (i, tenant, track, outcome)
                }
            }))
            .buffer_unordered(CONCURRENT)
            .collect()
            .await;
        let mut gained: HashMap<String, Vec<blackbox_core::note::NoteSignature>> = HashMap::new();
        let mut found: Vec<(usize, String, AlertReason)> = Vec::new();
        for (i, tenant, mut track, outcome) in results {
            let witness = &w.witnesses[i];
            let Some((size, _, text_hash)) = newest.get(&tenant) else {
                continue;
            };
            let result = match &outcome {
                Ok(_) => "cosigned",
                Err(AlertReason::Local(_)) => "proof_failed",
                Err(r) => r.alert_kind().unwrap_or("unreachable"),
            };
            state
                .metrics
                .witness_submissions
                .get_or_create(&crate::metrics::WitnessLabel {
                    witness: witness.name().to_owned(),
                    result: result.to_owned(),
                })
                .inc();
            match outcome {
                Ok(sigs) => {
                    track.done = Some(*text_hash);
                    track.size = Some(*size);
                    track.max_cosigned = track.max_cosigned.max(*size);
                    track.failures = 0;
                    track.next_try = None;
                    let now = blackbox_witness::now_ms();
                    w.update(i, |st| {
                        st.cosigned.insert(tenant.clone(), *size);
                        st.last_cosigned_ms = Some(now);
                    });
                    gained.entry(tenant.clone()).or_default().extend(sigs);
                }
                Err(reason) => {
                    track.failures = track.failures.saturating_add(1);
                    let pause = FIRST_RETRY
                        .saturating_mul(1 << track.failures.min(16))
                        .min(Duration::from_millis(w.config.retry_max_ms));
                    track.next_try = Some(Instant::now() + pause);
                    if let AlertReason::RolledBack { .. } = &reason {
                        track.suspended = Some(reason.words());
                    }
                    let words = reason.words();
                    let now = blackbox_witness::now_ms();
                    let suspended = track.suspended.clone();
                    w.update(i, |st| {
                        st.last_error = Some(words);
                        st.last_error_ms = Some(now);
                        if let Some(s) = suspended {
                            st.suspended.insert(tenant.clone(), s);
                        }
                    });
                    found.push((i, tenant.clone(), reason));
                }
            }
            tracks.insert((i, tenant), track);
        }
        for (tenant, sigs) in gained {
            let Some((size, signed, _)) = newest.get(&tenant) else {
                continue;
            };
            let mut note = signed.note.clone();
            if add_signatures(&mut note, &sigs) == 0 {
                continue;
            }
            let c = Control::Cosigned {
                tenant: tenant.clone(),
                size: *size,
                note: note.to_string(),
            };
            if let Err(e) = state.ingest.control(c).await {
                tracing::warn!(tenant, error = %e.message, "cosignatures could not be stored; they are asked for again");
                for i in 0..w.witnesses.len() {
                    if let Some(t) = tracks.get_mut(&(i, tenant.clone())) {
                        t.done = None;
                    }
                }
            }
        }
        for (i, tenant, reason) in found {
            let Some(kind) = reason.alert_kind() else {
                continue;
            };
            let Some((_, signed, _)) = newest.get(&tenant) else {
                continue;
            };
            let k = (i, tenant.clone(), kind);
            if alerted.get(&k).is_some_and(|t| t.elapsed() < ALERT_EVERY) {
                continue;
            }
            alerted.insert(k, Instant::now());
            let payload = alert_payload(&w.witnesses[i], signed, &reason);
            tracing::error!(witness = w.witnesses[i].name(), tenant, reason = %reason.words(), "a witness refused this log's checkpoint");
            if let Err(e) = state.ingest.control(Control::WitnessAlert(payload)).await {
                tracing::error!(error = %e.message, "the witness_refused alert could not be written");
                alerted.remove(&(i, tenant.clone(), kind));
            }
        }
    }
}

/// The newest checkpoint of every chain.
async fn read_latest(state: &AppState) -> Result<Vec<(String, StoredCheckpoint)>, String> {
    let readers = Arc::clone(&state.readers);
    tokio::task::spawn_blocking(move || {
        let r = readers.get().map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for head in r.chains().map_err(|e| e.to_string())? {
            if let Some(cp) = r
                .latest_checkpoint(&head.tenant_id)
                .map_err(|e| e.to_string())?
            {
                out.push((head.tenant_id, cp));
            }
        }
        Ok(out)
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The largest size of `tenant`'s checkpoints of the last day (before its newest) that `w`
/// cosigned. Older ones are not read (a chain signs a checkpoint a minute even when idle); a
/// witness not found there says its size in its first answer (409).
async fn cosigned(state: &AppState, tenant: &str, w: &Witness) -> Option<u64> {
    const LOOK_BACK_MS: i64 = 24 * 3600 * 1000;
    let readers = Arc::clone(&state.readers);
    let (tenant, w) = (tenant.to_owned(), w.clone());
    tokio::task::spawn_blocking(move || {
        let r = readers.get().ok()?;
        let newest = r.latest_checkpoint(&tenant).ok()??;
        let cps = r
            .checkpoints_since(&tenant, u64::MAX, newest.ts_ms.saturating_sub(LOOK_BACK_MS))
            .ok()?;
        cosigned_size(&cps, &w)
    })
    .await
    .ok()
    .flatten()
}

/// Why a checkpoint got no cosignature from a witness.
#[derive(Debug, Clone, PartialEq, Eq)]
enum AlertReason {
    /// Not reachable (retried; no alert).
    Unreachable(String),
    /// Refused with this status.
    Refused {
        status: u16,
        message: String,
        old: u64,
        witness_size: Option<u64>,
    },
    /// Holds a larger tree of our origin than we have.
    Ahead { witness_size: u64 },
    /// Its state went backwards: it once cosigned `max`, now holds `now`.
    RolledBack { max: u64, now: u64 },
    /// It answered 200 without a valid cosignature.
    BadCosignature(String),
    /// The proof could not be built here.
    Local(String),
}

impl AlertReason {
    fn words(&self) -> String {
        match self {
            Self::Unreachable(e) => format!("unreachable: {e}"),
            Self::Refused {
                status: 409,
                witness_size: Some(s),
                old,
                ..
            } if s == old => format!(
                "409 Conflict: the witness cosigned a checkpoint of size {s} with another root hash (a split view)"
            ),
            Self::Refused {
                status: 422, old, ..
            } => format!(
                "422: the consistency proof from size {old} does not verify against the checkpoint the witness cosigned (a split view or a rewritten history)"
            ),
            Self::Refused {
                status, message, ..
            } => format!("HTTP {status}: {message}"),
            Self::Ahead { witness_size } => format!(
                "the witness holds a checkpoint of size {witness_size} for this chain, larger than this log's newest (a rolled-back log or a split view)"
            ),
            Self::RolledBack { max, now } => format!(
                "the witness's state went backwards: it cosigned size {max} and now holds {now}; it is no longer asked for this chain until the service restarts"
            ),
            Self::BadCosignature(e) => format!("an invalid cosignature: {e}"),
            Self::Local(e) => format!("the consistency proof could not be built: {e}"),
        }
    }

    /// The alert's `reason_code`, or `None` for what is retried without an alert.
    fn alert_kind(&self) -> Option<&'static str> {
        match self {
            Self::Unreachable(_) | Self::Local(_) => None,
            Self::Refused { status: 403, .. } => Some("untrusted_log_key"),
            Self::Refused { status: 404, .. } => Some("unknown_origin"),
            Self::Refused { status: 409, .. } => Some("conflict"),
            Self::Refused { status: 422, .. } => Some("inconsistent"),
            Self::Refused { .. } => Some("refused"),
            Self::Ahead { .. } => Some("witness_ahead"),
            Self::RolledBack { .. } => Some("witness_rolled_back"),
            Self::BadCosignature(_) => Some("bad_cosignature"),
        }
    }
}

/// Submits `cp` to `witness` (catching up once on a 409 that names a smaller size).
async fn submit(
    state: &AppState,
    http: &blackbox_webhooks::dispatch::HttpClient,
    witness: &Witness,
    tenant: &str,
    cp: &SignedCheckpoint,
    track: &mut Track,
) -> Result<Vec<blackbox_core::note::NoteSignature>, AlertReason> {
    let new = cp.checkpoint.size;
    let timeout = Duration::from_millis(state.witnessing.config.timeout_ms);
    for _ in 0..3 {
        let old = track.size.unwrap_or(0);
        if old > new {
            return Err(AlertReason::Ahead { witness_size: old });
        }
        let proof = proof(state, tenant, old, new)
            .await
            .map_err(AlertReason::Local)?;
        let req = AddCheckpoint {
            old_size: old,
            proof,
            checkpoint: cp.clone(),
        };
        match add_checkpoint(http, witness, &req, timeout).await {
            Ok(sigs) => return Ok(sigs),
            Err(SubmitError::Conflict { size }) => {
                if size < track.max_cosigned {
                    track.size = Some(size);
                    return Err(AlertReason::RolledBack {
                        max: track.max_cosigned,
                        now: size,
                    });
                }
                if size > new {
                    track.size = Some(size);
                    return Err(AlertReason::Ahead { witness_size: size });
                }
                if size == old {
                    // It holds the size we sent, yet refused: another root at that size.
                    return Err(AlertReason::Refused {
                        status: 409,
                        message: "conflict".into(),
                        old,
                        witness_size: Some(size),
                    });
                }
                // It holds another (smaller, or equal to this checkpoint's) size: catch up.
                track.size = Some(size);
            }
            Err(SubmitError::Refused { status, message }) => {
                return Err(AlertReason::Refused {
                    status,
                    message,
                    old,
                    witness_size: None,
                });
            }
            Err(SubmitError::BadCosignature { problem, .. }) => {
                return Err(AlertReason::BadCosignature(problem));
            }
            Err(e) => return Err(AlertReason::Unreachable(e.to_string())),
        }
    }
    Err(AlertReason::Unreachable(
        "the witness's size kept changing between requests (another log instance submitting?)"
            .into(),
    ))
}

async fn proof(
    state: &AppState,
    tenant: &str,
    old: u64,
    new: u64,
) -> Result<Vec<blackbox_core::Hash>, String> {
    if old == 0 || old == new {
        return Ok(Vec::new());
    }
    let readers = Arc::clone(&state.readers);
    let tenant = tenant.to_owned();
    tokio::task::spawn_blocking(move || {
        let r = readers.get().map_err(|e| e.to_string())?;
        blackbox_ledger::proof::consistency_hashes(&*r, &tenant, old, new)
            .map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| e.to_string())?
}

/// The `witness_refused` alert's payload (FORMAT.md §14).
fn alert_payload(w: &Witness, cp: &SignedCheckpoint, reason: &AlertReason) -> serde_json::Value {
    let mut p = json!({
        "rule": RULE,
        "description": "a witness refused to cosign this log's checkpoint, or answered what an honest witness cannot (docs/WITNESS.md)",
        "severity": "critical",
        "action": "alert",
        "kind": "witness",
        "enforcement": "none",
        "triggered_by": [],
        "witness": w.name(),
        "witness_url": blackbox_webhooks::redact_url(&w.url),
        "origin": cp.checkpoint.origin,
        "tree_size": cp.checkpoint.size,
        "root_hash": cp.checkpoint.root.to_base64(),
        "reason_code": reason.alert_kind().unwrap_or("refused"),
        "reason": reason.words(),
    });
    match reason {
        AlertReason::Refused {
            status,
            old,
            witness_size,
            ..
        } => {
            p["status"] = (*status).into();
            p["old_size"] = (*old).into();
            if let Some(s) = witness_size {
                p["witness_size"] = (*s).into();
            }
        }
        AlertReason::Ahead { witness_size } => p["witness_size"] = (*witness_size).into(),
        AlertReason::RolledBack { max, now } => {
            p["witness_size"] = (*now).into();
            p["cosigned_before"] = (*max).into();
        }
        _ => {}
    }
    p
}
