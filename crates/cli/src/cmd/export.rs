//! `blackbox export`: compliance evidence with a signed manifest; `blackbox export verify`.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use blackbox_export::config::{EXAMPLE, ExportConfig};
use blackbox_export::figures::{Period, Request};
use blackbox_export::manifest::{self, Manifest, ManifestCheckpoint};
use blackbox_export::report::{self, Control};
use blackbox_ledger::datadir::DataDir;
use blackbox_store::Store as _;

use crate::Outcome;
use crate::cli::{ExportArgs, ExportCmd, TextOrJson};

pub fn run(a: ExportArgs) -> Result<Outcome> {
    if a.print_config {
        print!("{EXAMPLE}");
        return Ok(Outcome::Ok);
    }
    if let Some(ExportCmd::Verify {
        manifest,
        public_key,
        dir,
        format,
    }) = a.cmd
    {
        return verify(
            &manifest,
            public_key.as_deref(),
            &DataDir::new(dir.data_dir),
            format,
        );
    }
    let dir = DataDir::new(a.dir.data_dir.clone());
    let standard = a.standard.as_deref().unwrap_or_default();
    let which = a.control.as_deref().or(a.article.as_deref()).ok_or_else(|| {
        anyhow!("--standard {standard} needs --control (soc2: CC7.2, iso27001: A.8.15) or --article (gdpr: art30)")
    })?;
    let control = Control::parse(standard, which)?;
    let output = a.output.clone().unwrap_or_default();
    let ext = output
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    if !matches!(ext.as_str(), "pdf" | "json" | "csv") {
        bail!(
            "--output {}: the format follows the extension: .pdf (for the auditor), .json (for machines) or .csv (the population tables)",
            output.display()
        );
    }
    if !dir.is_initialised() {
        bail!(
            "{} is not a Blackbox data directory (give --data-dir or BLACKBOX_DATA_DIR)",
            dir.root().display()
        );
    }
    let config_path = a
        .config
        .clone()
        .unwrap_or_else(|| dir.root().join("export.toml"));
    let config = ExportConfig::load(&config_path)?;
    if control == Control::GdprArt30 && config.gdpr.activities.is_empty() {
        bail!(
            "{}: a GDPR Art. 30 record needs the processing activities: add [gdpr] and [[gdpr.activities]] (`blackbox export --print-config` shows them)",
            config_path.display()
        );
    }
    let store = blackbox_ledger::open::open_reader(&dir)?;
    let tenants: Vec<String> = store
        .chains()?
        .into_iter()
        .map(|h| h.tenant_id)
        .filter(|t| t != "_blackbox")
        .collect();
    let tenant = match (&a.tenant_id, tenants.as_slice()) {
        (Some(t), _) => t.clone(),
        (None, [only]) => only.clone(),
        (None, []) => bail!("the store holds no entries yet: nothing to report"),
        (None, many) => bail!(
            "the store holds several tenants ({}): choose one with --tenant-id",
            many.join(", ")
        ),
    };
    let period = match &a.period {
        Some(p) => Period::parse(p)?,
        None => whole_log(&store, &tenant)?,
    };
    drop(store);
    let seed = a.seed.clone().unwrap_or_else(|| {
        format!(
            "{}/{}/{}/{}/{}",
            control.standard(),
            control.control(),
            tenant,
            period.start,
            period.end
        )
    });
    let req = Request {
        tenant: tenant.clone(),
        period: period.clone(),
        sample_size: a.sample_size.min(10_000),
        seed,
        data_subjects: a.include_data_subjects,
        retention: config.required_days(control.standard()),
    };
    let figures = blackbox_export::figures::compute(&dir, &req)?;
    let r = report::report(control, &config, &period, &figures);
    let mut written: Vec<PathBuf> = Vec::new();
    match ext.as_str() {
        "pdf" => {
            let doc = report::document(&r, control);
            let bytes = blackbox_export::pdf::render_pdf(&doc)
                .map_err(|e| anyhow!("rendering the PDF: {e}"))?;
            write_atomic(&output, &bytes)?;
            written.push(output.clone());
        }
        "json" => {
            write_atomic(&output, report::json(&r)?.as_bytes())?;
            written.push(output.clone());
        }
        _ => {
            for (suffix, bytes) in report::csv_tables(&figures)? {
                let path = if suffix.is_empty() {
                    output.clone()
                } else {
                    output.with_extension(format!("{suffix}.csv"))
                };
                write_atomic(&path, &bytes)?;
                written.push(path);
            }
        }
    }
    let signer = blackbox_ledger::datadir::load_signer(&dir.signing_key_path())?;
    let m = Manifest {
        standard: control.standard().into(),
        control: control.control().into(),
        tenant_id: tenant.clone(),
        period_start: period.start.clone(),
        period_end: period.end.clone(),
        checkpoints: figures
            .integrity
            .checkpoint
            .iter()
            .map(|c| ManifestCheckpoint {
                tenant_id: tenant.clone(),
                size: c.size,
                root: c.root.clone(),
                timestamp: c.timestamp.clone(),
            })
            .collect(),
        files: manifest::hash_files(&written)?,
        public_key_fingerprint: signer.verifier().fingerprint(),
    };
    let text = manifest::sign(&m, &signer)?;
    let mpath = manifest_path(&output);
    write_atomic(&mpath, text.as_bytes())?;
    let c = &figures.completeness;
    println!(
        "Wrote {} ({} to {}, tenant {})",
        written
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        period.start,
        period.end,
        tenant
    );
    println!(
        "  log completeness: {}% of expected entries present ({} of {})",
        c.percent, c.present, c.expected
    );
    println!("  integrity:        {}", figures.integrity.summary);
    println!(
        "  anomaly count:    {} events flagged for review ({} resolved)",
        figures.anomalies.total, figures.anomalies.resolved
    );
    println!(
        "  retention:        oldest log = {} days (required: {} days) — {}",
        figures.retention.oldest_age_days,
        figures.retention.required_days,
        if figures.retention.met {
            "met"
        } else {
            "NOT MET"
        }
    );
    println!(
        "Signed manifest: {} (check: blackbox export verify {})",
        mpath.display(),
        mpath.display()
    );
    Ok(Outcome::Ok)
}

