//! The verification report as people and machines read it: the one-line verdict in the product's
//! words, and the JSON document that `blackbox verify --format json` and the service's
//! `GET /v1/verify` return.

use blackbox_core::ids::group_thousands as n;
use blackbox_core::verify::Report;

/// `OK — 14,823 entries verified, chain intact` or `TAMPERED — entry 9,421 …`; an intact log
/// with erasures ends `; 3 entries redacted under 1 erasure marker`.
#[must_use]
pub fn headline(r: &Report) -> String {
    let chains = r.chains.len();
    if let Some(f) = r.first() {
        let tenant = if chains > 1 && !f.tenant_id.is_empty() {
            format!("tenant {}: ", f.tenant_id)
        } else {
            String::new()
        };
        let not_witnessed = r
            .findings
            .iter()
            .all(|f| f.kind == blackbox_core::verify::FindingKind::NotWitnessed);
        if not_witnessed {
            return format!("NOT WITNESSED — {tenant}{}", f.message);
        }
        return format!("TAMPERED — {tenant}{}", f.headline());
    }
    let intact = if chains > 1 {
        format!("{chains} chains intact")
    } else {
        "chain intact".to_owned()
    };
    let erased;
    let scope = if !r.hmac_checked {
        " (public key only)"
    } else if r.hmac_erased > 0 {
        erased = format!(
            " ({} HMACs of earlier forward-secure epochs not checked)",
            n(r.hmac_erased)
        );
        &erased
    } else {
        ""
    };
    let what = if r.entries == 1 { "entry" } else { "entries" };
    let mut line = format!("OK — {} {what} verified{scope}, {intact}", n(r.entries));
    let (redacted, markers) = erasures(r);
    if markers > 0 || redacted > 0 {
        let e = if redacted == 1 { "entry" } else { "entries" };
        let m = if markers == 1 { "marker" } else { "markers" };
        line.push_str(&format!(
            "; {} {e} redacted under {} erasure {m}",
            n(redacted),
            n(markers)
        ));
    }
    line
}

/// Entries redacted under erasure markers, and the markers, over all chains.
#[must_use]
pub fn erasures(r: &Report) -> (u64, u64) {
    r.chains
        .iter()
        .fold((0, 0), |(e, m), c| (e + c.redacted, m + c.erasure_markers))
}

/// The report as JSON (stable member names: scripts and auditors' tools depend on them).
#[must_use]
pub fn report_json(r: &Report) -> serde_json::Value {
    let findings: Vec<serde_json::Value> = r
        .findings
        .iter()
        .map(|f| {
            serde_json::json!({
                "tenant_id": f.tenant_id, "seq": f.seq, "position": f.position, "kind": f.kind.as_str(),
                "message": f.message, "summary": f.headline(),
                "file": f.source.as_ref().map(|s| s.file.clone()), "line": f.source.as_ref().map(|s| s.line),
                "expected": f.expected.map(|h| h.to_prefixed()), "actual": f.actual.map(|h| h.to_prefixed()),
            })
        })
        .collect();
    let chains: Vec<serde_json::Value> = r
        .chains
        .iter()
        .map(|c| {
            serde_json::json!({
                "tenant_id": c.tenant_id, "entries": c.entries, "start": c.start, "size": c.size, "head": c.head.to_prefixed(), "merkle_root": c.root.to_base64(),
                "checkpoints_verified": c.checkpoints_verified, "largest_checkpoint": c.largest_checkpoint, "redacted": c.redacted,
                "erasure_markers": c.erasure_markers,
                "witnessed": c.witnessed.as_ref().map(|w| serde_json::json!({
                    "size": w.size,
                    "cosigners": w.cosigners.iter().map(|(n, t)| serde_json::json!({"witness": n, "timestamp": t})).collect::<Vec<_>>(),
                    "missing": w.missing,
                })),
                "cosigned_by": c.cosigned_by,
            })
        })
        .collect();
    serde_json::json!({
        "status": status(r),
        "summary": headline(r),
        "entries": r.entries,
        "redacted": erasures(r).0,
        "erasure_markers": erasures(r).1,
        "chains": chains,
        "findings": findings,
        "findings_total": r.findings_total,
        "hmac_checked": r.hmac_checked,
        "signatures_checked": r.signatures_checked,
        "hmac_valid_by_key": r.hmac_valid_by_key,
        "entries_by_origin": r.entries_by_origin,
        "checkpoints_seen": r.checkpoints_seen,
        "not_checked": r.not_checked,
        "witness_policy": r.witness_policy.as_ref().map(|(q, w)| serde_json::json!({"quorum": q, "witnesses": w})),
    })
}

/// `ok`, `tampered`, or `not_witnessed` when the only problems are chains without a checkpoint
/// cosigned by the witness quorum.
#[must_use]
pub fn status(r: &Report) -> &'static str {
    if r.ok() {
        "ok"
    } else if r
        .findings
        .iter()
        .all(|f| f.kind == blackbox_core::verify::FindingKind::NotWitnessed)
    {
        "not_witnessed"
    } else {
        "tampered"
    }
}
