//! One export, end to end: the figures, the output file(s) in the chosen format, and the
//! signed manifest, as bytes (the CLI writes them to disk; the service sends them).

use blackbox_ledger::datadir::DataDir;
use blackbox_store::Store;

use crate::ExportError;
use crate::alerts::DeliveryRecords;
use crate::config::ExportConfig;
use crate::figures::{Figures, Period, Request};
use crate::manifest::{self, FileHash, Manifest, ManifestCheckpoint};
use crate::report::{self, Control};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// For the auditor.
    Pdf,
    /// The same content for machines.
    Json,
    /// The population tables.
    Csv,
}

impl Format {
    /// From a file name's extension.
    ///
    /// # Errors
    /// Another extension.
    pub fn of(name: &str) -> Result<Self, ExportError> {
        let ext = name
            .rsplit_once('.')
            .map(|(_, e)| e.to_ascii_lowercase())
            .unwrap_or_default();
        match ext.as_str() {
            "pdf" => Ok(Self::Pdf),
            "json" => Ok(Self::Json),
            "csv" => Ok(Self::Csv),
            _ => Err(ExportError::Usage(format!(
                "--output {name}: the format follows the extension: .pdf (for the auditor), .json (for machines) or .csv (the population tables)"
            ))),
        }
    }
}

/// What to export.
#[derive(Debug, Clone)]
pub struct Job {
    /// Standard and control.
    pub control: Control,
    /// Tenant (`None`: the store's only tenant).
    pub tenant: Option<String>,
    /// Period (`None`: the whole log).
    pub period: Option<String>,
    /// Output file name (no directory): its extension picks the format.
    pub output_name: String,
    /// Count data subjects (GDPR).
    pub data_subjects: bool,
    /// Sample size.
    pub sample_size: usize,
    /// Sample seed (`None`: derived from the standard, tenant and period).
    pub seed: Option<String>,
}

/// An export's files.
#[derive(Debug, Clone)]
pub struct Produced {
    /// (file name, bytes), the output first.
    pub files: Vec<(String, Vec<u8>)>,
    /// The manifest's file name and signed text.
    pub manifest: (String, String),
    /// The figures (for a summary).
    pub figures: Figures,
    /// The period reported on.
    pub period: Period,
}

/// Runs an export over the data directory: figures, files, signed manifest. `deliveries`:
/// where the alerts' SIEM deliveries are read (the service's webhook outbox).
///
/// # Errors
/// Usage errors (tenant, period, format), an empty period, settings, store or key failures.
pub fn produce(
    dir: &DataDir,
    config: &ExportConfig,
    job: &Job,
    deliveries: &DeliveryRecords<'_>,
) -> Result<Produced, ExportError> {
    let format = Format::of(&job.output_name)?;
    if job.output_name.contains('/') || job.output_name.contains('\\') {
        return Err(ExportError::Usage(
            "the output name must not contain a directory".into(),
        ));
    }
    let req = request(
        dir,
        config,
        job,
        blackbox_ledger::clock::Clock::from_env().now_ms(),
    )?;
    let figures = crate::figures::compute(dir, &req, deliveries)?;
    let r = report::report(job.control, config, &req.period, &figures, req.now_ms);
    let files = render(&r, job.control, &job.output_name, format)?;
    let text = sign_manifest(dir, job.control, &req, &figures, &files)?;
    Ok(Produced {
        manifest: (format!("{}.manifest", job.output_name), text),
        files,
        figures,
        period: req.period,
    })
}

