//! `blackbox erase`: erase a data subject's personal data, locally or through the service.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result, anyhow};
use blackbox_client::Client;
use blackbox_ledger::datadir::{DEFAULT_DATA_DIR, DataDir, load_or_create_subject_key};
use blackbox_ledger::erase::{ErasureOutcome, ErasureRequest, erase, outcome_json, sidecar_erased};
use blackbox_ledger::jsonl::{mirror_files, scrub_personal};
use blackbox_ledger::open::{open_reader, open_writer};
use blackbox_store::Store as _;
use serde_json::Value;

use crate::Outcome;
use crate::cli::{RemoteArgs, TextOrJson};
use crate::output::n;
use blackbox_ledger::clock::now_ms;

/// How long the WAL purge waits for readers holding older snapshots.
const PURGE_WAIT: Duration = Duration::from_secs(30);

pub struct Args {
    pub subject: String,
    pub reason: String,
    pub ticket: String,
    pub data_dir: Option<PathBuf>,
    pub log_files: Vec<PathBuf>,
    pub dry_run: bool,
    pub format: TextOrJson,
    pub remote: RemoteArgs,
}

pub fn run(a: &Args) -> Result<Outcome> {
    // Checked before anything is opened, locally or remotely: a usage error (exit 2).
    let req = ErasureRequest::new(&a.subject, &a.reason, &a.ticket, "cli").map_err(|e| {
        anyhow!(
            "--{}",
            e.to_string().replacen("data_subject", "data-subject", 1)
        )
    })?;
    if let Some(server) = a.remote.server.as_deref() {
        return remote(a, server);
    }
    let dir = DataDir::new(
        a.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
    );
    let (outcome, scrubbed, rewritten) = if a.dry_run {
        let key = load_or_create_subject_key(&dir)?;
        let store = open_reader(&dir)?;
        let rows =
            store
                .erasure()?
                .entries_for_subject(&blackbox_core::erasure::subject_index_key(
                    &key,
                    req.subject_id(),
                ))?;
        (ErasureOutcome::planned(&rows), Vec::new(), Vec::new())
    } else {
        let (mut store, mut writer, _) = open_writer(&dir)?;
        let now = now_ms();
        let outcome = writer.stream(&mut store, |sink| {
            let o = erase(sink, &req, now)?;
            // Also when nothing was redacted: the batch is open (the look-up ran in it) and may
            // hold clean-ups of index rows; the purge needs it closed.
            sink.commit(now, true)?;
            // Also when nothing was found: a run after an incomplete purge completes it.
            sink.purge_erased(PURGE_WAIT)?;
            Ok(o)
        })?;
        let archived = outcome.archived_entries();
        let mut scrubbed = Vec::new();
        for given in &a.log_files {
            let files = mirror_files(given)?;
            if files.is_empty() {
                return Err(anyhow!(
                    "--log-file {}: no such file (nor rotated {0}.N files); the erasure itself is committed",
                    given.display()
                ));
            }
            for f in files {
                let dropped = scrub_personal(&f, &mut |t, s| {
                    if archived.contains(&(t.to_owned(), s)) {
                        return Ok(true);
                    }
                    sidecar_erased(&store, t, s)
                })
                    .with_context(|| {
                        format!(
                            "rewriting {} (the erasure itself is committed; run the command again to retry)",
                            f.display()
                        )
                    })?;
                scrubbed.push((f, dropped));
            }
        }
        let mut rewritten = Vec::new();
        if !archived.is_empty() {
            // Entries already archived: their segments are rewritten without the records.
            let config = blackbox_archive::settings::RetentionConfig::load(&dir.config_path())?;
            let archive = blackbox_archive::Archive::open(&config.archive_url, dir.root())?;
            let keys = blackbox_ledger::datadir::load_keyring(&dir.hmac_keys_path())?;
            let verifier = blackbox_ledger::open::public_key(&dir)?;
            let mut local = crate::cmd::retention::Local {
                store: Box::new(store),
                writer,
            };
            rewritten = blackbox_archive::erase::erase(
                &archive,
                &mut local,
                &archived,
                &blackbox_archive::run::RunOptions {
                    now_ms: now_ms(),
                    tenant: None,
                    dry_run: false,
                    keys: Some(&keys),
                    verifier: &verifier,
                },
            )
            .context(
                "rewriting the archive segments of erased entries (the markers are committed; run the command again to finish)",
            )?;
        }
        (outcome, scrubbed, rewritten)
    };
    let mut json = outcome_json(&outcome);
    json["archive_segments_rewritten"] = serde_json::to_value(&rewritten)?;
    json["mirror_files"] = scrubbed
        .iter()
        .map(|(f, d)| serde_json::json!({"file": f.display().to_string(), "personal_records_removed": d}))
        .collect();
    print(&json, a.format);
    Ok(Outcome::Ok)
}

fn remote(a: &Args, server: &str) -> Result<Outcome> {
    let token = a.remote.token.clone().ok_or_else(|| {
        anyhow!("--server needs --token T (or BLACKBOX_TOKEN): a token with admin scope")
    })?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the HTTP client")?;
    let c = Client::new(server, token).map_err(|e| anyhow!("--server {server}: {e}"))?;
    let v = rt.block_on(c.erase(&a.subject, &a.reason, &a.ticket))?;
    print(&v, a.format);
    Ok(Outcome::Ok)
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(Value::as_u64).unwrap_or(0)
}

/// Prints the outcome: counts, tenants and marker entry ids, never the subject id.
fn print(v: &Value, format: TextOrJson) {
    if format == TextOrJson::Json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return;
    }
    let dry = v.get("dry_run").and_then(Value::as_bool).unwrap_or(false);
    let chains = v
        .get("chains")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if chains.is_empty() {
        println!("no entry references this data subject: nothing erased, no marker written");
    }
    for c in &chains {
        let tenant = c.get("tenant_id").and_then(Value::as_str).unwrap_or("?");
        let redacted = u(c, "redacted");
        let what = if redacted == 1 { "entry" } else { "entries" };
        if dry {
            println!("tenant {tenant}: {} {what} would be redacted", n(redacted));
            continue;
        }
        let markers: Vec<String> = c
            .get("markers")
            .and_then(Value::as_array)
            .map(|ms| {
                ms.iter()
                    .map(|m| {
                        format!(
                            "entry {} ({})",
                            n(u(m, "seq")),
                            m.get("entry_id").and_then(Value::as_str).unwrap_or("?")
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut line = format!("tenant {tenant}: {} {what} redacted", n(redacted));
        if !markers.is_empty() {
            line.push_str(&format!("; erasure marker {}", markers.join(", ")));
        }
        for (k, label) in [
            ("already_erased", "already erased"),
            ("not_in_store", "in archive segments"),
        ] {
            if u(c, k) > 0 {
                line.push_str(&format!("; {} {label}", n(u(c, k))));
            }
        }
        println!("{line}");
    }
    if let Some(segs) = v
        .get("archive_segments_rewritten")
        .and_then(Value::as_array)
    {
        for s in segs {
            println!(
                "archive {} -> {}: {} personal records removed, read back and verified",
                s.get("replaced").and_then(Value::as_str).unwrap_or("?"),
                s.get("object").and_then(Value::as_str).unwrap_or("?"),
                n(u(s, "personal_records_removed"))
            );
        }
    }
    if let Some(files) = v.get("mirror_files").and_then(Value::as_array) {
        for f in files {
            println!(
                "{}: {} personal records removed",
                f.get("file").and_then(Value::as_str).unwrap_or("?"),
                n(u(f, "personal_records_removed"))
            );
        }
    }
}
