//! `blackbox export`: compliance evidence with a signed manifest; `blackbox export verify`.

use std::path::Path;

use anyhow::{Context as _, Result, anyhow, bail};
use blackbox_export::alerts::DeliveryRecords;
use blackbox_export::config::{EXAMPLE, ExportConfig};
use blackbox_export::manifest;
use blackbox_export::produce::{Format, Job, produce};
use blackbox_export::report::Control;
use blackbox_ledger::datadir::DataDir;

use crate::Outcome;
use crate::cli::{ExportArgs, ExportCmd, TextOrJson};

pub fn run(a: ExportArgs) -> Result<Outcome> {
    if a.print_config {
        print!("{EXAMPLE}");
        return Ok(Outcome::Ok);
    }
    match a.cmd {
        Some(ExportCmd::Verify {
            manifest,
            public_key,
            dir,
            format,
        }) => {
            return verify(
                &manifest,
                public_key.as_deref(),
                &DataDir::new(dir.data_dir),
                format,
            );
        }
        Some(ExportCmd::Reperform {
            bundle,
            public_key,
            key_file,
            witness,
            format,
        }) => return reperform(&bundle, &public_key, &key_file, &witness, format),
        None => {}
    }
    let standard = a.standard.as_deref().unwrap_or_default();
    let which = a.control.as_deref().or(a.article.as_deref()).ok_or_else(|| {
        anyhow!("--standard {standard} needs --control (soc2: CC7.2, iso27001: A.8.15) or --article (gdpr: art30, eu-ai-act: art12)")
    })?;
    let control = Control::parse(standard, which)?;
    if let Some(bundle) = &a.bundle {
        return write_bundle(&a, control, bundle);
    }
    let output = a.output.clone().unwrap_or_default();
    let output_name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| anyhow!("--output {}: give a file name", output.display()))?;
    Format::of(&output_name)?;
    let out_dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .to_path_buf();
    let job = Job {
        control,
        tenant: a.tenant_id.clone(),
        period: a.period.clone(),
        output_name,
        data_subjects: a.include_data_subjects,
        sample_size: a.sample_size,
        seed: a.seed.clone(),
    };
    let (files, manifest, summary) = if a.remote.server.is_some() {
        crate::cmd::remote::export(&a.remote, &job, false)?
    } else {
        let dir = DataDir::new(a.dir.data_dir.clone());
        if !dir.is_initialised() {
            bail!(
                "{} is not a Blackbox data directory (give --data-dir or BLACKBOX_DATA_DIR, or --server URL --token T)",
                dir.root().display()
            );
        }
        // A file named with --config must be there; the default one is optional (the report
        // then names what is not configured).
        let config = match &a.config {
            Some(path) => ExportConfig::load(path)?,
            None => ExportConfig::load_or_default(&dir.root().join("export.toml"))?,
        };
        // The alerts' SIEM deliveries are read from the service's webhook outbox.
        let outbox = crate::cmd::webhooks::open(&dir);
        let records = delivery_records(&outbox);
        let p = produce(&dir, &config, &job, &records)?;
        let summary = summary_lines(&p.figures, &p.period);
        (p.files, p.manifest, summary)
    };
    let mut written = Vec::new();
    for (name, bytes) in &files {
        let path = out_dir.join(name);
        write_atomic(&path, bytes)?;
        written.push(path.display().to_string());
    }
    let mpath = out_dir.join(&manifest.0);
    write_atomic(&mpath, manifest.1.as_bytes())?;
    println!("Wrote {}", written.join(", "));
    for l in summary {
        println!("  {l}");
    }
    println!(
        "Signed manifest: {} (check: blackbox export verify {} --public-key checkpoint.pub)",
        mpath.display(),
        mpath.display()
    );
    Ok(Outcome::Ok)
}

/// The summary metrics, one line each.
pub fn summary_lines(
    f: &blackbox_export::figures::Figures,
    p: &blackbox_export::figures::Period,
) -> Vec<String> {
    let c = &f.completeness;
    vec![
        format!(
            "period:           {} to {}, tenant {}",
            p.start, p.end, f.tenant_id
        ),
        format!(
            "log completeness: {}% of expected entries present ({} of {})",
            c.percent, c.present, c.expected
        ),
        format!("integrity:        {}", f.integrity.summary),
        format!(
            "anomaly count:    {} events flagged for review ({} resolved)",
            f.anomalies.total, f.anomalies.resolved
        ),
        format!(
            "retention:        the log reaches back {} as of {} (required: {} days) — {}",
            blackbox_export::report::count_of(f.retention.oldest_age_days, "day", "days"),
            f.retention.as_of,
            f.retention.required_days,
            if f.retention.met { "met" } else { "NOT MET" }
        ),
    ]
}