fn manifest_path(output: &Path) -> PathBuf {
    let mut s = output.as_os_str().to_owned();
    s.push(".manifest");
    PathBuf::from(s)
}

fn whole_log(store: &blackbox_store::sqlite::SqliteStore, tenant: &str) -> Result<Period> {
    let head = store
        .chains()?
        .into_iter()
        .find(|h| h.tenant_id == tenant)
        .ok_or_else(|| anyhow!("no chain for tenant `{tenant}`"))?;
    let mut first = None;
    let mut last = None;
    store.scan_lines(tenant, 1, 1, &mut |_, l, _| {
        first = blackbox_core::entry::EntryView::parse(l)
            .ok()
            .map(|v| v.timestamp_ms);
        Ok(false)
    })?;
    store.scan_lines(tenant, head.size, head.size, &mut |_, l, _| {
        last = blackbox_core::entry::EntryView::parse(l)
            .ok()
            .map(|v| v.timestamp_ms);
        Ok(false)
    })?;
    let (Some(a), Some(b)) = (first, last) else {
        bail!("tenant `{tenant}` has no readable entries");
    };
    let day = |ms: i64| -> String {
        blackbox_core::entry::format_timestamp(ms)
            .unwrap_or_default()
            .get(..10)
            .unwrap_or_default()
            .to_owned()
    };
    // Agents may send timestamps slightly out of order: the period covers both ends.
    Ok(Period::parse(&format!(
        "{}/{}",
        day(a.min(b)),
        day(a.max(b))
    ))?)
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
