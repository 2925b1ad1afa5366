//! `checkpoint`, `prove`, `verify-proof`, `export-log`.

use std::io::Write as _;
use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use blackbox_core::proof::verify_proof_document;
use blackbox_ledger::datadir::{DataDir, load_verifier};
use blackbox_ledger::proof::{latest_checkpoint, prove_consistency, prove_inclusion};
use blackbox_store::Store as _;

use crate::Outcome;
use crate::cli::{ProofFormat, TextOrJson};
use crate::output::n;
use blackbox_ledger::clock::now_ms;

fn pick_tenant(store: &dyn blackbox_store::Store, tenant: Option<&str>) -> Result<String> {
    let chains = store.chains()?;
    if let Some(t) = tenant {
        if chains.iter().any(|c| c.tenant_id == t) {
            return Ok(t.to_owned());
        }
        bail!("the store has no chain for tenant `{t}`");
    }
    match chains.as_slice() {
        [] => bail!("the store is empty: append events first"),
        [one] => Ok(one.tenant_id.clone()),
        many => {
            let names: Vec<&str> = many.iter().map(|c| c.tenant_id.as_str()).collect();
            bail!(
                "the store has several chains ({}); choose one with --tenant-id",
                names.join(", ")
            )
        }
    }
}

/// Writes `text` to `path` atomically, or to standard output.
fn emit(path: Option<&Path>, text: &str) -> Result<()> {
    match path {
        None => {
            let mut o = std::io::stdout().lock();
            o.write_all(text.as_bytes())?;
            o.flush()?;
        }
        Some(p) => {
            let tmp = p.with_extension("partial");
            std::fs::write(&tmp, text).with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, p).with_context(|| format!("writing {}", p.display()))?;
        }
    }
    Ok(())
}

pub fn checkpoint(
    dir: &DataDir,
    tenant: Option<&str>,
    sign_now: bool,
    format: TextOrJson,
) -> Result<Outcome> {
    if sign_now {
        let (mut store, mut writer, _) = blackbox_ledger::open::open_writer(dir)?;
        pick_tenant(&store, tenant)?;
        writer.heartbeat(&mut store, now_ms(), true)?;
    }
    let store = blackbox_ledger::open::open_reader(dir)?;
    let t = pick_tenant(&store, tenant)?;
    let cp = latest_checkpoint(&store, &t)?;
    match format {
        TextOrJson::Text => emit(None, &cp.note_text())?,
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({
                "tenant_id": t, "origin": cp.checkpoint.origin, "tree_size": cp.checkpoint.size,
                "root": cp.checkpoint.root.to_base64(), "timestamp": cp.checkpoint.extension("timestamp"),
                "note": cp.note_text(),
            })
        ),
    }
    Ok(Outcome::Ok)
}

/// An inclusion proof as the file `format` names.
pub fn inclusion_text(
    proof: &blackbox_core::proof::InclusionProof,
    format: ProofFormat,
) -> Result<String> {
    Ok(match format {
        ProofFormat::Json => serde_json::to_string_pretty(proof)?,
        ProofFormat::TlogProof => blackbox_core::tlog_proof::TlogProof::from_inclusion(proof)?
            .to_text()
            .trim_end_matches('\n')
            .to_owned(),
    })
}

pub fn prove(
    dir: &DataDir,
    entry_id: Option<&str>,
    consistency: Option<&Path>,
    include_entry: bool,
    output: Option<&Path>,
    format: ProofFormat,
) -> Result<Outcome> {
    if entry_id.is_none() && format != ProofFormat::Json {
        bail!("--format tlog-proof proves one entry: give --entry-id");
    }
    let store = blackbox_ledger::open::open_reader(dir)?;
    let json = if let Some(id) = entry_id {
        let uuid = uuid_bytes(id)?;
        let entry = store
            .entry_by_id(&uuid)?
            .ok_or_else(|| {
                let archived = store.chains().ok().is_some_and(|cs| {
                    cs.iter()
                        .any(|c| store.anchor(&c.tenant_id).ok().flatten().is_some())
                });
                if archived {
                    anyhow!(
                        "no entry with id {id} in the store; entries moved to the archive by `blackbox retention run` are not (find it with `blackbox query --include-archive`; its segment verifies on its own with `verify --log-file`)"
                    )
                } else {
                    anyhow!("no entry with id {id}")
                }
            })?;
        inclusion_text(&prove_inclusion(&store, &entry, include_entry)?, format)?
    } else if let Some(path) = consistency {
        let old =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::to_string_pretty(&prove_consistency(&store, &old)?)?
    } else {
        bail!("give --entry-id ID or --consistency OLD_CHECKPOINT");
    };
    emit(output, &format!("{json}\n"))?;
    Ok(Outcome::Ok)
}

fn uuid_bytes(id: &str) -> Result<[u8; 16]> {
    let u =
        blackbox_core::entry::parse_entry_id(id).map_err(|e| anyhow!("--entry-id {id:?}: {e}"))?;
    Ok(*u.as_bytes())
}