/// What to compute for `job`: its tenant (the store's only one when not given), period (the
/// whole log by seq when not given), seed and settings, as of `now_ms`.
///
/// # Errors
/// No tenant, several tenants and none chosen, a bad period.
pub fn request(
    dir: &DataDir,
    config: &ExportConfig,
    job: &Job,
    now_ms: i64,
) -> Result<Request, ExportError> {
    let store = blackbox_ledger::open::open_reader(dir)?;
    let tenants: Vec<String> = store
        .chains()?
        .into_iter()
        .map(|h| h.tenant_id)
        .filter(|t| !blackbox_core::ids::is_service_tenant(t))
        .collect();
    let tenant = match (&job.tenant, tenants.as_slice()) {
        (Some(t), _) => t.clone(),
        (None, [only]) => only.clone(),
        (None, []) => {
            return Err(ExportError::EmptyPeriod(
                "the store holds no entries yet: nothing to report".into(),
            ));
        }
        (None, many) => {
            return Err(ExportError::Usage(format!(
                "the store holds several tenants ({}): choose one with --tenant-id",
                many.join(", ")
            )));
        }
    };
    drop(store);
    let period = match &job.period {
        Some(p) => Period::parse(p)?,
        None => crate::figures::whole_log_period(dir, &tenant)?,
    };
    let control = job.control;
    let seed = job.seed.clone().unwrap_or_else(|| {
        format!(
            "{}/{}/{}/{}/{}",
            control.standard(),
            control.control(),
            tenant,
            period.start,
            period.end
        )
    });
    Ok(Request {
        tenant,
        period,
        sample_size: job.sample_size.min(10_000),
        seed,
        data_subjects: job.data_subjects,
        retention: config.required_days(control.retention_preset()),
        now_ms,
        personal_ages: control == Control::GdprArt30,
        triage_hours: config.triage_hours(),
    })
}

fn stem_of(name: &str) -> &str {
    name.rsplit_once('.').map_or(name, |(s, _)| s)
}

/// The report's files in `format`, named after `output_name`.
fn render(
    r: &report::Report<'_>,
    control: Control,
    output_name: &str,
    format: Format,
) -> Result<Vec<(String, Vec<u8>)>, ExportError> {
    let stem = stem_of(output_name);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    match format {
        Format::Pdf => {
            let mut doc = report::document(r, control);
            // The same report for machines, inside the PDF (PDF/A-3 associated files).
            doc.attachments.push(crate::doc::Attachment {
                name: format!("{stem}.json"),
                mime_type: "application/json".into(),
                description: "The report as JSON (blackbox.evidence.v1, docs/FORMAT.md §16)".into(),
                bytes: report::json(r)?.into_bytes(),
            });
            for (suffix, bytes) in report::csv_tables(r.figures)? {
                let name = if suffix.is_empty() {
                    format!("{stem}.csv")
                } else {
                    format!("{stem}.{suffix}.csv")
                };
                doc.attachments.push(crate::doc::Attachment {
                    description: format!(
                        "The report's {} table as CSV",
                        if suffix.is_empty() { "daily" } else { suffix }
                    ),
                    name,
                    mime_type: "text/csv".into(),
                    bytes,
                });
            }
            let bytes =
                crate::pdf::render_pdf(&doc).map_err(|e| ExportError::Pdf(e.to_string()))?;
            files.push((output_name.to_owned(), bytes));
        }
        Format::Json => files.push((output_name.to_owned(), report::json(r)?.into_bytes())),
        Format::Csv => {
            for (suffix, bytes) in report::csv_tables(r.figures)? {
                let name = if suffix.is_empty() {
                    output_name.to_owned()
                } else {
                    format!("{stem}.{suffix}.csv")
                };
                files.push((name, bytes));
            }
        }
    }
    Ok(files)
}

