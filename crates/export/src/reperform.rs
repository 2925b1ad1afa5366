//! `blackbox export reperform BUNDLE`: an auditor recomputes every figure of an evidence bundle
//! offline, with the public key (and, to check the HMACs, the key file) and nothing from the
//! operator, and gets match / mismatch per figure.
//!
//! In order: the manifest's signature and every file it lists; the log (the tenant's and the
//! service's chains) read as a store and verified (hash links, checkpoints, HMACs when keys are
//! given); every figure computed again from it with the bundle's parameters, by the same code
//! that made the report, and compared with the report's JSON; every sampled entry's and every
//! alert's inclusion proof checked against the bundle's checkpoint and the log. What the log
//! cannot show is said, not passed: SIEM deliveries (the service's webhook outbox) and the tests
//! that depend on them.

use std::path::Path;

use blackbox_core::keys::Keyring;
use blackbox_core::note::NoteVerifier;
use serde::Serialize;
use serde_json::Value;

use crate::ExportError;
use crate::figures::{Period, Request};
use crate::logfile::LogFileStore;
use crate::produce::{BUNDLE_LOG, BUNDLE_MANIFEST, BUNDLE_PARAMETERS, BundleParameters};

/// One check of a re-performance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked: `manifest`, `file <name>`, `log`, `figure <name>`, `proof <id>`.
    pub what: String,
    /// `match`, `mismatch` or `not re-performed`.
    pub result: &'static str,
    /// What was found.
    pub detail: String,
}

/// `match`.
pub const MATCH: &str = "match";
/// `mismatch`.
pub const MISMATCH: &str = "mismatch";
/// `not re-performed`: the bundle cannot show it (said why).
pub const NOT_REPERFORMED: &str = "not re-performed";

/// Everything a re-performance found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Reperformed {
    /// The checks, in order.
    pub checks: Vec<Check>,
}

impl Reperformed {
    /// No mismatch.
    #[must_use]
    pub fn ok(&self) -> bool {
        self.checks.iter().all(|c| c.result != MISMATCH)
    }

    fn push(&mut self, what: impl Into<String>, result: &'static str, detail: impl Into<String>) {
        self.checks.push(Check {
            what: what.into(),
            result,
            detail: detail.into(),
        });
    }
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>, ExportError> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|cause| ExportError::Io {
        path: path.display().to_string(),
        cause,
    })
}

/// Re-performs the bundle in `dir` (see the module docs).
///
/// # Errors
/// A bundle that cannot be read at all (no parameters, no report JSON, no log): the check
/// cannot start. Every finding about the content is a [`Check`], not an error.
pub fn reperform(
    dir: &Path,
    verifier: &NoteVerifier,
    keys: Option<Keyring>,
) -> Result<Reperformed, ExportError> {
    reperform_with(dir, verifier, keys, None)
}