/// Where an export reads the alerts' SIEM deliveries: the data directory's webhook outbox.
fn delivery_records(
    outbox: &Result<Option<Box<dyn blackbox_webhooks::Outbox>>>,
) -> DeliveryRecords<'_> {
    match outbox {
        Ok(Some(o)) => DeliveryRecords::Outbox(o.as_ref()),
        Ok(None) => DeliveryRecords::Missing,
        Err(e) => DeliveryRecords::Unreadable(format!("{e:#}")),
    }
}

/// Writes a bundle's files and its manifest into the directory `bundle` (made if missing).
fn write_bundle_files(
    bundle: &Path,
    files: &[(String, Vec<u8>)],
    manifest: &(String, String),
) -> Result<()> {
    std::fs::create_dir_all(bundle).with_context(|| format!("creating {}", bundle.display()))?;
    for (name, bytes) in files {
        write_atomic(&bundle.join(name), bytes)?;
    }
    write_atomic(&bundle.join(&manifest.0), manifest.1.as_bytes())
}

/// `export --bundle DIR`: signs a checkpoint of the whole chain now, then writes the bundle.
fn write_bundle(a: &ExportArgs, control: Control, bundle: &Path) -> Result<Outcome> {
    if bundle.exists() && std::fs::read_dir(bundle).is_ok_and(|mut d| d.next().is_some()) {
        bail!(
            "{} exists and is not empty: a bundle goes into a new directory",
            bundle.display()
        );
    }
    let job = Job {
        control,
        tenant: a.tenant_id.clone(),
        period: a.period.clone(),
        output_name: "report.pdf".into(),
        data_subjects: a.include_data_subjects,
        sample_size: a.sample_size,
        seed: a.seed.clone(),
    };
    let (files, manifest, summary, by) = if a.remote.server.is_some() {
        // The service signs a checkpoint over the tenant's chain, then makes the bundle (an
        // admin token: a bundle holds the service's own chains).
        let (files, manifest, summary) = crate::cmd::remote::export(&a.remote, &job, true)?;
        (files, manifest, summary, ", made by the service")
    } else {
        let p = local_bundle(a, &job)?;
        let summary = summary_lines(&p.figures, &p.period);
        (p.files, p.manifest, summary, "")
    };
    write_bundle_files(bundle, &files, &manifest)?;
    println!(
        "Wrote the evidence bundle {} ({} files and {}){by}",
        bundle.display(),
        files.len(),
        manifest.0
    );
    for l in summary {
        println!("  {l}");
    }
    println!(
        "Re-perform it offline: blackbox export reperform {} --public-key checkpoint.pub [--key-file hmac.keys]",
        bundle.display()
    );
    Ok(Outcome::Ok)
}

/// A bundle made from the data directory: a checkpoint of every chain signed now (unless the
/// service holds the writer), then the report, the log and the proofs.
fn local_bundle(a: &ExportArgs, job: &Job) -> Result<blackbox_export::produce::Produced> {
    let dir = DataDir::new(a.dir.data_dir.clone());
    if !dir.is_initialised() {
        bail!(
            "{} is not a Blackbox data directory (give --data-dir or BLACKBOX_DATA_DIR)",
            dir.root().display()
        );
    }
    let config = match &a.config {
        Some(path) => ExportConfig::load(path)?,
        None => ExportConfig::load_or_default(&dir.root().join("export.toml"))?,
    };
    let tenant = blackbox_export::produce::request(&dir, &config, job, 0)?.tenant;
    // A checkpoint of every chain signed now, so that the proofs cover every entry and the
    // figures are as of it. While the service runs it holds the writer: the bundle then uses
    // the service's latest checkpoint, and entries after it are listed unproved.
    let now_ms = match blackbox_ledger::open::open_writer(&dir) {
        Ok((mut store, mut writer, _)) => {
            writer.heartbeat(&mut store, blackbox_ledger::clock::now_ms(), true)?;
            drop((store, writer));
            let store = blackbox_ledger::open::open_reader(&dir)?;
            blackbox_store::Store::latest_checkpoint(&store, &tenant)?
                .map_or_else(blackbox_ledger::clock::now_ms, |c| c.ts_ms)
        }
        Err(blackbox_ledger::LedgerError::InUse { .. }) => {
            eprintln!(
                "note: the service holds the log's writer, so the bundle's proofs are against its latest checkpoint; `blackbox checkpoint --sign-now --server URL --token ADMIN_TOKEN` first has it sign one that covers every entry"
            );
            blackbox_ledger::clock::now_ms()
        }
        Err(e) => return Err(e.into()),
    };
    let outbox = crate::cmd::webhooks::open(&dir);
    let records = delivery_records(&outbox);
    Ok(blackbox_export::produce::produce_bundle(
        &dir, &config, job, &records, now_ms,
    )?)
}