/// The signed manifest (docs/FORMAT.md §16) of `files`.
fn sign_manifest(
    dir: &DataDir,
    control: Control,
    req: &Request,
    figures: &Figures,
    files: &[(String, Vec<u8>)],
) -> Result<String, ExportError> {
    let signer = blackbox_ledger::datadir::load_signer(&dir.signing_key_path())?;
    let m = Manifest {
        standard: control.standard().into(),
        control: control.control().into(),
        tenant_id: req.tenant.clone(),
        period_start: req.period.start.clone(),
        period_end: req.period.end.clone(),
        checkpoints: figures
            .integrity
            .checkpoint
            .iter()
            .map(|c| ManifestCheckpoint {
                tenant_id: req.tenant.clone(),
                size: c.size,
                root: c.root.clone(),
                timestamp: c.timestamp.clone(),
            })
            .collect(),
        files: files
            .iter()
            .map(|(name, bytes)| FileHash {
                name: name.clone(),
                sha256: manifest::sha256_bytes(bytes),
                bytes: bytes.len() as u64,
            })
            .collect(),
        public_key_fingerprint: signer.verifier().fingerprint(),
    };
    manifest::sign(&m, &signer)
}

/// The name of a bundle's manifest.
pub const BUNDLE_MANIFEST: &str = "bundle.manifest";
/// The name of a bundle's parameters file.
pub const BUNDLE_PARAMETERS: &str = "bundle.json";
/// The name of a bundle's log.
pub const BUNDLE_LOG: &str = "log.jsonl";

/// What a bundle was made from (`bundle.json`): enough to compute the same figures again.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct BundleParameters {
    /// `blackbox.bundle.v1`.
    pub format: String,
    /// Standard.
    pub standard: String,
    /// Control or article.
    pub control: String,
    /// Tenant.
    pub tenant_id: String,
    /// Period (`YYYY-MM-DD/YYYY-MM-DD`), or null for the whole log by seq.
    pub period: Option<String>,
    /// Sample size asked.
    pub sample_size: usize,
    /// Sample seed.
    pub seed: String,
    /// Data subjects counted.
    pub include_data_subjects: bool,
    /// The time the figures are as of: the checkpoint signed for the bundle (RFC 3339).
    pub as_of: String,
    /// Required retention (days) and where it comes from.
    pub retention: (u64, String),
    /// Triage time (hours) and where it comes from.
    pub triage_hours: (u64, String),
    /// The tenant's checkpoint the bundle's proofs are against: tree size.
    pub checkpoint_size: u64,
    /// Sampled entries and alerts after that checkpoint (no proof yet).
    #[serde(default)]
    pub unproved: Vec<String>,
}