/// [`reperform`], and with a witness policy (docs/WITNESS.md) one check more, `witnesses`: every
/// chain of the bundle's log has a verified checkpoint cosigned by the quorum (the cosignatures
/// travel in the log's checkpoint lines), naming who cosigned up to which size.
///
/// # Errors
/// As [`reperform`].
pub fn reperform_with(
    dir: &Path,
    verifier: &NoteVerifier,
    keys: Option<Keyring>,
    witnesses: Option<&blackbox_core::cosignature::WitnessPolicy>,
) -> Result<Reperformed, ExportError> {
    let mut out = Reperformed::default();
    match crate::manifest::verify(&dir.join(BUNDLE_MANIFEST), verifier) {
        Ok(v) => {
            out.push(
                "manifest",
                MATCH,
                format!("signed by {}", verifier.fingerprint()),
            );
            for (name, problem) in &v.files {
                match problem {
                    None => out.push(format!("file {name}"), MATCH, "SHA-256 as signed"),
                    Some(p) => out.push(format!("file {name}"), MISMATCH, p.clone()),
                }
            }
        }
        Err(ExportError::Manifest(m)) => out.push("manifest", MISMATCH, m),
        Err(e) => return Err(e),
    }
    let params: BundleParameters = serde_json::from_slice(&read(dir, BUNDLE_PARAMETERS)?)
        .map_err(|e| ExportError::Usage(format!("{BUNDLE_PARAMETERS}: {e}")))?;
    let report: Value = serde_json::from_slice(&read(dir, "report.json")?)
        .map_err(|e| ExportError::Usage(format!("report.json: {e}")))?;
    let log = LogFileStore::parse(&read(dir, BUNDLE_LOG)?)?;
    let now_ms = blackbox_core::entry::parse_timestamp(&params.as_of)
        .map_err(|e| ExportError::Usage(format!("{BUNDLE_PARAMETERS}: as_of: {e}")))?;
    let mut period = match &params.period {
        Some(p) => Period::parse(p)?,
        None => {
            let start = report["period"]["start"].as_str().unwrap_or_default();
            let end = report["period"]["end"].as_str().unwrap_or_default();
            Period::parse(&format!("{start}/{end}"))?
        }
    };
    if params.period.is_none() {
        // The whole log by seq: every entry of the tenant's chain in the log.
        let size = blackbox_store::Store::chains(&log)?
            .into_iter()
            .find(|h| h.tenant_id == params.tenant_id)
            .map_or(0, |h| h.size);
        period.seqs = Some((1, size));
    }
    let control = crate::report::Control::parse(&params.standard, &params.control)?;
    let req = Request {
        tenant: params.tenant_id.clone(),
        period,
        sample_size: params.sample_size,
        seed: params.seed.clone(),
        data_subjects: params.include_data_subjects,
        retention: params.retention.clone(),
        now_ms,
        personal_ages: control == crate::report::Control::GdprArt30,
        triage_hours: params.triage_hours.clone(),
    };
    let hmacs = keys.is_some();
    let figures = crate::figures::compute_from_log(
        &log,
        keys,
        verifier.clone(),
        &req,
        &crate::alerts::DeliveryRecords::Unreadable(
            "SIEM deliveries are recorded by the service's webhook outbox, not in the log".into(),
        ),
    )?;
    let integrity = &figures.integrity;
    out.push(
        "log",
        if integrity.status == "ok" {
            MATCH
        } else {
            MISMATCH
        },
        if hmacs {
            integrity.summary.clone()
        } else {
            format!("{} (HMACs not checked: give --key-file)", integrity.summary)
        },
    );
    if let Some(policy) = witnesses {
        check_witnesses(&mut out, dir, verifier, policy)?;
    }
    let again = serde_json::to_value(&figures)
        .map_err(|e| ExportError::Usage(format!("the figures: {e}")))?;
    compare_figures(&mut out, &report["figures"], &again, hmacs);
    check_proofs(
        &mut out,
        dir,
        verifier,
        &report["figures"],
        &log,
        &params,
        witnesses,
    );
    Ok(out)
}

/// The witness policy over the bundle's log (its checkpoint lines carry the cosignatures).
fn check_witnesses(
    out: &mut Reperformed,
    dir: &Path,
    verifier: &NoteVerifier,
    policy: &blackbox_core::cosignature::WitnessPolicy,
) -> Result<(), ExportError> {
    let report = blackbox_ledger::verify::verify_log_files_with(
        &[dir.join(BUNDLE_LOG)],
        None,
        Some(verifier.clone()),
        &[],
        Some(policy.clone()),
        &|_| {},
    )?;
    use blackbox_core::verify::FindingKind;
    let problems: Vec<String> = report
        .findings
        .iter()
        .filter(|f| {
            matches!(
                f.kind,
                FindingKind::NotWitnessed | FindingKind::BadCosignature
            )
        })
        .map(|f| format!("chain {}: {}", f.tenant_id, f.message))
        .collect();
    let witnessed: Vec<String> = report
        .chains
        .iter()
        .filter_map(|c| {
            let w = c.witnessed.as_ref()?;
            let by: Vec<&str> = w.cosigners.iter().map(|(n, _)| n.as_str()).collect();
            Some(format!(
                "chain {} witnessed up to {} of {} entries by {}",
                c.tenant_id,
                w.size,
                c.size,
                by.join(", ")
            ))
        })
        .collect();
    if problems.is_empty() {
        out.push(
            "witnesses",
            MATCH,
            format!(
                "{} of {} required: {}",
                policy.quorum(),
                policy.witnesses().len(),
                witnessed.join("; ")
            ),
        );
    } else {
        out.push("witnesses", MISMATCH, problems.join("; "));
    }
    Ok(())
}