/// `export reperform BUNDLE`: every check, match / mismatch; exit 1 on a mismatch.
fn reperform(
    bundle: &Path,
    public_key: &Path,
    key_files: &[std::path::PathBuf],
    witness: &crate::cli::WitnessPolicyArgs,
    format: TextOrJson,
) -> Result<Outcome> {
    let verifier = blackbox_ledger::datadir::load_verifier(public_key)?;
    let keys = crate::cmd::verify::load_keyrings(key_files)?;
    let policy = crate::cmd::verify::witness_policy(witness)?;
    let r = blackbox_export::reperform::reperform_with(bundle, &verifier, keys, policy.as_ref())?;
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({"status": if r.ok() { "ok" } else { "mismatch" }, "checks": r.checks})
        ),
        TextOrJson::Text => {
            for c in &r.checks {
                println!("{:<16} {}: {}", c.result, c.what, c.detail);
            }
            let mismatches = r
                .checks
                .iter()
                .filter(|c| c.result == blackbox_export::reperform::MISMATCH)
                .count();
            if mismatches == 0 {
                println!("OK — every figure re-performed from the bundle matches the report");
            } else {
                println!("MISMATCH — {mismatches} check(s) do not match (listed above)");
            }
        }
    }
    Ok(if r.ok() {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

fn verify(
    path: &Path,
    public_key: Option<&Path>,
    dir: &DataDir,
    format: TextOrJson,
) -> Result<Outcome> {
    let key_path = public_key.map_or_else(|| dir.public_key_path(), Path::to_path_buf);
    let vkey = std::fs::read_to_string(&key_path).with_context(|| {
        format!(
            "reading the public key {} (give --public-key FILE)",
            key_path.display()
        )
    })?;
    let verifier = blackbox_core::note::NoteVerifier::from_vkey(vkey.trim())
        .map_err(|e| anyhow!("{}: not a public key: {e}", key_path.display()))?;
    let v = match manifest::verify(path, &verifier) {
        Ok(v) => v,
        Err(blackbox_export::ExportError::Manifest(m)) => {
            match format {
                TextOrJson::Json => {
                    println!("{}", serde_json::json!({"status": "failed", "error": m}))
                }
                TextOrJson::Text => println!("FAILED — {m}"),
            }
            return Ok(Outcome::CheckFailed);
        }
        Err(e) => return Err(e.into()),
    };
    let ok = v.ok();
    match format {
        TextOrJson::Json => println!(
            "{}",
            serde_json::json!({
                "status": if ok { "ok" } else { "failed" },
                "manifest": v.manifest,
                "files": v.files.iter().map(|(n, p)| serde_json::json!({"name": n, "ok": p.is_none(), "problem": p})).collect::<Vec<_>>(),
            })
        ),
        TextOrJson::Text => {
            if ok {
                println!(
                    "OK — manifest signed by {}; {} file(s) match ({} {} for tenant {}, {} to {})",
                    verifier.fingerprint(),
                    v.files.len(),
                    v.manifest.standard,
                    v.manifest.control,
                    v.manifest.tenant_id,
                    v.manifest.period_start,
                    v.manifest.period_end
                );
            } else {
                println!("FAILED — the signature is valid but files differ from the manifest:");
            }
            for (name, problem) in &v.files {
                match problem {
                    None => println!("  ok      {name}"),
                    Some(p) => println!("  FAILED  {name}: {p}"),
                }
            }
        }
    }
    Ok(if ok {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