/// A re-performable evidence bundle (docs/FORMAT.md §16): the report as PDF, JSON and CSV, the
/// tenant's and the service's chains as a JSONL log, the public key, an inclusion proof for
/// every sampled entry and every alert, the parameters, and a manifest over all of it.
///
/// `now_ms` is the time of the checkpoint the caller signed for the bundle (the figures are as
/// of it, so that they can be computed again from the log).
///
/// # Errors
/// As [`produce`]; an entry to prove that is no longer in the store (archived).
pub fn produce_bundle(
    dir: &DataDir,
    config: &ExportConfig,
    job: &Job,
    deliveries: &DeliveryRecords<'_>,
    now_ms: i64,
) -> Result<Produced, ExportError> {
    let req = request(dir, config, job, now_ms)?;
    // The log first (the tenant's chain and the service's chains, whole: the rules versions
    // the alert register reads are in the service's), then every figure computed from it: the
    // report is what `export reperform` computes again, even while the service writes on.
    let mut log: Vec<u8> = Vec::new();
    {
        let store = blackbox_ledger::open::open_reader(dir)?;
        for head in store.chains()? {
            let t = head.tenant_id.as_str();
            if t != req.tenant && !blackbox_core::ids::is_service_tenant(t) {
                continue;
            }
            // A chain whose first entries were archived: its live archive segments first
            // (each starts at its anchor), then the store's part, read as one stream.
            crate::figures::archived_segments(dir, &store, t, &mut log)?;
            blackbox_ledger::export::export_log(&store, Some(t), &mut log)?;
        }
    }
    let log_store = crate::logfile::LogFileStore::parse(&log)?;
    let keys = blackbox_ledger::datadir::load_keyring(&dir.hmac_keys_path())?;
    let verifier = blackbox_ledger::open::public_key(dir)?;
    let figures =
        crate::figures::compute_from_log(&log_store, Some(keys), verifier, &req, deliveries)?;
    let r = report::report(job.control, config, &req.period, &figures, req.now_ms);
    let mut files = Vec::new();
    for f in [Format::Pdf, Format::Json, Format::Csv] {
        let name = match f {
            Format::Pdf => "report.pdf",
            Format::Json => "report.json",
            Format::Csv => "report.csv",
        };
        files.extend(render(&r, job.control, name, f)?);
    }
    files.push((BUNDLE_LOG.into(), log));
    // An inclusion proof for every sampled entry and every alert, against the log's latest
    // checkpoint of the tenant (entries after it are listed in the parameters, unproved).
    let cp = blackbox_ledger::proof::latest_checkpoint(&log_store, &req.tenant)?;
    let mut ids: Vec<&str> = figures.sample.iter().map(|s| s.entry_id.as_str()).collect();
    ids.extend(figures.alerts.alerts.iter().map(|a| a.alert_id.as_str()));
    ids.sort_unstable();
    ids.dedup();
    let mut unproved = Vec::new();
    for id in ids {
        let uuid = uuid::Uuid::parse_str(id)
            .map_err(|e| ExportError::Usage(format!("entry id {id}: {e}")))?;
        let Some(entry) = log_store.entry_by_id(uuid.as_bytes())? else {
            return Err(ExportError::Usage(format!(
                "entry {id} is not in the bundle's log"
            )));
        };
        if entry.seq > cp.checkpoint.size {
            unproved.push(id.to_owned());
            continue;
        }
        let proof = blackbox_ledger::proof::prove_inclusion_at(&log_store, &entry, &cp, true)?;
        let json = serde_json::to_string_pretty(&proof)
            .map_err(|e| ExportError::Usage(format!("writing a proof: {e}")))?;
        files.push((format!("proof-{id}.json"), (json + "\n").into_bytes()));
        // The same entry as a C2SP tlog-proof against the newest checkpoint covering it that
        // carries the most witness cosignatures (docs/WITNESS.md): checkable offline by any C2SP
        // implementation, with a witness policy.
        let witnessed =
            blackbox_ledger::proof::proving_checkpoint(&log_store, &req.tenant, entry.seq)?;
        let tlog =
            blackbox_ledger::proof::prove_inclusion_at(&log_store, &entry, &witnessed, true)?;
        let text = blackbox_core::tlog_proof::TlogProof::from_inclusion(&tlog)
            .map_err(|e| ExportError::Usage(format!("writing a tlog-proof: {e}")))?
            .to_text();
        files.push((format!("proof-{id}.tlog-proof"), text.into_bytes()));
    }
    let public = std::fs::read(dir.public_key_path()).map_err(|cause| ExportError::Io {
        path: dir.public_key_path().display().to_string(),
        cause,
    })?;
    files.push(("checkpoint.pub".into(), public));
    let params = BundleParameters {
        format: "blackbox.bundle.v1".into(),
        standard: job.control.standard().into(),
        control: job.control.control().into(),
        tenant_id: req.tenant.clone(),
        period: job.period.clone(),
        sample_size: req.sample_size,
        seed: req.seed.clone(),
        include_data_subjects: req.data_subjects,
        as_of: blackbox_core::entry::format_timestamp(now_ms).unwrap_or_default(),
        retention: req.retention.clone(),
        triage_hours: req.triage_hours.clone(),
        checkpoint_size: cp.checkpoint.size,
        unproved,
    };
    let json = serde_json::to_string_pretty(&params)
        .map_err(|e| ExportError::Usage(format!("writing the parameters: {e}")))?;
    files.push((BUNDLE_PARAMETERS.into(), (json + "\n").into_bytes()));
    let text = sign_manifest(dir, job.control, &req, &figures, &files)?;
    Ok(Produced {
        manifest: (BUNDLE_MANIFEST.into(), text),
        files,
        figures,
        period: req.period,
    })
}