/// Each figure of the report against the one computed again.
fn compare_figures(out: &mut Reperformed, claimed: &Value, again: &Value, hmacs: bool) {
    let Some(fields) = again.as_object() else {
        return;
    };
    for (name, value) in fields {
        let said = claimed.get(name).cloned().unwrap_or(Value::Null);
        let (said, value) = match name.as_str() {
            "integrity" => (integrity_view(&said, hmacs), integrity_view(value, hmacs)),
            "alerts" => (alerts_view(&said), alerts_view(value)),
            _ => (said, value.clone()),
        };
        match first_difference(&said, &value, name) {
            None => out.push(format!("figure {name}"), MATCH, "recomputed from the log"),
            Some(d) => out.push(format!("figure {name}"), MISMATCH, d),
        }
    }
    out.push(
        "figure alerts: SIEM delivery",
        NOT_REPERFORMED,
        "deliveries are recorded by the service's webhook outbox, not in the log: the report's delivery column and its siem tests stand on the outbox",
    );
}

/// The parts of the integrity figure a log file shows the same way as the store.
fn integrity_view(v: &Value, hmacs: bool) -> Value {
    let mut o = serde_json::Map::new();
    for k in [
        "status",
        "entries_verified",
        "chain_size",
        "after_checkpoint",
        "public_key",
    ] {
        o.insert(k.into(), v.get(k).cloned().unwrap_or(Value::Null));
    }
    if hmacs {
        o.insert(
            "hmac_by_key".into(),
            v.get("hmac_by_key").cloned().unwrap_or(Value::Null),
        );
    }
    for k in ["size", "root", "timestamp"] {
        o.insert(
            format!("checkpoint.{k}"),
            v.get("checkpoint")
                .and_then(|c| c.get(k))
                .cloned()
                .unwrap_or(Value::Null),
        );
    }
    Value::Object(o)
}

/// The alert register without what the outbox alone shows.
fn alerts_view(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("siem");
        o.remove("exceptions");
        if let Some(Value::Array(alerts)) = o.get_mut("alerts") {
            for a in alerts {
                if let Some(a) = a.as_object_mut() {
                    a.remove("siem");
                    if let Some(Value::Array(tests)) = a.get_mut("tests") {
                        tests.retain(|t| t.get("attribute") != Some(&Value::from("siem")));
                    }
                }
            }
        }
    }
    v
}