/// `prove --agent-id|--session-id|--trace-id …`: a log slice from the data directory.
pub fn prove_slice(
    dir: &DataDir,
    tenant: Option<&str>,
    selection: &blackbox_core::proof::SliceSelection,
    limit: usize,
    output: Option<&Path>,
) -> Result<Outcome> {
    let store = blackbox_ledger::open::open_reader(dir)?;
    let t = pick_tenant(&store, tenant)?;
    let slice = blackbox_ledger::proof::prove_slice(&store, &t, selection, limit)?;
    if slice.entries.is_empty() {
        eprintln!(
            "note: no entry of the selection is covered by the latest checkpoint of `{t}` ({} newer ones are not covered yet)",
            slice.not_covered
        );
    } else if !slice.complete {
        eprintln!(
            "note: the slice stopped at --limit {limit}: more entries matched; narrow --start/--end"
        );
    }
    emit(
        output,
        &format!("{}\n", serde_json::to_string_pretty(&slice)?),
    )?;
    Ok(Outcome::Ok)
}

pub fn verify_proof(
    public_key: &Path,
    proof: &Path,
    witness: &crate::cli::WitnessPolicyArgs,
    format: TextOrJson,
) -> Result<Outcome> {
    let verifier = load_verifier(public_key)?;
    let policy = super::verify::witness_policy(witness)?;
    let text =
        std::fs::read_to_string(proof).with_context(|| format!("reading {}", proof.display()))?;
    let result = verify_proof_document(&text, &verifier);
    // With a witness policy, the (verified) checkpoint the proof rests on must be cosigned by
    // the quorum; for a consistency proof, the new one.
    let witnessed = match (&result, &policy) {
        (Ok(_), Some(policy)) => {
            let cps = blackbox_core::proof::proof_checkpoints(&text)?;
            cps.last().map(|cp| policy.check(&cp.note))
        }
        _ => None,
    };
    let witness_ok = witnessed.as_ref().is_none_or(|c| c.met());
    let witness_words = witnessed.as_ref().map(witness_sentence);
    match (&result, format) {
        (Ok(p), TextOrJson::Text) => {
            if witness_ok {
                println!("{p}");
            } else {
                println!(
                    "NOT WITNESSED — {p}, but its checkpoint is not cosigned by the witness quorum"
                );
            }
            if let Some(w) = &witness_words {
                println!("  {w}");
            }
        }
        (Err(e), TextOrJson::Text) => println!("INVALID — {e}"),
        (Ok(p), TextOrJson::Json) => println!(
            "{}",
            serde_json::json!({
                "status": if witness_ok { "ok" } else { "not_witnessed" },
                "summary": p.to_string(),
                "witnesses": witnessed.as_ref().map(witness_json),
            })
        ),
        (Err(e), TextOrJson::Json) => println!(
            "{}",
            serde_json::json!({"status": "invalid", "reason": e.to_string()})
        ),
    }
    Ok(if result.is_ok() && witness_ok {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// Who cosigned, in words: `cosigned by w1 (…), w2 (…); 2 of 3 required; not by w3`.
fn witness_sentence(c: &blackbox_core::cosignature::WitnessCheck) -> String {
    use blackbox_core::cosignature::WitnessMark;
    let by: Vec<String> = c
        .witnesses
        .iter()
        .filter_map(|(n, m)| match m {
            WitnessMark::Cosigned(t) => Some(format!("{n} ({})", super::verify::witness_time(*t))),
            _ => None,
        })
        .collect();
    let bad: Vec<&str> = c
        .witnesses
        .iter()
        .filter(|(_, m)| matches!(m, WitnessMark::Invalid(_)))
        .map(|(n, _)| n.as_str())
        .collect();
    let mut s = format!(
        "witnesses: cosigned by {}; {} of {} required",
        if by.is_empty() {
            "none".to_owned()
        } else {
            by.join(", ")
        },
        c.quorum,
        c.witnesses.len()
    );
    let missing = c.missing();
    if !missing.is_empty() {
        s.push_str(&format!("; not by {}", missing.join(", ")));
    }
    if !bad.is_empty() {
        s.push_str(&format!("; INVALID cosignature by {}", bad.join(", ")));
    }
    s
}

fn witness_json(c: &blackbox_core::cosignature::WitnessCheck) -> serde_json::Value {
    use blackbox_core::cosignature::WitnessMark;
    let rows: Vec<serde_json::Value> = c
        .witnesses
        .iter()
        .map(|(n, m)| match m {
            WitnessMark::Cosigned(t) => {
                serde_json::json!({"witness": n, "status": "cosigned", "timestamp": t})
            }
            WitnessMark::Invalid(e) => {
                serde_json::json!({"witness": n, "status": "invalid", "reason": e.to_string()})
            }
            WitnessMark::Missing => serde_json::json!({"witness": n, "status": "missing"}),
        })
        .collect();
    serde_json::json!({"quorum": c.quorum, "met": c.met(), "witnesses": rows})
}

pub fn export_log(dir: &DataDir, tenant: Option<&str>, output: &Path) -> Result<Outcome> {
    let store = blackbox_ledger::open::open_reader(dir)?;
    let tmp = output.with_extension("partial");
    let file =
        std::fs::File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let mut w = std::io::BufWriter::with_capacity(1 << 20, file);
    let counts = blackbox_ledger::export::export_log(&store, tenant, &mut w)?;
    let file = w
        .into_inner()
        .map_err(|e| anyhow!("writing {}: {}", tmp.display(), e.error()))?;
    file.sync_all()?;
    std::fs::rename(&tmp, output).with_context(|| format!("writing {}", output.display()))?;
    println!(
        "Exported {} entries and {} checkpoint{} from {} chain{} to {}",
        n(counts.entries),
        n(counts.checkpoints),
        if counts.checkpoints == 1 { "" } else { "s" },
        n(counts.chains),
        if counts.chains == 1 { "" } else { "s" },
        output.display()
    );
    Ok(Outcome::Ok)
}