/// The first place where `a` and `b` differ, as `path: report X, recomputed Y`.
fn first_difference(a: &Value, b: &Value, path: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter().find_map(|k| {
                first_difference(
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{path}[{i}]"))),
        (Value::Array(x), Value::Array(y)) => Some(format!(
            "{path}: the report lists {}, recomputed {}",
            x.len(),
            y.len()
        )),
        _ if a == b => None,
        _ => Some(format!("{path}: the report says {a}, recomputed {b}")),
    }
}

/// Every sampled entry's and alert's proof: present, valid with the public key, against the
/// bundle's checkpoint, and proving the entry the log holds.
fn check_proofs(
    out: &mut Reperformed,
    dir: &Path,
    verifier: &NoteVerifier,
    claimed: &Value,
    log: &LogFileStore,
    params: &BundleParameters,
    witnesses: Option<&blackbox_core::cosignature::WitnessPolicy>,
) {
    let checkpoint_size = params.checkpoint_size;
    let mut ids: Vec<String> = Vec::new();
    for s in claimed["sample"].as_array().into_iter().flatten() {
        if let Some(id) = s["entry_id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    for a in claimed["alerts"]["alerts"].as_array().into_iter().flatten() {
        if let Some(id) = a["alert_id"].as_str() {
            ids.push(id.to_owned());
        }
    }
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let what = format!("proof {id}");
        let name = format!("proof-{id}.json");
        if params.unproved.contains(&id) {
            out.push(
                what,
                NOT_REPERFORMED,
                format!(
                    "written after the bundle's checkpoint (size {checkpoint_size}): no proof yet"
                ),
            );
            continue;
        }
        let Ok(text) = std::fs::read_to_string(dir.join(&name)) else {
            out.push(what, MISMATCH, format!("{name} is missing from the bundle"));
            continue;
        };
        let proven = match blackbox_core::proof::verify_proof_document(&text, verifier) {
            Ok(p) => p,
            Err(e) => {
                out.push(what, MISMATCH, format!("{name} does not verify: {e}"));
                continue;
            }
        };
        let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let size = v["tree_size"].as_u64().unwrap_or(0);
        let line = v["entry"].as_str().unwrap_or_default();
        let in_log = uuid::Uuid::parse_str(&id).ok().and_then(|u| {
            blackbox_store::Store::entry_by_id(log, u.as_bytes())
                .ok()
                .flatten()
        });
        if size != checkpoint_size {
            out.push(
                what,
                MISMATCH,
                format!("{name} is against tree size {size}, the bundle's checkpoint is {checkpoint_size}"),
            );
        } else if in_log.is_none_or(|e| e.line != line.as_bytes()) {
            out.push(
                what,
                MISMATCH,
                format!("{name} proves an entry the log does not hold as it is"),
            );
        } else {
            out.push(what, MATCH, proven.to_string());
        }
        check_tlog_proof(out, dir, verifier, &id, line, witnesses);
    }
}

/// The entry's C2SP tlog-proof (bundles made since 2026-12-07 carry one): it verifies, proves
/// the same entry line, and with a witness policy its checkpoint's cosignatures are weighed.
fn check_tlog_proof(
    out: &mut Reperformed,
    dir: &Path,
    verifier: &NoteVerifier,
    id: &str,
    line: &str,
    witnesses: Option<&blackbox_core::cosignature::WitnessPolicy>,
) {
    let name = format!("proof-{id}.tlog-proof");
    let what = format!("tlog-proof {id}");
    let Ok(text) = std::fs::read_to_string(dir.join(&name)) else {
        return;
    };
    let proven = match blackbox_core::proof::verify_proof_document(&text, verifier) {
        Ok(p) => p,
        Err(e) => {
            out.push(what, MISMATCH, format!("{name} does not verify: {e}"));
            return;
        }
    };
    let same = blackbox_core::tlog_proof::TlogProof::parse(&text)
        .ok()
        .and_then(|p| p.extra)
        .is_some_and(|extra| extra == line.as_bytes());
    if !same {
        out.push(what, MISMATCH, format!("{name} proves another entry line"));
        return;
    }
    let Some(policy) = witnesses else {
        out.push(what, MATCH, proven.to_string());
        return;
    };
    let Some(cp) = blackbox_core::proof::proof_checkpoints(&text)
        .ok()
        .and_then(|c| c.into_iter().last())
    else {
        out.push(what, MISMATCH, format!("{name}: no checkpoint"));
        return;
    };
    let check = policy.check(&cp.note);
    let by: Vec<&str> = check
        .witnesses
        .iter()
        .filter(|(_, m)| matches!(m, blackbox_core::cosignature::WitnessMark::Cosigned(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    if check.has_invalid() {
        out.push(
            what,
            MISMATCH,
            format!("{name}: a witness's cosignature does not verify"),
        );
    } else if check.met() {
        out.push(
            what,
            MATCH,
            format!(
                "{proven}; its checkpoint (size {}) is cosigned by {}",
                cp.checkpoint.size,
                by.join(", ")
            ),
        );
    } else {
        out.push(
            what,
            NOT_REPERFORMED,
            format!(
                "{proven}; its checkpoint (size {}) is not cosigned by {} of the witnesses (only {}): the entry came after the last witnessed checkpoint",
                cp.checkpoint.size,
                policy.quorum(),
                if by.is_empty() { "none".to_owned() } else { by.join(", ") }
            ),
        );
    }
}
